//! Generation pipelines: sampling loops that tie the models and schedulers together.
//!
//! [`magihuman`] is the joint video + audio loop of daVinci-MagiHuman. It drives any
//! [`magihuman::Denoiser`], reports every step through a callback that can cancel the run, and
//! takes its re-noising draws from a [`magihuman::NoiseSource`] (seeded in the product, injected
//! by the golden cases).

pub mod magihuman;
pub mod magihuman_case;
pub mod magihuman_t2v;
pub mod nano;

pub use magihuman::{
    pad_or_trim_text, sample, Denoiser, NoiseSource, QueuedNoise, SampleError, SampleOutput,
    SamplerConfig, SamplerInputs, SeededNoise, StepEvent, TextCondition,
};
pub use magihuman_case::{
    run_sampler_case_with, run_sampler_golden_case, run_sampler_golden_case_debug,
};
