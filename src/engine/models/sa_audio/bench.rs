//! Decode timing of the released-size audio VAE with random weights (no checkpoint needed).

use std::time::Instant;

use candle::{DType, Device, Result, Shape, Tensor};
use candle_core as candle;
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;

use super::oobleck::OobleckDecoder;
use super::Config;

/// A [`SimpleBackend`] that serves a random tensor for every name, for timing without a
/// checkpoint. Scales keep activations finite: weight norm fixes
/// each filter's norm to `g`, and small log-scale SnakeBeta parameters keep exp() near 1.
pub struct RandomWeights;

impl SimpleBackend for RandomWeights {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> Result<Tensor> {
        let t = if name.ends_with("weight_g") {
            Tensor::full(0.5f32, s, dev)?
        } else if name.ends_with("alpha") || name.ends_with("beta") || name.ends_with("bias") {
            (Tensor::randn(0f32, 1f32, s, dev)? * 0.1)?
        } else {
            Tensor::randn(0f32, 1f32, s, dev)?
        };
        t.to_dtype(dtype)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> Result<Tensor> {
        candle::bail!("random weights have no shape for {name}")
    }

    fn contains_tensor(&self, _: &str) -> bool {
        true
    }
}

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
    let backend: Box<dyn SimpleBackend> = Box::new(RandomWeights);
    let vb = VarBuilder::from_backend(backend, DType::F32, device.clone());
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
