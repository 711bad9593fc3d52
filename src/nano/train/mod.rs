//! The Nano training recipe: `happyhorse train nano`.
//!
//! Three stages on clips drawn from [`crate::nano::world`] (training split only; the held-out
//! colour × shape × background triples are never seen):
//! 1. the codecs, as autoencoders: video MSE weighted up on the objects' bounding boxes (the
//!    world's ground truth); audio MSE weighted up on the hits, a log-spectrum L1 (the world's
//!    rain and wind are noise, which a waveform loss alone would average to silence) and an L1
//!    on the log loudness envelope and its rise (silence, and the hits' attacks). A little
//!    latent noise and an L2 pull keep the latents smooth and bounded for the DiT;
//! 2. the DiT and the text encoder, by flow matching on the frozen codecs' normalised latents:
//!    `x_t = (1-σ) x0 + σ ε`, target `v = ε - x0` (what `FlowUniPcScheduler` integrates), σ
//!    drawn uniformly and then shifted like the sampler's schedule. One caption in ten is
//!    dropped to the empty prompt, which CFG uses as its negative. The loss is weighted up on
//!    the latent cells the objects cover and on the audio frames where a hit sounds;
//! 3. the audio decoder alone, on the frozen encoder's latents plus noise the size of the
//!    DiT's errors, so that what the DiT samples near a latent decodes like that latent
//!    (silence as silence). The latents, their statistics and the DiT do not change.
//!
//! Everything random derives from `TrainConfig::seed` and the step index, and the checkpoint
//! holds the optimizer moments, so a resumed run continues the run it interrupts.
//!
//! Files: `recipe.rs` the settings and the resume check, `data.rs` the clips, `step.rs` each
//! stage's loss on a clip and one step's gradients, `losses.rs` the terms those losses are
//! made of, `vars.rs` initial values and loading by name, this file the stages' loop (`run`),
//! checkpoints and export; `adamw.rs`, `ema.rs` and the probes beside.

mod adamw;
mod data;
mod ema;
mod losses;
mod probe;
mod recipe;
mod step;
mod sync_probe;
mod vars;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::nano::world::Scene;

use candle::{backprop::GradStore, DType, Device, Tensor, Var};
use candle_core as candle;
use candle_nn::{VarBuilder, VarMap};
use serde::{Deserialize, Serialize};

pub use adamw::{AdamW, AdamWParams};
pub use data::{build_tokenizer, Clip, ClipSampler};
pub use ema::Ema;
pub use losses::{blur_cells, clip_latents, levels_below, noised, SHAPE_CODE};
pub use probe::TextProbe;
pub use recipe::TrainConfig;
pub use sync_probe::SyncProbe;

use losses::*;
use recipe::*;
use vars::*;

use crate::engine::models::nano::{
    self, AudioCodecConfig, LatentStats, Nano, NanoConfig, NanoTokenizer, VideoCodecConfig,
    VideoCue,
};
use crate::engine::pipelines::magihuman::SeededNoise;
use crate::engine::registry::{Registry, MANIFEST_FILE};

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    BadCheckpoint { path: PathBuf, message: String },
    #[error("training settings: {0}")]
    Invalid(String),
    #[error(transparent)]
    Candle(#[from] candle::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Stage {
    Codec,
    Dit,
    /// The audio decoder alone, on noised latents ([`TrainConfig::audio_decoder_steps`]).
    AudioDecoder,
    /// The video decoder alone, on noised latents ([`TrainConfig::video_decoder_steps`]).
    VideoDecoder,
}

/// One optimizer step's report.
#[derive(Debug, Clone)]
pub struct Progress {
    pub stage: Stage,
    /// 1-based within the stage.
    pub step: usize,
    pub total: usize,
    pub loss: f32,
    /// The two parts of `loss`: video and audio.
    pub loss_video: f32,
    pub loss_audio: f32,
    /// The text probe's weighted loss (not in `loss`); 0 without a probe.
    pub loss_probe: f32,
    /// The sync probe's weighted loss (not in `loss`); 0 without it.
    pub loss_sync_probe: f32,
    pub elapsed_s: f64,
}

/// What `state.json` records next to the weights.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    stage: Stage,
    /// Steps done in `stage`.
    step: usize,
    latent: Option<LatentStats>,
    /// Wall time spent so far over all sessions.
    elapsed_s: f64,
    /// Recent losses, for the record: `(stage, step, loss)`.
    history: Vec<(Stage, usize, f32)>,
    /// The settings that shape the weights ([`TrainConfig::recipe`]): a resumed session
    /// must ask for the same ones. Absent in checkpoints written before it was recorded.
    #[serde(default)]
    recipe: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Debug, Clone)]
pub struct TrainSummary {
    pub model_dir: PathBuf,
    pub elapsed_s: f64,
    pub final_codec_loss: Option<f32>,
    pub final_dit_loss: Option<f32>,
    pub final_audio_decoder_loss: Option<f32>,
    pub final_video_decoder_loss: Option<f32>,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}

struct Run<'a> {
    cfg: &'a TrainConfig,
    model_cfg: NanoConfig,
    varmap: VarMap,
    model: Nano,
    tokenizer: NanoTokenizer,
    /// Whole clips of the DiT's lengths (the decoder stages that learn from the DiT's clips).
    sampler: ClipSampler,
    /// DiT clips (cut from longer ones with `dit_window_s`).
    dit_sampler: ClipSampler,
    /// DiT clips of the restart phase (its own lengths, if it sets them).
    restart_sampler: ClipSampler,
    /// Codec clips (shorter).
    codec_sampler: ClipSampler,
    state: State,
    /// Average of the DiT stage's weights, which the model exports (`ema_decay > 0`).
    ema: Option<Ema>,
    /// Trained with the DiT when `text_probe_weight > 0`; never exported.
    probe: Option<TextProbe>,
    /// Trained with the DiT when a phase's sync-probe weight is over 0; never exported.
    sync_probe: Option<SyncProbe>,
    /// Trained with the audio decoder's video cue: which pixel frames a hit sounds in, read
    /// from the cue's features ([`TrainConfig::audio_decoder_video_cue`]); never exported.
    cue_probe: Option<SyncProbe>,
    /// A frozen copy of the model as exported (the DiT's average): what the video-decoder
    /// stage's DiT estimates come from ([`TrainConfig::video_decoder_dit_sigma`]).
    exported: Option<Nano>,
    dev: Device,
}

/// One clip's gradients and its share of the step's losses `[video, audio, text probe, sync
/// probe]`.
type ClipGrads = (GradStore, [f32; 4]);

const CHECKPOINT_DIR: &str = "checkpoint";
const EMA_FILE: &str = "ema.safetensors";
const MODEL_DIR: &str = "model";

/// The manifest of an exported model folder: the built-in `nano` entry (sizes, durations,
/// controls) with its files in the folder itself, not built in (a missing file is an error,
/// not a silent fall back to the binary's copy), and the run's own rates and sampler
/// defaults.
fn folder_manifest(cfg: &NanoConfig) -> Result<String, TrainError> {
    let invalid = |e: &dyn std::fmt::Display| TrainError::Invalid(format!("model manifest: {e}"));
    let mut m = Registry::builtin()
        .and_then(|r| r.find("nano"))
        .map_err(|e| invalid(&e))?
        .manifest;
    m.description = format!(
        "HappyHorse Nano from `happyhorse train nano`: joint video+audio at {} fps, {} Hz mono",
        cfg.native_fps, cfg.sample_rate
    );
    m.embedded = false;
    m.native_fps = cfg.native_fps;
    m.audio_sample_rate = cfg.sample_rate;
    m.defaults.steps = cfg.sampler.steps as u32;
    m.defaults.guidance_video = cfg.sampler.guidance_video as f32;
    m.defaults.guidance_audio = cfg.sampler.guidance_audio as f32;
    for c in &mut m.components {
        c.local = c.path.clone();
    }
    let text = toml::to_string(&m).map_err(|e| invalid(&e))?;
    Ok(format!(
        "# Written by `happyhorse train nano`: `happyhorse generate -m THIS_FOLDER \"...\"` uses\n\
         # these weights.\n{text}"
    ))
}

impl Run<'_> {
    fn ckpt(&self, file: &str) -> PathBuf {
        self.cfg.out_dir.join(CHECKPOINT_DIR).join(file)
    }

    /// The step whose data (clips, σ, noise) step `step` uses: itself, or with `data_cycle`
    /// the same few batches over and over, so a smoke run's loss must fall.
    fn data_step(&self, step: usize) -> usize {
        match self.cfg.data_cycle {
            Some(c) => step % c.max(1),
            None => step,
        }
    }

    /// Clip `k` of step `step`'s batch.
    fn clip(&self, stage: Stage, step: usize, k: usize) -> Clip {
        self.clip_edited(stage, step, k, |_| {})
    }

    /// [`Self::clip`]'s twin: the same scene with its [`Shape::twin`](crate::nano::world::Shape::twin),
    /// the same length, span, placement and timing.
    fn twin(&self, stage: Stage, step: usize, k: usize, clip: &Clip) -> Clip {
        let other = clip.scene.object.shape.twin();
        self.clip_edited(stage, step, k, |s| s.object.shape = other)
    }

    /// [`Self::clip`] with its scene changed by `edit` before it is rendered.
    fn clip_edited(
        &self,
        stage: Stage,
        step: usize,
        k: usize,
        edit: impl FnOnce(&mut Scene),
    ) -> Clip {
        let restart = step >= self.cfg.dit_steps;
        let step = self.data_step(step);
        let (tag, sampler) = match stage {
            Stage::Codec => (1u64, &self.codec_sampler),
            Stage::Dit if restart => (2u64, &self.restart_sampler),
            Stage::Dit => (2u64, &self.dit_sampler),
            // The cue learns the contacts the DiT draws, over the DiT's longer clips.
            Stage::AudioDecoder if self.cfg.audio_decoder_video_cue => (8u64, &self.sampler),
            Stage::AudioDecoder => (4u64, &self.codec_sampler),
            // The DiT's walks put the objects where the DiT learned them: its own clips.
            Stage::VideoDecoder if self.cfg.video_decoder_dit_walk => (7u64, &self.sampler),
            Stage::VideoDecoder => (6u64, &self.codec_sampler),
        };
        sampler.clip_with(self.cfg.seed, tag, (step * self.cfg.batch + k) as u64, edit)
    }

    fn save(&self, opt: &AdamW) -> Result<(), TrainError> {
        let dir = self.cfg.out_dir.join(CHECKPOINT_DIR);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        // Written under temporary names and renamed, so an interrupted save leaves the last
        // good checkpoint intact.
        let tmp = |f: &str| dir.join(format!("{f}.tmp"));
        self.varmap.save(tmp("vars.safetensors"))?;
        opt.save(&tmp("optim.safetensors"))?;
        let mut files = vec!["vars.safetensors", "optim.safetensors"];
        if let Some(ema) = &self.ema {
            ema.save(&tmp(EMA_FILE))?;
            files.push(EMA_FILE);
        }
        let json = serde_json::to_string_pretty(&self.state)
            .map_err(|e| TrainError::Invalid(e.to_string()))?;
        std::fs::write(tmp("state.json"), json).map_err(io(&dir))?;
        // state.json last: it says which step the other files belong to.
        files.push("state.json");
        for f in files {
            std::fs::rename(tmp(f), dir.join(f)).map_err(io(&dir))?;
        }
        self.export()
    }

    /// Writes the loadable model: `config.json`, `tokenizer.json`, `model.safetensors`, and
    /// the `happyhorse.toml` that makes the folder a model of its own for `generate -m`.
    fn export(&self) -> Result<(), TrainError> {
        let dir = self.cfg.out_dir.join(MODEL_DIR);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let mut cfg = self.model_cfg.clone();
        if let Some(l) = &self.state.latent {
            cfg.latent = l.clone();
        }
        let json =
            serde_json::to_string_pretty(&cfg).map_err(|e| TrainError::Invalid(e.to_string()))?;
        std::fs::write(dir.join(nano::CONFIG_FILE), json).map_err(io(&dir))?;
        std::fs::write(dir.join(MANIFEST_FILE), folder_manifest(&cfg)?).map_err(io(&dir))?;
        self.tokenizer.save(&dir.join(nano::TOKENIZER_FILE))?;
        candle::safetensors::save(&self.exported_weights()?, dir.join(nano::WEIGHTS_FILE))?;
        Ok(())
    }

    /// The weights the model exports: the live variables less the probes, the
    /// DiT's average in place of its live weights.
    fn exported_weights(&self) -> candle::Result<HashMap<String, Tensor>> {
        let mut weights: HashMap<String, Tensor> = {
            let data = self.varmap.data().lock().map_err(|_| {
                candle::Error::Msg("nano train: the variable map lock is poisoned".into())
            })?;
            data.iter()
                .filter(|(n, _)| !is_probe_var(n))
                .map(|(n, v)| (n.clone(), v.as_tensor().detach()))
                .collect()
        };
        if let Some(ema) = &self.ema {
            weights.extend(ema.tensors());
        }
        Ok(weights)
    }

    /// Noise for clip `k` of step `step` (σ, latent and caption-dropout draws): a stream of
    /// its own, so clips can be worked on in any order and on any number of workers.
    fn noise(&self, salt: u64, step: usize, k: usize) -> SeededNoise {
        let key = self.cfg.seed ^ salt ^ ((self.data_step(step) as u64) << 20) ^ k as u64;
        SeededNoise::new(data::mix64(key))
    }

    /// Per-channel mean and std of the codec latents over a fixed set of clips.
    fn latent_stats(&self) -> candle::Result<LatentStats> {
        let m = &self.model;
        // The codec's statistics, over the world's own placements whatever the DiT trains on.
        let stats_sampler = self
            .sampler
            .clone()
            .with_placement_spread(1.0)
            .with_physics_spread(1.0);
        let (mut vs, mut as_) = (Vec::new(), Vec::new());
        for i in 0..16u64.max(self.cfg.batch as u64) {
            let clip = stats_sampler.clip(self.cfg.seed, 3, i);
            let x = frames_tensor(&clip, &self.dev)?;
            let z = m.video_encoder.encode(&x)?.squeeze(0)?.flatten_from(1)?; // [z, N]
            vs.push(z.t()?);
            let a = Tensor::from_slice(&clip.audio, clip.audio.len(), &self.dev)?;
            as_.push(m.audio_encoder.encode(&a)?.squeeze(0)?); // [Na, Ca]
        }
        let stats = |rows: Vec<Tensor>| -> candle::Result<(Vec<f32>, Vec<f32>)> {
            let x = Tensor::cat(&rows, 0)?;
            let mean = x.mean(0)?;
            let std = (x.broadcast_sub(&mean)?.sqr()?.mean(0)? + 1e-6)?.sqrt()?;
            Ok((mean.to_vec1()?, std.to_vec1()?))
        };
        let (video_mean, video_std) = stats(vs)?;
        let (audio_mean, audio_std) = stats(as_)?;
        Ok(LatentStats {
            video_mean,
            video_std,
            audio_mean,
            audio_std,
        })
    }
}

/// Runs (or resumes) the recipe; `progress` sees every optimizer step.
pub fn run(
    cfg: TrainConfig,
    dev: &Device,
    progress: &mut dyn FnMut(&Progress),
) -> Result<TrainSummary, TrainError> {
    cfg.validate()?;
    let dev = dev.clone();
    let tokenizer = build_tokenizer(cfg.vocab_scenes)?;
    let mut model_cfg = if cfg.tiny {
        NanoConfig::tiny_for_tests(tokenizer.vocab_size())
    } else {
        NanoConfig::nano(tokenizer.vocab_size())
    };
    // The sampler walks the noise levels the DiT was trained on.
    model_cfg.sampler.shift = cfg.sigma_shift;
    model_cfg.video.temporal_mix = cfg.video_decoder_temporal_mix;
    model_cfg = model_cfg.with_temporal_stride(cfg.video_temporal_stride);
    if cfg.video_latent_channels != model_cfg.video.latent_channels {
        model_cfg = model_cfg.with_video_latent_channels(cfg.video_latent_channels);
    }
    model_cfg.audio.video_cue = cfg.audio_decoder_video_cue;
    if cfg.dit_clock {
        model_cfg = model_cfg.with_clock(&cfg.dit_clock_periods_s);
    }
    if cfg.dit_layers != model_cfg.dit.num_layers {
        model_cfg = model_cfg.with_dit_layers(cfg.dit_layers);
    }
    if let Some(field) = cfg.dit_local_field {
        model_cfg = model_cfg.with_local_attention(field);
    }
    let varmap = VarMap::new();
    let model = Nano::new(
        &model_cfg,
        VarBuilder::from_varmap(&varmap, DType::F32, &dev),
    )?;
    let probe = if cfg.text_probe_weight > 0.0 {
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
        Some(TextProbe::new(model_cfg.text.hidden, vb.pp(probe::PREFIX))?)
    } else {
        None
    };
    let sync_probe = if cfg.has_sync_probe() {
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
        Some(SyncProbe::new(
            model_cfg.dit.hidden_size,
            vb.pp(sync_probe::PREFIX),
        )?)
    } else {
        None
    };
    let cue_probe = if cfg.audio_decoder_video_cue {
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
        Some(SyncProbe::new(
            VideoCue::FEATURES,
            vb.pp(sync_probe::CUE_PREFIX),
        )?)
    } else {
        None
    };
    init_vars(&varmap, cfg.seed, cfg.dit_qk_norm_gain)?;
    let sampler = ClipSampler::new(&model_cfg, cfg.sizes.clone(), cfg.latent_frames)
        .with_length_group(cfg.batch)
        .with_placement_spread(cfg.placement_spread)
        .with_physics_spread(cfg.physics_spread);
    let window = cfg.dit_window_latent_frames(model_cfg.video.frames(), model_cfg.native_fps);
    let dit_sampler = sampler.clone().with_window(window);
    let restart_sampler = dit_sampler
        .clone()
        .with_latent_frames(cfg.dit_latent_frames_at(cfg.dit_steps));
    let codec_sampler = ClipSampler::new(&model_cfg, cfg.sizes.clone(), cfg.codec_latent_frames);
    let mut run = Run {
        cfg: &cfg,
        model_cfg,
        varmap,
        model,
        tokenizer,
        sampler,
        dit_sampler,
        restart_sampler,
        codec_sampler,
        state: State {
            stage: Stage::Codec,
            step: 0,
            latent: None,
            elapsed_s: 0.0,
            history: Vec::new(),
            recipe: Some(cfg.recipe()?),
        },
        ema: None,
        exported: None,
        probe,
        sync_probe,
        cue_probe,
        dev,
    };

    let state_path = run.ckpt("state.json");
    let resumed = state_path.is_file();
    if resumed {
        let text = std::fs::read_to_string(&state_path).map_err(io(&state_path))?;
        let saved: State = serde_json::from_str(&text).map_err(|e| TrainError::BadCheckpoint {
            path: state_path.clone(),
            message: e.to_string(),
        })?;
        if let Some(saved_recipe) = &saved.recipe {
            check_same_recipe(
                saved_recipe,
                run.state.recipe.as_ref(),
                &settings_still_free(&cfg, saved.stage, saved.step),
                &state_path,
            )?;
        }
        let recipe = run.state.recipe.take();
        run.state = State { recipe, ..saved };
        // A checkpoint from before the video-decoder stage may predate its own layers
        // (the temporal mix), which are the identity until then: they keep their init.
        let before_mix = run.state.stage < Stage::VideoDecoder;
        set_vars_or_keep(
            all_vars(&run.varmap)?,
            &run.ckpt("vars.safetensors"),
            // A restart phase may add the sync probe to a run trained without it.
            &|name| {
                (before_mix && is_decoder_stage_var(name))
                    || name.starts_with(sync_probe::PREFIX)
                    || name.starts_with(sync_probe::CUE_PREFIX)
            },
            "this run folder was written by a Nano of another layout (runs from before \
             2026-12-02's progress channel have one DiT input channel fewer); train into a \
             new --out folder",
        )?;
    } else if let Some(dir) = &cfg.codecs_from {
        run.state.latent = Some(load_codecs(&run.varmap, &run.model_cfg, dir)?);
        run.state.stage = Stage::Dit;
    } else if let Some(dir) = &cfg.video_decoder_from {
        run.state.latent = Some(load_model(&run.varmap, &run.model_cfg, dir)?);
        run.state.stage = Stage::VideoDecoder;
    } else if let Some(dir) = &cfg.audio_decoder_from {
        run.state.latent = Some(load_model(&run.varmap, &run.model_cfg, dir)?);
        run.state.stage = Stage::AudioDecoder;
    }

    let started = Instant::now();
    let base_elapsed = run.state.elapsed_s;
    let mut summary = TrainSummary {
        model_dir: cfg.out_dir.join(MODEL_DIR),
        elapsed_s: 0.0,
        final_codec_loss: None,
        final_dit_loss: None,
        final_audio_decoder_loss: None,
        final_video_decoder_loss: None,
    };

    let mut session_steps = 0usize;
    'stages: for stage in [
        Stage::Codec,
        Stage::Dit,
        Stage::AudioDecoder,
        Stage::VideoDecoder,
    ] {
        let (total, base_lr, prefixes): (usize, f64, &[&str]) = match stage {
            Stage::Codec => (
                cfg.codec_steps.max(cfg.audio_codec_steps),
                cfg.codec_lr,
                &CODEC_PREFIXES,
            ),
            Stage::Dit => (
                cfg.dit_steps + cfg.dit_restart_steps,
                cfg.dit_lr,
                &DIT_STAGE_PREFIXES,
            ),
            Stage::AudioDecoder => (
                cfg.audio_decoder_steps,
                cfg.audio_decoder_lr,
                &["audio_decoder.", sync_probe::CUE_PREFIX],
            ),
            Stage::VideoDecoder => (
                cfg.video_decoder_steps,
                cfg.video_decoder_lr,
                &["video_decoder."],
            ),
        };
        let optional = matches!(stage, Stage::AudioDecoder | Stage::VideoDecoder);
        if stage < run.state.stage || (optional && total == 0) {
            continue;
        }
        // The two codecs are clipped apart: the audio codec's loss is larger, and one global
        // norm let it shrink the video codec's steps (at its ceiling: shape 50% against 65%).
        // The text probe too, so that its gradients never shrink the DiT's.
        let mut vars = vars_with_prefix(&run.varmap, prefixes)?;
        if stage < Stage::AudioDecoder {
            // The decoder stages' own layers (each in its own stage's prefixes).
            vars.retain(|(n, _)| !is_decoder_stage_var(n));
        }
        let mut opt = AdamW::new(
            vars,
            AdamWParams {
                lr: base_lr,
                ..AdamWParams::default()
            },
        )?
        .with_clip_groups(|name| {
            if is_probe_var(name) {
                2
            } else {
                usize::from(is_audio_codec_var(name))
            }
        });
        let optim_path = run.ckpt("optim.safetensors");
        if run.state.stage == stage && run.state.step > 0 && optim_path.is_file() {
            opt.load(&optim_path, &|name| name.starts_with(sync_probe::PREFIX))?;
        }
        if run.state.stage != stage {
            run.state.stage = stage;
            run.state.step = 0;
        }
        if stage == Stage::Dit && run.state.latent.is_none() {
            run.state.latent = Some(run.latent_stats()?);
        }
        run.ema = None;
        if stage >= Stage::Dit && cfg.ema_decay > 0.0 {
            // The DiT's average, updated in its stage; after it, kept as it is for the export.
            let dit_vars = vars_with_prefix(&run.varmap, &DIT_PREFIXES)?;
            let mut ema = Ema::new(dit_vars, cfg.ema_decay)?;
            let path = run.ckpt(EMA_FILE);
            if (stage > Stage::Dit || run.state.step > 0) && path.is_file() {
                ema.load(&path)?;
            }
            run.ema = Some(ema);
        }
        run.exported = None;
        if (stage == Stage::VideoDecoder && cfg.video_decoder_dit_sigma > 0.0)
            || (stage == Stage::AudioDecoder && cfg.audio_decoder_dit_sigma > 0.0)
        {
            let vb = VarBuilder::from_tensors(run.exported_weights()?, DType::F32, &run.dev);
            run.exported = Some(Nano::new(&run.model_cfg, vb)?);
        }
        let basis = dft_basis(256, &run.dev)?;
        while run.state.step < total {
            let step = run.state.step;
            let (grads, [lv, la, lp, ls]) = run.step_grads(stage, step, &basis)?;
            let lr = |name: &str| match stage {
                Stage::Codec if is_audio_codec_var(name) => {
                    lr_at(base_lr, step, cfg.warmup_steps, cfg.audio_codec_steps)
                }
                Stage::Codec => lr_at(base_lr, step, cfg.warmup_steps, cfg.codec_steps),
                Stage::Dit => cfg.dit_lr_at(step),
                Stage::AudioDecoder | Stage::VideoDecoder => lr_at(base_lr, step, 0, total),
            };
            opt.step(&grads, &lr)?;
            if let (Some(ema), Stage::Dit) = (&mut run.ema, stage) {
                ema.update(step)?;
            }
            let loss_v = lv + la;
            if !loss_v.is_finite() {
                return Err(TrainError::Invalid(format!(
                    "{stage:?} loss is {loss_v} at step {step}; lower the learning rate"
                )));
            }
            run.state.step += 1;
            run.state.history.push((stage, run.state.step, loss_v));
            let elapsed_s = base_elapsed + started.elapsed().as_secs_f64();
            run.state.elapsed_s = elapsed_s;
            match stage {
                Stage::Codec => summary.final_codec_loss = Some(loss_v),
                Stage::Dit => summary.final_dit_loss = Some(loss_v),
                Stage::AudioDecoder => summary.final_audio_decoder_loss = Some(loss_v),
                Stage::VideoDecoder => summary.final_video_decoder_loss = Some(loss_v),
            }
            progress(&Progress {
                stage,
                step: run.state.step,
                total,
                loss: loss_v,
                loss_video: lv,
                loss_audio: la,
                loss_probe: lp,
                loss_sync_probe: ls,
                elapsed_s,
            });
            session_steps += 1;
            let stopping = cfg.stop_after.is_some_and(|n| session_steps >= n);
            if run.state.step % cfg.checkpoint_every == 0 || run.state.step == total || stopping {
                if stage == Stage::Codec && run.state.step == total {
                    // The DiT stage needs the statistics of the final codec.
                    run.state.latent = Some(run.latent_stats()?);
                }
                run.save(&opt)?;
            }
            if stopping {
                break 'stages;
            }
        }
    }
    run.save_final()?;
    summary.elapsed_s = run.state.elapsed_s;
    Ok(summary)
}

impl Run<'_> {
    fn save_final(&mut self) -> Result<(), TrainError> {
        if self.state.latent.is_none() {
            self.state.latent = Some(self.latent_stats()?);
        }
        self.export()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restart_phase_extends_a_finished_run_and_leaves_its_first_phase_alone() {
        let path = Path::new("run/checkpoint/state.json");
        let first = TrainConfig {
            dit_steps: 10000,
            dit_restart_steps: 0,
            dit_restart_lr: 0.0,
            dit_restart_shape_swap: 0.0,
            ..TrainConfig::nano(PathBuf::from("run"))
        };
        let extended = TrainConfig {
            dit_restart_steps: 3000,
            dit_restart_lr: 3e-4,
            dit_restart_object_weight: Some(12.0),
            dit_restart_impact_weight: Some(0.0),
            ..first.clone()
        };
        // The loss weights change with the phase, and only if asked to.
        assert_eq!(extended.dit_object_weight_at(9999), 4.0);
        assert_eq!(extended.dit_object_weight_at(10000), 12.0);
        assert_eq!(first.dit_object_weight_at(10000), 4.0);
        assert_eq!(extended.dit_impact_weight_at(9999), 4.0);
        assert_eq!(extended.dit_impact_weight_at(10000), 0.0);
        let dropped = TrainConfig {
            dit_restart_caption_dropout: Some(0.5),
            ..extended.clone()
        };
        assert_eq!(dropped.caption_dropout_at(9999), 0.1);
        assert_eq!(dropped.caption_dropout_at(10000), 0.5);
        assert_eq!(extended.caption_dropout_at(10000), 0.1);
        assert_eq!(first.dit_impact_weight_at(10000), 4.0);
        let probed = TrainConfig {
            dit_restart_sync_probe_weight: Some(2.0),
            dit_restart_dub_share: 0.5,
            ..extended.clone()
        };
        assert!(!extended.has_sync_probe() && probed.has_sync_probe());
        assert_eq!(probed.sync_probe_weight_at(9999), 0.0);
        assert_eq!(probed.sync_probe_weight_at(10000), 2.0);
        assert_eq!(probed.dub_share_at(9999), 0.0);
        assert_eq!(probed.dub_share_at(10000), 0.5);
        assert_eq!(extended.dub_share_at(10000), 0.0);
        let long = TrainConfig {
            dit_restart_latent_frames: Some((9, 9)),
            ..extended.clone()
        };
        assert_eq!(long.dit_latent_frames_at(9999), (2, 6));
        assert_eq!(long.dit_latent_frames_at(10000), (9, 9));
        assert_eq!(extended.dit_latent_frames_at(10000), (2, 6));
        // A restart's shift warps only its own draws: at shift 1 a draw is its own level.
        let flat = TrainConfig {
            dit_restart_sigma_shift: Some(1.0),
            ..extended.clone()
        };
        assert_eq!(
            flat.shifted_sigma(9999, 0.25),
            first.shifted_sigma(9999, 0.25)
        );
        assert!((first.shifted_sigma(10000, 0.25) - 0.5).abs() < 1e-12);
        assert!((flat.shifted_sigma(10000, 0.25) - 0.25).abs() < 1e-12);
        for bad in [
            TrainConfig {
                dit_restart_sigma_shift: Some(0.0),
                ..probed.clone()
            },
            TrainConfig {
                dit_restart_dub_share: 1.5,
                ..probed.clone()
            },
            TrainConfig {
                dit_restart_latent_frames: Some((3, 2)),
                ..probed.clone()
            },
            TrainConfig {
                dit_restart_sync_probe_weight: Some(-1.0),
                ..probed.clone()
            },
            TrainConfig {
                sync_probe_weight: f32::NAN,
                ..probed.clone()
            },
        ] {
            assert!(bad.validate().is_err());
        }
        // The same rates up to the end of the first phase, then a warm restart that decays.
        for step in [0, 49, 50, 5000, 9999] {
            assert_eq!(
                first.dit_lr_at(step),
                extended.dit_lr_at(step),
                "step {step}"
            );
        }
        let end_of_first = first.dit_lr_at(9999);
        assert!((end_of_first - 6e-5).abs() < 1e-9, "{end_of_first}");
        assert!((extended.dit_lr_at(10000) - 3e-4 / 50.0).abs() < 1e-12);
        assert!((extended.dit_lr_at(10050) - 3e-4).abs() < 1e-12);
        assert!((extended.dit_lr_at(12999) - 3e-5).abs() < 1e-9);

        // A run saved before the restart phase existed, or not yet in it, may take one on;
        // a run already in it may not change it.
        let mut old = first.recipe().unwrap();
        for key in RESTART_SETTINGS
            .iter()
            .chain(&AUDIO_DECODER_SETTINGS)
            .chain(&VIDEO_DECODER_SETTINGS)
        {
            assert!(old.remove(*key).is_some());
        }
        let asked = extended.recipe().unwrap();
        let at = |stage, step| settings_still_free(&extended, stage, step);
        for (stage, step) in [(Stage::Codec, 7), (Stage::Dit, 10), (Stage::Dit, 10000)] {
            assert!(check_same_recipe(&old, Some(&asked), &at(stage, step), path).is_ok());
        }
        let err = check_same_recipe(&old, Some(&asked), &at(Stage::Dit, 10001), path)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("dit_restart_steps: checkpoint 0, now 3000"),
            "{err}"
        );
        // Anything else still has to match.
        let other = TrainConfig {
            dit_lr: 1e-3,
            ..extended.clone()
        };
        let err = check_same_recipe(
            &old,
            Some(&other.recipe().unwrap()),
            &at(Stage::Dit, 5),
            path,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("dit_lr: checkpoint"), "{err}");

        let no_rate = TrainConfig {
            dit_restart_lr: 0.0,
            ..extended.clone()
        };
        assert!(no_rate.validate().is_err());

        // The audio-decoder stage's settings are free until a checkpoint is in that stage.
        let hardened = TrainConfig {
            audio_decoder_steps: 2000,
            audio_decoder_lr: 5e-4,
            audio_decoder_noise: 0.5,
            ..extended
        };
        let asked = hardened.recipe().unwrap();
        let at = |stage, step| settings_still_free(&hardened, stage, step);
        assert!(check_same_recipe(&old, Some(&asked), &at(Stage::Dit, 13000), path).is_err());
        let old_extended = {
            let mut r = old.clone();
            r.insert("dit_restart_steps".into(), 3000.into());
            r.insert("dit_restart_lr".into(), 3e-4.into());
            r.insert("dit_restart_object_weight".into(), 12.0.into());
            r.insert("dit_restart_impact_weight".into(), 0.0.into());
            r
        };
        assert!(
            check_same_recipe(&old_extended, Some(&asked), &at(Stage::Dit, 13000), path).is_ok()
        );
        let err = check_same_recipe(
            &old_extended,
            Some(&asked),
            &at(Stage::AudioDecoder, 1),
            path,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("audio_decoder_steps: checkpoint 0, now 2000"),
            "{err}"
        );

        // The video-decoder stage's likewise, past the audio decoder's.
        let sharpened = TrainConfig {
            video_decoder_steps: 2000,
            ..hardened
        };
        let old_hardened = {
            let mut r = old_extended.clone();
            r.insert("audio_decoder_steps".into(), 2000.into());
            r.insert("audio_decoder_lr".into(), 5e-4.into());
            r.insert("audio_decoder_noise".into(), 0.5.into());
            r
        };
        let asked = sharpened.recipe().unwrap();
        let at = |stage, step| settings_still_free(&sharpened, stage, step);
        assert!(check_same_recipe(
            &old_hardened,
            Some(&asked),
            &at(Stage::AudioDecoder, 9),
            path
        )
        .is_ok());
        let err = check_same_recipe(
            &old_hardened,
            Some(&asked),
            &at(Stage::VideoDecoder, 1),
            path,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("video_decoder_steps: checkpoint 0, now 2000"),
            "{err}"
        );
    }
}
