//! Decode timing and peak memory of TurboVAED at any width, with random weights (no checkpoint
//! needed). `happyhorse bench codec --stage turbo-decode` runs it at the released widths.

use candle::{DType, Device, Result, Tensor};
use candle_core as candle;

use super::config::Config;
use super::vae::TurboVaed;
use crate::engine::bench::{random_var_builder, time_video_decode, VideoDecodeBench};

/// Decodes a random latent `[1, z_dim, t, h, w]` window by window with random weights at the
/// widths of `cfg` and reports the time per window and the peak RSS.
pub fn bench_decode(
    cfg: &Config,
    (t, h, w): (usize, usize, usize),
    dtype: DType,
    dev: &Device,
) -> Result<VideoDecodeBench> {
    let vae = TurboVaed::new(cfg, random_var_builder(dtype, dev))?;
    let z = Tensor::randn(0f32, 1.0, (1, cfg.latent_channels, t, h, w), dev)?.to_dtype(dtype)?;
    time_video_decode(&z, |z, on_chunk| {
        let video = vae.decode_with(z, |_, window| on_chunk(window))?;
        Ok(Some(video.dims().to_vec()))
    })
}
