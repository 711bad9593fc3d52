//! Golden parity runner for the `magihuman_dit` cases (`shared/goldens/README.md`, section
//! "MagiHuman DiT and samplers"): `process_input` → `DiTModel.forward` → `process_output` of
//! GAIR-NLP/daVinci-MagiHuman at commit 209209b, on CPU in f32.

use std::collections::HashMap;
use std::path::Path;

use candle::{Device, Result, Tensor};
use candle_core as candle;

use super::config::{DataProxyConfig, ModelConfig};
use super::dit::{DitTrace, MagiHuman};
use super::packing;
use crate::engine::golden::GoldenCase;

pub const COMPONENT: &str = "magihuman_dit";

/// Every tensor the case can be asked for: the expected ones (`packed_x`, `coords`, `modality`
/// as i64, `v_video`, `v_audio`) and the debug ones (`adapter_x`, `rope`, `layer_out`, `dit_out`).
fn run_all(case: &GoldenCase) -> Result<HashMap<String, Tensor>> {
    let model_cfg: ModelConfig = case.config("/config/model")?;
    let proxy_cfg: DataProxyConfig = case.config("/config/data_proxy")?;
    let dev = Device::Cpu;
    let model = MagiHuman::new(&model_cfg, &proxy_cfg, case.var_builder()?)?;

    let inputs = case.tensors("inputs.safetensors")?;
    let txt_len = inputs.usize("txt_len")?;
    let packed = model.pack(
        inputs.get("latent_video")?,
        inputs.get("latent_audio")?,
        inputs.get("txt_feat")?,
        txt_len,
    )?;
    let mut trace = DitTrace::empty(&dev)?;
    let dit_out = model.forward_packed(&packed, Some(&mut trace))?;
    let (v_video, v_audio) = packing::depack(&dit_out, &packed)?;

    let mut out = HashMap::new();
    out.insert("packed_x".to_string(), packed.x.clone());
    out.insert("coords".to_string(), packed.coords_tensor(&dev)?);
    out.insert("modality".to_string(), packed.modality_tensor(&dev)?);
    out.insert("v_video".to_string(), v_video);
    out.insert("v_audio".to_string(), v_audio);
    out.insert("adapter_x".to_string(), trace.adapter_x.clone());
    out.insert("rope".to_string(), trace.rope.clone());
    out.insert("layer_out".to_string(), trace.stacked_layer_out()?);
    out.insert("dit_out".to_string(), dit_out);
    Ok(out)
}

/// Runs the case in `dir` (`case.json`, `weights.safetensors`, `inputs.safetensors`) on CPU in
/// f32 and returns every tensor named in `expected.safetensors`, with its expected dtype,
/// sorted by name.
pub fn run_golden_case(dir: &Path) -> Result<Vec<(String, Tensor)>> {
    let case = GoldenCase::open(dir, &[COMPONENT])?;
    case.select(run_all(&case)?, "expected.safetensors")
}

/// Same run, returning the intermediates named in `debug.safetensors` instead.
pub fn run_golden_case_debug(dir: &Path) -> Result<Vec<(String, Tensor)>> {
    let case = GoldenCase::open(dir, &[COMPONENT])?;
    case.select(run_all(&case)?, "debug.safetensors")
}
