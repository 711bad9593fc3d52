//! Decode timing and peak memory of the Wan2.2 VAE at any width, with random weights, so the
//! streaming decode can be measured without the 2.8 GB checkpoint.

use candle::{DType, Device, Result, Tensor};
use candle_core as candle;

use super::config::Config;
use super::vae::Wan22VaeDecoder;
use crate::engine::bench::{random_var_builder, time_video_decode, VideoDecodeBench};

/// Decodes a random normalised latent `[1, z_dim, t, h, w]` with random weights at the widths of
/// `cfg` and reports the time per latent frame and the peak RSS.
pub fn bench_decode(
    cfg: &Config,
    (t, h, w): (usize, usize, usize),
    dtype: DType,
    dev: &Device,
) -> Result<VideoDecodeBench> {
    let vae = Wan22VaeDecoder::new(cfg, random_var_builder(dtype, dev))?;
    let z = Tensor::randn(0f32, 1.0, (1, cfg.z_dim, t, h, w), dev)?.to_dtype(dtype)?;
    time_video_decode(&z, |z, on_chunk| {
        vae.decode_with(z, |chunk| on_chunk(&chunk))?;
        Ok(None)
    })
}
