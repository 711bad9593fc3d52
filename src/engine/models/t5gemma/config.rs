//! T5Gemma encoder configuration: the `encoder` block of a T5Gemma `config.json`
//! (`T5GemmaModuleConfig` of huggingface/transformers `models/t5gemma/configuration_t5gemma.py`,
//! as of transformers 5.24), read with serde.

use std::path::Path;

use candle::Result;
use candle_core as candle;
use candle_nn::Activation;
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayerType {
    SlidingAttention,
    FullAttention,
}

/// Which keys a sliding-window layer lets a query see. Not part of the HF config: transformers
/// changed the rule between releases, and the reference pins 4.56 while the goldens ran 5.24.
/// Both agree whenever the prompt is shorter than the window (always, for the real model).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowRule {
    /// transformers 5.x: `|i - j| <= sliding_window`.
    #[default]
    Inclusive,
    /// transformers 4.x: `|i - j| < sliding_window`.
    Exclusive,
}

impl WindowRule {
    pub fn visible(self, i: usize, j: usize, window: usize) -> bool {
        let d = i.abs_diff(j);
        match self {
            Self::Inclusive => d <= window,
            Self::Exclusive => d < window,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct RopeParameters {
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    #[serde(default)]
    pub rope_type: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    #[serde(default = "default_activation")]
    pub hidden_activation: Activation,
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    /// transformers 4.x spelling; 5.x moved it into `rope_parameters`.
    #[serde(default)]
    pub rope_theta: Option<f64>,
    #[serde(default)]
    pub rope_parameters: Option<RopeParameters>,
    pub query_pre_attn_scalar: f64,
    pub sliding_window: usize,
    /// Absent in some configs: then even layers slide and odd ones see everything.
    #[serde(default)]
    pub layer_types: Option<Vec<LayerType>>,
    #[serde(default)]
    pub attn_logit_softcapping: Option<f64>,
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub window_rule: WindowRule,
}

fn default_activation() -> Activation {
    Activation::GeluPytorchTanh
}

fn default_eps() -> f64 {
    1e-6
}

fn default_rope_theta() -> f64 {
    10_000.0
}

impl Config {
    /// The encoder of google/t5gemma-9b-9b-ul2 (Gemma-2-9B sizes), as the MagiHuman pipeline
    /// loads it (`inference/model/t5_gemma/t5_gemma_model.py`, GAIR-NLP/daVinci-MagiHuman
    /// 209209b). Prefer the checkpoint's own `config.json` ([`Config::from_hf_file`]) when present.
    pub fn t5gemma_9b_9b_ul2_encoder() -> Self {
        Self {
            vocab_size: 256_000,
            hidden_size: 3584,
            intermediate_size: 14_336,
            num_hidden_layers: 42,
            num_attention_heads: 16,
            num_key_value_heads: 8,
            head_dim: 256,
            hidden_activation: Activation::GeluPytorchTanh,
            rms_norm_eps: 1e-6,
            rope_theta: Some(10_000.0),
            rope_parameters: None,
            query_pre_attn_scalar: 256.0,
            sliding_window: 4096,
            layer_types: None,
            attn_logit_softcapping: Some(50.0),
            attention_bias: false,
            window_rule: WindowRule::Inclusive,
        }
    }

    /// Reads a T5Gemma `config.json`: the full encoder-decoder config (its `encoder` block is
    /// used) or an encoder module config on its own.
    pub fn from_hf_json(value: &serde_json::Value) -> Result<Self> {
        let mut block = value.get("encoder").unwrap_or(value).clone();
        // Some exports keep the vocabulary size only at the top level.
        if let (Some(obj), Some(vocab)) = (block.as_object_mut(), value.get("vocab_size")) {
            obj.entry("vocab_size").or_insert_with(|| vocab.clone());
        }
        serde_json::from_value(block)
            .map_err(|e| candle::Error::msg(format!("T5Gemma encoder config: {e}")))
    }

    pub fn from_hf_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| candle::Error::msg(format!("reading {}: {e}", path.display())))?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| candle::Error::msg(format!("parsing {}: {e}", path.display())))?;
        Self::from_hf_json(&value)
            .map_err(|e| candle::Error::msg(format!("{}: {e}", path.display())))
    }

    pub fn rope_theta(&self) -> f64 {
        match (&self.rope_parameters, self.rope_theta) {
            (Some(p), _) => p.rope_theta,
            (None, Some(theta)) => theta,
            (None, None) => default_rope_theta(),
        }
    }

    pub fn layer_type(&self, layer: usize) -> LayerType {
        match &self.layer_types {
            Some(types) => types
                .get(layer)
                .copied()
                .unwrap_or(LayerType::FullAttention),
            None if layer % 2 == 0 => LayerType::SlidingAttention,
            None => LayerType::FullAttention,
        }
    }

    /// Checks what the layers rely on, so a bad config fails at load with a readable message.
    pub fn validate(&self) -> Result<()> {
        if self.num_key_value_heads == 0 || self.num_attention_heads % self.num_key_value_heads != 0
        {
            candle::bail!(
                "T5Gemma: {} attention heads are not a multiple of {} key/value heads",
                self.num_attention_heads,
                self.num_key_value_heads
            )
        }
        if self.head_dim == 0 || self.head_dim % 2 != 0 {
            candle::bail!(
                "T5Gemma: head_dim must be even for RoPE, got {}",
                self.head_dim
            )
        }
        if let Some(types) = &self.layer_types {
            if types.len() != self.num_hidden_layers {
                candle::bail!(
                    "T5Gemma: layer_types lists {} layers but num_hidden_layers is {}",
                    types.len(),
                    self.num_hidden_layers
                )
            }
        }
        if let Some(p) = &self.rope_parameters {
            if let Some(kind) = p.rope_type.as_deref() {
                if kind != "default" {
                    candle::bail!("T5Gemma: rope_type {kind:?} is not supported (only \"default\")")
                }
            }
        }
        if self.query_pre_attn_scalar <= 0.0 {
            candle::bail!(
                "T5Gemma: query_pre_attn_scalar must be positive, got {}",
                self.query_pre_attn_scalar
            )
        }
        Ok(())
    }
}
