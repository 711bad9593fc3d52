//! Timing of one T5Gemma encoder layer at any width, with random weights, and the whole
//! encoder's time projected from it. `happyhorse bench codec --stage t5gemma-layer` runs the
//! released width (google/t5gemma-9b-9b-ul2) on the pipeline's 640-token prompt.

use candle::{DType, Device, Result};
use candle_core as candle;

use super::config::Config;
use super::encoder::bench_layer;
use crate::engine::bench::{gib, peak_rss_bytes};

/// One encoder layer, timed.
#[derive(Debug, Clone)]
pub struct LayerBench {
    pub tokens: usize,
    pub hidden: usize,
    /// Layers of the whole encoder (`num_hidden_layers`).
    pub layers: usize,
    /// Mean seconds of one layer forward after a warm-up pass.
    pub layer_s: f64,
    /// Peak RSS of this process after the passes, in bytes.
    pub peak_rss_bytes: Option<u64>,
}

impl LayerBench {
    /// The whole encoder's layers at this layer's time (embedding and final norm are a
    /// rounding error next to them).
    pub fn projected_s(&self) -> f64 {
        self.layer_s * self.layers as f64
    }
}

impl std::fmt::Display for LayerBench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "1 layer (hidden {}) on {} tokens: {:.2} s, {} layers ~ {:.1} s, peak RSS {:.2} GiB",
            self.hidden,
            self.tokens,
            self.layer_s,
            self.layers,
            self.projected_s(),
            gib(self.peak_rss_bytes)
        )
    }
}

/// Times one layer of `cfg`'s encoder on `tokens` tokens (a warm-up, then the mean of `iters`
/// passes) and reports it with the projection to all `cfg.num_hidden_layers`.
pub fn bench_encoder_layer(
    cfg: &Config,
    tokens: usize,
    iters: usize,
    dtype: DType,
    dev: &Device,
) -> Result<LayerBench> {
    let t = bench_layer(cfg, tokens, iters, dtype, dev)?;
    Ok(LayerBench {
        tokens,
        hidden: cfg.hidden_size,
        layers: cfg.num_hidden_layers,
        layer_s: t.as_secs_f64(),
        peak_rss_bytes: peak_rss_bytes(),
    })
}
