//! The Stable Audio Open autoencoder: Oobleck encoder and decoder around a VAE bottleneck.
//!
//! Port of `AudioAutoencoder`, `VAEBottleneck` and `vae_sample` in
//! `inference/model/sa_audio/sa_audio_module.py`, loaded as `SAAudioFeatureExtractor` in
//! `inference/model/sa_audio/sa_audio_model.py` does (GAIR-NLP/daVinci-MagiHuman @ 209209b).

use std::path::Path;

use candle::{DType, Device, Module, Result, Tensor};
use candle_core as candle;
use candle_nn::VarBuilder;

use super::config::Config;
use super::oobleck::{OobleckDecoder, OobleckEncoder};

/// Where the autoencoder lives inside stable-audio-open-1.0 `model.safetensors`.
pub const CHECKPOINT_PREFIX: &str = "pretransform.model";

/// What `encode` computed, for callers (and goldens) that need more than the sample.
#[derive(Debug, Clone)]
pub struct Encoded {
    /// Encoder output `[B, 2*latent, N]` (mean and scale stacked on channels).
    pub pre_bottleneck: Tensor,
    /// `[B, latent, N]`; equals `pre_bottleneck` when there is no bottleneck.
    pub mean: Tensor,
    /// `softplus(scale) + 1e-4`; `None` without a bottleneck.
    pub stdev: Option<Tensor>,
    /// `noise * stdev + mean`: the sampled latents, what the pipeline uses.
    pub latents: Tensor,
}

#[derive(Debug, Clone)]
pub struct AudioAutoencoder {
    encoder: OobleckEncoder,
    decoder: OobleckDecoder,
    vae_bottleneck: bool,
    soft_clip: bool,
    dtype: DType,
    cfg: Config,
}

/// Accepts the pipeline's unbatched `[C, L]` as well as `[B, C, L]`; the reference's Conv1d
/// does the same and its broadcasting re-adds the batch dim, so outputs are always 3-D.
/// Inputs are cast to the weights' dtype (the DiT may hand over bf16 latents).
fn batched(xs: &Tensor, dtype: DType) -> Result<Tensor> {
    let xs = xs.to_dtype(dtype)?;
    match xs.rank() {
        2 => xs.unsqueeze(0),
        3 => Ok(xs),
        _ => candle::bail!("expected [C, L] or [B, C, L], got {:?}", xs.shape()),
    }
}

/// `softplus` in the overflow-free form `max(x, 0) + ln(1 + exp(-|x|))`; torch switches to
/// the identity above 20, where both agree to far below float32 resolution.
fn softplus(xs: &Tensor) -> Result<Tensor> {
    let tail = (xs.abs()?.neg()?.exp()? + 1.0)?.log()?;
    xs.relu()? + tail
}

impl AudioAutoencoder {
    /// `vb` points at the autoencoder root (`encoder.*`, `decoder.*`), i.e. already below
    /// [`CHECKPOINT_PREFIX`] for the released checkpoint.
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        Ok(Self {
            encoder: OobleckEncoder::new(&cfg.encoder.config, vb.pp("encoder"))?,
            decoder: OobleckDecoder::new(&cfg.decoder.config, vb.pp("decoder"))?,
            vae_bottleneck: cfg.bottleneck.is_some(),
            soft_clip: cfg.decoder.soft_clip,
            dtype: vb.dtype(),
            cfg: cfg.clone(),
        })
    }

    /// Loads a stable-audio-open style folder: `model_config.json` and `model.safetensors`.
    pub fn load_dir(dir: &Path, device: &Device) -> Result<Self> {
        let config_path = dir.join("model_config.json");
        let text = std::fs::read_to_string(&config_path)
            .map_err(|e| candle::Error::Msg(format!("{}: {e}", config_path.display())))?;
        let cfg = Config::from_model_config_json(&text)?;
        let weights = dir.join("model.safetensors");
        if !weights.exists() {
            candle::bail!("audio VAE weights not found: {}", weights.display())
        }
        // The VAE stays float32 in the reference pipeline.
        let tensors = candle::safetensors::load(&weights, device)?;
        let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
        Self::new(&cfg, vb.pp(CHECKPOINT_PREFIX))
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Audio samples per latent frame (`prod(strides)`, 2048 for the released model).
    pub fn hop_length(&self) -> usize {
        self.cfg.decoder.config.strides.iter().product()
    }

    /// `[B, latent, N]` or `[latent, N]` to the waveform `[B, out_channels, N * hop]`.
    pub fn decode(&self, latents: &Tensor) -> Result<Tensor> {
        // VAEBottleneck.decode is the identity.
        let ys = self.decoder.forward(&batched(latents, self.dtype)?)?;
        if self.soft_clip {
            ys.tanh()
        } else {
            Ok(ys)
        }
    }

    /// Encoder output before the bottleneck, `[B, 2*latent, L / hop]`.
    pub fn encode_pre_bottleneck(&self, audio: &Tensor) -> Result<Tensor> {
        self.encoder.forward(&batched(audio, self.dtype)?)
    }

    /// Encodes and samples the VAE posterior with the given standard-normal `noise`
    /// (`[B, latent, N]`), so a caller can reproduce the reference's draws.
    pub fn encode_with_noise(&self, audio: &Tensor, noise: &Tensor) -> Result<Encoded> {
        self.bottleneck(self.encode_pre_bottleneck(audio)?, Some(noise))
    }

    /// `AudioAutoencoder.encode`: samples the posterior with fresh noise (the reference has
    /// no deterministic switch and the pipeline uses the sample).
    pub fn encode(&self, audio: &Tensor) -> Result<Tensor> {
        Ok(self
            .bottleneck(self.encode_pre_bottleneck(audio)?, None)?
            .latents)
    }

    /// `VAEBottleneck.encode`: the first half of the channels is the mean, the second the
    /// pre-softplus scale.
    fn bottleneck(&self, pre: Tensor, noise: Option<&Tensor>) -> Result<Encoded> {
        if !self.vae_bottleneck {
            return Ok(Encoded {
                mean: pre.clone(),
                latents: pre.clone(),
                pre_bottleneck: pre,
                stdev: None,
            });
        }
        let (b, c, n) = pre.dims3()?;
        let half = c / 2;
        let mean = pre.narrow(1, 0, half)?;
        let stdev = (softplus(&pre.narrow(1, half, half)?)? + 1e-4)?;
        let noise = match noise {
            Some(noise) if noise.dims() == mean.dims() => noise.to_dtype(mean.dtype())?,
            Some(noise) => candle::bail!(
                "encode noise {:?} must match the latent mean {:?}",
                noise.shape(),
                mean.shape()
            ),
            None => {
                Tensor::randn(0f32, 1f32, (b, half, n), pre.device())?.to_dtype(mean.dtype())?
            }
        };
        let latents = (noise.mul(&stdev)? + &mean)?;
        Ok(Encoded {
            pre_bottleneck: pre,
            mean,
            stdev: Some(stdev),
            latents,
        })
    }
}
