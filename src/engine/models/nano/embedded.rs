//! Nano's files, built into the binary: the default model needs no download and works from any
//! folder after `cargo install`. They are the files under `models/nano/`, produced by
//! `happyhorse train nano`.

pub const CONFIG: &str = include_str!("../../../../models/nano/config.json");
pub const TOKENIZER: &[u8] = include_bytes!("../../../../models/nano/tokenizer.json");
pub const WEIGHTS: &[u8] = include_bytes!("../../../../models/nano/model.safetensors");
