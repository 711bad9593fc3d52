//! Jobs: a spec in, files out. Resolves the spec against the model registry, runs the engine,
//! writes the media, and reports progress through events. No UI here: the CLI and the TUI drive
//! it and render the events.

mod generators;
mod queue;

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use crate::engine::registry::{self, Registry, RegistryError, ResolvedJob, WeightSearch};
use crate::media::{self, Audio, Clip, Frames, MediaError, VideoOptions};
use crate::spec::{Format, JobSpec, SpecError};

pub use generators::make_generator;
pub use queue::{GeneratorFactory, Queue, QueueEvent, QueueHandle};

/// Shared cancellation flag: set it from anywhere (Ctrl-C handler, TUI key) and the running job
/// stops at its next step.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn new() -> CancelToken {
        CancelToken::default()
    }
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// What a job reports while it runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Started {
        job: String,
        variants: u32,
    },
    Loading {
        job: String,
        model: String,
    },
    Step {
        job: String,
        variant: u32,
        step: usize,
        total: usize,
    },
    Encoding {
        job: String,
        variant: u32,
    },
    Finished {
        job: String,
    },
}

/// Why a job failed; each kind maps to one CLI exit code.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("{}", join_spec_errors(.0))]
    Spec(Vec<SpecError>),
    #[error(transparent)]
    Model(#[from] RegistryError),
    #[error(transparent)]
    Media(#[from] MediaError),
    /// A model folder that is there but cannot be used (a file missing from it, a config
    /// that does not match its weights): the fix is in the model files, so exit 3.
    #[error("{0}")]
    BadModel(String),
    #[error("{0}")]
    Runtime(String),
    #[error("cancelled")]
    Cancelled,
}

fn join_spec_errors(errs: &[SpecError]) -> String {
    errs.iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

impl JobError {
    /// CLI exit code: 2 bad input/spec, 3 model or weights missing, 4 runtime failure,
    /// 130 interrupted.
    pub fn exit_code(&self) -> i32 {
        match self {
            JobError::Spec(_) => 2,
            JobError::Model(RegistryError::UnknownModel { .. }) => 2,
            JobError::Model(RegistryError::WeightsMissing { .. }) => 3,
            JobError::Model(_) => 3,
            JobError::BadModel(_) => 3,
            JobError::Media(MediaError::Io { .. }) => 4,
            JobError::Media(_) => 4,
            JobError::Runtime(_) => 4,
            JobError::Cancelled => 130,
        }
    }

    /// Short machine-readable kind, for `--json` results.
    pub fn kind(&self) -> &'static str {
        match self.exit_code() {
            2 => "bad_input",
            3 => "model_missing",
            130 => "interrupted",
            _ => "runtime",
        }
    }
}

/// Seeds one variant was generated with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Seeds {
    pub video: u64,
    pub audio: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Timings {
    pub load_s: f64,
    pub generate_s: f64,
    pub encode_s: f64,
    pub total_s: f64,
}

/// The result of one job, as printed with `--json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobResult {
    pub id: String,
    /// "ok", or "skipped" when `--skip-existing` found every output already written.
    pub status: &'static str,
    pub model: String,
    /// Output paths by kind ("mp4", "wav", "png"), one per variant.
    pub outputs: BTreeMap<&'static str, Vec<PathBuf>>,
    pub seeds: Vec<Seeds>,
    pub timings: Timings,
}

impl JobResult {
    /// Every output path, in variant order, mp4 first.
    pub fn paths(&self) -> Vec<&Path> {
        let n = self.outputs.values().map(|v| v.len()).max().unwrap_or(0);
        let mut out = Vec::new();
        for i in 0..n {
            for kind in ["mp4", "wav", "png"] {
                if let Some(p) = self.outputs.get(kind).and_then(|v| v.get(i)) {
                    out.push(p.as_path());
                }
            }
        }
        out
    }
}

/// Settings shared by every job of a run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub weights: WeightSearch,
    /// Leave a job alone when all its outputs exist.
    pub skip_existing: bool,
}

/// A generated clip at the model's native rate, before it is written.
pub struct Generated {
    pub frames: Frames,
    pub audio: Audio,
}

/// Something that turns a resolved job into a clip: one per model architecture.
pub trait Generator {
    fn generate(
        &mut self,
        spec: &JobSpec,
        job: &ResolvedJob,
        seeds: Seeds,
        on_step: &mut dyn FnMut(usize, usize) -> ControlFlow<()>,
    ) -> Result<Generated, JobError>;
}

/// Builds the generator for a model: [`make_generator`] in the product, a stand-in in tests.
pub type MakeGenerator = dyn FnMut(
    &registry::ModelEntry,
    &ResolvedJob,
    &WeightSearch,
) -> Result<Box<dyn Generator>, JobError>;

/// Validates and resolves `spec`: every error a user can fix before any model is loaded.
pub fn prepare(
    spec: &JobSpec,
    registry: &Registry,
) -> Result<(registry::ModelEntry, ResolvedJob), JobError> {
    spec.validate().map_err(JobError::Spec)?;
    let name = spec.model.as_deref().unwrap_or(registry::DEFAULT_MODEL);
    let entry = registry.find(name)?;
    let job = registry::resolve(spec, &entry.manifest).map_err(JobError::Spec)?;
    Ok((entry, job))
}

/// Output paths of one variant, by format.
pub fn output_paths(spec: &JobSpec, stem: &str) -> Vec<(Format, PathBuf)> {
    let dir = spec.output_dir();
    spec.formats()
        .into_iter()
        .map(|f| {
            let path = match f {
                Format::Mp4 => dir.join(format!("{stem}.mp4")),
                Format::Wav => dir.join(format!("{stem}.wav")),
                Format::Png => dir.join(format!("{stem}-frames")),
            };
            (f, path)
        })
        .collect()
}

fn base_seed(spec: &JobSpec) -> u64 {
    spec.seed.unwrap_or_else(|| {
        // No seed given: a fresh one, reported in the result so the clip can be remade.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        (nanos ^ (std::process::id() as u64).rotate_left(32)) % 1_000_000_000
    })
}

/// Runs one job to completion: generate every variant, write every requested format.
pub fn run_job(
    spec: &JobSpec,
    registry: &Registry,
    opts: &RunOptions,
    make_generator: &mut MakeGenerator,
    cancel: &CancelToken,
    on_event: &mut dyn FnMut(Event),
) -> Result<JobResult, JobError> {
    let t0 = Instant::now();
    let (entry, job) = prepare(spec, registry)?;
    let id = spec.job_id();
    let variants = spec.variants();
    let first_seed = base_seed(spec);
    let seeds: Vec<Seeds> = (0..variants as u64)
        .map(|v| {
            let video = first_seed + v;
            // Audio noise is independent of video noise unless the user pins it.
            let audio = spec
                .audio_seed
                .map(|s| s + v)
                .unwrap_or(video ^ 0x5EED_A0D1_0000);
            Seeds { video, audio }
        })
        .collect();
    let stems: Vec<String> = (1..=variants)
        .zip(&seeds)
        .map(|(v, s)| spec.output_stem(v, spec.seed.map(|_| s.video), &job.model))
        .collect();
    let mut outputs: BTreeMap<&'static str, Vec<PathBuf>> = BTreeMap::new();
    for stem in &stems {
        for (f, p) in output_paths(spec, stem) {
            outputs.entry(f.as_str()).or_default().push(p);
        }
    }
    let mut result = JobResult {
        id: id.clone(),
        status: "ok",
        model: job.model.clone(),
        outputs,
        seeds: seeds.clone(),
        timings: Timings::default(),
    };
    if opts.skip_existing && result.paths().iter().all(|p| p.exists()) {
        result.status = "skipped";
        return Ok(result);
    }

    on_event(Event::Started {
        job: id.clone(),
        variants,
    });
    on_event(Event::Loading {
        job: id.clone(),
        model: job.model.clone(),
    });
    let t_load = Instant::now();
    let mut generator = make_generator(&entry, &job, &opts.weights)?;
    result.timings.load_s = t_load.elapsed().as_secs_f64();

    for (i, (stem, seeds)) in stems.iter().zip(&seeds).enumerate() {
        let variant = i as u32 + 1;
        let paths = output_paths(spec, stem);
        if opts.skip_existing && paths.iter().all(|(_, p)| p.exists()) {
            continue;
        }
        let t_gen = Instant::now();
        let mut on_step = |step: usize, total: usize| {
            on_event(Event::Step {
                job: id.clone(),
                variant,
                step,
                total,
            });
            if cancel.is_cancelled() {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        };
        let clip = generator.generate(spec, &job, *seeds, &mut on_step)?;
        if cancel.is_cancelled() {
            return Err(JobError::Cancelled);
        }
        result.timings.generate_s += t_gen.elapsed().as_secs_f64();

        on_event(Event::Encoding {
            job: id.clone(),
            variant,
        });
        let t_enc = Instant::now();
        write_outputs(spec, &job, clip, &paths)?;
        result.timings.encode_s += t_enc.elapsed().as_secs_f64();
    }
    result.timings.total_s = t0.elapsed().as_secs_f64();
    on_event(Event::Finished { job: id });
    Ok(result)
}

/// Converts to the requested fps and loudness and writes every format atomically.
pub fn write_outputs(
    spec: &JobSpec,
    job: &ResolvedJob,
    generated: Generated,
    paths: &[(Format, PathBuf)],
) -> Result<(), JobError> {
    let frames = media::retime_frames(&generated.frames, job.fps);
    let mut audio = generated.audio;
    if job.audio_weight != 1.0 {
        for s in &mut audio.samples {
            *s *= job.audio_weight;
        }
    }
    let clip = Clip { frames, audio };
    let video_opts = VideoOptions {
        codec: spec.video_codec(),
        ..VideoOptions::default()
    };
    for (format, path) in paths {
        match format {
            Format::Mp4 => media::encode_mp4(path, &clip.frames, Some(&clip.audio), video_opts)?,
            Format::Wav => media::write_wav(path, &clip.audio)?,
            Format::Png => {
                media::write_png_frames(path, &clip.frames)?;
            }
        }
    }
    Ok(())
}
