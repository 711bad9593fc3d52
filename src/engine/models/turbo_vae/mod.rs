//! TurboVAED: the distilled Wan2.2 video decoder of daVinci-MagiHuman.
//!
//! Port of `inference/model/turbo_vaed/` of GAIR-NLP/daVinci-MagiHuman at commit 209209b
//! (Apache-2.0): [`config`], the replicate-padded [`conv3d`], the per-window [`decoder`] and the
//! sliding-window [`vae`]; [`case`] runs the `turbo_vae_decode` goldens.
//!
//! ```no_run
//! # use candle_core as candle;
//! # fn run(z: &candle::Tensor) -> candle::Result<()> {
//! use happyhorse::engine::models::turbo_vae::{Config, TurboVaed};
//! let cfg = Config::turbo_v3_wan22_tiny_shallow_7_7();
//! let vae = TurboVaed::load(&cfg, "turbo_vaed.ckpt".as_ref(), candle::DType::BF16, &candle::Device::Cpu)?;
//! let video = vae.decode(z)?; // [B, 3, 4T-3, 16H, 16W], about [-1, 1]
//! # Ok(()) }
//! ```

pub mod bench;
pub mod case;
pub mod config;
pub mod conv3d;
pub mod decoder;
pub mod vae;

pub use bench::bench_decode;
pub use case::run_golden_case;
pub use config::Config;
pub use conv3d::Conv3d;
pub use decoder::Decoder;
pub use vae::{TurboVaed, Window, WindowPlan};
