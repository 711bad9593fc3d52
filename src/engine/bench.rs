//! Benchmarks behind `happyhorse bench`: random weights at released widths, timed end to end.
//! Measured here, never in tests.

use std::collections::HashMap;
use std::time::Instant;

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::VarBuilder;

use super::models::magihuman::{
    ElementWiseFourierEmbed, ModalityRanges, ModelConfig, TransformerLayer,
};

/// Shape of the `bench dit` run: one shared (single-expert, swiglu7) layer.
#[derive(Debug, Clone)]
pub struct DitBench {
    pub hidden: usize,
    pub head_dim: usize,
    pub kv_groups: usize,
    pub video_tokens: usize,
    pub audio_tokens: usize,
    pub text_tokens: usize,
    pub dtype: DType,
    pub repeats: usize,
}

impl DitBench {
    /// The released width on a 256p 5 s sequence: 448×256 → 28×16 latent patches × 8 latent
    /// frames... as the issue states it: 3584 video + 126 audio + 150 text tokens.
    pub fn released(dtype: DType) -> DitBench {
        DitBench {
            hidden: 5120,
            head_dim: 128,
            kv_groups: 8,
            video_tokens: 3584,
            audio_tokens: 126,
            text_tokens: 150,
            dtype,
            repeats: 1,
        }
    }

    pub fn tokens(&self) -> usize {
        self.video_tokens + self.audio_tokens + self.text_tokens
    }

    fn config(&self) -> ModelConfig {
        ModelConfig {
            num_layers: 1,
            hidden_size: self.hidden,
            head_dim: self.head_dim,
            num_query_groups: self.kv_groups,
            num_heads_q: 0,
            num_heads_kv: 0,
            mm_layers: vec![],
            gelu7_layers: vec![],
            local_attn_layers: vec![],
            post_norm_layers: vec![],
            ..ModelConfig::base()
        }
    }

    /// Floating-point operations of one layer forward (matmuls and attention; norms, rope and
    /// activations are a rounding error next to them).
    pub fn flops(&self) -> f64 {
        let cfg = self.config();
        let (l, h, d) = (
            self.tokens() as f64,
            self.hidden as f64,
            self.head_dim as f64,
        );
        let (hq, hkv) = (cfg.heads_q() as f64, cfg.heads_kv() as f64);
        let qkv = hq * d + 2.0 * hkv * d + cfg.gating_size() as f64;
        let linears = h * qkv
            + hq * d * h
            + h * cfg.up_gate_size(0) as f64
            + cfg.intermediate_size(0) as f64 * h;
        2.0 * l * linears + 4.0 * l * l * hq * d
    }
}

#[derive(Debug, Clone)]
pub struct BenchReport {
    pub seconds: f64,
    pub tokens_per_s: f64,
    pub gflops: f64,
}

fn layer_weights(cfg: &ModelConfig, dev: &Device) -> Result<HashMap<String, Tensor>> {
    let (h, d) = (cfg.hidden_size, cfg.head_dim);
    let qkv = cfg.heads_q() * d + 2 * cfg.heads_kv() * d + cfg.gating_size();
    let shapes: [(&str, Vec<usize>, f64); 8] = [
        ("attention.pre_norm.weight", vec![h], 0.1),
        ("attention.linear_qkv.weight", vec![qkv, h], 0.02),
        ("attention.q_norm.weight", vec![d], 0.1),
        ("attention.k_norm.weight", vec![d], 0.1),
        (
            "attention.linear_proj.weight",
            vec![h, cfg.heads_q() * d],
            0.02,
        ),
        ("mlp.pre_norm.weight", vec![h], 0.1),
        (
            "mlp.up_gate_proj.weight",
            vec![cfg.up_gate_size(0), h],
            0.02,
        ),
        (
            "mlp.down_proj.weight",
            vec![h, cfg.intermediate_size(0)],
            0.02,
        ),
    ];
    shapes
        .into_iter()
        .map(|(n, s, std)| Ok((n.to_string(), Tensor::randn(0f32, std as f32, s, dev)?)))
        .collect()
}

/// Times one transformer layer forward at the given width; the first run warms up caches.
pub fn bench_dit_layer(b: &DitBench, dev: &Device) -> Result<BenchReport> {
    let cfg = b.config();
    let vb = VarBuilder::from_tensors(layer_weights(&cfg, dev)?, b.dtype, dev);
    let layer = TransformerLayer::new(&cfg, 0, vb)?;
    let l = b.tokens();
    let ranges = ModalityRanges {
        video: b.video_tokens,
        audio: b.audio_tokens,
        text: b.text_tokens,
    };
    let coords: Vec<[f32; 9]> = (0..l)
        .map(|i| [i as f32, 0., 0., l as f32, 1., 1., l as f32, 1., 1.])
        .collect();
    let bands = b.head_dim / 8;
    let rope = ElementWiseFourierEmbed::from_bands(
        (0..bands)
            .map(|k| 1e-4f32.powf(k as f32 / bands as f32))
            .collect(),
    )
    .forward(&coords, dev)?;
    let x = Tensor::randn(0f32, 1., (l, cfg.hidden_size), dev)?;
    let mut best = f64::INFINITY;
    for _ in 0..b.repeats.max(1) {
        let t = Instant::now();
        let out = layer.forward(&x, &rope, &ranges, None)?;
        dev.synchronize()?;
        drop(out);
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(BenchReport {
        seconds: best,
        tokens_per_s: l as f64 / best,
        gflops: b.flops() / best / 1e9,
    })
}
