//! Stable Audio Open 1.0 audio VAE ("Oobleck" autoencoder) and the final 51.2 kHz to 44.1 kHz
//! resampler, as used by daVinci-MagiHuman.
//!
//! Upstream: `inference/model/sa_audio/` and `inference/pipeline/video_process.py` of
//! <https://github.com/GAIR-NLP/daVinci-MagiHuman> at commit 209209b (Apache-2.0).
//! Weights: stabilityai/stable-audio-open-1.0 `model.safetensors` (autoencoder below
//! `pretransform.model.`) with its `model_config.json`, both used unchanged:
//! [`AudioAutoencoder::load_dir`].
//!
//! Layouts: latents are channel-first `[B, 64, N]` (the DiT keeps them as `[1, N, 64]`, so
//! transpose before decoding); waveforms are `[B, 2, N * 2048]` at 51 200 Hz, unbounded.
//! [`resample_audio_sinc`] takes time-first `[L, 2]`.

pub mod autoencoder;
pub mod bench;
pub mod case;
pub mod config;
pub mod oobleck;
pub mod resample;

pub use autoencoder::{AudioAutoencoder, Encoded, CHECKPOINT_PREFIX};
pub use case::run_golden_case;
pub use config::Config;
pub use resample::{resample_audio_sinc, TIME_STRETCHING};
