//! The scriptable face: clap subcommands. stdout carries only output paths (or one JSON object
//! per job with `--json`); logs and progress go to stderr, progress bars only on a TTY.
//! Exit codes: 0 ok, 2 bad input/spec, 3 model or weights missing, 4 runtime failure,
//! 130 interrupted.

mod generate;
mod models;
mod show;
mod tools;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::spec::{Aspect, Format, VideoCodec};

pub const EXIT_OK: i32 = 0;
pub const EXIT_BAD_INPUT: i32 = 2;
pub const EXIT_MODEL_MISSING: i32 = 3;
pub const EXIT_RUNTIME: i32 = 4;
pub const EXIT_INTERRUPTED: i32 = 130;

/// An error at the binary edge, carrying its exit code.
#[derive(Debug)]
pub struct CliError {
    pub code: i32,
    pub error: anyhow::Error,
    /// Already printed to stderr (job failures are reported one by one as they happen).
    pub reported: bool,
}

impl CliError {
    pub fn new(code: i32, error: impl Into<anyhow::Error>) -> CliError {
        CliError {
            code,
            error: error.into(),
            reported: false,
        }
    }
    pub fn bad_input(msg: impl std::fmt::Display) -> CliError {
        CliError::new(EXIT_BAD_INPUT, anyhow::anyhow!("{msg}"))
    }
    pub fn runtime(msg: impl std::fmt::Display) -> CliError {
        CliError::new(EXIT_RUNTIME, anyhow::anyhow!("{msg}"))
    }
}

pub type CliResult = Result<(), CliError>;

#[derive(Debug, Parser)]
#[command(
    name = "happyhorse",
    version,
    about = "Short video clips with their sound, generated together, on your own machine.",
    after_help = "Examples:\n  happyhorse generate \"a red ball bouncing on a green grass field\"\n  happyhorse generate --spec job.json --json\n  happyhorse batch prompts.jsonl --skip-existing\n  happyhorse models list"
)]
pub struct Cli {
    /// Without a subcommand, a terminal opens the workspace (`tui`); anything else gets help.
    #[command(subcommand)]
    pub command: Option<Command>,
}

// Parsed once per process: the recipe's many settings make `Train` the largest variant by
// far, which costs nothing here.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate clips from a prompt, a JSON spec, or JSONL (one job per line).
    Generate(GenerateArgs),
    /// Run many jobs from a JSONL file (or - for stdin); failures are reported, the rest go on.
    Batch(BatchArgs),
    /// List models, show one, or print where its files are.
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
    /// Duration, fps, size and streams of a media file.
    Probe {
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// The terminal workspace: prompt, parameters, queue, history, gallery, preview.
    Tui(TuiArgs),
    /// Print a strip of frames from a clip to the terminal.
    Show {
        file: PathBuf,
        /// Frames in the strip, evenly spaced over the clip.
        #[arg(long, short = 'n', default_value_t = 6)]
        frames: usize,
        /// Columns for the whole strip (default: the terminal's width).
        #[arg(long)]
        width: Option<u16>,
    },
    /// Print an example job spec or the spec's JSON Schema.
    Spec {
        /// An example spec with every field explained in the README.
        #[arg(long, conflicts_with = "schema")]
        example: bool,
        /// The JSON Schema of the job spec.
        #[arg(long)]
        schema: bool,
    },
    /// Train a model with the project's recipe.
    Train {
        #[command(subcommand)]
        command: TrainCommand,
    },
    /// Measure a model against its targets.
    Eval {
        #[command(subcommand)]
        command: EvalCommand,
    },
    /// Developer tools.
    Debug {
        #[command(subcommand)]
        command: DebugCommand,
    },
    /// Benchmarks (random weights at released widths).
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

#[derive(Debug, Clone, Args, Default)]
pub struct TuiArgs {
    /// Image protocol for the preview: auto, kitty, sixel, iterm2, halfblocks (config: protocol).
    #[arg(long)]
    pub protocol: Option<String>,
    /// Theme: dark, light, or NAME for happyhorse/themes/NAME.toml in the config dir.
    #[arg(long)]
    pub theme: Option<String>,
    /// Do not open the audio device (previews show a loudness strip).
    #[arg(long)]
    pub no_audio: bool,
    #[command(flatten)]
    pub weights: WeightArgs,
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Every known model.
    List {
        #[arg(long)]
        json: bool,
    },
    /// A model's manifest: files, defaults, resolutions.
    Info {
        name: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        weights: WeightArgs,
    },
    /// Download a model's files from the Hugging Face hub into the hub cache.
    Pull {
        name: String,
        /// Only the files needed at this resolution (default: all).
        #[arg(long, short = 'r')]
        resolution: Option<String>,
    },
    /// Where each of a model's files is found (exit 3 if any is missing).
    Path {
        name: String,
        #[command(flatten)]
        weights: WeightArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum DebugCommand {
    /// Run a golden parity case on CPU in f32 and write its outputs as safetensors.
    Case {
        /// Folder with case.json, weights.safetensors, inputs.safetensors.
        dir: PathBuf,
        /// Output .safetensors file: every tensor named in DIR/expected.safetensors.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum EvalCommand {
    /// Generate from in-distribution and held-out prompts and measure the decoded output:
    /// colour, shape and motion adherence, AV sync, silence. Prints a table; --json writes it.
    Nano {
        /// Model folder (config.json, tokenizer.json, model.safetensors): `models/nano` in the
        /// source tree, or OUT/model from `happyhorse train nano`.
        #[arg(long, default_value = "models/nano")]
        model_dir: PathBuf,
        /// Scenes per split.
        #[arg(long, default_value_t = 20)]
        scenes: usize,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Sampler steps (default: the model's own).
        #[arg(long)]
        steps: Option<usize>,
        /// Sampling order (default: the model's own): `joint`, `video-first` (the sound
        /// drawn after the picture, reading it) or `audio-first`.
        #[arg(long, value_parser = ["joint", "video-first", "audio-first"])]
        order: Option<String>,
        /// What makes the clips: `model` (the eval), `codec` (the world's clips through the
        /// codecs: the decoders' ceiling), `world` (the world's clips: checks the analyzers)
        /// or `dub` (the world's picture through the codecs with the model's sound for it:
        /// whether the sound follows a picture it is shown).
        #[arg(long, default_value = "model", value_parser = ["model", "codec", "world", "dub"])]
        source: String,
        /// Also write the report as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Also write every judged clip to this folder as MP4, to look at.
        #[arg(long)]
        dump: Option<PathBuf>,
        /// Frame rate of the judged clips, and so the unit of the sync target (one frame).
        /// At the model's native rate (8 for Nano) no frame is repeated.
        #[arg(long, default_value_t = 24)]
        fps: u32,
        /// Clip length in seconds (the setting: 4).
        #[arg(long, default_value_t = 4.0)]
        seconds: f32,
    },
}

#[derive(Debug, Subcommand)]
pub enum TrainCommand {
    /// HappyHorse Nano on the procedural audio-visual world. Rerun with the same --out to resume.
    Nano {
        /// Run folder: checkpoints in OUT/checkpoint, the loadable model in OUT/model.
        #[arg(long, default_value = "nano-run")]
        out: PathBuf,
        /// A few steps of a tiny model (what CI runs).
        #[arg(long)]
        smoke: bool,
        #[arg(long)]
        seed: Option<u64>,
        /// Steps of the video codec.
        #[arg(long)]
        codec_steps: Option<usize>,
        /// Steps of the audio codec (trained alongside the video codec, for longer).
        #[arg(long)]
        audio_codec_steps: Option<usize>,
        #[arg(long)]
        dit_steps: Option<usize>,
        /// Steps of the DiT's second phase (a warm restart of its learning rate after
        /// --dit-steps; the recipe: 2000); rerun a finished run with more to extend it.
        #[arg(long)]
        dit_restart_steps: Option<usize>,
        /// Peak learning rate of the second phase (the recipe: 3e-4).
        #[arg(long)]
        dit_restart_lr: Option<f64>,
        /// Object weight of the second phase (default: the first phase's).
        #[arg(long)]
        dit_restart_object_weight: Option<f32>,
        /// Weight on the hits' audio frames in the second phase (default: the first phase's
        /// --impact-weight).
        #[arg(long)]
        dit_restart_impact_weight: Option<f32>,
        /// Share of the second phase's clips trained without their caption (default: the
        /// first phase's, 0.1).
        #[arg(long)]
        dit_restart_caption_dropout: Option<f64>,
        /// Share of the second phase's clips that start from their twin of another shape and
        /// are led to their own shape (the recipe: 0.5; 0: none).
        #[arg(long)]
        dit_restart_shape_swap: Option<f32>,
        /// Weight of the sync probe in the DiT stage (a read-out of the hits' audio frames
        /// from the audio tokens halfway up the DiT; 0: none, the recipe).
        #[arg(long)]
        sync_probe_weight: Option<f32>,
        /// Initial gain of the DiT's query and key norms (default 1): an attention logit is
        /// capped at sqrt(head_dim) * gain^2.
        #[arg(long)]
        dit_qk_norm_gain: Option<f32>,
        /// Whether every DiT token also reads its time as sines and cosines (periods 0.5, 1
        /// and 2 s): true or false.
        #[arg(long)]
        dit_clock: Option<bool>,
        /// The clock's periods in seconds, as P1,P2,... (default 0.5,1,2). Periods longer than
        /// the DiT's training clips need --dit-window-s to be trained on every value.
        #[arg(long, value_delimiter = ',')]
        dit_clock_periods: Option<Vec<f32>>,
        /// Cut the DiT's training clips from world clips of up to this many seconds (default
        /// 0: whole clips): their tokens read the time of where they were cut, so short
        /// clips teach every time of a long one.
        #[arg(long)]
        dit_window_s: Option<f32>,
        /// Pixel frames per video latent frame (the video codec's temporal stride): 4 (the
        /// recipe, MagiHuman's), 2 or 1. A new run only: the codecs are built for it.
        #[arg(long)]
        video_temporal_stride: Option<usize>,
        /// Channels of the video latent (16 in the recipe). A new run only.
        #[arg(long)]
        video_latent_channels: Option<usize>,
        /// Local attention in the DiT's inner layers: a video token reads its latent frame and
        /// this many on each side, plus all audio and text (default: every layer global).
        #[arg(long)]
        dit_local_field: Option<usize>,
        /// The DiT's depth (6 in the recipe); the first and last layers stay the expert ones.
        /// A new run only.
        #[arg(long)]
        dit_layers: Option<usize>,
        /// Weight of the sync probe in the second phase (default: the first phase's).
        #[arg(long)]
        dit_restart_sync_probe_weight: Option<f32>,
        /// Share of the second phase's clips trained as dubs: the picture less noisy than the
        /// sound (default 0).
        #[arg(long)]
        dit_restart_dub_share: Option<f64>,
        /// Sigma shift of the second phase's training noise levels (default: the first
        /// phase's); the sampler keeps the first phase's.
        #[arg(long)]
        dit_restart_sigma_shift: Option<f64>,
        /// Clip lengths of the second phase in latent frames, as MIN,MAX (default: the first
        /// phase's --latent-frames).
        #[arg(long, value_delimiter = ',')]
        dit_restart_latent_frames: Option<Vec<usize>>,
        /// Share of the DiT's training clips (0 to 1) whose audio takes a noise level of its
        /// own, apart from the video's.
        #[arg(long)]
        dit_decoupled_noise: Option<f32>,
        /// Steps of a last stage that trains the audio decoder alone on noised latents
        /// (the encoder and the DiT stay as they are); rerun a finished run with it to
        /// extend that run.
        #[arg(long)]
        audio_decoder_steps: Option<usize>,
        /// Learning rate of the audio-decoder stage.
        #[arg(long)]
        audio_decoder_lr: Option<f64>,
        /// Largest latent noise of the audio-decoder stage, in latent stds.
        #[arg(long)]
        audio_decoder_noise: Option<f32>,
        /// Whether the audio decoder also sees the decoded frames (a cue trained in the
        /// audio-decoder stage only, so that hits can sound where the picture's contacts
        /// are): true or false.
        #[arg(long)]
        audio_decoder_video_cue: Option<bool>,
        /// With the cue, the share (0 to 1) of the audio-decoder stage's clips whose sound
        /// latent is rolled in time, so that only the picture tells when the hits are.
        #[arg(long)]
        audio_decoder_cue_shift: Option<f32>,
        /// With the cue, the audio-decoder stage decodes the DiT's own sound and picture, its
        /// walk from the clip's latents noised to a level drawn up to this (0 to 1).
        #[arg(long)]
        audio_decoder_dit_sigma: Option<f32>,
        /// With the cue, the audio-decoder stage's target puts the hits where the decoded
        /// picture shows its contacts (read by the eval's video analyzer): true or false.
        #[arg(long)]
        audio_decoder_picture_hits: Option<bool>,
        /// Steps of a stage after that one that trains the video decoder alone on noised
        /// latents; rerun a finished run with it to extend that run.
        #[arg(long)]
        video_decoder_steps: Option<usize>,
        /// Learning rate of the video-decoder stage.
        #[arg(long)]
        video_decoder_lr: Option<f64>,
        /// Largest latent noise of the video-decoder stage, in latent stds.
        #[arg(long)]
        video_decoder_noise: Option<f32>,
        /// Whether the video decoder reads each latent frame's neighbours (layers trained in
        /// the video-decoder stage only): true or false.
        #[arg(long)]
        video_decoder_temporal_mix: Option<bool>,
        /// The video-decoder stage decodes the DiT's one-step estimate of each clip from a
        /// noise level drawn up to this (0 to 1) instead of the encoder's noised latent.
        #[arg(long)]
        video_decoder_dit_sigma: Option<f32>,
        /// With --video-decoder-dit-sigma: decode the DiT's whole walk from that level down the
        /// sampler's schedule, on the DiT's own clips, instead of its one-step guess: true or false.
        #[arg(long)]
        video_decoder_dit_walk: Option<bool>,
        #[arg(long)]
        batch: Option<usize>,
        /// DiT learning rate.
        #[arg(long)]
        dit_lr: Option<f64>,
        /// DiT clip lengths in latent frames, as MIN,MAX (--video-temporal-stride video
        /// frames each, 4 in the recipe).
        #[arg(long, value_delimiter = ',')]
        latent_frames: Option<Vec<usize>>,
        /// Codec clip lengths in latent frames, as MIN,MAX.
        #[arg(long, value_delimiter = ',')]
        codec_latent_frames: Option<Vec<usize>>,
        /// Extra DiT loss weight on the latent cells the objects cover.
        #[arg(long)]
        dit_object_weight: Option<f32>,
        /// Weight of the text probe in the DiT stage: linear heads that read the scene's
        /// colour, shape, motion, … from the pooled caption feature (0: none).
        #[arg(long)]
        text_probe_weight: Option<f32>,
        /// Extra DiT loss weight on the audio frames of each hit.
        #[arg(long)]
        impact_weight: Option<f32>,
        /// σ shift of the DiT's training noise levels; the exported model's sampler uses
        /// the same shift.
        #[arg(long)]
        sigma_shift: Option<f64>,
        /// How far the DiT's training clips spread their objects across the frame, from 1
        /// (anywhere, as the world draws them) to 0 (the middle of each path's range; the
        /// recipe's).
        #[arg(long)]
        placement_spread: Option<f32>,
        /// The same for the timing of their motion (drop height, contact times, slide span,
        /// orbit period and start): 1 as the world draws it, 0 the middle of each range (the
        /// recipe's).
        #[arg(long)]
        physics_spread: Option<f32>,
        /// Weight of the video codec's shape code: its first three latent channels learn the
        /// share of each latent cell a ball, a square or a triangle covers. 0: none (the
        /// recipe's).
        #[arg(long)]
        codec_shape_weight: Option<f32>,
        /// End this session after N steps (checkpointed; rerun to resume).
        #[arg(long)]
        stop_after: Option<usize>,
        /// Start from the codecs of this model folder (e.g. models/nano) and train the DiT
        /// and text encoder only.
        #[arg(long)]
        codecs_from: Option<PathBuf>,
        /// Start from every weight of this finished model folder (e.g. models/nano) and
        /// train the video-decoder stage only (with --video-decoder-steps).
        #[arg(long)]
        video_decoder_from: Option<PathBuf>,
        /// Start from every weight of this finished model folder (e.g. models/nano) and
        /// train the audio-decoder stage (with --audio-decoder-steps; then the video-decoder
        /// stage if --video-decoder-steps is set).
        #[arg(long)]
        audio_decoder_from: Option<PathBuf>,
        /// Train on the first GPU (needs a build with --features cuda or metal). Same recipe,
        /// same data; the floating-point sums differ, so the weights match a CPU run's in
        /// quality, not bit for bit.
        #[arg(long)]
        gpu: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// One MagiHuman transformer layer at the released width on a 256p 5 s sequence.
    Dit {
        /// Compute dtypes to measure.
        #[arg(long, value_delimiter = ',', default_value = "f32,bf16")]
        dtype: Vec<String>,
        /// Hidden size (5120 released).
        #[arg(long, default_value_t = 5120)]
        hidden: usize,
        /// Timed runs; the best is reported.
        #[arg(long, default_value_t = 1)]
        repeats: usize,
        /// Latent frames of the video tokens (8 at 256p and 5 s: 448 tokens each).
        #[arg(long, default_value_t = 8)]
        frames: usize,
        /// Also time a local-attention layer (as in `sr_1080p`) whose video tokens read their
        /// own frame and this many each side, on the same tokens, after each global one.
        #[arg(long)]
        local_field: Option<usize>,
        /// Run on the GPU (needs a build with --features cuda or metal).
        #[arg(long)]
        gpu: bool,
    },
    /// The codecs and the text encoder at the released widths (random weights): Wan2.2 VAE
    /// decode and encode, TurboVAED decode, Stable Audio Open VAE decode and encode, one
    /// T5Gemma-9B encoder layer. One line per stage on stdout: seconds and peak RSS.
    Codec {
        /// Stages, comma-separated: wan22-decode, wan22-encode, turbo-decode, audio-decode,
        /// audio-encode, t5gemma-layer (default: all, in that order).
        #[arg(long, value_delimiter = ',')]
        stage: Vec<String>,
        /// Clip length: video at 24 fps (frames rounded down to 1+4k: 5 s = 121 frames, 31
        /// latent frames), audio at 25 latent frames per second.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Video size WxH in pixels, multiples of 16.
        #[arg(long, default_value = "448x256")]
        size: String,
        /// Compute dtype: f32, bf16 or f16.
        #[arg(long, default_value = "f32")]
        dtype: String,
        /// Run on the GPU (needs a build with --features cuda or metal).
        #[arg(long)]
        gpu: bool,
    },
    /// A whole default-model job: load, generate a clip with sound, encode MP4 + WAV.
    Nano {
        /// Clip length in seconds.
        #[arg(long, default_value_t = 4.0)]
        duration: f32,
        /// 16:9, 9:16 or 1:1.
        #[arg(long, value_parser = parse_aspect, default_value = "16:9")]
        aspect: Aspect,
        /// Timed runs; each is reported, then the best.
        #[arg(long, default_value_t = 3)]
        repeats: usize,
        /// A trained Nano folder (OUT/model of `happyhorse train nano`) instead of the
        /// embedded weights.
        #[arg(long)]
        model_dir: Option<std::path::PathBuf>,
    },
}

#[derive(Debug, Clone, Args, Default)]
pub struct WeightArgs {
    /// Folder holding model files (layout: see `happyhorse models info NAME`).
    #[arg(long, env = "HAPPYHORSE_MODEL_DIR")]
    pub model_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Args, Default)]
pub struct RunArgs {
    /// One JSON object per job on stdout instead of paths.
    #[arg(long)]
    pub json: bool,
    /// Leave jobs whose outputs all exist alone (resumes a batch).
    #[arg(long)]
    pub skip_existing: bool,
    #[command(flatten)]
    pub weights: WeightArgs,
}

/// Flags that mirror the job spec; they override the same fields of specs read from files.
#[derive(Debug, Clone, Args, Default)]
pub struct SpecFlags {
    #[arg(long)]
    pub negative_prompt: Option<String>,
    /// Registry name or model directory.
    #[arg(long, short = 'm')]
    pub model: Option<String>,
    /// Reference image (image-to-video).
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// Soundtrack to drive the video.
    #[arg(long)]
    pub audio: Option<PathBuf>,
    /// Seconds.
    #[arg(long, short = 'd')]
    pub duration: Option<f32>,
    #[arg(long)]
    pub fps: Option<u32>,
    /// 16:9, 9:16 or 1:1.
    #[arg(long, value_parser = parse_aspect)]
    pub aspect: Option<Aspect>,
    /// e.g. 256p, 540p, 1080p (the model lists its own).
    #[arg(long, short = 'r')]
    pub resolution: Option<String>,
    #[arg(long)]
    pub steps: Option<u32>,
    #[arg(long)]
    pub guidance_video: Option<f32>,
    #[arg(long)]
    pub guidance_audio: Option<f32>,
    #[arg(long, short = 's')]
    pub seed: Option<u64>,
    #[arg(long)]
    pub audio_seed: Option<u64>,
    /// 0.0 (silent) to 1.0.
    #[arg(long)]
    pub audio_weight: Option<f32>,
    /// Sound style tag (repeatable).
    #[arg(long = "sound-style")]
    pub sound_style: Vec<String>,
    #[arg(long)]
    pub background_sound: Option<String>,
    /// Camera move (reserved; validated, not yet used by any model).
    #[arg(long)]
    pub camera: Option<String>,
    /// Clips per spec, 1–8.
    #[arg(long, short = 'n')]
    pub variants: Option<u32>,
    /// Output folder.
    #[arg(long, short = 'o')]
    pub out_dir: Option<PathBuf>,
    /// Output name template ({id}, {slug}, {variant}, {seed}, {model}).
    #[arg(long)]
    pub name: Option<String>,
    /// h264 or h265.
    #[arg(long, value_parser = parse_codec)]
    pub codec: Option<VideoCodec>,
    /// Output formats, comma-separated: mp4,wav,png.
    #[arg(long, value_delimiter = ',', value_parser = parse_format)]
    pub formats: Option<Vec<Format>>,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// The prompt, or - to read a JSON spec / JSONL from stdin.
    pub prompt: Option<String>,
    /// Read the spec (JSON, or JSONL with one job per line) from FILE.
    #[arg(long, conflicts_with = "prompt")]
    pub spec: Option<PathBuf>,
    #[command(flatten)]
    pub flags: SpecFlags,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Args)]
pub struct BatchArgs {
    /// JSONL file, one job spec per line, or - for stdin.
    pub file: PathBuf,
    #[command(flatten)]
    pub flags: SpecFlags,
    #[command(flatten)]
    pub run: RunArgs,
}

fn parse_aspect(s: &str) -> Result<Aspect, String> {
    Aspect::parse(s).ok_or_else(|| format!("\"{s}\" is not an aspect; allowed: 16:9, 9:16, 1:1"))
}

fn parse_codec(s: &str) -> Result<VideoCodec, String> {
    match s {
        "h264" => Ok(VideoCodec::H264),
        "h265" | "hevc" => Ok(VideoCodec::H265),
        _ => Err(format!("\"{s}\" is not a video codec; allowed: h264, h265")),
    }
}

fn parse_format(s: &str) -> Result<Format, String> {
    match s {
        "mp4" => Ok(Format::Mp4),
        "wav" => Ok(Format::Wav),
        "png" => Ok(Format::Png),
        _ => Err(format!(
            "\"{s}\" is not an output format; allowed: mp4, wav, png"
        )),
    }
}

/// Runs the parsed command line; the binary maps the error to its exit code.
pub fn run(cli: Cli) -> CliResult {
    use std::io::IsTerminal;
    let Some(command) = cli.command else {
        if std::io::stdin().is_terminal() && std::io::stdout().is_terminal() {
            return tui(TuiArgs::default());
        }
        // Scripts calling us bare get the usage, and a failure they can notice.
        let _ = <Cli as clap::CommandFactory>::command().print_help();
        return Err(CliError {
            code: EXIT_BAD_INPUT,
            error: anyhow::anyhow!("no command given"),
            reported: true,
        });
    };
    match command {
        Command::Tui(args) => tui(args),
        Command::Show {
            file,
            frames,
            width,
        } => show::show(&file, frames, width),
        Command::Generate(args) => generate::generate(args),
        Command::Batch(args) => generate::batch(args),
        Command::Models { command } => models::run(command),
        Command::Probe { file, json } => tools::probe(&file, json),
        Command::Spec { example, schema } => tools::spec(example, schema),
        Command::Debug {
            command: DebugCommand::Case { dir, out },
        } => tools::debug_case(&dir, &out),
        Command::Bench {
            command:
                BenchCommand::Dit {
                    dtype,
                    hidden,
                    repeats,
                    frames,
                    local_field,
                    gpu,
                },
        } => tools::bench_dit(&dtype, hidden, repeats, frames, local_field, gpu),
        Command::Bench {
            command:
                BenchCommand::Codec {
                    stage,
                    seconds,
                    size,
                    dtype,
                    gpu,
                },
        } => tools::bench_codec(&stage, seconds, &size, &dtype, gpu),
        Command::Bench {
            command:
                BenchCommand::Nano {
                    duration,
                    aspect,
                    repeats,
                    model_dir,
                },
        } => tools::bench_nano(duration, aspect, repeats, model_dir.as_deref()),
        Command::Eval {
            command:
                EvalCommand::Nano {
                    model_dir,
                    scenes,
                    seed,
                    steps,
                    order,
                    source,
                    json,
                    dump,
                    fps,
                    seconds,
                },
        } => {
            use crate::engine::models::nano::SampleOrder;
            let order = order.map(|o| match o.as_str() {
                "video-first" => SampleOrder::VideoFirst,
                "audio-first" => SampleOrder::AudioFirst,
                _ => SampleOrder::Joint,
            });
            let source = match source.as_str() {
                "codec" => crate::nano::eval::Source::Codec,
                "world" => crate::nano::eval::Source::World,
                "dub" => crate::nano::eval::Source::Dub,
                _ => crate::nano::eval::Source::Model,
            };
            let cfg = crate::nano::eval::EvalConfig {
                scenes_per_split: scenes,
                seed,
                steps,
                order,
                source,
                dump,
                fps,
                duration_s: seconds,
                ..crate::nano::eval::EvalConfig::new(model_dir)
            };
            tools::eval_nano(cfg, json)
        }
        Command::Train {
            command:
                TrainCommand::Nano {
                    out,
                    smoke,
                    seed,
                    codec_steps,
                    audio_codec_steps,
                    dit_steps,
                    dit_restart_steps,
                    dit_restart_lr,
                    dit_restart_object_weight,
                    dit_restart_impact_weight,
                    dit_restart_caption_dropout,
                    dit_restart_shape_swap,
                    sync_probe_weight,
                    dit_restart_sync_probe_weight,
                    dit_restart_dub_share,
                    dit_restart_sigma_shift,
                    dit_restart_latent_frames,
                    dit_qk_norm_gain,
                    dit_clock,
                    dit_clock_periods,
                    dit_window_s,
                    video_temporal_stride,
                    video_latent_channels,
                    dit_local_field,
                    dit_layers,
                    dit_decoupled_noise,
                    audio_decoder_steps,
                    audio_decoder_lr,
                    audio_decoder_noise,
                    audio_decoder_video_cue,
                    audio_decoder_cue_shift,
                    audio_decoder_dit_sigma,
                    audio_decoder_picture_hits,
                    video_decoder_steps,
                    video_decoder_lr,
                    video_decoder_noise,
                    video_decoder_temporal_mix,
                    video_decoder_dit_sigma,
                    video_decoder_dit_walk,
                    batch,
                    dit_lr,
                    latent_frames,
                    codec_latent_frames,
                    dit_object_weight,
                    text_probe_weight,
                    impact_weight,
                    sigma_shift,
                    placement_spread,
                    physics_spread,
                    codec_shape_weight,
                    stop_after,
                    codecs_from,
                    video_decoder_from,
                    audio_decoder_from,
                    gpu,
                },
        } => {
            let mut cfg = if smoke {
                crate::nano::train::TrainConfig::smoke(out)
            } else {
                crate::nano::train::TrainConfig::nano(out)
            };
            cfg.seed = seed.unwrap_or(cfg.seed);
            cfg.codec_steps = codec_steps.unwrap_or(cfg.codec_steps);
            cfg.audio_codec_steps = audio_codec_steps.unwrap_or(cfg.audio_codec_steps);
            cfg.dit_steps = dit_steps.unwrap_or(cfg.dit_steps);
            cfg.dit_restart_steps = dit_restart_steps.unwrap_or(cfg.dit_restart_steps);
            cfg.dit_restart_lr = dit_restart_lr.unwrap_or(cfg.dit_restart_lr);
            cfg.dit_restart_object_weight =
                dit_restart_object_weight.or(cfg.dit_restart_object_weight);
            cfg.dit_restart_impact_weight =
                dit_restart_impact_weight.or(cfg.dit_restart_impact_weight);
            cfg.dit_restart_caption_dropout =
                dit_restart_caption_dropout.or(cfg.dit_restart_caption_dropout);
            cfg.dit_restart_shape_swap =
                dit_restart_shape_swap.unwrap_or(cfg.dit_restart_shape_swap);
            cfg.dit_decoupled_noise = dit_decoupled_noise.unwrap_or(cfg.dit_decoupled_noise);
            cfg.sync_probe_weight = sync_probe_weight.unwrap_or(cfg.sync_probe_weight);
            cfg.dit_restart_sync_probe_weight =
                dit_restart_sync_probe_weight.or(cfg.dit_restart_sync_probe_weight);
            cfg.dit_restart_dub_share = dit_restart_dub_share.unwrap_or(cfg.dit_restart_dub_share);
            cfg.dit_restart_sigma_shift = dit_restart_sigma_shift.or(cfg.dit_restart_sigma_shift);
            cfg.dit_qk_norm_gain = dit_qk_norm_gain.unwrap_or(cfg.dit_qk_norm_gain);
            cfg.dit_clock = dit_clock.unwrap_or(cfg.dit_clock);
            cfg.dit_clock_periods_s = dit_clock_periods.unwrap_or(cfg.dit_clock_periods_s);
            cfg.dit_window_s = dit_window_s.unwrap_or(cfg.dit_window_s);
            cfg.video_temporal_stride = video_temporal_stride.unwrap_or(cfg.video_temporal_stride);
            cfg.video_latent_channels = video_latent_channels.unwrap_or(cfg.video_latent_channels);
            cfg.dit_local_field = dit_local_field.or(cfg.dit_local_field);
            cfg.dit_layers = dit_layers.unwrap_or(cfg.dit_layers);
            cfg.audio_decoder_steps = audio_decoder_steps.unwrap_or(cfg.audio_decoder_steps);
            cfg.audio_decoder_lr = audio_decoder_lr.unwrap_or(cfg.audio_decoder_lr);
            cfg.audio_decoder_noise = audio_decoder_noise.unwrap_or(cfg.audio_decoder_noise);
            cfg.audio_decoder_video_cue =
                audio_decoder_video_cue.unwrap_or(cfg.audio_decoder_video_cue);
            cfg.audio_decoder_cue_shift =
                audio_decoder_cue_shift.unwrap_or(cfg.audio_decoder_cue_shift);
            cfg.audio_decoder_dit_sigma =
                audio_decoder_dit_sigma.unwrap_or(cfg.audio_decoder_dit_sigma);
            cfg.audio_decoder_picture_hits =
                audio_decoder_picture_hits.unwrap_or(cfg.audio_decoder_picture_hits);
            cfg.video_decoder_steps = video_decoder_steps.unwrap_or(cfg.video_decoder_steps);
            cfg.video_decoder_lr = video_decoder_lr.unwrap_or(cfg.video_decoder_lr);
            cfg.video_decoder_noise = video_decoder_noise.unwrap_or(cfg.video_decoder_noise);
            cfg.video_decoder_temporal_mix =
                video_decoder_temporal_mix.unwrap_or(cfg.video_decoder_temporal_mix);
            cfg.video_decoder_dit_sigma =
                video_decoder_dit_sigma.unwrap_or(cfg.video_decoder_dit_sigma);
            cfg.video_decoder_dit_walk =
                video_decoder_dit_walk.unwrap_or(cfg.video_decoder_dit_walk);
            cfg.batch = batch.unwrap_or(cfg.batch);
            cfg.dit_lr = dit_lr.unwrap_or(cfg.dit_lr);
            let restart_given = dit_restart_latent_frames.is_some();
            let mut restart_frames = cfg.dit_restart_latent_frames.unwrap_or(cfg.latent_frames);
            for (flag, given, field) in [
                ("--latent-frames", latent_frames, &mut cfg.latent_frames),
                (
                    "--dit-restart-latent-frames",
                    dit_restart_latent_frames,
                    &mut restart_frames,
                ),
                (
                    "--codec-latent-frames",
                    codec_latent_frames,
                    &mut cfg.codec_latent_frames,
                ),
            ] {
                match given.as_deref() {
                    None => {}
                    Some(&[lo, hi]) => *field = (lo, hi),
                    Some(other) => {
                        return Err(CliError::new(
                            EXIT_BAD_INPUT,
                            anyhow::anyhow!("{flag} takes MIN,MAX (e.g. 2,5), got {other:?}"),
                        ))
                    }
                }
            }
            if restart_given {
                cfg.dit_restart_latent_frames = Some(restart_frames);
            }
            cfg.dit_object_weight = dit_object_weight.unwrap_or(cfg.dit_object_weight);
            cfg.text_probe_weight = text_probe_weight.unwrap_or(cfg.text_probe_weight);
            cfg.impact_weight = impact_weight.unwrap_or(cfg.impact_weight);
            cfg.sigma_shift = sigma_shift.unwrap_or(cfg.sigma_shift);
            cfg.placement_spread = placement_spread.unwrap_or(cfg.placement_spread);
            cfg.physics_spread = physics_spread.unwrap_or(cfg.physics_spread);
            cfg.codec_shape_weight = codec_shape_weight.unwrap_or(cfg.codec_shape_weight);
            cfg.stop_after = stop_after.or(cfg.stop_after);
            cfg.codecs_from = codecs_from.or(cfg.codecs_from);
            cfg.video_decoder_from = video_decoder_from.or(cfg.video_decoder_from);
            cfg.audio_decoder_from = audio_decoder_from.or(cfg.audio_decoder_from);
            tools::train_nano(cfg, gpu)
        }
    }
}

fn tui(args: TuiArgs) -> CliResult {
    use std::io::IsTerminal;
    if !(std::io::stdin().is_terminal() && std::io::stdout().is_terminal()) {
        return Err(CliError::bad_input(
            "the workspace needs a terminal on stdin and stdout; use `happyhorse generate` in scripts",
        ));
    }
    crate::tui::run(crate::tui::TuiOptions {
        protocol: args.protocol,
        theme: args.theme,
        no_audio: args.no_audio,
        weights: crate::engine::registry::WeightSearch::from_env(args.weights.model_dir),
    })
    .map_err(|e| match e {
        crate::tui::TuiError::Config(_) => CliError::new(EXIT_BAD_INPUT, e),
        _ => CliError::new(EXIT_RUNTIME, e),
    })
}
