//! The generator for daVinci-MagiHuman checkpoints: the end-to-end text(+image)-to-video-with-
//! audio pipeline, on the GPU when the build and the machine have one.

use std::ops::ControlFlow;

use candle_core::{DType, Device};

use crate::engine::models::magihuman::ModelConfig;
use crate::engine::pipelines::magihuman_t2v::{
    GuidanceMode, MagiHumanPipeline, MagiRequest, PipelineError, RgbImage,
};
use crate::engine::registry::{ModelEntry, ResolvedJob, WeightSearch};
use crate::jobs::{Generated, Generator, JobError, Seeds};
use crate::media::{Audio, Frames};
use crate::spec::{JobSpec, SpecError};

impl MagiHumanGenerator {
    pub fn load(
        entry: &ModelEntry,
        job: &ResolvedJob,
        search: &WeightSearch,
    ) -> Result<Self, JobError> {
        let files = search.locate_all(entry, &job.resolution)?;
        // Checked before the (long) load: the super-resolution stage is not ported, so a
        // resolution that needs it would otherwise come out at the base size.
        if files.iter().any(|(role, _)| role == "sr-transformer") {
            return Err(JobError::Spec(vec![SpecError::field(
                "resolution",
                format!(
                    "\"{}\" needs MagiHuman's super-resolution stage, which this build does not have yet; use \"{}\"",
                    job.resolution, entry.manifest.defaults.resolution
                ),
            )]));
        }
        // A model that takes no guidance scales is the distilled (DMD-2) one: one
        // conditional pass per step with `step_ddim`.
        let mode = if entry.manifest.supports("guidance") {
            GuidanceMode::Cfg
        } else {
            GuidanceMode::Distill
        };
        let preset = match mode {
            GuidanceMode::Cfg => ModelConfig::base(),
            GuidanceMode::Distill => ModelConfig::distill(),
        };
        let (device, dtype) = pick_device()?;
        let pipeline = MagiHumanPipeline::load_with_preset(&files, preset, &device, dtype)
            .map_err(|e| pipeline_error(&entry.manifest.name, e))?;
        Ok(MagiHumanGenerator {
            model: entry.manifest.name.clone(),
            pipeline,
            mode,
        })
    }
}

/// The first GPU when the build has a GPU backend and one is present (bf16, as the reference
/// runs), otherwise the CPU in f32 (bf16 matmuls are slow there).
fn pick_device() -> Result<(Device, DType), JobError> {
    let runtime = |e: candle_core::Error| JobError::Runtime(format!("opening the GPU: {e}"));
    if cfg!(feature = "cuda") && candle_core::utils::cuda_is_available() {
        return Ok((Device::new_cuda(0).map_err(runtime)?, DType::BF16));
    }
    if cfg!(feature = "metal") && candle_core::utils::metal_is_available() {
        return Ok((Device::new_metal(0).map_err(runtime)?, DType::BF16));
    }
    Ok((Device::Cpu, DType::F32))
}

fn pipeline_error(model: &str, e: PipelineError) -> JobError {
    match e {
        PipelineError::Cancelled { .. } => JobError::Cancelled,
        PipelineError::Request(m) => JobError::Spec(vec![SpecError::field("request", m)]),
        other => JobError::Runtime(format!("model `{model}`: {other}")),
    }
}

pub struct MagiHumanGenerator {
    model: String,
    pipeline: MagiHumanPipeline,
    mode: GuidanceMode,
}

impl MagiHumanGenerator {
    fn request(
        &self,
        spec: &JobSpec,
        job: &ResolvedJob,
        seeds: Seeds,
    ) -> Result<MagiRequest, JobError> {
        // Refused rather than ignored: the manifest lists it, the pipeline does not do it yet.
        if spec.audio.is_some() {
            return Err(JobError::Spec(vec![SpecError::field(
                "audio",
                format!(
                    "model `{}`: generating video from a given soundtrack (A2V) is not available in this build yet; remove `audio`",
                    self.model
                ),
            )]));
        }
        let image = match &spec.image {
            None => None,
            Some(_) if !self.pipeline.supports_image() => {
                return Err(JobError::Spec(vec![SpecError::field(
                    "image",
                    format!(
                        "model `{}` has no Wan2.2 VAE encoder (`video-vae`), so it cannot start from an image",
                        self.model
                    ),
                )]))
            }
            Some(path) => {
                let img = image::open(path).map_err(|e| {
                    JobError::Spec(vec![SpecError::field(
                        "image",
                        format!("cannot read {} as a PNG image: {e}", path.display()),
                    )])
                })?;
                let rgb = img.to_rgb8();
                Some(RgbImage {
                    width: rgb.width(),
                    height: rgb.height(),
                    data: rgb.into_raw(),
                })
            }
        };
        Ok(MagiRequest {
            prompt: spec.prompt.clone(),
            negative_prompt: spec.negative_prompt.clone(),
            width: job.width,
            height: job.height,
            duration_s: job.duration_s,
            fps: job.native_fps,
            steps: job.steps as usize,
            guidance_video: job.guidance_video as f64,
            guidance_audio: job.guidance_audio as f64,
            mode: self.mode,
            seed_video: seeds.video,
            seed_audio: seeds.audio,
            image,
        })
    }
}

impl Generator for MagiHumanGenerator {
    fn generate(
        &mut self,
        spec: &JobSpec,
        job: &ResolvedJob,
        seeds: Seeds,
        on_step: &mut dyn FnMut(usize, usize) -> ControlFlow<()>,
    ) -> Result<Generated, JobError> {
        let req = self.request(spec, job, seeds)?;
        let clip = self
            .pipeline
            .generate(&req, on_step)
            .map_err(|e| pipeline_error(&self.model, e))?;
        Ok(Generated {
            frames: Frames {
                width: clip.width,
                height: clip.height,
                fps: clip.fps,
                data: clip.frames,
            },
            audio: Audio {
                sample_rate: clip.sample_rate,
                channels: clip.channels,
                samples: clip.audio,
            },
        })
    }
}
