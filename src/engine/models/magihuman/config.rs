//! Configuration of the MagiHuman DiT and its sequence packer.
//!
//! Port of `ModelConfig` and `DataProxyConfig` in `inference/common/config.py` of
//! GAIR-NLP/daVinci-MagiHuman at commit 209209b. Field names are the reference's own, so a
//! `config.model` / `config.data_proxy` dump (as in the golden `case.json`) deserialises as is;
//! fields this port does not use (`params_dtype`, `tread_config`, ...) are accepted and ignored.

use candle_core as candle;
use serde::{Deserialize, Serialize};

/// The DiT architecture (`ModelConfig`). Missing fields take the reference defaults, which are
/// the released base model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelConfig {
    pub num_layers: usize,
    pub hidden_size: usize,
    pub head_dim: usize,
    pub num_query_groups: usize,
    pub video_in_channels: usize,
    pub audio_in_channels: usize,
    pub text_in_channels: usize,
    pub checkpoint_qk_layernorm_rope: bool,
    /// Informational only: the block linears of the released checkpoints are bf16 whatever this
    /// says; the dtype actually used is the one of the `VarBuilder`.
    pub params_dtype: String,
    /// Token routing used in training only.
    pub tread_config: Option<serde_json::Value>,
    /// Layers with three per-modality experts (video, audio, text).
    pub mm_layers: Vec<usize>,
    /// Layers whose video queries only see nearby frames.
    pub local_attn_layers: Vec<usize>,
    pub enable_attn_gating: bool,
    /// Ignored by the reference forward: `gelu7_layers` alone picks each layer's activation.
    pub activation_type: String,
    pub gelu7_layers: Vec<usize>,
    /// `hidden_size / head_dim` once filled in by `MagiPipelineConfig`; 0 means "derive it".
    pub num_heads_q: usize,
    /// `num_query_groups` once filled in; 0 means "derive it".
    pub num_heads_kv: usize,
    pub post_norm_layers: Vec<usize>,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self::base()
    }
}

impl ModelConfig {
    /// Released base model: the `ModelConfig` defaults of `inference/common/config.py` @ 209209b
    /// (`example/base/config.json` overrides nothing of the architecture).
    pub fn base() -> Self {
        Self {
            num_layers: 40,
            hidden_size: 5120,
            head_dim: 128,
            num_query_groups: 8,
            video_in_channels: 48 * 4,
            audio_in_channels: 64,
            text_in_channels: 3584,
            checkpoint_qk_layernorm_rope: false,
            params_dtype: "torch.float32".into(),
            tread_config: None,
            mm_layers: vec![0, 1, 2, 3, 36, 37, 38, 39],
            local_attn_layers: vec![],
            enable_attn_gating: true,
            activation_type: "swiglu7".into(),
            gelu7_layers: vec![0, 1, 2, 3],
            // Derived (the reference default is 0 too), so `..base()` with another width stays valid.
            num_heads_q: 0,
            num_heads_kv: 0,
            post_norm_layers: vec![],
        }
    }

    /// Distilled model: `example/distill/config.json` @ 209209b only changes the sampler
    /// (cfg_number 1, 8 steps), so the architecture is the base one.
    pub fn distill() -> Self {
        Self::base()
    }

    /// 540p super-resolution model: `sr_arch_config` is a deep copy of `arch_config`
    /// (`MagiPipelineConfig.post_override_config`, `example/sr_540p/config.json` @ 209209b).
    pub fn sr_540p() -> Self {
        Self::base()
    }

    /// 1080p super-resolution model: the copy of `arch_config` with the local-attention layers
    /// that `MagiPipelineConfig.post_override_config` sets under `SR2_1080`
    /// (`example/sr_1080p/run_*.sh` exports it) @ 209209b.
    pub fn sr_1080p() -> Self {
        Self {
            local_attn_layers: vec![
                0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, 16, 17, 18, 20, 21, 22, 24, 25, 26, 28, 29,
                30, 32, 33, 34, 35, 36, 37, 38, 39,
            ],
            ..Self::base()
        }
    }

    /// Looks a preset up by name: `base`, `distill`, `sr_540p`, `sr_1080p`.
    pub fn preset(name: &str) -> Option<Self> {
        match name {
            "base" => Some(Self::base()),
            "distill" => Some(Self::distill()),
            "sr_540p" => Some(Self::sr_540p()),
            "sr_1080p" => Some(Self::sr_1080p()),
            _ => None,
        }
    }

    pub fn heads_q(&self) -> usize {
        if self.num_heads_q != 0 {
            self.num_heads_q
        } else {
            self.hidden_size / self.head_dim.max(1)
        }
    }

    pub fn heads_kv(&self) -> usize {
        if self.num_heads_kv != 0 {
            self.num_heads_kv
        } else {
            self.num_query_groups
        }
    }

    /// Number of per-modality experts in a layer (E).
    pub fn num_experts(&self, layer: usize) -> usize {
        if self.mm_layers.contains(&layer) {
            3
        } else {
            1
        }
    }

    pub fn is_gelu7(&self, layer: usize) -> bool {
        self.gelu7_layers.contains(&layer)
    }

    pub fn is_local_attn(&self, layer: usize) -> bool {
        self.local_attn_layers.contains(&layer)
    }

    pub fn has_post_norm(&self, layer: usize) -> bool {
        self.post_norm_layers.contains(&layer)
    }

    /// MLP intermediate size (I): `int(hidden*4*2/3)//4*4` for swiglu7, `4*hidden` for gelu7.
    pub fn intermediate_size(&self, layer: usize) -> usize {
        if self.is_gelu7(layer) {
            4 * self.hidden_size
        } else {
            // hidden*8/3 rounded down: exact in integers, as the float product is for any sane size.
            (self.hidden_size * 8 / 3) / 4 * 4
        }
    }

    /// Output width of `up_gate_proj` per expert (U): 2I for swiglu7, I for gelu7.
    pub fn up_gate_size(&self, layer: usize) -> usize {
        let i = self.intermediate_size(layer);
        if self.is_gelu7(layer) {
            i
        } else {
            2 * i
        }
    }

    /// Width of the per-head gate logits (G).
    pub fn gating_size(&self) -> usize {
        if self.enable_attn_gating {
            self.heads_q()
        } else {
            0
        }
    }

    /// Checks the sizes the forward relies on.
    pub fn validate(&self) -> candle::Result<()> {
        let (d, hq, hkv) = (self.head_dim, self.heads_q(), self.heads_kv());
        if d == 0 || d % 8 != 0 {
            candle::bail!("magihuman: head_dim {d} must be a positive multiple of 8")
        }
        if self.hidden_size % d != 0 || hq != self.hidden_size / d {
            candle::bail!(
                "magihuman: hidden_size {} is not num_heads_q {hq} x head_dim {d}",
                self.hidden_size
            )
        }
        if hkv == 0 || hq % hkv != 0 {
            candle::bail!("magihuman: {hq} query heads cannot be grouped into {hkv} kv heads")
        }
        Ok(())
    }
}

/// Whether audio and text coordinates follow the base (`v2`) or super-resolution (`v1`) layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum CoordsStyle {
    #[serde(rename = "v1")]
    V1,
    #[default]
    #[serde(rename = "v2")]
    V2,
}

/// The packer (`DataProxyConfig`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DataProxyConfig {
    pub t_patch_size: usize,
    pub patch_size: usize,
    /// Half-width, in latent frames, of the local attention window; -1 disables it.
    pub frame_receptive_field: i64,
    /// Ignored: `MagiDataProxy` hard-codes "extra".
    pub spatial_rope_interpolation: String,
    /// Unused by the inference packer.
    pub ref_audio_offset: i64,
    /// Text time offset under `v1`.
    pub text_offset: i64,
    pub coords_style: CoordsStyle,
    /// Audio latents per video latent frame, which `v2` rope coordinates align: not a
    /// reference setting. The reference hard-codes 4 (one audio latent per pixel frame of
    /// Wan's 4x temporal stride); Nano with a stride-2 video codec sets 2.
    pub audio_per_latent_frame: usize,
}

impl Default for DataProxyConfig {
    fn default() -> Self {
        Self::base()
    }
}

impl DataProxyConfig {
    /// `DataProxyConfig` defaults of `inference/common/config.py` @ 209209b (base and distill).
    pub fn base() -> Self {
        Self {
            t_patch_size: 1,
            patch_size: 2,
            frame_receptive_field: 11,
            spatial_rope_interpolation: "extra".into(),
            ref_audio_offset: 1000,
            text_offset: 0,
            coords_style: CoordsStyle::V2,
            audio_per_latent_frame: 4,
        }
    }

    /// The super-resolution packer: a copy of the base one with `coords_style = "v1"`
    /// (`inference/pipeline/video_generate.py` @ 209209b).
    pub fn sr() -> Self {
        Self {
            coords_style: CoordsStyle::V1,
            ..Self::base()
        }
    }
}
