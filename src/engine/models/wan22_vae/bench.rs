//! Decode timing and peak memory of the Wan2.2 VAE at any width, with random weights, so the
//! streaming decode can be measured without the 2.8 GB checkpoint.

use std::time::Instant;

use candle::{DType, Device, Result, Shape, Tensor};
use candle_core as candle;
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};

use super::config::Config;
use super::vae::Wan22VaeDecoder;

/// Random parameters for every name asked: unit norm gains, zero biases and kernels scaled by
/// `1/sqrt(fan_in)` so activations keep a sane range through the network.
struct RandomWeights;

impl SimpleBackend for RandomWeights {
    fn get(&self, s: Shape, name: &str, _: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        let t = if name.ends_with("gamma") {
            Tensor::ones(s, DType::F32, dev)?
        } else if name.ends_with("bias") {
            Tensor::zeros(s, DType::F32, dev)?
        } else {
            let fan_in: usize = s.dims().iter().skip(1).product();
            Tensor::randn(0f32, 1.0 / (fan_in.max(1) as f32).sqrt(), s, dev)?
        };
        t.to_dtype(dtype)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> Result<Tensor> {
        candle::bail!("random weights need a shape for {name}")
    }

    fn contains_tensor(&self, _: &str) -> bool {
        true
    }
}

#[derive(Debug, Clone)]
pub struct DecodeBench {
    /// `[B, 48, T, H, W]` of the latent decoded.
    pub latent_dims: Vec<usize>,
    /// `[B, 3, F, 16H, 16W]` of the video produced.
    pub video_dims: Vec<usize>,
    /// Wall time of the whole decode, weights excluded.
    pub decode_s: f64,
    /// Wall time of each latent frame's decoder call (the first one yields 1 video frame, the
    /// others 4).
    pub per_latent_frame_s: Vec<f64>,
    /// `VmHWM` of this process after the decode (Linux only), in bytes.
    pub peak_rss_bytes: Option<u64>,
}

/// The process's peak resident set (`VmHWM` of `/proc/self/status`).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Decodes a random normalised latent `[1, z_dim, t, h, w]` with random weights at the widths of
/// `cfg` and reports the time and the peak RSS.
pub fn bench_decode(
    cfg: &Config,
    (t, h, w): (usize, usize, usize),
    dtype: DType,
    dev: &Device,
) -> Result<DecodeBench> {
    let vb = VarBuilder::from_backend(Box::new(RandomWeights), dtype, dev.clone());
    let vae = Wan22VaeDecoder::new(cfg, vb)?;
    let z = Tensor::randn(0f32, 1.0, (1, cfg.z_dim, t, h, w), dev)?.to_dtype(dtype)?;
    let start = Instant::now();
    let mut last = start;
    let mut per_latent_frame_s = Vec::with_capacity(t);
    let mut video_dims = vec![1, 3, 0, 16 * h, 16 * w];
    vae.decode_with(&z, |chunk| {
        // Force the work of this chunk before timing it (lazy on GPU backends).
        let chunk = chunk.clamp(-1f32, 1f32)?.to_dtype(DType::F32)?;
        let _ = chunk.sum_all()?.to_scalar::<f32>()?;
        video_dims[2] += chunk.dim(2)?;
        let now = Instant::now();
        per_latent_frame_s.push((now - last).as_secs_f64());
        last = now;
        Ok(())
    })?;
    Ok(DecodeBench {
        latent_dims: z.dims().to_vec(),
        video_dims,
        decode_s: start.elapsed().as_secs_f64(),
        per_latent_frame_s,
        peak_rss_bytes: peak_rss_bytes(),
    })
}
