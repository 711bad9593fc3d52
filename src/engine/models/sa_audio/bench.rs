//! Decode timing of the released-size audio VAE with random weights (no checkpoint needed).

use std::time::Instant;

use candle::{DType, Device, Result, Tensor};
use candle_core as candle;

use super::oobleck::OobleckDecoder;
use super::Config;
use crate::engine::bench::random_var_builder;

#[derive(Debug, Clone)]
pub struct DecodeBench {
    pub latent_frames: usize,
    pub samples: usize,
    /// Building the decoder: random init and weight-norm folding.
    pub load_s: f64,
    pub decode_s: f64,
    /// Seconds of audio per second of compute.
    pub realtime_factor: f64,
}

/// Decodes `seconds` of audio (25 latent frames per second) with the stable-audio-open-1.0
/// decoder widths and random weights on `device`, float32.
pub fn bench_decode(seconds: f32, device: &Device) -> Result<DecodeBench> {
    let cfg = Config::stable_audio_open_1_0();
    let start = Instant::now();
    let vb = random_var_builder(DType::F32, device);
    let decoder = OobleckDecoder::new(&cfg.decoder.config, vb.pp("decoder"))?;
    let load_s = start.elapsed().as_secs_f64();
    let frames = ((seconds * 25.0).round() as usize).max(1);
    let latents = Tensor::randn(
        0f32,
        1f32,
        (1, cfg.decoder.config.latent_dim, frames),
        device,
    )?;
    let start = Instant::now();
    let wave = candle_nn::Module::forward(&decoder, &latents)?;
    device.synchronize()?;
    let decode_s = start.elapsed().as_secs_f64();
    let samples = wave.dim(2)?;
    Ok(DecodeBench {
        latent_frames: frames,
        samples,
        load_s,
        decode_s,
        realtime_factor: seconds as f64 / decode_s,
    })
}
