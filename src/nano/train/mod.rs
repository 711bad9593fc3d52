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

mod adamw;
mod data;
mod ema;
mod probe;
mod sync_probe;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle::{backprop::GradStore, DType, Device, Tensor, Var};
use candle_core as candle;
use candle_nn::{VarBuilder, VarMap};
use serde::{Deserialize, Serialize};

pub use adamw::{AdamW, AdamWParams};
pub use data::{build_tokenizer, Clip, ClipSampler};
pub use ema::Ema;
pub use probe::TextProbe;
pub use sync_probe::SyncProbe;

use crate::engine::models::nano::{
    self, LatentStats, Nano, NanoConfig, NanoTokenizer, VideoCodecConfig,
};
use crate::engine::pipelines::magihuman::SeededNoise;
use crate::engine::registry::{Registry, MANIFEST_FILE};
use crate::nano::world::{is_held_out, Scene, Shape};

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

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Checkpoints go to `out_dir/checkpoint/`, the loadable model to `out_dir/model/`.
    pub out_dir: PathBuf,
    pub seed: u64,
    /// Use [`NanoConfig::tiny_for_tests`] instead of the shipped size.
    pub tiny: bool,
    /// Steps of the video codec. The codec stage runs `max(codec_steps, audio_codec_steps)`
    /// steps, each codec training (with its own learning-rate schedule) for its own count.
    /// The recipe's 3600 (1200 before 2026-12-03): the codec's loss was still falling at
    /// 1200, and at 3600 the world's squares come back filling 0.91 of their box against
    /// 0.88, triangles tapering to 0.46 against 0.59 (`examples/nano_detail`, σ0 = 0).
    pub codec_steps: usize,
    /// Steps of the audio codec: a small MLP, ~50 ms a step against ~1 s for the video
    /// codec, and far from done after the video codec's count (at 1200 steps the hits' attacks
    /// come back 40 ms wide and most onsets are lost; at 4800 all are found).
    #[serde(default)]
    pub audio_codec_steps: usize,
    pub dit_steps: usize,
    /// Steps of a second DiT phase after `dit_steps`: a warm restart of the learning-rate
    /// schedule at `dit_restart_lr`, again warmed up and cosine-decayed to 10%. The first
    /// phase is untouched by it, so a finished run is extended by rerunning it with these set.
    /// Not in the recipe: 3000 steps at 3e-4 after the recipe's 10000 (32 min) scored 60.0% /
    /// 58.9% adherence against 57.2% / 58.3% (`eval nano`, 60 + 60 scenes), within the noise.
    #[serde(default)]
    pub dit_restart_steps: usize,
    /// Peak learning rate of the restart phase.
    #[serde(default)]
    pub dit_restart_lr: f64,
    /// `dit_object_weight` in the restart phase; unset: the first phase's. Not in the recipe:
    /// 3000 steps at lr 3e-4 and weight 12 after the recipe's 10000 scored 74.4% / 73.9%
    /// adherence against 70.6% / 71.1%, but sync p90 334 / 303 ms against 288 / 253
    /// (`eval nano`, 60 + 60 scenes; the same trade at `--seed 1`), and so did the same
    /// restart at the first phase's weight (73.9% / 73.3%, 320 / 337 ms).
    #[serde(default)]
    pub dit_restart_object_weight: Option<f32>,
    /// `impact_weight` in the restart phase's DiT loss; unset: the first phase's.
    #[serde(default)]
    pub dit_restart_impact_weight: Option<f32>,
    /// `caption_dropout` in the restart phase; unset: the first phase's. Without its
    /// caption a clip's sound has only the picture to say what to sound and when. Not in
    /// the recipe: 3000 steps at lr 3e-4 and 0.5 after a full DiT stage at
    /// `dit_decoupled_noise` 0.5 left the sound as deaf to the world's own picture as before
    /// (`eval nano --source dub`: 107 / 274 ms against 109 / 367 for another clip's onsets).
    #[serde(default)]
    pub dit_restart_caption_dropout: Option<f64>,
    /// Steps of a last stage that trains the audio decoder alone on the frozen encoder's
    /// latents plus noise of the size of the DiT's errors, so that a near miss decodes as
    /// what it misses (a "silent" latent as silence). The encoder, the latent statistics and
    /// the DiT are untouched by it: a finished run is extended by rerunning it with this set.
    #[serde(default)]
    pub audio_decoder_steps: usize,
    /// Learning rate of that stage (cosine, no warmup: it starts from a trained decoder).
    #[serde(default)]
    pub audio_decoder_lr: f64,
    /// Largest latent noise of that stage, in units of each channel's latent std (the DiT's
    /// space): each clip draws its level uniformly from 0 to this.
    #[serde(default)]
    pub audio_decoder_noise: f32,
    /// Steps of a stage after that one that trains the video decoder alone the same way: the
    /// frozen encoder's latents plus noise, decoded to the clip's frames (objects weighed up
    /// as in the codec stage). A finished run is extended by rerunning it with this set.
    /// Not in the recipe: 2000 steps at noise 0.5 scored 72.2% / 68.9% adherence against
    /// 70.6% / 71.1%, squares still 0 of 39 (`eval nano`, 60 + 60 scenes): the DiT's squares
    /// are ball-shaped latents, which no decoder reads as squares.
    #[serde(default)]
    pub video_decoder_steps: usize,
    /// Learning rate of that stage (cosine, no warmup).
    #[serde(default)]
    pub video_decoder_lr: f64,
    /// Largest latent noise of that stage, in latent stds, drawn per clip from 0 to this.
    #[serde(default)]
    pub video_decoder_noise: f32,
    /// The video decoder reads each latent frame's neighbours
    /// ([`VideoCodecConfig::temporal_mix`]):
    /// its mixing layers start as the identity and train in the video-decoder stage only,
    /// so the stages before it are the same with or without them.
    #[serde(default)]
    pub video_decoder_temporal_mix: bool,
    /// The video decoder's two finest levels end in a residual block that reads the latent
    /// upsampled to them ([`VideoCodecConfig::refine`]), so the shape code reaches the
    /// pixels of a square's corners directly. Trained from the identity in the
    /// video-decoder stage only, as the temporal mix.
    #[serde(default)]
    pub video_decoder_refine: bool,
    /// When positive, the video-decoder stage decodes the DiT's one-step estimate of each
    /// clip instead of the encoder's noised latent: the clip's latents noised to a level
    /// drawn from `[0, this]`, the velocity taken with the caption, `x - sigma v`. That
    /// estimate is blurred where the DiT is unsure, as its samples are, while a shape code
    /// in it is right; paired with the clip's true frames, the decoder learns to draw what
    /// the DiT means rather than what it blurs. 0: off, the recipe.
    #[serde(default)]
    pub video_decoder_dit_sigma: f32,
    /// The share of the video-decoder stage's clips whose latent, but for the shape code,
    /// comes from the same scene with another shape (a ball's latent with a square's code),
    /// paired with the frames the code names. The decoder then has to draw the shape the
    /// code says where the other channels say another: what it sees when the DiT's code is
    /// right and its silhouette a blob. With `video_decoder_dit_sigma` both the latent and
    /// the code are the DiT's estimates at one level. Needs `codec_shape_weight`; 0: off.
    #[serde(default)]
    pub video_decoder_code_swap: f32,
    /// The video-decoder stage's loss is the (object-weighted) mean absolute error instead of
    /// the squared one: where the latent leaves an edge uncertain, L2 is least for a blur
    /// between the two sides and L1 for one side, so corners stay sharp. false: L2, the recipe.
    #[serde(default)]
    pub video_decoder_l1: bool,
    /// Clips per optimizer step.
    pub batch: usize,
    /// Threads that render and differentiate the clips of a step at once. At Nano's sizes
    /// candle's own threading gains nothing on a 2-core CPU (20 DiT steps: 21.5 s on 2
    /// threads, 22.0 s on 1); a worker per core does (30 DiT steps of 2 clips: 21 s, against
    /// 32 s before). Any count gives the same weights: clips have their own noise and their
    /// gradients are summed in clip order.
    #[serde(default = "one")]
    pub workers: usize,
    pub codec_lr: f64,
    pub dit_lr: f64,
    pub warmup_steps: usize,
    /// Latent frames per DiT training clip, drawn uniformly from this range (inclusive).
    pub latent_frames: (usize, usize),
    /// Latent frames per codec training clip. Both codecs work on one latent frame's window
    /// at a time (4 stacked frames; two audio hops), so short clips teach them as much per
    /// window as long ones at a fraction of the cost.
    pub codec_latent_frames: (usize, usize),
    /// Training frame sizes `(width, height)`, cycled through.
    pub sizes: Vec<(u32, u32)>,
    /// Reuse the data of the first `n` steps over and over (smoke tests); `None` for fresh data.
    pub data_cycle: Option<usize>,
    pub checkpoint_every: usize,
    /// Scenes whose captions make the vocabulary.
    pub vocab_scenes: u64,
    /// Fraction of captions replaced by the empty prompt.
    pub caption_dropout: f64,
    /// σ shift of the training distribution; the exported sampler uses the same. 3 puts
    /// most steps at high noise, where colour, layout and motion are decided: a run at 1
    /// scored 26.7% / 18.3% adherence after 3000 DiT steps (colour 40 / 25%), against
    /// 31.7% / 33.3% at 3 (`eval nano`, guidance 3 on the first 2 of 8 steps).
    pub sigma_shift: f64,
    /// How far the DiT's training clips spread their objects' starting places across the
    /// range the world allows, from 1 (the world's own: anywhere the path fits) to 0 (the
    /// middle of that range). The codecs and the latent statistics always see the world's
    /// own spread. At 1 the DiT painted each object as the mean over its possible places (a
    /// wide smear) and sampling never committed to one; at 0 it draws one object. Measured
    /// over the full DiT stage from the same codecs (`eval nano`, 60 + 60 scenes): 57.2% /
    /// 58.3% adherence at 0 against 50.6% / 57.2% at 1, motion 51.7% against 37.5%, the
    /// asked background 99.2% against 83.3%, 185 visible impacts matched to a sound against
    /// 69; 0.25 was within the noise of 1. The recipe uses 0; the serde default stays 1, what
    /// checkpoints written before the setting existed were trained with.
    #[serde(default = "one_f32")]
    pub placement_spread: f32,
    /// The same for the timing of the DiT's training clips' motion ([`Scene::squeeze_physics`](crate::nano::world::Scene::squeeze_physics)):
    /// drop height, first contact, restitution, slide span, orbit period and start angle
    /// (and, below 1, the orbit's direction). At 1 a bounce of the asked size has its
    /// contacts anywhere in about half a second, and the DiT draws one blob stretched along
    /// the bounce's path. The recipe's 0 since 2026-12-03: with the progress channel and the
    /// 3600-step video codec, the full recipe at 0 scored 72.8% / 77.2% adherence (seed 0)
    /// and 74.4% / 67.8% (seed 1) against 70.6% / 71.1% and 63.9% / 65.6% for the weights
    /// before (1200-step codec, spread 1); slides read as slides 26 of 33 times against 18
    /// (`eval nano`, 60 + 60 scenes). Sync is at chance either way. (Before the progress
    /// channel, 0 alone was within the noise: 60.6% / 57.8% against 57.2% / 58.3%.)
    #[serde(default = "one_f32")]
    pub physics_spread: f32,
    /// Extra loss weight on the objects' pixels in the codec stage: the subjects cover a few
    /// percent of the frame, and a plain mean spends the codec on background texture. Weight
    /// is `1 + codec_object_weight` there, normalised to mean 1.
    pub codec_object_weight: f32,
    /// Weight of the codec stage's shape code: an MSE pulling the video encoder's first
    /// three latent channels to [`Clip::shape_cells`], the share of each latent cell a ball,
    /// a square or a triangle covers. The DiT learns colour (a strong latent signal) from
    /// the caption and shape (a few corner cells' subtle channels) hardly at all; with the
    /// shape code, "square" is a whole latent channel over the object's cells, as loud as
    /// its colour. 0: no code; the recipe: 10 (since 2026-12-03; over two eval seeds of 60 +
    /// 60 scenes, adherence 76.4% / 75.3% against 73.6% / 72.5% without it).
    ///
    /// Measured 2026-12-03 at weight 10 (the full recipe otherwise, `examples/nano_detail`):
    /// the encoder's code names the shape of 677 of 685 object cells and the codec's own
    /// shapes are as sharp as without it; the DiT learns the code (at DiT step 4800 its
    /// samples from pure noise name the asked shape 24 of 24 times), but the decoder does not
    /// draw from it: the same clip with a ball's latent and a square's code decodes to a
    /// ball, 0 of 8, also after a video-decoder stage of 1000 steps at noise 0.5, or at
    /// noise 2 with the code's channels kept clean, and the DiT's squares stay round (0 of
    /// 8). With a code, the video-decoder stage leaves its channels clean.
    #[serde(default)]
    pub codec_shape_weight: f32,
    /// The same on the latent cells the objects cover, in the DiT stage.
    pub dit_object_weight: f32,
    /// Initial gain of the DiT's query and key norms (its zero-centred weights start at
    /// `gain - 1`). Normalised queries and keys cap an attention logit at
    /// `sqrt(head_dim) * gain^2`: 5.7 at Nano's head dim 32 and gain 1, under the ln 600 = 6.4
    /// it takes to pick one cell of a clip's ~600 tokens; the committed weights' gains had
    /// moved only to 0.97-1.40 after 10000 steps. 1: the recipe.
    #[serde(default = "one_f32")]
    pub dit_qk_norm_gain: f32,
    /// Every DiT token also reads its time as sines and cosines of periods 0.5, 1 and 2 s
    /// ([`NanoConfig::clock`]), so that an audio frame knows when it is to within its 125 ms
    /// (the saturating time channel cannot past the first second). false: the recipe.
    /// Measured on the committed codecs (models/nano/README.md): one hit per contact at the
    /// trained contact times. With periods up to 16 s, 2 s clips moved as asked (motion 92% /
    /// 90% against 62% / 82%) but 4 s clips read slow channels never trained (motion
    /// 52-65%); with the periodic 0.5-2 s clock and the temporal-mix video decoder, 4 s
    /// clips scored 77.0% / 74.7% adherence over two seeds against the committed 76.4% /
    /// 75.3%, and a fall's hit comes again 2 s later in a third of falls: within the noise,
    /// hence not in the recipe before a run on clips past 2.5 s is measured.
    #[serde(default)]
    pub dit_clock: bool,
    /// Share of the DiT's training clips whose audio takes a noise level of its own, drawn
    /// like the video's but apart from it (the rest share one level, as sampling does). The
    /// committed DiT's sound does not depend on its picture: with the audio noise fixed,
    /// three video seeds gave one soundtrack (loudness envelopes correlated 0.99), and its
    /// hits match its contacts no better than another clip's hits do. At one shared level
    /// the picture is as noisy as the sound and never tells it when the hits come; this
    /// trains it with the picture cleaner than the sound (and the reverse). Not in the
    /// recipe (0): the full DiT stage at 0.5 from the same codecs scored 73.3% / 70.0%
    /// adherence against 70.6% / 71.1% (`eval nano --scenes 60`), and its sound still did
    /// not follow the picture, not even the world's own picture given clean (`--source
    /// dub`: 94 / 221 ms sync median / p90 against 103 / 363 for another clip's onsets;
    /// three video seeds, one audio seed, sound drawn after the picture: envelopes
    /// correlated 1.00).
    #[serde(default)]
    pub dit_decoupled_noise: f32,
    /// Weight of the [`TextProbe`]'s loss in the DiT stage: linear heads read the scene's
    /// attributes from the pooled caption feature, so the text encoder groups the words the
    /// captions vary ("box", "cube", "block") by what they name. 0: no probe. The recipe's 1,
    /// measured over the full DiT stage from the same codecs (`eval nano`, 60 + 60 scenes):
    /// 68.3% / 66.1% adherence against 57.2% / 58.3% without it, shape 48.3% / 50.0% against
    /// 31.7% / 35.0%, motion 60.0% / 58.3% against 50.0% / 53.3%; sync p90 334 / 338 ms
    /// against 263 / 304.
    #[serde(default)]
    pub text_probe_weight: f32,
    /// Weight of the [`SyncProbe`]'s loss in the DiT stage: a linear read-out, from the
    /// audio tokens halfway up the DiT, of which audio frames hold a hit, so the audio tokens
    /// carry when the hits come (from the picture, where their own input is noise). 0: no
    /// probe (the recipe). Measured 2026-12-03 in restarts of 3000 steps (weights 1, 2, 4,
    /// with none, half or all of the clips dubs): with the sound at pure noise the probe finds
    /// the hits from the world's clean picture no better than from pure noise (AUC 0.45-0.48
    /// either way, 0.98 from a half-noised sound), and the dub eval stays at chance
    /// (`examples/nano_sync_probe.rs`, models/nano/README.md).
    #[serde(default)]
    pub sync_probe_weight: f32,
    /// `sync_probe_weight` in the restart phase; unset: the first phase's.
    #[serde(default)]
    pub dit_restart_sync_probe_weight: Option<f32>,
    /// Share of the restart phase's clips trained as dubs: the picture less noisy than the
    /// sound (its noise level the sound's times a uniform draw), the situation of a sound
    /// drawn for a picture that is already there. 0: none.
    #[serde(default)]
    pub dit_restart_dub_share: f64,
    /// `sigma_shift` of the restart phase's training noise levels; unset: the first phase's.
    /// The sampler keeps the first phase's. A lower shift draws more low noise levels, where
    /// the fine detail (a square's corners) is learned.
    #[serde(default)]
    pub dit_restart_sigma_shift: Option<f64>,
    /// Extra loss weight on audio latent frames holding a contact's hit, in both stages.
    pub impact_weight: f32,
    /// Weight of the audio codec's waveform MSE.
    #[serde(default = "one_f32")]
    pub codec_waveform_weight: f32,
    /// Weight of the audio codec's log-spectrum L1 ([`spectral_l1`]).
    #[serde(default = "one_f32")]
    pub codec_spectral_weight: f32,
    /// Weight of the codec's log-energy envelope loss ([`envelope_l1`]), which teaches it the
    /// hits' attacks and true silence.
    pub codec_envelope_weight: f32,
    /// Weight of the envelope's frame-to-frame rise in the same loss: steep attacks in the
    /// right frame.
    pub codec_onset_weight: f32,
    /// End this session after this many steps (checkpointed; rerun to resume).
    pub stop_after: Option<usize>,
    /// Decay of the average of the DiT stage's weights that the model exports; 0 exports
    /// the last step's weights.
    #[serde(default)]
    pub ema_decay: f64,
    /// Start a new run from the codecs (weights and latent statistics) of this model folder
    /// and train the DiT stage only: `train nano --codecs-from models/nano`.
    #[serde(default)]
    pub codecs_from: Option<PathBuf>,
    /// Start a new run from every weight of this finished model folder and train the
    /// video-decoder stage only (`--video-decoder-steps`): `train nano --video-decoder-from
    /// models/nano`. The stage reads nothing of the run before it but these weights and the
    /// seed, so this is the stage a full run with the same settings ends with.
    #[serde(default)]
    pub video_decoder_from: Option<PathBuf>,
}

impl TrainConfig {
    /// The recipe behind the committed `models/nano/` weights, 1 h 51 min on the 2-core CPU
    /// of the committed run, about 2 h 50 min on the slower one of the first runs (measured
    /// step times in `models/nano/TRAINING_LOG.txt`):
    /// - codecs: the video codec 3600 steps of 2 clips of 5-9 frames (~0.65 s/step, 39 min;
    ///   ~1 s/step on the first runs' CPU), the audio codec beside it for 12000 steps
    ///   (~20 ms/step once alone, 3 min), each clipped and scheduled on its own;
    /// - DiT: 10000 steps of 2 clips of 2-6 latent frames (5-21 frames, 0.6-2.6 s; the 4 s
    ///   default clip is 9; a step's clips share a length), ~0.64 s/step with a worker per
    ///   core, about 106 min (~0.40 s/step, 67 min, on the CPU of the committed run); the
    ///   timing of every clip's motion at the middle of the world's ranges
    ///   (`physics_spread` 0: one trajectory per motion, size and camera); the
    ///   text probe trains beside it; the export is the EMA of its weights;
    /// - the audio decoder alone 6000 steps (~13 ms/step, under 2 min) on the frozen
    ///   encoder's latents plus up to half a latent std of noise: the DiT's "silent" audio
    ///   latents sat near silence's and decoded to a hum at -45 to -56 dBFS; after this stage
    ///   they decode to silence and loud clips keep their level (measured in the README).
    ///
    /// The codec stage weighs the objects' pixels up 9x and the audio frames of each hit 5x,
    /// and its audio loss reads the loudness envelope in log energy (level and rise), which
    /// is what makes silence silent and keeps the hits' attacks; the DiT weighs the objects'
    /// latent cells and the hits' audio frames up 5x: without that, the few percent of the
    /// frame and of the soundtrack that the prompt is about drown in background texture.
    ///
    /// One frame size, 96x56 (16:9 at stride 8): the clips the product generates by default,
    /// so the little compute there is goes to the layout that is asked for most.
    pub fn nano(out_dir: PathBuf) -> Self {
        Self {
            out_dir,
            seed: 5,
            tiny: false,
            codec_steps: 3600,
            audio_codec_steps: 12000,
            dit_steps: 10000,
            dit_restart_steps: 0,
            dit_restart_lr: 0.0,
            dit_restart_object_weight: None,
            dit_restart_impact_weight: None,
            dit_restart_caption_dropout: None,
            audio_decoder_steps: 6000,
            audio_decoder_lr: 5e-4,
            audio_decoder_noise: AUDIO_DECODER_NOISE,
            video_decoder_steps: 0,
            video_decoder_lr: 5e-4,
            video_decoder_noise: 0.5,
            video_decoder_temporal_mix: false,
            video_decoder_refine: false,
            video_decoder_dit_sigma: 0.0,
            video_decoder_code_swap: 0.0,
            video_decoder_l1: false,
            batch: 2,
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            codec_lr: 2e-3,
            dit_lr: 6e-4,
            warmup_steps: 50,
            latent_frames: (2, 6),
            codec_latent_frames: (2, 3),
            sizes: vec![(96, 56)],
            data_cycle: None,
            checkpoint_every: 50,
            vocab_scenes: 4000,
            caption_dropout: 0.1,
            sigma_shift: 3.0,
            placement_spread: 0.0,
            physics_spread: 0.0,
            codec_object_weight: 8.0,
            codec_shape_weight: 10.0,
            dit_object_weight: 4.0,
            dit_qk_norm_gain: 1.0,
            dit_clock: false,
            text_probe_weight: 1.0,
            sync_probe_weight: 0.0,
            dit_restart_sync_probe_weight: None,
            dit_restart_dub_share: 0.0,
            dit_restart_sigma_shift: None,
            dit_decoupled_noise: 0.0,
            impact_weight: 4.0,
            codec_waveform_weight: 1.0,
            codec_spectral_weight: 1.0,
            codec_envelope_weight: 5.0,
            codec_onset_weight: 1.0,
            stop_after: None,
            ema_decay: 0.999,
            codecs_from: None,
            video_decoder_from: None,
        }
    }

    /// A few steps of the tiny model on one repeated batch: the CI smoke test.
    pub fn smoke(out_dir: PathBuf) -> Self {
        Self {
            tiny: true,
            codec_steps: 12,
            audio_codec_steps: 12,
            dit_steps: 12,
            audio_decoder_steps: 12,
            video_decoder_steps: 12,
            batch: 1,
            codec_lr: 3e-3,
            dit_lr: 3e-3,
            warmup_steps: 0,
            latent_frames: (2, 2),
            codec_latent_frames: (2, 2),
            sizes: vec![(32, 24)],
            data_cycle: Some(1),
            checkpoint_every: 6,
            vocab_scenes: 200,
            ..Self::nano(out_dir)
        }
    }

    /// The settings that decide the weights, as JSON: everything but where the run is
    /// written, how many threads do it, where a session stops and where a new run took its
    /// codecs from (a resumed run has them in its checkpoint).
    fn recipe(&self) -> Result<serde_json::Map<String, serde_json::Value>, TrainError> {
        let serde_json::Value::Object(mut map) =
            serde_json::to_value(self).map_err(|e| TrainError::Invalid(e.to_string()))?
        else {
            return Err(TrainError::Invalid(
                "training settings are not a JSON object".into(),
            ));
        };
        for session_only in [
            "out_dir",
            "workers",
            "stop_after",
            "codecs_from",
            "video_decoder_from",
        ] {
            map.remove(session_only);
        }
        Ok(map)
    }

    fn validate(&self) -> Result<(), TrainError> {
        let bad = |m: &str| Err(TrainError::Invalid(m.into()));
        if self.batch == 0 || self.checkpoint_every == 0 {
            return bad("batch and checkpoint_every must be at least 1");
        }
        if !(0.0..=1.0).contains(&self.dit_decoupled_noise) {
            return bad("dit_decoupled_noise is a share of the clips: from 0 to 1");
        }
        if !(self.dit_qk_norm_gain.is_finite() && self.dit_qk_norm_gain > 0.0) {
            return bad("dit_qk_norm_gain must be a positive number (1: the recipe)");
        }
        if !(0.0..=1.0).contains(&self.dit_restart_dub_share) {
            return bad("dit_restart_dub_share is a share of the clips: from 0 to 1");
        }
        if let Some(p) = self.dit_restart_caption_dropout {
            if !(0.0..=1.0).contains(&p) {
                return bad("dit_restart_caption_dropout is a share of the clips: from 0 to 1");
            }
        }
        if !(self.codec_shape_weight >= 0.0 && self.codec_shape_weight.is_finite()) {
            return bad("codec_shape_weight must be 0 (no shape code) or a positive weight");
        }
        if !(self.text_probe_weight >= 0.0 && self.text_probe_weight.is_finite()) {
            return bad("text_probe_weight must be 0 (no probe) or a positive weight");
        }
        let sync = [
            Some(self.sync_probe_weight),
            self.dit_restart_sync_probe_weight,
        ];
        if sync
            .into_iter()
            .flatten()
            .any(|w| !(w >= 0.0 && w.is_finite()))
        {
            return bad("sync_probe_weight and dit_restart_sync_probe_weight must be 0 (no probe) or a positive weight");
        }
        if self.sizes.is_empty() || self.sizes.iter().any(|(w, h)| w % 8 != 0 || h % 8 != 0) {
            return bad("sizes must be non-empty multiples of 8");
        }
        let bad_range = |(lo, hi): (usize, usize)| lo == 0 || lo > hi;
        if bad_range(self.latent_frames) || bad_range(self.codec_latent_frames) {
            return bad("latent_frames must be a range 1 <= lo <= hi");
        }
        let positive = |s: f64| s.is_finite() && s > 0.0;
        if !positive(self.sigma_shift) {
            return bad("sigma_shift must be a positive number (1 = no shift)");
        }
        if !self.dit_restart_sigma_shift.is_none_or(positive) {
            return bad("dit_restart_sigma_shift must be a positive number (1 = no shift)");
        }
        if self.dit_restart_steps > 0
            && !(self.dit_restart_lr.is_finite() && self.dit_restart_lr > 0.0)
        {
            return bad("dit_restart_lr must be a positive number when dit_restart_steps is set");
        }
        if self.audio_decoder_steps > 0
            && !(self.audio_decoder_lr.is_finite()
                && self.audio_decoder_lr > 0.0
                && self.audio_decoder_noise.is_finite()
                && self.audio_decoder_noise >= 0.0)
        {
            return bad(
                "audio_decoder_lr must be positive and audio_decoder_noise at least 0 \
                 when audio_decoder_steps is set",
            );
        }
        if self.video_decoder_steps > 0
            && !(self.video_decoder_lr.is_finite()
                && self.video_decoder_lr > 0.0
                && self.video_decoder_noise.is_finite()
                && self.video_decoder_noise >= 0.0)
        {
            return bad(
                "video_decoder_lr must be positive and video_decoder_noise at least 0 \
                 when video_decoder_steps is set",
            );
        }
        if !(0.0..=1.0).contains(&self.video_decoder_dit_sigma) {
            return bad(
                "video_decoder_dit_sigma must be between 0 (decode the encoder's latents) \
                 and 1 (the DiT's estimate from pure noise)",
            );
        }
        if self.video_decoder_from.is_some() {
            if self.video_decoder_steps == 0 {
                return bad("video_decoder_from trains the video-decoder stage only: \
                     set video_decoder_steps too");
            }
            if self.codecs_from.is_some() {
                return bad(
                    "codecs_from and video_decoder_from start a run in two places: \
                     give one",
                );
            }
        }
        if !(0.0..=1.0).contains(&self.video_decoder_code_swap) {
            return bad("video_decoder_code_swap must be a share between 0 and 1");
        }
        if self.video_decoder_code_swap > 0.0 && self.codec_shape_weight <= 0.0 {
            return bad("video_decoder_code_swap swaps the shape code: set codec_shape_weight too");
        }
        if !(0.0..=1.0).contains(&self.placement_spread) {
            return bad("placement_spread must be between 0 (the middle) and 1 (the world's own)");
        }
        if !(0.0..=1.0).contains(&self.physics_spread) {
            return bad("physics_spread must be between 0 (the middle) and 1 (the world's own)");
        }
        Ok(())
    }

    /// A training noise level at `step` from a uniform draw in [0, 1): the shift's warp
    /// ([`Self::sigma_shift`], or the restart's in the restart phase).
    fn shifted_sigma(&self, step: usize, u01: f64) -> f64 {
        let s = match self.dit_restart_sigma_shift {
            Some(s) if step >= self.dit_steps => s,
            _ => self.sigma_shift,
        };
        (s * u01 / (1.0 + (s - 1.0) * u01)).clamp(1e-3, 1.0)
    }

    /// The DiT stage's object weight at `step`: the first phase's, then the restart's.
    fn dit_object_weight_at(&self, step: usize) -> f32 {
        match self.dit_restart_object_weight {
            Some(w) if step >= self.dit_steps => w,
            _ => self.dit_object_weight,
        }
    }

    /// The DiT stage's weight on the hits' audio frames at `step`: the first phase's, then
    /// the restart's.
    fn dit_impact_weight_at(&self, step: usize) -> f32 {
        match self.dit_restart_impact_weight {
            Some(w) if step >= self.dit_steps => w,
            _ => self.impact_weight,
        }
    }

    /// The DiT stage's sync-probe weight at `step`: the first phase's, then the restart's.
    fn sync_probe_weight_at(&self, step: usize) -> f32 {
        match self.dit_restart_sync_probe_weight {
            Some(w) if step >= self.dit_steps => w,
            _ => self.sync_probe_weight,
        }
    }

    /// The share of the DiT stage's clips trained as dubs at `step`: only in the restart.
    fn dub_share_at(&self, step: usize) -> f64 {
        if step >= self.dit_steps {
            self.dit_restart_dub_share
        } else {
            0.0
        }
    }

    /// Whether any phase trains the sync probe.
    fn has_sync_probe(&self) -> bool {
        self.sync_probe_weight > 0.0 || self.dit_restart_sync_probe_weight.unwrap_or(0.0) > 0.0
    }

    /// The DiT stage's caption dropout at `step`: the first phase's, then the restart's.
    fn caption_dropout_at(&self, step: usize) -> f64 {
        match self.dit_restart_caption_dropout {
            Some(p) if step >= self.dit_steps => p,
            _ => self.caption_dropout,
        }
    }

    /// The DiT stage's learning rate at `step`: the first phase's cosine, then the restart's.
    fn dit_lr_at(&self, step: usize) -> f64 {
        match step.checked_sub(self.dit_steps) {
            None => lr_at(self.dit_lr, step, self.warmup_steps, self.dit_steps),
            Some(s) => lr_at(
                self.dit_restart_lr,
                s,
                self.warmup_steps,
                self.dit_restart_steps,
            ),
        }
    }
}

/// Settings that only shape the steps after `dit_steps`: a checkpoint that has not passed
/// them may resume with other values (a finished run extended by a restart phase).
const RESTART_SETTINGS: [&str; 8] = [
    "dit_restart_steps",
    "dit_restart_lr",
    "dit_restart_object_weight",
    "dit_restart_impact_weight",
    "dit_restart_caption_dropout",
    "dit_restart_sync_probe_weight",
    "dit_restart_dub_share",
    "dit_restart_sigma_shift",
];

/// The recipe's audio-decoder noise, in latent stds (`eval nano`, 20 + 20 scenes, 2000
/// steps: silent prompts judged silent 0 of 6 before the stage, 5 at 0.25 and 0.5, 3 at 1).
const AUDIO_DECODER_NOISE: f32 = 0.5;

/// Settings of the audio-decoder stage: free to change until a checkpoint is in it.
const AUDIO_DECODER_SETTINGS: [&str; 3] = [
    "audio_decoder_steps",
    "audio_decoder_lr",
    "audio_decoder_noise",
];

/// Settings of the video-decoder stage: free to change until a checkpoint is in it.
const VIDEO_DECODER_SETTINGS: [&str; 8] = [
    "video_decoder_steps",
    "video_decoder_lr",
    "video_decoder_noise",
    "video_decoder_temporal_mix",
    "video_decoder_refine",
    "video_decoder_dit_sigma",
    "video_decoder_code_swap",
    "video_decoder_l1",
];

/// The settings a checkpoint at `stage`, `step` has not been trained with yet.
fn settings_still_free(cfg: &TrainConfig, stage: Stage, step: usize) -> Vec<&'static str> {
    let mut free = Vec::new();
    if stage < Stage::Dit || (stage == Stage::Dit && step <= cfg.dit_steps) {
        free.extend(RESTART_SETTINGS);
    }
    if stage < Stage::AudioDecoder {
        free.extend(AUDIO_DECODER_SETTINGS);
    }
    if stage < Stage::VideoDecoder {
        free.extend(VIDEO_DECODER_SETTINGS);
    }
    free
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

/// A recipe saved by an earlier version, as this version writes it: settings added since
/// take their defaults (which reproduce what that version did), so upgrading does not refuse
/// a run's own checkpoint. A recipe this version cannot read is compared as it is.
fn upgraded_recipe(
    saved: &serde_json::Map<String, serde_json::Value>,
) -> serde_json::Map<String, serde_json::Value> {
    let mut full = saved.clone();
    full.entry("out_dir")
        .or_insert(serde_json::Value::String(String::new()));
    serde_json::from_value::<TrainConfig>(serde_json::Value::Object(full))
        .ok()
        .and_then(|cfg| cfg.recipe().ok())
        .unwrap_or_else(|| saved.clone())
}

/// A resumed session must continue the run its checkpoint holds: any setting that shapes the
/// weights it has already been trained with and differs is refused, by name. `free` names the
/// settings of phases the checkpoint has not reached ([`settings_still_free`]).
fn check_same_recipe(
    saved: &serde_json::Map<String, serde_json::Value>,
    asked: Option<&serde_json::Map<String, serde_json::Value>>,
    free: &[&str],
    state_path: &Path,
) -> Result<(), TrainError> {
    let empty = serde_json::Map::new();
    let asked = asked.unwrap_or(&empty);
    let saved = &upgraded_recipe(saved);
    let mut keys: Vec<&String> = saved.keys().chain(asked.keys()).collect();
    keys.sort();
    keys.dedup();
    let differing: Vec<String> = keys
        .into_iter()
        .filter(|k| saved.get(*k) != asked.get(*k))
        .filter(|k| !free.contains(&k.as_str()))
        .map(|k| {
            let show = |v: Option<&serde_json::Value>| v.map_or("unset".into(), |v| v.to_string());
            format!(
                "{k}: checkpoint {}, now {}",
                show(saved.get(k)),
                show(asked.get(k))
            )
        })
        .collect();
    if differing.is_empty() {
        return Ok(());
    }
    Err(TrainError::BadCheckpoint {
        path: state_path.to_path_buf(),
        message: format!(
            "this checkpoint belongs to a run with other settings ({}); pass the run's \
             settings again to resume it, or give a new --out to start another run",
            differing.join("; ")
        ),
    })
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn one() -> usize {
    1
}

fn one_f32() -> f32 {
    1.0
}

fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

/// Deterministic initial values: fan-in scaled normals for matrices and kernels, zeros for
/// biases, zero-centred norm weights and the output heads (the DiT starts by predicting 0),
/// rope bands `1/100^(k/B)` (base 100 rather than 10000: Nano's grids are a dozen tokens wide).
fn init_vars(varmap: &VarMap, seed: u64, qk_norm_gain: f32) -> candle::Result<()> {
    let data = varmap
        .data()
        .lock()
        .map_err(|_| candle::Error::Msg("nano train: the variable map lock is poisoned".into()))?;
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    for name in names {
        let var = &data[name];
        let t = var.as_tensor();
        let dims = t.dims().to_vec();
        let n = t.elem_count();
        let values: Vec<f32> = if name.ends_with("chunk_gain.bias") {
            // Open gates at the start: a gain that starts closed everywhere gets no gradient.
            vec![1.0; n]
        } else if name.starts_with("dit.")
            && (name.ends_with("q_norm.weight") || name.ends_with("k_norm.weight"))
        {
            vec![qk_norm_gain - 1.0; n]
        } else if name.ends_with("rope.bands") {
            (0..n)
                .map(|k| 1.0 / 100f32.powf(k as f32 / n as f32))
                .collect()
        } else if dims.len() < 2
            || name.contains("final_linear")
            || is_temporal_mix_var(name)
            || (is_decoder_stage_var(name) && name.contains(".out."))
        {
            vec![0.0; n]
        } else {
            let fan_in: usize = dims[1..].iter().product();
            let std = if name.ends_with(".pos") {
                0.02
            } else {
                1.0 / (fan_in as f32).sqrt()
            };
            let mut rng = SeededNoise::new(seed ^ fnv1a(name));
            rng.sample(n).into_iter().map(|x| x * std).collect()
        };
        var.set(&Tensor::from_vec(values, dims, t.device())?)?;
    }
    Ok(())
}

fn all_vars(varmap: &VarMap) -> candle::Result<Vec<(String, Var)>> {
    let data = varmap
        .data()
        .lock()
        .map_err(|_| candle::Error::Msg("nano train: the variable map lock is poisoned".into()))?;
    Ok(data.iter().map(|(n, v)| (n.clone(), v.clone())).collect())
}

fn vars_with_prefix(varmap: &VarMap, prefixes: &[&str]) -> candle::Result<Vec<(String, Var)>> {
    Ok(all_vars(varmap)?
        .into_iter()
        .filter(|(n, _)| prefixes.iter().any(|p| n.starts_with(p)) && !n.ends_with("rope.bands"))
        .collect())
}

/// Sets each of `vars` from the tensor of the same name in the safetensors file `path`,
/// refusing by name one that is missing or shaped unlike this run's (`fix` says what to do).
fn set_vars(vars: Vec<(String, Var)>, path: &Path, fix: &str) -> Result<(), TrainError> {
    set_vars_or_keep(vars, path, &|_| false, fix)
}

/// [`set_vars`], except that a variable the file lacks keeps its value where `may_lack` says
/// the file may lack it.
fn set_vars_or_keep(
    vars: Vec<(String, Var)>,
    path: &Path,
    may_lack: &dyn Fn(&str) -> bool,
    fix: &str,
) -> Result<(), TrainError> {
    let tensors = candle::safetensors::load(path, &Device::Cpu)?;
    for (name, var) in vars {
        let bad = |what: String| TrainError::BadCheckpoint {
            path: path.to_path_buf(),
            message: format!("{what}; {fix}"),
        };
        let Some(t) = tensors.get(&name) else {
            if may_lack(&name) {
                continue;
            }
            return Err(bad(format!("no tensor {name}")));
        };
        if t.dims() != var.dims() {
            return Err(bad(format!(
                "{name} is {:?}, this run's model needs {:?}",
                t.dims(),
                var.dims()
            )));
        }
        var.set(&t.to_device(var.device())?)?;
    }
    Ok(())
}

fn lr_at(base: f64, step: usize, warmup: usize, total: usize) -> f64 {
    if step < warmup {
        return base * (step + 1) as f64 / warmup as f64;
    }
    // Cosine to 10% of the base rate.
    let p = (step - warmup) as f64 / (total.saturating_sub(warmup)).max(1) as f64;
    base * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * p.min(1.0)).cos()))
}

/// Latent channels the shape code takes (one per shape, [`Clip::shape_cells`]).
pub const SHAPE_CODE: usize = 3;

/// The shape code's loss: the mean squared difference between the first [`SHAPE_CODE`]
/// channels of a video latent `[1, C, T, H, W]` and the clip's [`Clip::shape_cells`].
fn shape_code_miss(z: &Tensor, clip: &Clip) -> candle::Result<Tensor> {
    let (_, c, t, h, w) = z.dims5()?;
    if c < SHAPE_CODE || clip.shape_cells.len() != SHAPE_CODE * t * h * w {
        candle::bail!(
            "nano train: the shape code needs {SHAPE_CODE} channels of a latent {:?} and {} \
             shape cells, the clip has {}",
            z.dims(),
            SHAPE_CODE * t * h * w,
            clip.shape_cells.len()
        )
    }
    let code = Tensor::from_slice(&clip.shape_cells, (1, SHAPE_CODE, t, h, w), z.device())?;
    (z.narrow(1, 0, SHAPE_CODE)? - code)?.sqr()?.mean_all()
}

/// The per-channel scale of the video-decoder stage's latent noise: each channel's std, but
/// with a shape code its channels stay clean, since they are what the DiT gets right and the
/// decoder is to draw the shape from them when the rest is noisy.
fn decoder_noise_std(video_std: &[f32], shape_code: bool) -> Vec<f32> {
    let skip = if shape_code { SHAPE_CODE } else { 0 };
    video_std
        .iter()
        .enumerate()
        .map(|(c, &s)| if c < skip { 0.0 } else { s })
        .collect()
}

/// The shape the video-decoder stage takes a clip's latent from in place of its own
/// ([`TrainConfig::video_decoder_code_swap`]): with probability `share` (by the uniform of
/// `draws[0]`) one of the two other shapes (by `draws[1]`), the next if that one would make
/// a held-out triple; `None` to keep the clip's own latent.
fn code_swap_shape(scene: &Scene, draws: Vec<f32>, share: f32) -> Option<Shape> {
    if draws.len() < 2 || uniform(draws[0]) >= share as f64 {
        return None;
    }
    let others: Vec<Shape> = Shape::ALL
        .iter()
        .copied()
        .filter(|&s| s != scene.object.shape)
        .collect();
    let first = (uniform(draws[1]) * others.len() as f64) as usize;
    (0..others.len())
        .map(|i| others[(first + i) % others.len()])
        .find(|&shape| {
            let mut s = *scene;
            s.object.shape = shape;
            !is_held_out(&s)
        })
}

/// Frames `[n, H, W, 3]` u8 → `[n, 3, H, W]` in [-1, 1].
fn frames_tensor(clip: &Clip, dev: &Device) -> candle::Result<Tensor> {
    Tensor::from_slice(
        &clip.frames_rgb,
        (clip.n_frames, clip.height, clip.width, 3),
        dev,
    )?
    .permute((0, 3, 1, 2))?
    .to_dtype(DType::F32)?
    .affine(1.0 / 127.5, -1.0)
}

/// A clip's normalised latents `(video [1,z,T,H,W], audio [1,Na,Ca])`: the world's clip
/// through the model's encoders, detached, scaled by the run's latent statistics. The DiT
/// stage trains on these; the diagnostics (`examples/nano_*`) start from them.
pub fn clip_latents(
    model: &Nano,
    lat: &LatentStats,
    clip: &Clip,
    dev: &Device,
) -> candle::Result<(Tensor, Tensor)> {
    let x = frames_tensor(clip, dev)?;
    let video = nano::normalize(
        &model.video_encoder.encode(&x)?.detach(),
        &lat.video_mean,
        &lat.video_std,
        1,
    )?;
    let a = Tensor::from_slice(&clip.audio, clip.audio.len(), dev)?;
    let audio = nano::normalize(
        &model.audio_encoder.encode(&a)?.detach(),
        &lat.audio_mean,
        &lat.audio_std,
        2,
    )?;
    Ok((video, audio))
}

/// The flow-matching point at noise level `sigma` and its noise `e`: `((1 - sigma) z + sigma e,
/// e)`, with `e` the next `z`-sized draw of `noise`.
pub fn noised(z: &Tensor, sigma: f64, noise: &mut SeededNoise) -> candle::Result<(Tensor, Tensor)> {
    let e = noise_like(noise, z)?;
    Ok((((z * (1.0 - sigma))? + (&e * sigma)?)?, e))
}

/// L1 between log-magnitude spectra (256-sample Hann frames, no overlap).
fn spectral_l1(pred: &Tensor, target: &Tensor, basis: &(Tensor, Tensor)) -> candle::Result<Tensor> {
    let n_fft = basis.0.dim(0)?;
    let frames = pred.dim(0)? / n_fft;
    let spec = |x: &Tensor| -> candle::Result<Tensor> {
        let x = x.narrow(0, 0, frames * n_fft)?.reshape((frames, n_fft))?;
        let re = x.matmul(&basis.0)?;
        let im = x.matmul(&basis.1)?;
        ((re.sqr()? + im.sqr()?)? + 1e-8)?
            .sqrt()?
            .affine(1.0, 1e-3)?
            .log()
    };
    (spec(pred)? - spec(target)?)?.abs()?.mean_all()
}

/// Samples per frame of the codec's loudness-envelope loss: 6.25 ms at 16 kHz, finer than the
/// onset analyzer's 10 ms windows, and a divisor of the hop.
const ENVELOPE_FRAME: usize = 100;

/// Floor of the envelope loss: -70 dBFS, under the -60 dBFS line where a clip counts as silent.
const ENVELOPE_FLOOR: f64 = 1e-7;

/// Log energies of `frame`-sample frames of `x` `[hops, hop]`: `[hops, hop / frame]`.
fn log_envelope(x: &Tensor, frame: usize) -> candle::Result<Tensor> {
    let (hops, hop) = x.dims2()?;
    (x.reshape((hops, hop / frame, frame))?.sqr()?.mean(2)? + ENVELOPE_FLOOR)?.log()
}

/// Loudness-envelope losses between `pred` and `target` `[hops, hop]`, weighted per hop by `w`
/// `[hops, 1]`: `(level, rise)`, the L1 of the frames' log energies and of their frame-to-frame
/// rises. The waveform MSE cannot see either end of the loudness scale: a hit's attack is a
/// few milliseconds of a clip, and an output at -58 dBFS for a silent target costs 1e-6. In
/// log energy a missing attack is a 30 dB hole and a hum over silence sits 12 dB over the
/// floor; the rise term asks for the attack to be as steep, in the same frame, since the
/// onset analyzer reads exactly that.
fn envelope_l1(
    pred: &Tensor,
    target: &Tensor,
    frame: usize,
    w: &Tensor,
) -> candle::Result<(Tensor, Tensor)> {
    let (lp, lt) = (log_envelope(pred, frame)?, log_envelope(target, frame)?);
    let level = (&lp - &lt)?.abs()?.broadcast_mul(w)?.mean_all()?;
    let rise = |l: &Tensor| -> candle::Result<Tensor> {
        let l = l.flatten_all()?;
        let n = l.dim(0)?;
        l.narrow(0, 1, n - 1)? - l.narrow(0, 0, n - 1)?
    };
    let per_frame = w.broadcast_as(lp.shape())?.flatten_all()?;
    let n = per_frame.dim(0)?;
    let rise = (rise(&lp)? - rise(&lt)?)?
        .abs()?
        .mul(&per_frame.narrow(0, 1, n - 1)?)?
        .mean_all()?;
    Ok((level, rise))
}

fn dft_basis(n: usize, dev: &Device) -> candle::Result<(Tensor, Tensor)> {
    let bins = n / 2 + 1;
    let mut c = Vec::with_capacity(n * bins);
    let mut s = Vec::with_capacity(n * bins);
    for j in 0..n {
        let w = 0.5 - 0.5 * (std::f64::consts::TAU * j as f64 / n as f64).cos();
        for k in 0..bins {
            let a = std::f64::consts::TAU * (j * k) as f64 / n as f64;
            c.push((w * a.cos()) as f32);
            s.push((w * a.sin()) as f32);
        }
    }
    Ok((
        Tensor::from_vec(c, (n, bins), dev)?,
        Tensor::from_vec(s, (n, bins), dev)?,
    ))
}

struct Run<'a> {
    cfg: &'a TrainConfig,
    model_cfg: NanoConfig,
    varmap: VarMap,
    model: Nano,
    tokenizer: NanoTokenizer,
    /// DiT clips.
    sampler: ClipSampler,
    /// Codec clips (shorter).
    codec_sampler: ClipSampler,
    state: State,
    /// Average of the DiT stage's weights, which the model exports (`ema_decay > 0`).
    ema: Option<Ema>,
    /// Trained with the DiT when `text_probe_weight > 0`; never exported.
    probe: Option<TextProbe>,
    /// Trained with the DiT when a phase's sync-probe weight is over 0; never exported.
    sync_probe: Option<SyncProbe>,
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
        self.clip_with(stage, step, k, |_| {})
    }

    /// [`clip`](Self::clip) with its scene changed by `edit` before it is rendered.
    fn clip_with(
        &self,
        stage: Stage,
        step: usize,
        k: usize,
        edit: impl FnOnce(&mut Scene),
    ) -> Clip {
        let step = self.data_step(step);
        let (tag, sampler) = match stage {
            Stage::Codec => (1u64, &self.codec_sampler),
            Stage::Dit => (2u64, &self.sampler),
            Stage::AudioDecoder => (4u64, &self.codec_sampler),
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

    /// The weights the model exports: the live variables less the probes, the DiT's
    /// average in place of its live weights.
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

    /// The codec stage's losses `[video, audio]` on one clip at step `step`; a codec past
    /// its step count contributes a constant 0.
    fn codec_loss(
        &self,
        clip: &Clip,
        step: usize,
        mut noise: SeededNoise,
        basis: &(Tensor, Tensor),
    ) -> candle::Result<[Tensor; 2]> {
        let zero = || Tensor::zeros((), DType::F32, &self.dev);
        let lv = if step < self.cfg.codec_steps {
            self.video_codec_loss(clip, &mut noise)?
        } else {
            zero()?
        };
        let la = if step < self.cfg.audio_codec_steps {
            self.audio_codec_loss(clip, &mut noise, basis)?
        } else {
            zero()?
        };
        Ok([lv, la])
    }

    fn video_codec_loss(&self, clip: &Clip, noise: &mut SeededNoise) -> candle::Result<Tensor> {
        let m = &self.model;
        let x = frames_tensor(clip, &self.dev)?;
        let z = m.video_encoder.encode(&x)?;
        let zn = (&z + (noise_like(noise, &z)? * 0.05)?)?;
        let y = m.video_decoder.decode(&zn)?;
        let wv = weights(
            &clip.object_mask,
            (clip.n_frames, 1, clip.height, clip.width),
            self.cfg.codec_object_weight,
            &self.dev,
        )?;
        let rec = weighted_mse(&y, &x, &wv)?;
        let loss = (rec + (z.sqr()?.mean_all()? * 1e-3)?)?;
        if self.cfg.codec_shape_weight <= 0.0 {
            return Ok(loss);
        }
        loss + (shape_code_miss(&z, clip)? * self.cfg.codec_shape_weight as f64)?
    }

    fn audio_codec_loss(
        &self,
        clip: &Clip,
        noise: &mut SeededNoise,
        basis: &(Tensor, Tensor),
    ) -> candle::Result<Tensor> {
        let a = Tensor::from_slice(&clip.audio, clip.audio.len(), &self.dev)?;
        let za = self.model.audio_encoder.encode(&a)?;
        let zan = (&za + (noise_like(noise, &za)? * 0.05)?)?;
        self.audio_reconstruction_loss(clip, &a, &zan, basis)? + (za.sqr()?.mean_all()? * 1e-3)?
    }

    /// The audio-decoder stage's loss on one clip: the frozen encoder's latent, plus noise of
    /// a level drawn from `[0, audio_decoder_noise]` latent stds, decoded to the clip's sound.
    fn audio_decoder_loss(
        &self,
        clip: &Clip,
        mut noise: SeededNoise,
        basis: &(Tensor, Tensor),
    ) -> candle::Result<Tensor> {
        let lat = self.state.latent.as_ref().ok_or_else(|| {
            candle::Error::Msg("nano train: audio-decoder stage without latent statistics".into())
        })?;
        let a = Tensor::from_slice(&clip.audio, clip.audio.len(), &self.dev)?;
        let za = self.model.audio_encoder.encode(&a)?.detach();
        let level = uniform(noise.sample(1)[0]) * self.cfg.audio_decoder_noise as f64;
        let std = Tensor::from_slice(&lat.audio_std, (1, 1, lat.audio_std.len()), &self.dev)?;
        let e = noise_like(&mut noise, &za)?.broadcast_mul(&std)?;
        self.audio_reconstruction_loss(clip, &a, &(za + (e * level)?)?, basis)
    }

    /// The video-decoder stage's loss on clip `k` of step `step`: the frozen encoder's
    /// latent plus noise of a level drawn from `[0, video_decoder_noise]` latent stds, or the
    /// DiT's estimate ([`TrainConfig::video_decoder_dit_sigma`]), decoded to the clip's
    /// frames; with [`TrainConfig::video_decoder_code_swap`] that latent may be another
    /// shape's, the clip's shape code in its first channels.
    fn video_decoder_loss(
        &self,
        clip: &Clip,
        step: usize,
        k: usize,
        mut noise: SeededNoise,
    ) -> candle::Result<Tensor> {
        let lat = self.state.latent.as_ref().ok_or_else(|| {
            candle::Error::Msg("nano train: video-decoder stage without latent statistics".into())
        })?;
        let m = &self.model;
        let x = frames_tensor(clip, &self.dev)?;
        let swapped = match self.cfg.video_decoder_code_swap {
            p if p > 0.0 => code_swap_shape(&clip.scene, noise.sample(2), p).map(|shape| {
                self.clip_with(Stage::VideoDecoder, step, k, |s| s.object.shape = shape)
            }),
            _ => None,
        };
        let source = swapped.as_ref().unwrap_or(clip);
        let dit_sigma = (self.cfg.video_decoder_dit_sigma > 0.0)
            .then(|| uniform(noise.sample(1)[0]) * self.cfg.video_decoder_dit_sigma as f64);
        let z = if let Some(sigma) = dit_sigma {
            self.dit_video_estimate(source, lat, sigma, &mut noise)?
        } else {
            let z = m
                .video_encoder
                .encode(&frames_tensor(source, &self.dev)?)?
                .detach();
            let level = uniform(noise.sample(1)[0]) * self.cfg.video_decoder_noise as f64;
            let std = decoder_noise_std(&lat.video_std, self.cfg.codec_shape_weight > 0.0);
            let std = Tensor::from_slice(&std, (1, std.len(), 1, 1, 1), &self.dev)?;
            let e = noise_like(&mut noise, &z)?.broadcast_mul(&std)?;
            (z + (e * level)?)?
        };
        let z = if swapped.is_some() {
            // The clip's own code, as the DiT estimates it at the same level when the stage
            // decodes the DiT's estimates (so as blurred as the DiT's samples have it).
            let own = match dit_sigma {
                Some(sigma) => self.dit_video_estimate(clip, lat, sigma, &mut noise)?,
                None => m.video_encoder.encode(&x)?.detach(),
            };
            let code = own.narrow(1, 0, SHAPE_CODE)?;
            let rest = z.narrow(1, SHAPE_CODE, z.dim(1)? - SHAPE_CODE)?;
            Tensor::cat(&[&code, &rest], 1)?
        } else {
            z
        };
        let y = m.video_decoder.decode(&z)?;
        let wv = weights(
            &clip.object_mask,
            (clip.n_frames, 1, clip.height, clip.width),
            self.cfg.codec_object_weight,
            &self.dev,
        )?;
        if self.cfg.video_decoder_l1 {
            (y - x)?.abs()?.broadcast_mul(&wv)?.mean_all()
        } else {
            weighted_mse(&y, &x, &wv)
        }
    }

    /// The DiT's one-step estimate of `clip`'s video latent, at the encoder's scale and
    /// detached ([`TrainConfig::video_decoder_dit_sigma`]): the clip's latents noised to
    /// `sigma`, denoised in one step with its caption.
    fn dit_video_estimate(
        &self,
        clip: &Clip,
        lat: &LatentStats,
        sigma: f64,
        noise: &mut SeededNoise,
    ) -> candle::Result<Tensor> {
        let m = self.exported.as_ref().unwrap_or(&self.model);
        let (zv, za) = clip_latents(m, lat, clip, &self.dev)?;
        let (xv, _) = noised(&zv, sigma, noise)?;
        let (xa, _) = noised(&za, sigma, noise)?;
        let ids = self
            .tokenizer
            .encode(&clip.caption, self.model_cfg.text.max_len)?;
        let txt = m.text_encoder.forward(&ids)?;
        let (v, _) = m.velocity(&xv, &xa, &txt, ids.len(), sigma as f32)?;
        let z0 = (xv - (v * sigma)?)?.detach();
        nano::denormalize(&z0, &lat.video_mean, &lat.video_std, 1)
    }

    /// How far the decoded `za` is from the clip's sound: waveform, spectrum and loudness
    /// envelope, weighed up on the hits.
    fn audio_reconstruction_loss(
        &self,
        clip: &Clip,
        a: &Tensor,
        za: &Tensor,
        basis: &(Tensor, Tensor),
    ) -> candle::Result<Tensor> {
        let ya = self
            .model
            .audio_decoder
            .decode(za)?
            .narrow(0, 0, clip.audio.len())?;
        // Per audio latent frame (one hop): weighed up where a hit sounds.
        let hop = self.model_cfg.audio.hop;
        let n_hops = clip.audio.len() / hop;
        let wa = weights(
            &clip.impact_frames[..n_hops],
            (n_hops, 1),
            self.cfg.impact_weight,
            &self.dev,
        )?;
        let (ya, a) = (ya.reshape((n_hops, hop))?, a.reshape((n_hops, hop))?);
        let mse = weighted_mse(&ya, &a, &wa)?;
        let (env, rise) = envelope_l1(&ya, &a, ENVELOPE_FRAME, &wa)?;
        let spec = spectral_l1(&ya.flatten_all()?, &a.flatten_all()?, basis)?;
        let c = self.cfg;
        (mse * c.codec_waveform_weight as f64)?
            + (spec * c.codec_spectral_weight as f64)?
            + (env * c.codec_envelope_weight as f64)?
            + (rise * c.codec_onset_weight as f64)?
    }

    /// The DiT stage's flow-matching losses `[video, audio]` on one clip, and the probes'
    /// weighted losses `[text, sync]`: the text probe's if the run has it and the caption
    /// was not dropped, the sync probe's if the run has it at `step`.
    fn dit_loss(
        &self,
        clip: &Clip,
        step: usize,
        mut noise: SeededNoise,
    ) -> candle::Result<([Tensor; 2], [Option<Tensor>; 2])> {
        let m = &self.model;
        let lat = self.state.latent.as_ref().ok_or_else(|| {
            candle::Error::Msg("nano train: DiT stage without latent statistics".into())
        })?;
        let (zv, za) = clip_latents(m, lat, clip, &self.dev)?;
        let u = noise.sample(2);
        let sigma = self.cfg.shifted_sigma(step, uniform(u[0]));
        let drop = uniform(u[1]) < self.cfg.caption_dropout_at(step);
        let sigma_audio = if self.cfg.dit_decoupled_noise > 0.0 {
            // Drawn only when asked, so the recipe's noise stream is unchanged.
            let d = noise.sample(2);
            if uniform(d[0]) < self.cfg.dit_decoupled_noise as f64 {
                self.cfg.shifted_sigma(step, uniform(d[1]))
            } else {
                sigma
            }
        } else {
            sigma
        };
        let dub = self.cfg.dub_share_at(step);
        let sigma = if dub > 0.0 {
            // Drawn only when asked, so the recipe's noise stream is unchanged.
            let d = noise.sample(2);
            if uniform(d[0]) < dub {
                sigma_audio * uniform(d[1])
            } else {
                sigma
            }
        } else {
            sigma
        };
        let prompt = if drop { "" } else { clip.caption.as_str() };
        let ids = self.tokenizer.encode(prompt, self.model_cfg.text.max_len)?;
        let txt = m.text_encoder.forward(&ids)?;
        let probe = match &self.probe {
            Some(p) if !drop => {
                let pooled = nano::conditioning::pooled_text(&txt, ids.len())?;
                Some((p.loss(&pooled, &clip.scene)? * self.cfg.text_probe_weight as f64)?)
            }
            _ => None,
        };

        let (xv, ev) = noised(&zv, sigma, &mut noise)?;
        let (xa, ea) = noised(&za, sigma_audio, &mut noise)?;
        let n_audio = za.dim(1)?;
        let mut impacts = clip.impact_frames.clone();
        impacts.resize(n_audio, 0.0);
        let sync_weight = self.cfg.sync_probe_weight_at(step);
        let (pv, pa, sync) = match &self.sync_probe {
            Some(p) if sync_weight > 0.0 => {
                let layer = SyncProbe::layer(self.model_cfg.dit.num_layers);
                let (pv, pa, hidden) = m.velocity_and_audio_hidden(
                    &xv,
                    &xa,
                    &txt,
                    ids.len(),
                    sigma as f32,
                    sigma_audio as f32,
                    layer,
                )?;
                let loss = (p.loss(&hidden, &impacts)? * sync_weight as f64)?;
                (pv, pa, Some(loss))
            }
            _ => {
                let (pv, pa) =
                    m.velocity_at(&xv, &xa, &txt, ids.len(), sigma as f32, sigma_audio as f32)?;
                (pv, pa, None)
            }
        };
        let (mask, [t, h, w]) = clip.latent_object_mask();
        let wv = weights(
            &mask,
            (1, 1, t, h, w),
            self.cfg.dit_object_weight_at(step),
            &self.dev,
        )?;
        let wa = weights(
            &impacts,
            (1, n_audio, 1),
            self.cfg.dit_impact_weight_at(step),
            &self.dev,
        )?;
        Ok((
            [
                weighted_mse(&pv, &(ev - zv)?, &wv)?,
                weighted_mse(&pa, &(ea - za)?, &wa)?,
            ],
            [probe, sync],
        ))
    }

    /// Gradients of one optimizer step, one store per clip (in clip order), and the step's
    /// mean losses `[video, audio, text probe, sync probe]`. Clips are rendered and differentiated on
    /// `cfg.workers` threads; each clip's share of the loss is `1 / batch`.
    fn step_grads(
        &self,
        stage: Stage,
        step: usize,
        basis: &(Tensor, Tensor),
    ) -> candle::Result<(Vec<GradStore>, [f32; 4])> {
        let batch = self.cfg.batch;
        let one = |k: usize| -> candle::Result<ClipGrads> {
            let clip = self.clip(stage, step, k);
            let ([lv, la], probes) = match stage {
                Stage::Codec => (
                    self.codec_loss(&clip, step, self.noise(0xC0DE_C000, step, k), basis)?,
                    [None, None],
                ),
                Stage::Dit => self.dit_loss(&clip, step, self.noise(0xD17D_17D0, step, k))?,
                Stage::AudioDecoder => (
                    [
                        Tensor::zeros((), DType::F32, &self.dev)?,
                        self.audio_decoder_loss(&clip, self.noise(0xA0D1_0DEC, step, k), basis)?,
                    ],
                    [None, None],
                ),
                Stage::VideoDecoder => (
                    [
                        self.video_decoder_loss(&clip, step, k, self.noise(0x71DE_0DEC, step, k))?,
                        Tensor::zeros((), DType::F32, &self.dev)?,
                    ],
                    [None, None],
                ),
            };
            let mut total = (&lv + &la)?;
            let mut lp = [0f32; 2];
            for (l, p) in lp.iter_mut().zip(probes) {
                if let Some(p) = p {
                    *l = p.to_scalar::<f32>()?;
                    total = (total + p)?;
                }
            }
            let grads = (total / batch as f64)?.backward()?;
            let n = batch as f32;
            Ok((
                grads,
                [
                    lv.to_scalar::<f32>()? / n,
                    la.to_scalar::<f32>()? / n,
                    lp[0] / n,
                    lp[1] / n,
                ],
            ))
        };
        let workers = self.cfg.workers.clamp(1, batch);
        let results: Vec<(usize, candle::Result<ClipGrads>)> = std::thread::scope(|scope| {
            let one = &one;
            let handles: Vec<_> = (0..workers)
                .map(|w| {
                    scope.spawn(move || {
                        (w..batch)
                            .step_by(workers)
                            .map(|k| (k, one(k)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            let mut out = Vec::with_capacity(batch);
            for h in handles {
                match h.join() {
                    Ok(done) => out.extend(done),
                    Err(_) => out.push((
                        usize::MAX,
                        Err(candle::Error::Msg("nano train: a worker panicked".into())),
                    )),
                }
            }
            out.sort_by_key(|(k, _)| *k);
            out
        });
        let mut grads = Vec::with_capacity(batch);
        let mut loss = [0f32; 4];
        for (_, r) in results {
            let (g, clip_loss) = r?;
            grads.push(g);
            for (sum, l) in loss.iter_mut().zip(clip_loss) {
                *sum += l;
            }
        }
        Ok((grads, loss))
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

/// `1 + extra * mask`, scaled to mean 1 so the loss keeps its scale, shaped to broadcast.
fn weights<S: Into<candle::Shape>>(
    mask: &[f32],
    shape: S,
    extra: f32,
    dev: &Device,
) -> candle::Result<Tensor> {
    let mean = 1.0 + extra * mask.iter().sum::<f32>() / mask.len().max(1) as f32;
    let w: Vec<f32> = mask.iter().map(|m| (1.0 + extra * m) / mean).collect();
    Tensor::from_vec(w, shape, dev)
}

/// Mean of `w * (pred - target)^2`, `w` broadcast over the rest.
fn weighted_mse(pred: &Tensor, target: &Tensor, w: &Tensor) -> candle::Result<Tensor> {
    (pred - target)?.sqr()?.broadcast_mul(w)?.mean_all()
}

fn noise_like(noise: &mut SeededNoise, like: &Tensor) -> candle::Result<Tensor> {
    Tensor::from_vec(noise.sample(like.elem_count()), like.shape(), like.device())
}

/// A standard gaussian draw turned into a uniform one in [0, 1] (its CDF).
fn uniform(gaussian: f32) -> f64 {
    0.5 * (1.0 + libm_erf(gaussian as f64 / std::f64::consts::SQRT_2))
}

/// erf by Abramowitz-Stegun 7.1.26 (|error| < 1.5e-7): turns a gaussian draw into a uniform one.
fn libm_erf(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let y = 1.0
        - (((((1.061_405_429 * t - 1.453_152_027) * t) + 1.421_413_741) * t - 0.284_496_736) * t
            + 0.254_829_592)
            * t
            * (-x * x).exp();
    if x >= 0.0 {
        y
    } else {
        -y
    }
}

/// The audio codec's variables: clipped and scheduled apart from the video codec's.
fn is_audio_codec_var(name: &str) -> bool {
    name.starts_with("audio_encoder.") || name.starts_with("audio_decoder.")
}

const DIT_PREFIXES: [&str; 2] = ["dit.", "text_encoder."];

/// The video decoder's temporal mixing layers: zero (the identity) until the video-decoder
/// stage, the only one that trains them.
fn is_temporal_mix_var(name: &str) -> bool {
    name.starts_with("video_decoder.mix_")
}

/// The video decoder's layers that only the video-decoder stage trains, from the identity:
/// the temporal mix and the refine blocks (whose `out` convs start at zero).
fn is_decoder_stage_var(name: &str) -> bool {
    is_temporal_mix_var(name) || name.starts_with("video_decoder.refine.")
}

/// The codecs' variables, without the video-decoder stage's own layers.
fn codec_vars(varmap: &VarMap) -> candle::Result<Vec<(String, Var)>> {
    Ok(vars_with_prefix(varmap, &CODEC_PREFIXES)?
        .into_iter()
        .filter(|(n, _)| !is_decoder_stage_var(n))
        .collect())
}

/// What the DiT stage trains: the exported DiT and text encoder, and the text probe.
const DIT_STAGE_PREFIXES: [&str; 4] = [
    DIT_PREFIXES[0],
    DIT_PREFIXES[1],
    probe::PREFIX,
    sync_probe::PREFIX,
];

/// A training-only read-out (the text or the sync probe): never exported.
fn is_probe_var(name: &str) -> bool {
    name.starts_with(probe::PREFIX) || name.starts_with(sync_probe::PREFIX)
}

const CODEC_PREFIXES: [&str; 4] = [
    "video_encoder.",
    "video_decoder.",
    "audio_encoder.",
    "audio_decoder.",
];

/// The model folder `dir`'s `config.json`, and its path.
fn read_model_config(dir: &Path) -> Result<(PathBuf, NanoConfig), TrainError> {
    let path = dir.join(nano::CONFIG_FILE);
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    match serde_json::from_str(&text) {
        Ok(cfg) => Ok((path, cfg)),
        Err(e) => Err(TrainError::BadCheckpoint {
            path,
            message: e.to_string(),
        }),
    }
}

/// Sets the codec variables from the model folder `dir` and returns its latent statistics.
/// The folder's codec configuration must be the one this run builds.
fn load_codecs(varmap: &VarMap, cfg: &NanoConfig, dir: &Path) -> Result<LatentStats, TrainError> {
    let bad = |path: PathBuf, message: String| TrainError::BadCheckpoint { path, message };
    let (cfg_path, theirs) = read_model_config(dir)?;
    let their_video = VideoCodecConfig {
        temporal_mix: cfg.video.temporal_mix,
        refine: cfg.video.refine,
        ..theirs.video.clone()
    };
    if their_video != cfg.video || theirs.audio != cfg.audio {
        return Err(bad(
            cfg_path,
            "its codecs are configured unlike this run's (video/audio sections differ); \
             train the codecs too (drop --codecs-from)"
                .into(),
        ));
    }
    set_vars(
        codec_vars(varmap)?,
        &dir.join(nano::WEIGHTS_FILE),
        "train the codecs too (drop --codecs-from)",
    )?;
    Ok(theirs.latent)
}

/// Sets every exported variable from the model folder `dir` (the probes and the
/// video-decoder stage's own layers may be missing: they keep their init) and returns its
/// latent statistics.
fn load_model(varmap: &VarMap, cfg: &NanoConfig, dir: &Path) -> Result<LatentStats, TrainError> {
    let bad = |path: PathBuf, message: String| TrainError::BadCheckpoint { path, message };
    let (cfg_path, theirs) = read_model_config(dir)?;
    let (v, ours) = (&theirs.video, &cfg.video);
    if (v.temporal_mix && !ours.temporal_mix) || (v.refine && !ours.refine) {
        return Err(bad(
            cfg_path,
            format!(
                "its video decoder has layers this run would drop; pass \
                 --video-decoder-temporal-mix {} --video-decoder-refine {}",
                v.temporal_mix, v.refine
            ),
        ));
    }
    set_vars_or_keep(
        all_vars(varmap)?,
        &dir.join(nano::WEIGHTS_FILE),
        &|name| is_probe_var(name) || is_decoder_stage_var(name),
        "--video-decoder-from needs a model this version trains with the same settings \
         (--tiny, --vocab-scenes, --dit-clock as it was made)",
    )?;
    Ok(theirs.latent)
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
    model_cfg.video.refine = cfg.video_decoder_refine;
    if cfg.dit_clock {
        model_cfg = model_cfg.with_clock();
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
    init_vars(&varmap, cfg.seed, cfg.dit_qk_norm_gain)?;
    let sampler = ClipSampler::new(&model_cfg, cfg.sizes.clone(), cfg.latent_frames)
        .with_length_group(cfg.batch)
        .with_placement_spread(cfg.placement_spread)
        .with_physics_spread(cfg.physics_spread);
    let codec_sampler = ClipSampler::new(&model_cfg, cfg.sizes.clone(), cfg.codec_latent_frames);
    let mut run = Run {
        cfg: &cfg,
        model_cfg,
        varmap,
        model,
        tokenizer,
        sampler,
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
        // (temporal mix, refine), which are the identity until then: they keep their init.
        let before_mix = run.state.stage < Stage::VideoDecoder;
        set_vars_or_keep(
            all_vars(&run.varmap)?,
            &run.ckpt("vars.safetensors"),
            // A restart phase may add the sync probe to a run trained without it.
            &|name| {
                (before_mix && is_decoder_stage_var(name)) || name.starts_with(sync_probe::PREFIX)
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
                &["audio_decoder."],
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
        if stage != Stage::VideoDecoder {
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
        if stage == Stage::VideoDecoder && cfg.video_decoder_dit_sigma > 0.0 {
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
    fn the_dits_query_and_key_norms_start_at_the_asked_gain_and_nothing_else_moves() {
        let names_and_values = |gain: f32| {
            let varmap = VarMap::new();
            let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
            Nano::new(&NanoConfig::tiny_for_tests(40), vb).unwrap();
            init_vars(&varmap, 5, gain).unwrap();
            let data = varmap.data().lock().unwrap();
            let mut all: Vec<(String, Vec<f32>)> = data
                .iter()
                .map(|(n, v)| {
                    (
                        n.clone(),
                        v.as_tensor().flatten_all().unwrap().to_vec1().unwrap(),
                    )
                })
                .collect();
            all.sort_by(|a, b| a.0.cmp(&b.0));
            all
        };
        let (plain, sharp) = (names_and_values(1.0), names_and_values(2.0));
        let mut qk = 0;
        for ((name, a), (_, b)) in plain.iter().zip(&sharp) {
            if name.ends_with("attention.q_norm.weight")
                || name.ends_with("attention.k_norm.weight")
            {
                qk += 1;
                assert!(
                    a.iter().all(|&x| x == 0.0) && b.iter().all(|&x| x == 1.0),
                    "{name}"
                );
            } else {
                assert_eq!(a, b, "{name}");
            }
        }
        assert!(qk >= 4, "{qk} query / key norms");
    }

    #[test]
    fn checkpoint_tensors_are_set_by_name_and_a_misshapen_one_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vars.safetensors");
        let dev = &Device::Cpu;
        let saved = HashMap::from([
            (
                "dit.w".to_string(),
                Tensor::new(&[[1f32, 2.0], [3.0, 4.0]], dev).unwrap(),
            ),
            (
                "dit.b".to_string(),
                Tensor::new(&[5f32, 6.0, 7.0], dev).unwrap(),
            ),
        ]);
        candle::safetensors::save(&saved, &path).unwrap();
        let var = |shape: &[usize]| Var::zeros(shape, DType::F32, dev).unwrap();

        let (w, b) = (var(&[2, 2]), var(&[3]));
        let vars = vec![
            ("dit.w".to_string(), w.clone()),
            ("dit.b".to_string(), b.clone()),
        ];
        set_vars(vars, &path, "fix").unwrap();
        assert_eq!(w.to_vec2::<f32>().unwrap(), [[1.0, 2.0], [3.0, 4.0]]);
        assert_eq!(b.to_vec1::<f32>().unwrap(), [5.0, 6.0, 7.0]);

        let wider = vec![("dit.b".to_string(), var(&[4]))];
        let err = set_vars(wider, &path, "start a new folder")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("dit.b is [3], this run's model needs [4]"),
            "{err}"
        );
        assert!(
            err.contains("start a new folder") && err.contains("vars.safetensors"),
            "{err}"
        );

        let missing = vec![("dit.c".to_string(), var(&[1]))];
        let err = set_vars(missing, &path, "fix").unwrap_err().to_string();
        assert!(err.contains("no tensor dit.c"), "{err}");
    }

    fn hops(x: Vec<f32>, hop: usize) -> Tensor {
        let n = x.len() / hop;
        Tensor::from_vec(x, (n, hop), &Device::Cpu).unwrap()
    }

    fn envelope(pred: &[f32], target: &[f32]) -> (f32, f32) {
        let w = Tensor::ones((2, 1), DType::F32, &Device::Cpu).unwrap();
        let (level, rise) = envelope_l1(
            &hops(pred.to_vec(), 400),
            &hops(target.to_vec(), 400),
            ENVELOPE_FRAME,
            &w,
        )
        .unwrap();
        (level.to_scalar().unwrap(), rise.to_scalar().unwrap())
    }

    /// A hit: silence, then a decaying burst starting at sample `at`.
    fn hit(at: usize) -> Vec<f32> {
        (0..800)
            .map(|i| {
                if i < at {
                    0.0
                } else {
                    let k = (i - at) as f32;
                    0.5 * (-k / 150.0).exp() * (k * 0.7).sin()
                }
            })
            .collect()
    }

    #[test]
    fn a_recipe_from_before_a_new_setting_resumes_at_its_default_only() {
        let path = Path::new("run/checkpoint/state.json");
        // A checkpoint from before `placement_spread`, `physics_spread` and
        // `text_probe_weight` existed was trained at the world's own spreads and without a
        // probe: it resumes at those values, and any other is refused by name.
        let before = TrainConfig {
            placement_spread: 1.0,
            physics_spread: 1.0,
            text_probe_weight: 0.0,
            ..TrainConfig::smoke(PathBuf::from("run"))
        };
        for (setting, old_value, new_value) in [
            ("placement_spread", "1.0", "0.0"),
            ("physics_spread", "1.0", "0.0"),
            ("text_probe_weight", "0.0", "1.0"),
        ] {
            let mut old = before.recipe().unwrap();
            assert!(old.remove(setting).is_some());
            assert!(check_same_recipe(&old, Some(&before.recipe().unwrap()), &[], path).is_ok());
            let mut now = before.clone();
            match setting {
                "placement_spread" => now.placement_spread = 0.0,
                "physics_spread" => now.physics_spread = 0.0,
                _ => now.text_probe_weight = 1.0,
            }
            let err = check_same_recipe(&old, Some(&now.recipe().unwrap()), &[], path)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&format!(
                    "{setting}: checkpoint {old_value}, now {new_value}"
                )),
                "{err}"
            );
        }
        let recipe = TrainConfig::nano(PathBuf::from("run"));
        assert_eq!((recipe.placement_spread, recipe.physics_spread), (0.0, 0.0));
        assert_eq!(recipe.codec_steps, 3600);
    }

    #[test]
    fn a_restart_phase_extends_a_finished_run_and_leaves_its_first_phase_alone() {
        let path = Path::new("run/checkpoint/state.json");
        let first = TrainConfig::nano(PathBuf::from("run"));
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

    #[test]
    fn the_shape_code_costs_nothing_when_the_first_channels_hold_the_shape_cells() {
        let cfg = NanoConfig::tiny_for_tests(10);
        let clip = ClipSampler::new(&cfg, vec![(48, 32)], (2, 2)).clip(3, 1, 0);
        let (_, [t, h, w]) = clip.latent_object_mask();
        let dev = &Device::Cpu;
        let code = Tensor::from_slice(&clip.shape_cells, (1, SHAPE_CODE, t, h, w), dev).unwrap();
        let rest = Tensor::ones((1, 5, t, h, w), DType::F32, dev).unwrap();
        let right = Tensor::cat(&[&code, &rest], 1).unwrap();
        let miss = |z: &Tensor| {
            shape_code_miss(z, &clip)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        assert_eq!(miss(&right), 0.0);
        // All zeros: the mean square of the cells, which an object makes positive.
        let zeros = right.zeros_like().unwrap();
        let n = clip.shape_cells.len() as f32;
        let want = clip.shape_cells.iter().map(|v| v * v).sum::<f32>() / n;
        assert!(want > 0.0 && (miss(&zeros) - want).abs() < 1e-6);
        // A latent of another clip's grid is an error, not a panic.
        let other = Tensor::zeros((1, 8, t, h + 1, w), DType::F32, dev).unwrap();
        assert!(shape_code_miss(&other, &clip).is_err());
    }

    #[test]
    fn the_video_decoder_stage_leaves_a_shape_codes_channels_clean() {
        let std = [0.1f32, 0.2, 0.3, 0.4, 0.5];
        assert_eq!(decoder_noise_std(&std, false), std);
        assert_eq!(decoder_noise_std(&std, true), [0.0, 0.0, 0.0, 0.4, 0.5]);
    }

    #[test]
    fn a_code_swap_takes_another_shape_at_the_asked_share_and_never_a_held_out_triple() {
        use crate::nano::world::{sample_train, Background, Color};
        let mut rng = SeededNoise::new(7);
        // A red ball on grass: both a square and a triangle are training triples.
        let mut scene = sample_train(3);
        scene.object.color = Color::Red;
        scene.object.shape = Shape::Ball;
        scene.background = Background::Grass;
        scene.second = None;
        assert_eq!(code_swap_shape(&scene, rng.sample(2), 0.0), None);
        let draws: Vec<Option<Shape>> = (0..400)
            .map(|_| code_swap_shape(&scene, rng.sample(2), 0.5))
            .collect();
        let swapped = draws.iter().flatten().count();
        assert!((150..250).contains(&swapped), "{swapped} of 400");
        assert!(draws.iter().flatten().all(|&s| s != Shape::Ball));
        for shape in [Shape::Square, Shape::Triangle] {
            assert!(draws.contains(&Some(shape)), "{shape:?} never drawn");
        }
        // An orange ball on grass: a square would be the held-out orange square on grass.
        scene.object.color = Color::Orange;
        for _ in 0..100 {
            assert_eq!(
                code_swap_shape(&scene, rng.sample(2), 1.0),
                Some(Shape::Triangle)
            );
        }
    }

    #[test]
    fn envelope_loss_sees_a_quiet_hum_over_silence_and_a_late_attack() {
        let silence = vec![0f32; 800];
        // A hum at about -58 dBFS: 1e-6 of waveform MSE, but far over the -70 dBFS floor.
        let hum: Vec<f32> = (0..800).map(|i| 1.8e-3 * (i as f32 * 0.3).sin()).collect();
        let (same, same_rise) = envelope(&silence, &silence);
        assert_eq!((same, same_rise), (0.0, 0.0));
        let (level, _) = envelope(&hum, &silence);
        assert!(
            level > 2.0,
            "a -58 dBFS hum over silence costs {level} (ln units)"
        );

        let (on_time, on_time_rise) = envelope(&hit(300), &hit(300));
        assert!(on_time < 1e-6 && on_time_rise < 1e-6);
        let (late, late_rise) = envelope(&hit(500), &hit(300));
        assert!(
            late > 1.0 && late_rise > 0.1,
            "attack 12.5 ms late: {late}, {late_rise}"
        );
    }
}
