//! Model ports, one folder per model, one file per stage.

pub mod magihuman;
pub mod nano;
pub mod sa_audio;
pub mod t5gemma;
pub mod turbo_vae;
pub mod wan22_vae;
