//! Golden parity runner for the `magihuman_dit` cases (`shared/goldens/README.md`, section
//! "MagiHuman DiT and samplers"): `process_input` → `DiTModel.forward` → `process_output` of
//! GAIR-NLP/daVinci-MagiHuman at commit 209209b, on CPU in f32.

use std::collections::HashMap;
use std::path::Path;

use candle::{DType, Device, Result, Tensor};
use candle_core as candle;
use candle_nn::VarBuilder;
use serde::Deserialize;

use super::config::{DataProxyConfig, ModelConfig};
use super::dit::{DitTrace, MagiHuman};
use super::packing;

pub const COMPONENT: &str = "magihuman_dit";

#[derive(Debug, Deserialize)]
struct CaseConfig {
    model: ModelConfig,
    data_proxy: DataProxyConfig,
}

#[derive(Debug, Deserialize)]
struct CaseJson {
    component: String,
    config: CaseConfig,
}

fn load_case(dir: &Path) -> Result<(ModelConfig, DataProxyConfig)> {
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
    Ok((case.config.model, case.config.data_proxy))
}

fn load_tensors(path: &Path) -> Result<HashMap<String, Tensor>> {
    candle::safetensors::load(path, &Device::Cpu)
        .map_err(|e| candle::Error::msg(format!("loading {}: {e}", path.display())))
}

fn take<'a>(map: &'a HashMap<String, Tensor>, name: &str, dir: &Path) -> Result<&'a Tensor> {
    map.get(name).ok_or_else(|| {
        candle::Error::msg(format!(
            "{}: inputs.safetensors lacks {name:?}",
            dir.display()
        ))
    })
}

/// Every tensor the case can be asked for: the expected ones (`packed_x`, `coords`, `modality`
/// as i64, `v_video`, `v_audio`) and the debug ones (`adapter_x`, `rope`, `layer_out`, `dit_out`).
fn run_all(dir: &Path) -> Result<HashMap<String, Tensor>> {
    let (model_cfg, proxy_cfg) = load_case(dir)?;
    let dev = Device::Cpu;
    let weights = load_tensors(&dir.join("weights.safetensors"))?;
    let vb = VarBuilder::from_tensors(weights, DType::F32, &dev);
    let model = MagiHuman::new(&model_cfg, &proxy_cfg, vb)?;

    let inputs = load_tensors(&dir.join("inputs.safetensors"))?;
    let txt_len = take(&inputs, "txt_len", dir)?
        .flatten_all()?
        .to_dtype(DType::I64)?
        .to_vec1::<i64>()?;
    let txt_len = match txt_len.as_slice() {
        [n] if *n >= 0 => *n as usize,
        other => candle::bail!(
            "{}: txt_len must be one non-negative value, got {other:?}",
            dir.display()
        ),
    };
    let packed = model.pack(
        take(&inputs, "latent_video", dir)?,
        take(&inputs, "latent_audio", dir)?,
        take(&inputs, "txt_feat", dir)?,
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

fn select(
    mut all: HashMap<String, Tensor>,
    reference: &Path,
    dir: &Path,
) -> Result<Vec<(String, Tensor)>> {
    let wanted = load_tensors(reference)?;
    let mut names: Vec<_> = wanted.keys().cloned().collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let dtype = wanted[&name].dtype();
            match all.remove(&name) {
                Some(t) => Ok((name, t.to_dtype(dtype)?)),
                None => candle::bail!(
                    "{}: {} asks for {name:?}, which the magihuman_dit runner does not produce",
                    dir.display(),
                    reference.display()
                ),
            }
        })
        .collect()
}

/// Runs the case in `dir` (`case.json`, `weights.safetensors`, `inputs.safetensors`) on CPU in
/// f32 and returns every tensor named in `expected.safetensors`, with its expected dtype,
/// sorted by name.
pub fn run_golden_case(dir: &Path) -> Result<Vec<(String, Tensor)>> {
    let all = run_all(dir)?;
    select(all, &dir.join("expected.safetensors"), dir)
}

/// Same run, returning the intermediates named in `debug.safetensors` instead.
pub fn run_golden_case_debug(dir: &Path) -> Result<Vec<(String, Tensor)>> {
    let all = run_all(dir)?;
    select(all, &dir.join("debug.safetensors"), dir)
}
