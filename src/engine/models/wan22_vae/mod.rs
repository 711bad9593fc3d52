//! Wan2.2 VAE (Wan-AI/Wan2.2-TI2V-5B): video encoder and decoder.
//!
//! Port of `inference/model/vae2_2/vae2_2_module.py` of GAIR-NLP/daVinci-MagiHuman at commit
//! 209209b (Apache-2.0): [`conv`] (causal conv3d and feature cache), [`blocks`], [`encoder`],
//! [`decoder`], [`vae`] (the `Wan2_2_VAE` wrapper) and [`config`].
//!
//! ```no_run
//! # use candle_core as candle;
//! # fn run(vb: candle_nn::VarBuilder, z: &candle::Tensor) -> candle::Result<()> {
//! use happyhorse::engine::models::wan22_vae::{Config, Wan22VaeDecoder};
//! let vae = Wan22VaeDecoder::new(&Config::wan22_ti2v_5b(), vb)?;
//! let video = vae.decode(z)?; // [1, 3, 1+4(T-1), 16H, 16W] in [-1, 1]
//! # Ok(()) }
//! ```

pub mod bench;
pub mod blocks;
pub mod case;
pub mod config;
pub mod conv;
pub mod decoder;
pub mod encoder;
pub mod vae;

pub use bench::{bench_decode, bench_encode, VideoEncodeBench};
pub use case::run_golden_case;
pub use config::{Config, LATENT_MEAN, LATENT_STD};
pub use vae::{patchify, unpatchify, Wan22VaeDecoder, Wan22VaeEncoder};
