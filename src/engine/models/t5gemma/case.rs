//! Golden parity runner for the `t5gemma_encoder` cases (`shared/goldens/README.md`, section 4):
//! transformers `T5GemmaEncoderModel` + `prompt_process.pad_or_trim` of
//! GAIR-NLP/daVinci-MagiHuman at commit 209209b, on CPU in f32.

use std::collections::HashMap;
use std::path::Path;

use candle::{Device, Result, Tensor};
use candle_core as candle;

use super::config::{Config, WindowRule};
use super::encoder::T5GemmaEncoder;
use super::text_encoder::pad_or_trim;
use crate::engine::golden::GoldenCase;

pub const COMPONENT: &str = "t5gemma_encoder";

/// Every tensor the case can be asked for.
fn run_all(case: &GoldenCase) -> Result<HashMap<String, Tensor>> {
    let cfg = Config::from_hf_json(&case.config::<serde_json::Value>("/config/T5GemmaConfig")?)?;
    let target: usize = case.config("/params/target_length")?;
    let dev = Device::Cpu;
    let vb = case.var_builder()?;
    // The golden files carry the checkpoint's names, `model.encoder.*`.
    let encoder = T5GemmaEncoder::new(&cfg, vb.pp("model").pp("encoder"))?;

    let inputs = case.tensors("inputs.safetensors")?;
    let ids = inputs.get("input_ids")?;
    let mask = inputs.maybe("attention_mask");

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
    let case = GoldenCase::open(dir, &[COMPONENT])?;
    case.select(run_all(&case)?, "expected.safetensors")
}
