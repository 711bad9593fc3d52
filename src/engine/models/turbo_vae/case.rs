//! Golden parity runner for the `turbo_vae_decode` cases (`shared/goldens/README.md`, section 1):
//! `get_turbo_vaed(...).decode(z)` of GAIR-NLP/daVinci-MagiHuman at commit 209209b
//! (`inference/model/turbo_vaed/turbo_vaed_model.py`), on CPU in f32.

use std::collections::HashMap;
use std::path::Path;

use candle::{DType, Device, Result, Tensor};
use candle_core as candle;

use super::config::Config;
use super::vae::TurboVaed;
use crate::engine::golden::GoldenCase;

pub const COMPONENT: &str = "turbo_vae_decode";

/// Reads `DIR/case.json`, `weights.safetensors` (released `.ckpt` names, `module.` prefix
/// included) and `inputs.safetensors` (`z`), decodes on CPU in f32 and returns every tensor named
/// in `expected.safetensors` (`video`, and `chunk{k}_decoder_out`: window k's raw decoder
/// output), each with its expected dtype.
pub fn run_golden_case(dir: &Path) -> Result<Vec<(String, Tensor)>> {
    let case = GoldenCase::open(dir, &[COMPONENT])?;
    let config: Config = case.config("/config")?;
    let vae = TurboVaed::load(
        &config,
        &dir.join("weights.safetensors"),
        DType::F32,
        &Device::Cpu,
    )?;
    let inputs = case.tensors("inputs.safetensors")?;

    let mut all: HashMap<String, Tensor> = HashMap::new();
    let video = vae.decode_with(inputs.get("z")?, |k, y| {
        all.insert(format!("chunk{k}_decoder_out"), y.clone());
        Ok(())
    })?;
    all.insert("video".to_string(), video);
    case.select(all, "expected.safetensors")
}
