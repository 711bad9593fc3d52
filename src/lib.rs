//! happyhorse: short video clips with their sound, generated together.
//!
//! Data flow: [`spec`] (job spec, validation) → [`engine`] (device, dtype, weights, models,
//! samplers, pipelines) → [`media`] (encode/decode, WAV, PNG) → files on disk.
//! [`jobs`] (queue, progress events, cancellation) is driven by the CLI and the TUI.

pub mod cli;
pub mod engine;
pub mod jobs;
pub mod media;
pub mod nano;
pub mod spec;
pub mod tui;
