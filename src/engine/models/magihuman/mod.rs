//! daVinci-MagiHuman single-stream DiT: video, audio and text tokens in one sequence,
//! per-modality experts in the outer layers, flow-matching velocity out.
//!
//! Port of GAIR-NLP/daVinci-MagiHuman at commit 209209b (Apache-2.0):
//! `inference/model/dit/dit_module.py` ([`dit`], [`rope`]), `inference/pipeline/data_proxy.py`
//! ([`packing`]) and `inference/common/config.py` ([`config`]).
//!
//! ```no_run
//! # use candle_core as candle;
//! # fn run(vb: candle_nn::VarBuilder, v: &candle::Tensor, a: &candle::Tensor, t: &candle::Tensor) -> candle::Result<()> {
//! use happyhorse::engine::models::magihuman::{DataProxyConfig, MagiHuman, ModelConfig};
//! let model = MagiHuman::new(&ModelConfig::base(), &DataProxyConfig::base(), vb)?;
//! let (v_video, v_audio) = model.velocity(v, a, t, 7)?;
//! # Ok(()) }
//! ```

pub mod case;
pub mod config;
pub mod dit;
pub mod packing;
pub mod rope;

pub use case::{run_golden_case, run_golden_case_debug};
pub use config::{CoordsStyle, DataProxyConfig, ModelConfig};
pub use dit::{DitTrace, MagiHuman, TransformerLayer};
pub use packing::{AttnBlock, ModalityRanges, Packed, QkRange, VideoGrid};
pub use rope::{ElementWiseFourierEmbed, RopeSinCos};
