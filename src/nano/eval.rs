//! `happyhorse eval nano`: does Nano make what it is asked for, in sync?
//!
//! For `scenes_per_split` in-distribution scenes ([`sample_train`]) and as many held-out ones
//! ([`sample_heldout`]: colour × shape × background triples the recipe never trains on), the
//! world writes a caption, [`NanoPipeline`] generates the clip from that caption alone, and the
//! [`analyze`](crate::nano::analyze) analyzers read the generated pixels and samples (never
//! latents) and compare them with the scene that was described:
//! - colour, shape and motion adherence: the analyzers' reading equals the scene's;
//! - AV sync: for scenes with ground contacts (bounce, fall; not silent), the signed distance
//!   from each visual contact to the nearest audio onset, summarised as median and p90 |error|;
//! - silence: scenes captioned silent must come out silent, scenes with sound must not.
//!
//! Everything is deterministic in [`EvalConfig::seed`] (scenes, wordings, generation seeds).

use std::fmt;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::Device;
use serde::{Deserialize, Serialize};

use crate::engine::pipelines::nano::{NanoError, NanoPipeline};
use crate::nano::analyze::{analyze_clip, AnalyzeError};
use crate::nano::world::{
    caption, ground_truth, sample_heldout, sample_train, Ambience, Background, Color, Frame,
    Motion, Scene, Shape, SplitMix64,
};

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    // Boxed: `NanoError` is large and every `Result` here would carry its size.
    #[error("loading the model: {0}")]
    Load(#[source] Box<NanoError>),
    #[error("generating {caption:?}: {source}")]
    Generate {
        caption: String,
        source: Box<NanoError>,
    },
    #[error("analysing {caption:?}: {source}")]
    Analyze {
        caption: String,
        source: AnalyzeError,
    },
    #[error("eval settings: {0}")]
    Invalid(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("serialising the report: {0}")]
    Json(#[from] serde_json::Error),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalConfig {
    /// `config.json`, `tokenizer.json` and `model.safetensors`.
    pub model_dir: PathBuf,
    /// Scenes per split (in-distribution and held-out).
    pub scenes_per_split: usize,
    pub seed: u64,
    pub width: u32,
    pub height: u32,
    /// Output frame rate; also the unit of the sync target (one frame).
    pub fps: u32,
    pub duration_s: f32,
    /// Overrides the model's default sampler steps.
    pub steps: Option<usize>,
}

impl EvalConfig {
    /// The setting: 4 s 16:9 clips at 24 fps, 20 scenes per split.
    pub fn new(model_dir: PathBuf) -> Self {
        Self {
            model_dir,
            scenes_per_split: 20,
            seed: 0,
            width: 96,
            height: 56,
            fps: 24,
            duration_s: 4.0,
            steps: None,
        }
    }

    /// One frame at the output rate, in ms.
    pub fn frame_ms(&self) -> f32 {
        1000.0 / self.fps.max(1) as f32
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    InDistribution,
    HeldOut,
}

impl Split {
    pub fn name(self) -> &'static str {
        match self {
            Split::InDistribution => "in-distribution",
            Split::HeldOut => "held-out",
        }
    }

    fn tag(self) -> u64 {
        match self {
            Split::InDistribution => 0x1D15_0000,
            Split::HeldOut => 0x4E1D_0000,
        }
    }
}

/// What one generated clip was asked for and what the analyzers saw in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClipRecord {
    pub split: Split,
    pub index: usize,
    pub scene_seed: u64,
    pub caption: String,
    pub want_color: Color,
    pub want_shape: Shape,
    pub want_motion: Motion,
    pub want_background: Background,
    /// The caption asks for silence.
    pub want_silent: bool,
    /// The world's own render of the scene is audible.
    pub want_sound: bool,
    /// Ground contacts the world's render of the scene has.
    pub want_contacts: usize,
    pub got_color: Option<Color>,
    pub got_shape: Option<Shape>,
    pub got_motion: Option<Motion>,
    pub got_background: Background,
    pub got_silent: bool,
    pub got_loudness_dbfs: f32,
    /// Visual contacts seen in the generated picture.
    pub visual_contacts: usize,
    /// Signed visual-contact-to-onset errors (positive: sound late); only for scenes whose
    /// caption implies contacts with sound.
    pub sync_errors_ms: Vec<f32>,
    /// Visual contacts with no audio onset anywhere in the clip (same scenes).
    pub sync_unmatched: usize,
    pub generate_s: f64,
}

impl ClipRecord {
    pub fn color_ok(&self) -> bool {
        self.got_color == Some(self.want_color)
    }
    pub fn shape_ok(&self) -> bool {
        self.got_shape == Some(self.want_shape)
    }
    pub fn motion_ok(&self) -> bool {
        self.got_motion == Some(self.want_motion)
    }
    /// Sync is judged where the scene has contacts that make a sound.
    fn sync_judged(&self) -> bool {
        self.want_sound && matches!(self.want_motion, Motion::Bounce | Motion::Fall)
    }
}

/// Percentages over one split, or over everything.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitReport {
    /// `None`: all splits together.
    pub split: Option<Split>,
    pub clips: usize,
    pub color_pct: f32,
    pub shape_pct: f32,
    pub motion_pct: f32,
    /// Mean of colour, shape and motion adherence: the adherence figure.
    pub adherence_pct: f32,
    /// Colour, shape and motion all right in the same clip.
    pub all_three_pct: f32,
    pub background_pct: f32,
    /// Clips whose caption asked for silence, and the share that came out silent.
    pub silent_asked: usize,
    pub silent_ok_pct: Option<f32>,
    /// Clips whose scene is audible, and the share that came out audible.
    pub sound_expected: usize,
    pub sound_ok_pct: Option<f32>,
    /// Sync over clips with sounding contacts: measured contacts, median and p90 |error|.
    pub sync_contacts: usize,
    pub sync_median_ms: Option<f32>,
    pub sync_p90_ms: Option<f32>,
    /// Visual contacts with no onset at all, in those clips.
    pub sync_unmatched: usize,
}

impl SplitReport {
    fn of(split: Option<Split>, clips: &[&ClipRecord]) -> Self {
        let n = clips.len();
        let pct = |k: usize, of: usize| 100.0 * k as f32 / of.max(1) as f32;
        let count = |f: &dyn Fn(&ClipRecord) -> bool| clips.iter().filter(|c| f(c)).count();
        let (color, shape, motion) = (
            count(&|c| c.color_ok()),
            count(&|c| c.shape_ok()),
            count(&|c| c.motion_ok()),
        );
        let all = count(&|c| c.color_ok() && c.shape_ok() && c.motion_ok());
        let bg = count(&|c| c.got_background == c.want_background);
        let silent_asked = count(&|c| c.want_silent);
        let silent_ok = count(&|c| c.want_silent && c.got_silent);
        let sound_expected = count(&|c| c.want_sound);
        let sound_ok = count(&|c| c.want_sound && !c.got_silent);
        let mut abs: Vec<f32> = clips
            .iter()
            .filter(|c| c.sync_judged())
            .flat_map(|c| c.sync_errors_ms.iter().map(|e| e.abs()))
            .collect();
        abs.sort_by(f32::total_cmp);
        let unmatched = clips
            .iter()
            .filter(|c| c.sync_judged())
            .map(|c| c.sync_unmatched)
            .sum();
        Self {
            split,
            clips: n,
            color_pct: pct(color, n),
            shape_pct: pct(shape, n),
            motion_pct: pct(motion, n),
            adherence_pct: (pct(color, n) + pct(shape, n) + pct(motion, n)) / 3.0,
            all_three_pct: pct(all, n),
            background_pct: pct(bg, n),
            silent_asked,
            silent_ok_pct: (silent_asked > 0).then(|| pct(silent_ok, silent_asked)),
            sound_expected,
            sound_ok_pct: (sound_expected > 0).then(|| pct(sound_ok, sound_expected)),
            sync_contacts: abs.len(),
            sync_median_ms: percentile(&abs, 0.5),
            sync_p90_ms: percentile(&abs, 0.9),
            sync_unmatched: unmatched,
        }
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f32], q: f32) -> Option<f32> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f32).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    pub config: EvalConfig,
    /// Sampler steps and guided steps actually used.
    pub steps: usize,
    pub cfg_steps: Option<usize>,
    /// The sync target: one frame at the output rate.
    pub frame_ms: f32,
    /// In-distribution, held-out, then all clips together.
    pub splits: Vec<SplitReport>,
    pub clips: Vec<ClipRecord>,
    pub wall_s: f64,
    pub mean_generate_s: f64,
}

impl EvalReport {
    pub fn split(&self, split: Split) -> Option<&SplitReport> {
        self.splits.iter().find(|s| s.split == Some(split))
    }

    pub fn to_json(&self) -> Result<String, EvalError> {
        Ok(serde_json::to_string_pretty(self)?)
    }

    pub fn write_json(&self, path: &Path) -> Result<(), EvalError> {
        std::fs::write(path, self.to_json()?).map_err(|source| EvalError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

impl fmt::Display for EvalReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        writeln!(
            f,
            "Nano eval: {}, {} scenes per split, {}x{} @ {} fps, {:.1} s, {} steps (CFG on {}), seed {}",
            c.model_dir.display(),
            c.scenes_per_split,
            c.width,
            c.height,
            c.fps,
            c.duration_s,
            self.steps,
            self.cfg_steps
                .map_or_else(|| "all".to_string(), |n| n.min(self.steps).to_string()),
            c.seed
        )?;
        let opt =
            |v: Option<f32>, unit: &str| v.map_or_else(|| "-".into(), |v| format!("{v:.1}{unit}"));
        writeln!(
            f,
            "{:<16} {:>5} {:>7} {:>7} {:>7} {:>9} {:>7} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "split",
            "clips",
            "colour",
            "shape",
            "motion",
            "adherence",
            "all-3",
            "bg",
            "silence",
            "sound",
            "sync med",
            "sync p90",
            "contacts"
        )?;
        for s in &self.splits {
            writeln!(
                f,
                "{:<16} {:>5} {:>6.1}% {:>6.1}% {:>6.1}% {:>8.1}% {:>6.1}% {:>6.1}% {:>9} {:>9} {:>9} {:>9} {:>5} ({} unmatched)",
                s.split.map_or("all", Split::name),
                s.clips,
                s.color_pct,
                s.shape_pct,
                s.motion_pct,
                s.adherence_pct,
                s.all_three_pct,
                s.background_pct,
                format!("{}/{}", opt(s.silent_ok_pct, "%"), s.silent_asked),
                format!("{}/{}", opt(s.sound_ok_pct, "%"), s.sound_expected),
                opt(s.sync_median_ms, "ms"),
                opt(s.sync_p90_ms, "ms"),
                s.sync_contacts,
                s.sync_unmatched
            )?;
        }
        writeln!(
            f,
            "targets: adherence >= 90% in distribution, >= 75% held-out; sync p90 <= {:.1} ms (one frame)",
            self.frame_ms
        )?;
        write!(
            f,
            "{} clips in {:.1} s ({:.2} s per generation)",
            self.clips.len(),
            self.wall_s,
            self.mean_generate_s
        )
    }
}

/// Progress after each clip.
#[derive(Debug, Clone)]
pub struct EvalProgress<'a> {
    pub done: usize,
    pub total: usize,
    pub clip: &'a ClipRecord,
}

fn mix(x: u64) -> u64 {
    SplitMix64::new(x).next_u64()
}

/// The `i`-th scene of `split` for `seed`, and the caption wording to use.
pub fn eval_scene(split: Split, seed: u64, i: usize) -> (u64, Scene, u64) {
    let scene_seed = mix(seed ^ mix(split.tag() ^ i as u64));
    let scene = match split {
        Split::InDistribution => sample_train(scene_seed),
        Split::HeldOut => sample_heldout(scene_seed),
    };
    (scene_seed, scene, mix(scene_seed ^ 0xCA97))
}

/// Generates and measures every eval clip; `progress` sees each one.
pub fn run(
    cfg: EvalConfig,
    progress: &mut dyn FnMut(&EvalProgress),
) -> Result<EvalReport, EvalError> {
    if cfg.scenes_per_split == 0 || cfg.fps == 0 || cfg.duration_s.is_nan() || cfg.duration_s <= 0.0
    {
        return Err(EvalError::Invalid(format!(
            "scenes_per_split {}, fps {} and duration {} s must all be positive",
            cfg.scenes_per_split, cfg.fps, cfg.duration_s
        )));
    }
    let started = Instant::now();
    let mut pipe = NanoPipeline::load(&cfg.model_dir, &Device::Cpu)
        .map_err(|e| EvalError::Load(Box::new(e)))?;
    if let Some(steps) = cfg.steps {
        pipe.sampler.steps = steps;
    }
    let total = 2 * cfg.scenes_per_split;
    let mut clips = Vec::with_capacity(total);
    for split in [Split::InDistribution, Split::HeldOut] {
        for i in 0..cfg.scenes_per_split {
            let record = measure(&pipe, &cfg, split, i)?;
            clips.push(record);
            if let Some(clip) = clips.last() {
                progress(&EvalProgress {
                    done: clips.len(),
                    total,
                    clip,
                });
            }
        }
    }
    let of = |s: Option<Split>| {
        let sel: Vec<&ClipRecord> = clips
            .iter()
            .filter(|c| s.is_none_or(|s| c.split == s))
            .collect();
        SplitReport::of(s, &sel)
    };
    let splits = vec![
        of(Some(Split::InDistribution)),
        of(Some(Split::HeldOut)),
        of(None),
    ];
    let mean_generate_s =
        clips.iter().map(|c| c.generate_s).sum::<f64>() / clips.len().max(1) as f64;
    Ok(EvalReport {
        steps: pipe.sampler.steps,
        cfg_steps: pipe.sampler.cfg_steps,
        frame_ms: cfg.frame_ms(),
        splits,
        clips,
        wall_s: started.elapsed().as_secs_f64(),
        mean_generate_s,
        config: cfg,
    })
}

fn measure(
    pipe: &NanoPipeline,
    cfg: &EvalConfig,
    split: Split,
    i: usize,
) -> Result<ClipRecord, EvalError> {
    let (scene_seed, scene, variant) = eval_scene(split, cfg.seed, i);
    let text = caption(&scene, variant);
    let t0 = Instant::now();
    let gen_seed = mix(scene_seed ^ 0x6E4E);
    let clip = pipe
        .generate(
            &text,
            cfg.width,
            cfg.height,
            cfg.fps,
            cfg.duration_s,
            gen_seed,
            mix(gen_seed),
            1.0,
            &mut |_, _| ControlFlow::Continue(()),
        )
        .map_err(|source| EvalError::Generate {
            caption: text.clone(),
            source: Box::new(source),
        })?;
    let generate_s = t0.elapsed().as_secs_f64();
    let (w, h) = (clip.width as usize, clip.height as usize);
    let frames: Vec<Frame> = clip
        .frames_rgb
        .chunks_exact((w * h * 3).max(1))
        .map(|rgb| Frame {
            width: w,
            height: h,
            rgb: rgb.to_vec(),
        })
        .collect();
    // The background is left for the analyzer to estimate: it is part of what is judged.
    let a = analyze_clip(&frames, cfg.fps as f32, &clip.audio, clip.sample_rate, None).map_err(
        |source| EvalError::Analyze {
            caption: text.clone(),
            source,
        },
    )?;
    let truth = ground_truth(&scene, w, h, cfg.fps as f32, cfg.duration_s);
    // The world renders silence for silent scenes and for still scenes without ambience.
    let quiet = scene.silent || (scene.ambience == Ambience::None && scene.motion == Motion::Still);
    let mut record = ClipRecord {
        split,
        index: i,
        scene_seed,
        caption: text,
        want_color: scene.object.color,
        want_shape: scene.object.shape,
        want_motion: scene.motion,
        want_background: scene.background,
        want_silent: scene.silent,
        want_sound: !quiet,
        want_contacts: truth.impacts.len(),
        got_color: a.video.color,
        got_shape: a.video.shape,
        got_motion: a.video.motion,
        got_background: a.video.background,
        got_silent: a.silent,
        got_loudness_dbfs: a.loudness_dbfs,
        visual_contacts: a.video.impacts_s.len(),
        sync_errors_ms: Vec::new(),
        sync_unmatched: 0,
        generate_s,
    };
    if record.sync_judged() {
        record.sync_errors_ms = a.sync.errors_ms;
        record.sync_unmatched = a.sync.unmatched;
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f32> = (1..=10).map(|x| x as f32).collect();
        assert_eq!(percentile(&v, 0.5), Some(5.0));
        assert_eq!(percentile(&v, 0.9), Some(9.0));
        assert_eq!(percentile(&[3.0], 0.9), Some(3.0));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn eval_scenes_respect_the_split() {
        for i in 0..50 {
            let (_, s, _) = eval_scene(Split::InDistribution, 7, i);
            assert!(!crate::nano::world::is_held_out(&s));
            let (_, s, _) = eval_scene(Split::HeldOut, 7, i);
            assert!(crate::nano::world::is_held_out(&s));
        }
        assert_eq!(
            eval_scene(Split::HeldOut, 7, 3).0,
            eval_scene(Split::HeldOut, 7, 3).0
        );
    }
}
