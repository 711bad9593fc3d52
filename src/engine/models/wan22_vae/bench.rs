//! Decode and encode timing and peak memory of the Wan2.2 VAE at any width, with random
//! weights, so the streaming decode and the chunked encode can be measured without the 2.8 GB
//! checkpoint. `happyhorse bench codec` runs them at the released widths.

use std::time::Instant;

use candle::{DType, Device, Result, Tensor};
use candle_core as candle;

use super::config::Config;
use super::vae::{Wan22VaeDecoder, Wan22VaeEncoder};
use crate::engine::bench::{
    gib, peak_rss_bytes, random_var_builder, time_video_decode, VideoDecodeBench,
};

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

/// One timed Wan2.2 encode with random weights.
#[derive(Debug, Clone)]
pub struct VideoEncodeBench {
    /// `[1, 3, F, H, W]` of the video encoded.
    pub video_dims: Vec<usize>,
    /// `[1, z_dim, T, H/16, W/16]` of the posterior mean produced.
    pub latent_dims: Vec<usize>,
    /// Wall time of the whole encode, weights excluded.
    pub encode_s: f64,
    /// Wall time of each chunk the encoder takes (1 video frame, then 4 each): one per
    /// latent frame.
    pub per_chunk_s: Vec<f64>,
    /// Peak RSS of this process after the encode, in bytes.
    pub peak_rss_bytes: Option<u64>,
}

impl std::fmt::Display for VideoEncodeBench {
    /// `video -> latent: seconds, per chunk [..] s, peak RSS GiB`, chunk times to 0.1 s.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let chunks: Vec<f64> = self
            .per_chunk_s
            .iter()
            .map(|s| (s * 10.0).round() / 10.0)
            .collect();
        write!(
            f,
            "encode {:?} -> {:?}: {:.1} s, per chunk {chunks:?} s, peak RSS {:.2} GiB",
            self.video_dims,
            self.latent_dims,
            self.encode_s,
            gib(self.peak_rss_bytes)
        )
    }
}

/// Encodes a random video `[1, 3, frames, h, w]` in [-1, 1] (`h`, `w` in pixels, multiples of
/// 16) with random weights at the widths of `cfg` and reports the time per chunk (one per
/// latent frame) and the peak RSS.
pub fn bench_encode(
    cfg: &Config,
    (frames, h, w): (usize, usize, usize),
    dtype: DType,
    dev: &Device,
) -> Result<VideoEncodeBench> {
    let vae = Wan22VaeEncoder::new(cfg, random_var_builder(dtype, dev))?;
    let video = Tensor::rand(-1f32, 1.0, (1, 3, frames, h, w), dev)?.to_dtype(dtype)?;
    let start = Instant::now();
    let mut last = start;
    let mut per_chunk_s = Vec::new();
    let mu = vae.encode_mu_raw_with(&video, |chunk| {
        // Forces the chunk on lazy (GPU) backends before it is timed.
        let _ = chunk.to_dtype(DType::F32)?.sum_all()?.to_scalar::<f32>()?;
        let now = Instant::now();
        per_chunk_s.push((now - last).as_secs_f64());
        last = now;
        Ok(())
    })?;
    let _ = mu.to_dtype(DType::F32)?.sum_all()?.to_scalar::<f32>()?;
    Ok(VideoEncodeBench {
        video_dims: video.dims().to_vec(),
        latent_dims: mu.dims().to_vec(),
        encode_s: start.elapsed().as_secs_f64(),
        per_chunk_s,
        peak_rss_bytes: peak_rss_bytes(),
    })
}
