//! Golden parity runner for the `wan22_vae_decode` / `wan22_vae_encode` cases
//! (`shared/goldens/README.md`, section 2): `Wan2_2_VAE.decode` / `.encode` of
//! `inference/model/vae2_2/vae2_2_module.py`, GAIR-NLP/daVinci-MagiHuman at commit 209209b, on
//! CPU in f32.

use std::collections::HashMap;
use std::path::Path;

use candle::{DType, Result, Tensor};
use candle_core as candle;
use serde::Deserialize;

use super::config::Config;
use super::vae::{Wan22VaeDecoder, Wan22VaeEncoder};
use crate::engine::golden::GoldenCase;

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

/// Runs the case in `dir` (`case.json`, `weights.safetensors`, `inputs.safetensors`) on CPU in
/// f32 and returns every tensor named in `expected.safetensors` (`video`, `video_raw` for
/// decode; `latent`, `mu_raw` for encode), with its expected dtype, sorted by name.
pub fn run_golden_case(dir: &Path) -> Result<Vec<(String, Tensor)>> {
    let case = GoldenCase::open(dir, &[DECODE_COMPONENT, ENCODE_COMPONENT])?;
    let args: WanVaeArgs = case.config("/config/WanVAE_")?;
    let cfg = Config {
        z_dim: args.z_dim,
        c_dim: args.dim,
        dec_dim: args.dec_dim,
        dim_mult: args.dim_mult,
        num_res_blocks: args.num_res_blocks,
        temperal_downsample: args.temperal_downsample,
    };
    let vb = case.var_builder()?;
    let inputs = case.tensors("inputs.safetensors")?;
    let mut all = HashMap::new();
    match case.component() {
        DECODE_COMPONENT => {
            let vae = Wan22VaeDecoder::new(&cfg, vb)?;
            let z = inputs.get("z")?.to_dtype(DType::F32)?;
            let raw = vae.decode_raw(&z)?;
            all.insert("video".to_string(), raw.clamp(-1f32, 1f32)?);
            all.insert("video_raw".to_string(), raw);
        }
        ENCODE_COMPONENT => {
            let vae = Wan22VaeEncoder::new(&cfg, vb)?;
            let video = inputs.get("video")?.to_dtype(DType::F32)?;
            let mu = vae.encode_mu_raw(&video)?;
            all.insert("latent".to_string(), vae.normalise(&mu)?);
            all.insert("mu_raw".to_string(), mu);
        }
        other => candle::bail!(
            "{}: component {other:?} is not a Wan2.2 VAE case",
            dir.display()
        ),
    }
    case.select(all, "expected.safetensors")
}
