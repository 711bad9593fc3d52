//! Model ports, one folder per model, one file per stage.

pub mod magihuman;
pub mod sa_audio;
