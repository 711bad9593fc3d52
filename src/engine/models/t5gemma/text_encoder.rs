//! The pipeline's text step: prompt → token ids → T5Gemma `last_hidden_state` → `.half()` →
//! padded or trimmed to a fixed length. Mirrors `inference/model/t5_gemma/t5_gemma_model.py`
//! (`T5GemmaEncoder.encode`) and `inference/pipeline/prompt_process.py` (`pad_or_trim`,
//! `get_padded_t5_gemma_embedding`) of GAIR-NLP/daVinci-MagiHuman at commit 209209b.

use std::path::Path;

use candle::{DType, Result, Tensor};
use candle_core as candle;
use candle_nn::VarBuilder;

use super::config::Config;
use super::encoder::T5GemmaEncoder;

/// The pipeline's text length (`MagiEvaluator`'s `target_length`).
pub const TARGET_LENGTH: usize = 640;

/// `pad_or_trim(x.half(), target, dim=1)` followed by `.to(float32)`: `x` `[B, L, C]` is rounded
/// through f16, then zero-padded or cut to `target` rows. The returned length is the real `L`
/// when padding but `target` when trimming (the reference returns `target_size` in that branch).
pub fn pad_or_trim(x: &Tensor, target: usize) -> Result<(Tensor, usize)> {
    if x.rank() != 3 {
        candle::bail!("pad_or_trim: expected [B, L, C], got {:?}", x.dims())
    }
    let rows = x.dim(1)?;
    let half = x.to_dtype(DType::F16)?;
    let (out, len) = if rows < target {
        (half.pad_with_zeros(1, 0, target - rows)?, rows)
    } else {
        (half.narrow(1, 0, target)?, target)
    };
    Ok((out.to_dtype(DType::F32)?, len))
}

/// The prompt encoder of the MagiHuman pipeline.
#[derive(Debug, Clone)]
pub struct T5GemmaTextEncoder {
    encoder: T5GemmaEncoder,
}

impl T5GemmaTextEncoder {
    /// `vb` is at the checkpoint's root: the encoder lives under `model.encoder.*` and the
    /// checkpoint's `model.decoder.*` tensors are never read.
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let encoder = T5GemmaEncoder::new(cfg, vb.pp("model").pp("encoder"))?;
        Ok(Self { encoder })
    }

    pub fn encoder(&self) -> &T5GemmaEncoder {
        &self.encoder
    }

    /// One unpadded prompt's ids (bos first, as the tokenizer gives them) → `last_hidden_state
    /// .half()` `[1, L, hidden]` in f16, as `T5GemmaEncoder.encode` returns it.
    pub fn encode(&self, input_ids: &[u32]) -> Result<Tensor> {
        if input_ids.is_empty() {
            candle::bail!("T5Gemma: cannot encode an empty prompt (no token ids)")
        }
        let ids = Tensor::new(input_ids, self.encoder.device())?.unsqueeze(0)?;
        self.encoder.forward(&ids, None)?.to_dtype(DType::F16)
    }

    /// `get_padded_t5_gemma_embedding`: [`Self::encode`] then [`pad_or_trim`] to `target`
    /// (the pipeline uses [`TARGET_LENGTH`]); f32 `[1, target, hidden]` and the length rule.
    pub fn encode_padded(&self, input_ids: &[u32], target: usize) -> Result<(Tensor, usize)> {
        pad_or_trim(&self.encode(input_ids)?, target)
    }
}

/// The checkpoint's `tokenizer.json`, applied as `AutoTokenizer(...)([prompt])` does: with its
/// special tokens (Gemma's post-processor puts `<bos>` first), no padding or truncation.
pub struct PromptTokenizer {
    inner: tokenizers::Tokenizer,
}

impl PromptTokenizer {
    pub fn from_file(path: &Path) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_file(path).map_err(|e| {
            candle::Error::msg(format!(
                "cannot load tokenizer {}: {e}; it must be the checkpoint's tokenizer.json",
                path.display()
            ))
        })?;
        Ok(Self { inner })
    }

    pub fn encode(&self, prompt: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(prompt, true)
            .map_err(|e| candle::Error::msg(format!("tokenizing the prompt: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }
}

/// Tokenizes `prompt` with the `tokenizer.json` at `path`.
pub fn tokenize(path: &Path, prompt: &str) -> Result<Vec<u32>> {
    PromptTokenizer::from_file(path)?.encode(prompt)
}
