//! Golden parity runner for the `turbo_vae_decode` cases (`shared/goldens/README.md`, section 1):
//! `get_turbo_vaed(...).decode(z)` of GAIR-NLP/daVinci-MagiHuman at commit 209209b
//! (`inference/model/turbo_vaed/turbo_vaed_model.py`), on CPU in f32.

use std::collections::HashMap;
use std::path::Path;

use candle::{DType, Device, Result, Tensor};
use candle_core as candle;
use serde::Deserialize;

use super::config::Config;
use super::vae::TurboVaed;

pub const COMPONENT: &str = "turbo_vae_decode";

#[derive(Debug, Deserialize)]
struct CaseJson {
    component: String,
    config: Config,
}

fn load_tensors(path: &Path) -> Result<HashMap<String, Tensor>> {
    candle::safetensors::load(path, &Device::Cpu)
        .map_err(|e| candle::Error::msg(format!("loading {}: {e}", path.display())))
}

/// Reads `DIR/case.json`, `weights.safetensors` (released `.ckpt` names, `module.` prefix
/// included) and `inputs.safetensors` (`z`), decodes on CPU in f32 and returns every tensor named
/// in `expected.safetensors` (`video`, and `chunk{k}_decoder_out`: window k's raw decoder
/// output), each with its expected dtype.
pub fn run_golden_case(dir: &Path) -> Result<Vec<(String, Tensor)>> {
    let path = dir.join("case.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| candle::Error::msg(format!("reading {}: {e}", path.display())))?;
    let case: CaseJson = serde_json::from_str(&text)
        .map_err(|e| candle::Error::msg(format!("parsing {}: {e}", path.display())))?;
    if case.component != COMPONENT {
        candle::bail!(
            "{}: component is {:?}, expected {COMPONENT:?}",
            path.display(),
            case.component
        )
    }
    let dev = Device::Cpu;
    let vae = TurboVaed::load(
        &case.config,
        &dir.join("weights.safetensors"),
        DType::F32,
        &dev,
    )?;
    let inputs = load_tensors(&dir.join("inputs.safetensors"))?;
    let z = inputs.get("z").ok_or_else(|| {
        candle::Error::msg(format!("{}: inputs.safetensors lacks \"z\"", dir.display()))
    })?;

    let mut all: HashMap<String, Tensor> = HashMap::new();
    let video = vae.decode_with(z, |k, y| {
        all.insert(format!("chunk{k}_decoder_out"), y.clone());
        Ok(())
    })?;
    all.insert("video".to_string(), video);

    let expected = load_tensors(&dir.join("expected.safetensors"))?;
    let mut names: Vec<&String> = expected.keys().collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let got = all.get(name).ok_or_else(|| {
                candle::Error::msg(format!(
                    "{}: expected tensor {name:?} is not produced by turbo_vae_decode",
                    dir.display()
                ))
            })?;
            Ok((name.clone(), got.to_dtype(expected[name].dtype())?))
        })
        .collect()
}
