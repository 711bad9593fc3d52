//! Golden parity runner for the `wan22_vae_decode` / `wan22_vae_encode` cases
//! (`shared/goldens/README.md`, section 2): `Wan2_2_VAE.decode` / `.encode` of
//! `inference/model/vae2_2/vae2_2_module.py`, GAIR-NLP/daVinci-MagiHuman at commit 209209b, on
//! CPU in f32.

use std::collections::HashMap;
use std::path::Path;

use candle::{DType, Device, Result, Tensor};
use candle_core as candle;
use candle_nn::VarBuilder;
use serde::Deserialize;

use super::config::Config;
use super::vae::{Wan22VaeDecoder, Wan22VaeEncoder};

pub const DECODE_COMPONENT: &str = "wan22_vae_decode";
pub const ENCODE_COMPONENT: &str = "wan22_vae_encode";

/// `WanVAE_`'s constructor arguments as the case records them.
#[derive(Debug, Deserialize)]
struct WanVaeArgs {
    dim: usize,
    dec_dim: usize,
    z_dim: usize,
    dim_mult: Vec<usize>,
    num_res_blocks: usize,
    temperal_downsample: Vec<bool>,
}

#[derive(Debug, Deserialize)]
struct CaseConfig {
    #[serde(rename = "WanVAE_")]
    wan_vae: WanVaeArgs,
}

#[derive(Debug, Deserialize)]
struct CaseJson {
    component: String,
    config: CaseConfig,
}

fn load_tensors(path: &Path) -> Result<HashMap<String, Tensor>> {
    candle::safetensors::load(path, &Device::Cpu)
        .map_err(|e| candle::Error::msg(format!("loading {}: {e}", path.display())))
}

fn input<'a>(map: &'a HashMap<String, Tensor>, name: &str, dir: &Path) -> Result<&'a Tensor> {
    map.get(name).ok_or_else(|| {
        candle::Error::msg(format!(
            "{}: inputs.safetensors lacks {name:?}",
            dir.display()
        ))
    })
}

/// Runs the case in `dir` (`case.json`, `weights.safetensors`, `inputs.safetensors`) on CPU in
/// f32 and returns every tensor named in `expected.safetensors` (`video`, `video_raw` for
/// decode; `latent`, `mu_raw` for encode), with its expected dtype, sorted by name.
pub fn run_golden_case(dir: &Path) -> Result<Vec<(String, Tensor)>> {
    let path = dir.join("case.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| candle::Error::msg(format!("reading {}: {e}", path.display())))?;
    let case: CaseJson = serde_json::from_str(&text)
        .map_err(|e| candle::Error::msg(format!("parsing {}: {e}", path.display())))?;
    let args = case.config.wan_vae;
    let cfg = Config {
        z_dim: args.z_dim,
        c_dim: args.dim,
        dec_dim: args.dec_dim,
        dim_mult: args.dim_mult,
        num_res_blocks: args.num_res_blocks,
        temperal_downsample: args.temperal_downsample,
    };

    let dev = Device::Cpu;
    let vb = VarBuilder::from_tensors(
        load_tensors(&dir.join("weights.safetensors"))?,
        DType::F32,
        &dev,
    );
    let inputs = load_tensors(&dir.join("inputs.safetensors"))?;
    let mut all = HashMap::new();
    match case.component.as_str() {
        DECODE_COMPONENT => {
            let vae = Wan22VaeDecoder::new(&cfg, vb)?;
            let z = input(&inputs, "z", dir)?.to_dtype(DType::F32)?;
            let raw = vae.decode_raw(&z)?;
            all.insert("video".to_string(), raw.clamp(-1f32, 1f32)?);
            all.insert("video_raw".to_string(), raw);
        }
        ENCODE_COMPONENT => {
            let vae = Wan22VaeEncoder::new(&cfg, vb)?;
            let video = input(&inputs, "video", dir)?.to_dtype(DType::F32)?;
            let mu = vae.encode_mu_raw(&video)?;
            all.insert("latent".to_string(), vae.normalise(&mu)?);
            all.insert("mu_raw".to_string(), mu);
        }
        other => candle::bail!(
            "{}: component is {other:?}, expected {DECODE_COMPONENT:?} or {ENCODE_COMPONENT:?}",
            path.display()
        ),
    }

    let expected = dir.join("expected.safetensors");
    let wanted = load_tensors(&expected)?;
    let mut names: Vec<_> = wanted.keys().cloned().collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let dtype = wanted[&name].dtype();
            match all.remove(&name) {
                Some(t) => Ok((name, t.to_dtype(dtype)?)),
                None => candle::bail!(
                    "{}: asks for {name:?}, which the {} runner does not produce",
                    expected.display(),
                    case.component
                ),
            }
        })
        .collect()
}
