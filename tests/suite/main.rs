//! The integration suite, one test binary: every module drives the library or the real
//! `happyhorse` binary the way a user or a script would. One binary keeps CI's disk and link
//! time small (each extra test binary links the whole engine again).

mod cli;
mod common;
mod debug_case;
mod flow_unipc;
mod magihuman_dit;
mod magihuman_e2e;
mod magihuman_sampler;
mod media;
mod nano_eval;
mod nano_train_smoke;
mod sa_audio;
mod spec_validation;
mod t5gemma;
mod tui_snapshots;
mod tui_tmux;
mod turbo_vae;
mod wan22_vae;
mod weights;
