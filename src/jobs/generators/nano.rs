//! The generator for Nano, the embedded default model.

use std::ops::ControlFlow;

use candle_core::Device;

use crate::engine::pipelines::nano::{NanoError, NanoPipeline};
use crate::engine::registry::{ModelEntry, ResolvedJob, WeightSearch};
use crate::jobs::{Generated, Generator, JobError, Seeds};
use crate::media::{Audio, Frames};
use crate::spec::JobSpec;

pub struct NanoGenerator {
    pipeline: NanoPipeline,
}

fn runtime(e: NanoError) -> JobError {
    match e {
        NanoError::Sample(crate::engine::pipelines::SampleError::Cancelled { .. }) => {
            JobError::Cancelled
        }
        other => JobError::Runtime(format!("nano: {other}")),
    }
}

/// Loading a model folder fails on its files (missing, unreadable, mismatched), never on the
/// request: exit 3 with the folder named.
fn bad_model(dir: &std::path::Path, e: NanoError) -> JobError {
    match e {
        NanoError::Missing { .. } | NanoError::BadConfig { .. } | NanoError::Weights(_) => {
            JobError::BadModel(e.to_string())
        }
        other => JobError::BadModel(format!("nano model folder {}: {other}", dir.display())),
    }
}

/// Whether any of the model's files is on disk: a folder with some of them is a model the
/// user meant to use, so a missing one is an error, never a silent switch to the built-in
/// weights.
fn any_found(entry: &ModelEntry, job: &ResolvedJob, search: &WeightSearch) -> bool {
    entry
        .manifest
        .components_for(&job.resolution)
        .any(|c| search.locate(entry, c).is_ok())
}

impl NanoGenerator {
    /// Weights from the model's directory (or --model-dir) when all of its files are there,
    /// the copy built into the binary when none is, an error naming the missing file otherwise.
    pub fn load(
        entry: &ModelEntry,
        job: &ResolvedJob,
        search: &WeightSearch,
    ) -> Result<Self, JobError> {
        let device = Device::Cpu;
        let pipeline = match search.locate_all(entry, &job.resolution) {
            Ok(files) => {
                let weights = files
                    .iter()
                    .find(|(role, _)| role == "weights")
                    .and_then(|(_, p)| p.parent())
                    .ok_or_else(|| {
                        JobError::Runtime(format!(
                            "model `{}`: its manifest lists no `weights` component",
                            entry.manifest.name
                        ))
                    })?;
                NanoPipeline::load(weights, &device).map_err(|e| bad_model(weights, e))?
            }
            Err(e) if !entry.manifest.embedded || any_found(entry, job, search) => {
                return Err(e.into())
            }
            Err(_) => NanoPipeline::embedded(&device).map_err(runtime)?,
        };
        Ok(NanoGenerator { pipeline })
    }
}

impl Generator for NanoGenerator {
    fn generate(
        &mut self,
        spec: &JobSpec,
        job: &ResolvedJob,
        seeds: Seeds,
        on_step: &mut dyn FnMut(usize, usize) -> ControlFlow<()>,
    ) -> Result<Generated, JobError> {
        self.pipeline.sampler.steps = job.steps as usize;
        self.pipeline.sampler.guidance_video = job.guidance_video as f64;
        self.pipeline.sampler.guidance_audio = job.guidance_audio as f64;
        // Generate at the native rate; the job retimes to the requested fps and applies
        // audio_weight as loudness, the same way for every model.
        let clip = self
            .pipeline
            .generate(
                &spec.prompt,
                job.width,
                job.height,
                job.native_fps,
                job.duration_s,
                seeds.video,
                seeds.audio,
                1.0,
                on_step,
            )
            .map_err(runtime)?;
        Ok(Generated {
            frames: Frames {
                width: clip.width,
                height: clip.height,
                fps: clip.fps,
                data: clip.frames_rgb,
            },
            audio: Audio {
                sample_rate: clip.sample_rate,
                channels: clip.channels,
                samples: clip.audio,
            },
        })
    }
}
