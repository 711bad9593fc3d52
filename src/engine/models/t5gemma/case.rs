//! Golden parity runner for the `t5gemma_encoder` cases (`shared/goldens/README.md`, section 4):
//! transformers `T5GemmaEncoderModel` + `prompt_process.pad_or_trim` of
//! GAIR-NLP/daVinci-MagiHuman at commit 209209b, on CPU in f32.

use std::collections::HashMap;
use std::path::Path;

use candle::{DType, Device, Result, Tensor};
use candle_core as candle;
use serde::Deserialize;

use super::config::{Config, WindowRule};
use super::encoder::T5GemmaEncoder;
use super::text_encoder::pad_or_trim;
use crate::engine::weights::{load_var_builder, LoadOptions};

pub const COMPONENT: &str = "t5gemma_encoder";

#[derive(Debug, Deserialize)]
struct CaseConfig {
    #[serde(rename = "T5GemmaConfig")]
    t5gemma: serde_json::Value,
}

#[derive(Debug, Deserialize)]
struct CaseParams {
    target_length: usize,
}

#[derive(Debug, Deserialize)]
struct CaseJson {
    component: String,
    config: CaseConfig,
    params: CaseParams,
}

fn load_case(dir: &Path) -> Result<(Config, usize)> {
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
    let cfg = Config::from_hf_json(&case.config.t5gemma)
        .map_err(|e| candle::Error::msg(format!("{}: {e}", path.display())))?;
    Ok((cfg, case.params.target_length))
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

/// Every tensor the case can be asked for.
fn run_all(dir: &Path) -> Result<HashMap<String, Tensor>> {
    let (cfg, target) = load_case(dir)?;
    let dev = Device::Cpu;
    let vb = load_var_builder(
        &dir.join("weights.safetensors"),
        &LoadOptions::default(),
        DType::F32,
        &dev,
    )
    .map_err(candle::Error::wrap)?;
    // The golden files carry the checkpoint's names, `model.encoder.*`.
    let encoder = T5GemmaEncoder::new(&cfg, vb.pp("model").pp("encoder"))?;

    let inputs = load_tensors(&dir.join("inputs.safetensors"))?;
    let ids = take(&inputs, "input_ids", dir)?;
    let mask = inputs.get("attention_mask");

    let hidden = encoder
        .clone()
        .with_window_rule(WindowRule::Inclusive)
        .forward(ids, mask)?;
    let hidden_tf4 = encoder
        .with_window_rule(WindowRule::Exclusive)
        .forward(ids, mask)?;
    let (padded, original_len) = pad_or_trim(&hidden, target)?;

    let mut out = HashMap::new();
    out.insert("last_hidden_state".to_string(), hidden);
    out.insert("last_hidden_state_tf4_window".to_string(), hidden_tf4);
    out.insert("padded_embedding".to_string(), padded);
    out.insert(
        "original_len".to_string(),
        Tensor::new(&[original_len as i64], &dev)?,
    );
    Ok(out)
}

/// Runs the case in `dir` (`case.json`, `weights.safetensors`, `inputs.safetensors`) on CPU in
/// f32 and returns every tensor named in `expected.safetensors`, with its expected dtype,
/// sorted by name.
pub fn run_golden_case(dir: &Path) -> Result<Vec<(String, Tensor)>> {
    let mut all = run_all(dir)?;
    let reference = dir.join("expected.safetensors");
    let wanted = load_tensors(&reference)?;
    let mut names: Vec<_> = wanted.keys().cloned().collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let dtype = wanted[&name].dtype();
            match all.remove(&name) {
                Some(t) => Ok((name, t.to_dtype(dtype)?)),
                None => candle::bail!(
                    "{}: {} asks for {name:?}, which the t5gemma_encoder runner does not produce",
                    dir.display(),
                    reference.display()
                ),
            }
        })
        .collect()
}
