//! T5Gemma encoder (google/t5gemma-9b-9b-ul2, encoder only), as the MagiHuman pipeline uses it.
//!
//! Upstream: huggingface/transformers `models/t5gemma/modeling_t5gemma.py` (v5.24) driven by
//! `inference/model/t5_gemma/t5_gemma_model.py` and `inference/pipeline/prompt_process.py` of
//! GAIR-NLP/daVinci-MagiHuman at commit 209209b. Load with
//! `T5GemmaTextEncoder::new(&Config::from_hf_file(config.json)?, vb)` where `vb` covers the
//! checkpoint (`crate::engine::weights::load_var_builder`), then `encode_padded(ids, 640)`.

pub mod bench;
mod case;
mod config;
mod encoder;
mod text_encoder;

pub use bench::{bench_encoder_layer, LayerBench};
pub use case::{run_golden_case, COMPONENT};
pub use config::{Config, LayerType, RopeParameters, WindowRule};
pub use encoder::{bench_layer, RmsNorm, Rope, T5GemmaEncoder};
pub use text_encoder::{pad_or_trim, tokenize, PromptTokenizer, T5GemmaTextEncoder, TARGET_LENGTH};
