//! `probe`, `spec`, `debug case`, `bench`.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device};

use super::{CliError, CliResult};
use crate::engine::bench::{
    bench_dit_layer, codec_latent_frames, codec_video_frames, gib, reset_peak_rss, rss_bytes,
    DitBench,
};
use crate::engine::golden::{self, CaseError};
use crate::engine::registry::{Registry, WeightSearch};
use crate::jobs::{self, CancelToken, RunOptions};
use crate::media::{self, MediaError};
use crate::nano::train::{self, Stage, TrainConfig};
use crate::spec::{Aspect, JobSpec, OutputSpec};

pub fn probe(file: &Path, json: bool) -> CliResult {
    let info = media::probe(file).map_err(|e| match e {
        MediaError::Io { .. } => CliError::bad_input(e),
        other => CliError::bad_input(format!("{other}; is it a media file?")),
    })?;
    if json {
        println!("{}", serde_json::to_string(&info).unwrap_or_default());
        return Ok(());
    }
    println!(
        "{}: {}, {:.3} s",
        file.display(),
        info.format,
        info.duration_s
    );
    for s in &info.streams {
        match s.kind {
            media::StreamKind::Video => println!(
                "  stream {} video {} {}x{} {:.3} fps, {} frames ({:.3} s)",
                s.index,
                s.codec,
                s.width.unwrap_or(0),
                s.height.unwrap_or(0),
                s.fps.unwrap_or(0.0),
                s.decoded,
                s.duration_s
            ),
            media::StreamKind::Audio => println!(
                "  stream {} audio {} {} Hz, {} ch, {} samples ({:.3} s)",
                s.index,
                s.codec,
                s.sample_rate.unwrap_or(0),
                s.channels.unwrap_or(0),
                s.decoded,
                s.duration_s
            ),
            media::StreamKind::Other => println!("  stream {} {}", s.index, s.codec),
        }
    }
    Ok(())
}

pub fn spec(example: bool, schema: bool) -> CliResult {
    let value = if schema {
        JobSpec::schema()
    } else if example {
        serde_json::to_value(JobSpec::example()).unwrap_or_default()
    } else {
        return Err(CliError::bad_input(
            "say what to print: --example or --schema",
        ));
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&value).unwrap_or_default()
    );
    Ok(())
}

pub fn debug_case(dir: &Path, out: &Path) -> CliResult {
    let tensors = golden::run_case(dir).map_err(|e| match e {
        CaseError::Run { .. } => CliError::runtime(e),
        _ => CliError::bad_input(e),
    })?;
    let map: HashMap<String, candle_core::Tensor> = tensors.into_iter().collect();
    media::write_atomic(out, |tmp| {
        candle_core::safetensors::save(&map, tmp).map_err(|e| MediaError::Invalid {
            path: tmp.to_path_buf(),
            message: e.to_string(),
        })
    })
    .map_err(CliError::runtime)?;
    println!("{}", out.display());
    Ok(())
}

/// The first CUDA GPU, or a message saying how to get a build that has one.
fn gpu_device() -> Result<Device, CliError> {
    let dev = Device::cuda_if_available(0).map_err(CliError::runtime)?;
    if dev.is_cpu() {
        return Err(CliError::bad_input(
            "--gpu needs a build with CUDA and a visible GPU: cargo build --release --features cuda",
        ));
    }
    Ok(dev)
}

pub fn bench_dit(
    dtypes: &[String],
    hidden: usize,
    repeats: usize,
    frames: usize,
    local_field: Option<usize>,
    gpu: bool,
) -> CliResult {
    let dev = if gpu { gpu_device()? } else { Device::Cpu };
    eprintln!(
        "bench dit: one shared swiglu7 layer, hidden {hidden}, head_dim 128, {} q heads, 8 kv groups, 3584+126+150 tokens in {frames} latent frames, {:?}",
        hidden / 128,
        dev
    );
    if hidden == 0 || hidden % 1024 != 0 {
        return Err(CliError::bad_input(format!(
            "--hidden {hidden}: the bench's heads are 128 wide in 8 kv groups, so the hidden size must be a multiple of 1024"
        )));
    }
    let video_tokens = DitBench::released(DType::F32).video_tokens;
    if local_field.is_some() && (frames == 0 || video_tokens % frames != 0) {
        return Err(CliError::bad_input(format!(
            "--frames {frames}: the bench's {video_tokens} video tokens must split into whole frames (e.g. 7, 8, 14, 16, 28, 32)"
        )));
    }
    let layers: Vec<Option<usize>> = std::iter::once(None).chain(local_field.map(Some)).collect();
    for name in dtypes {
        let dtype = parse_dtype(name)?;
        for &field in &layers {
            let b = DitBench {
                hidden,
                repeats,
                frames,
                local_field: field,
                ..DitBench::released(dtype)
            };
            let r = bench_dit_layer(&b, &dev).map_err(CliError::runtime)?;
            let kind = match field {
                None => "global".to_string(),
                Some(f) => format!("local ±{f} of {frames} frames"),
            };
            println!(
                "dit layer {name} {kind}: {:.3} s, {:.0} tokens/s, {:.1} GFLOP/s ({:.1} GFLOP)",
                r.seconds,
                r.tokens_per_s,
                r.gflops,
                b.flops() / 1e9
            );
        }
    }
    Ok(())
}

/// `--dtype` of the benches.
fn parse_dtype(name: &str) -> Result<DType, CliError> {
    match name {
        "f32" => Ok(DType::F32),
        "bf16" => Ok(DType::BF16),
        "f16" => Ok(DType::F16),
        other => Err(CliError::bad_input(format!(
            "--dtype {other}: allowed f32, bf16, f16"
        ))),
    }
}

/// A stage of `bench codec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodecStage {
    Wan22Decode,
    Wan22Encode,
    TurboDecode,
    AudioDecode,
    AudioEncode,
    T5gemmaLayer,
}

impl CodecStage {
    /// Every stage, in the order `bench codec` runs them by default.
    pub const ALL: [CodecStage; 6] = [
        CodecStage::Wan22Decode,
        CodecStage::Wan22Encode,
        CodecStage::TurboDecode,
        CodecStage::AudioDecode,
        CodecStage::AudioEncode,
        CodecStage::T5gemmaLayer,
    ];

    pub fn name(self) -> &'static str {
        match self {
            CodecStage::Wan22Decode => "wan22-decode",
            CodecStage::Wan22Encode => "wan22-encode",
            CodecStage::TurboDecode => "turbo-decode",
            CodecStage::AudioDecode => "audio-decode",
            CodecStage::AudioEncode => "audio-encode",
            CodecStage::T5gemmaLayer => "t5gemma-layer",
        }
    }
}

/// `--stage` of `bench codec`: names in the order given (empty: every stage).
fn parse_stages(names: &[String]) -> Result<Vec<CodecStage>, CliError> {
    if names.is_empty() {
        return Ok(CodecStage::ALL.to_vec());
    }
    names
        .iter()
        .map(|n| {
            let n = n.trim();
            CodecStage::ALL
                .into_iter()
                .find(|s| s.name() == n)
                .ok_or_else(|| {
                    let allowed: Vec<&str> = CodecStage::ALL.iter().map(|s| s.name()).collect();
                    CliError::bad_input(format!("--stage {n}: allowed {}", allowed.join(", ")))
                })
        })
        .collect()
}

/// `--size WxH` of `bench codec`: `(width, height)` in pixels, both positive multiples of 16.
fn parse_size(s: &str) -> Result<(usize, usize), CliError> {
    let bad = || {
        CliError::bad_input(format!(
            "--size {s}: allowed WxH in pixels, both positive multiples of 16 (e.g. 448x256)"
        ))
    };
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    let w: usize = w.trim().parse().map_err(|_| bad())?;
    let h: usize = h.trim().parse().map_err(|_| bad())?;
    if w == 0 || h == 0 || w % 16 != 0 || h % 16 != 0 {
        return Err(bad());
    }
    Ok((w, h))
}

/// The codecs and the text encoder at the released widths with random weights, stage by
/// stage: the measurement on stdout (one line each), what is run on stderr. Each stage's peak
/// RSS is its own: the kernel's mark is reset before it (Linux).
pub fn bench_codec(
    stages: &[String],
    seconds: f64,
    size: &str,
    dtype_name: &str,
    gpu: bool,
) -> CliResult {
    use crate::engine::models::{sa_audio, t5gemma, turbo_vae, wan22_vae};
    let stages = parse_stages(stages)?;
    let (w, h) = parse_size(size)?;
    let dtype = parse_dtype(dtype_name)?;
    if !(seconds.is_finite() && seconds > 0.0) {
        return Err(CliError::bad_input(format!(
            "--seconds {seconds}: allowed a positive number of seconds"
        )));
    }
    let dev = if gpu { gpu_device()? } else { Device::Cpu };
    let frames = codec_video_frames(seconds);
    let t = codec_latent_frames(frames);
    let (lh, lw) = (h / 16, w / 16);
    let audio_frames = sa_audio::bench::latent_frames(seconds as f32);
    let host = if gpu { " (peak RSS: host memory)" } else { "" };
    eprintln!("bench codec: random weights at released widths, {dev:?} {dtype_name}{host}");
    for stage in stages {
        let name = stage.name();
        let what = match stage {
            CodecStage::Wan22Decode => format!(
                "Wan2.2 VAE decoder (TI2V-5B), latent [1, 48, {t}, {lh}, {lw}] -> {frames} \
                 frames of {w}x{h}"
            ),
            CodecStage::Wan22Encode => format!(
                "Wan2.2 VAE encoder (TI2V-5B), {frames} frames of {w}x{h} -> latent [1, 48, \
                 {t}, {lh}, {lw}]"
            ),
            CodecStage::TurboDecode => format!(
                "TurboVAED (turbo_v3 tiny shallow 7/7), latent [1, 48, {t}, {lh}, {lw}] -> \
                 {frames} frames of {w}x{h}"
            ),
            CodecStage::AudioDecode => format!(
                "Stable Audio Open 1.0 VAE decoder, {seconds} s ({audio_frames} latent frames)"
            ),
            CodecStage::AudioEncode => format!(
                "Stable Audio Open 1.0 VAE encoder, {seconds} s ({audio_frames} latent frames)"
            ),
            CodecStage::T5gemmaLayer => {
                "one T5Gemma-9B encoder layer, 640 tokens, a warm-up then 2 timed".into()
            }
        };
        let reset = reset_peak_rss();
        eprintln!(
            "bench codec: {name}: {what}; RSS at start {:.2} GiB{}",
            gib(rss_bytes()),
            if reset {
                ""
            } else {
                " (peak RSS not reset: it is the process's)"
            }
        );
        let line = match stage {
            CodecStage::Wan22Decode => wan22_vae::bench_decode(
                &wan22_vae::Config::wan22_ti2v_5b(),
                (t, lh, lw),
                dtype,
                &dev,
            )
            .map(|r| r.to_string()),
            CodecStage::Wan22Encode => wan22_vae::bench_encode(
                &wan22_vae::Config::wan22_ti2v_5b(),
                (frames, h, w),
                dtype,
                &dev,
            )
            .map(|r| r.to_string()),
            CodecStage::TurboDecode => turbo_vae::bench_decode(
                &turbo_vae::Config::turbo_v3_wan22_tiny_shallow_7_7(),
                (t, lh, lw),
                dtype,
                &dev,
            )
            .map(|r| r.to_string()),
            CodecStage::AudioDecode => {
                sa_audio::bench::bench_decode(seconds as f32, dtype, &dev).map(|r| r.to_string())
            }
            CodecStage::AudioEncode => {
                sa_audio::bench::bench_encode(seconds as f32, dtype, &dev).map(|r| r.to_string())
            }
            CodecStage::T5gemmaLayer => t5gemma::bench_encoder_layer(
                &t5gemma::Config::t5gemma_9b_9b_ul2_encoder(),
                t5gemma::TARGET_LENGTH,
                2,
                dtype,
                &dev,
            )
            .map(|r| r.to_string()),
        }
        .map_err(|e| CliError::runtime(format!("bench codec {name}: {e}")))?;
        println!("{name} {dtype_name}: {line}");
    }
    Ok(())
}

pub fn train_nano(mut cfg: TrainConfig, gpu: bool) -> CliResult {
    let dev = if gpu { gpu_device()? } else { Device::Cpu };
    if gpu {
        cfg.workers = 1;
    } else if cfg.workers > 1 {
        // A worker per core (see `TrainConfig::workers`). candle's pool for element-wise
        // operations serves one caller at a time, so the workers run those inline; matrix
        // products and convolutions share rayon's pool. Set before candle's first operation,
        // which sizes the pool; a user's own setting wins.
        if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
            std::env::set_var("CANDLE_NUM_THREADS", "1");
        }
    }
    let summary = train::run(cfg, &dev, &mut |p| {
        if p.step % 10 == 0 || p.step == p.total || p.step <= 3 {
            let stage = match p.stage {
                Stage::Codec => "codec",
                Stage::Dit => "dit",
                Stage::AudioDecoder => "audio-decoder",
                Stage::VideoDecoder => "video-decoder",
            };
            let mut probe = String::new();
            if p.loss_probe > 0.0 {
                probe += &format!(", text probe {:.5}", p.loss_probe);
            }
            if p.loss_sync_probe > 0.0 {
                probe += &format!(", sync probe {:.5}", p.loss_sync_probe);
            }
            eprintln!(
                "train nano: {stage} {}/{} loss {:.5} (video {:.5}, audio {:.5}{probe}) {:.0} s",
                p.step, p.total, p.loss, p.loss_video, p.loss_audio, p.elapsed_s
            );
        }
    })
    .map_err(|e| match e {
        // The user's settings or the checkpoint they point at: fixable input.
        train::TrainError::Invalid(_) | train::TrainError::BadCheckpoint { .. } => {
            CliError::new(super::EXIT_BAD_INPUT, e)
        }
        _ => CliError::runtime(e),
    })?;
    let last: Vec<String> = [
        ("codec", summary.final_codec_loss),
        ("dit", summary.final_dit_loss),
        ("audio-decoder", summary.final_audio_decoder_loss),
        ("video-decoder", summary.final_video_decoder_loss),
    ]
    .into_iter()
    .filter_map(|(stage, loss)| loss.map(|l| format!("{stage} {l:.5}")))
    .collect();
    eprintln!(
        "train nano: done in {:.0} s; last loss of each stage trained now: {}",
        summary.elapsed_s,
        if last.is_empty() {
            "none (the run was already complete)".to_string()
        } else {
            last.join(", ")
        }
    );
    eprintln!(
        "train nano: generate with it: happyhorse generate -m {} \"a red ball bouncing on a green grass field\"; measure it: happyhorse eval nano --model-dir {}",
        summary.model_dir.display(),
        summary.model_dir.display()
    );
    println!("{}", summary.model_dir.display());
    Ok(())
}

/// Times whole jobs as a user runs them (model load, generation, MP4 + WAV encoding) and
/// reports the ratio of wall time to clip duration: below 1 is faster than real time.
/// `model_dir` times a trained folder instead of the embedded weights.
pub fn bench_nano(
    duration: f32,
    aspect: Aspect,
    repeats: usize,
    model_dir: Option<&std::path::Path>,
) -> CliResult {
    let registry = Registry::builtin().map_err(CliError::runtime)?;
    let model = match model_dir {
        None => "nano".to_string(),
        Some(dir) => {
            let manifest = dir.join(crate::engine::registry::MANIFEST_FILE);
            if !manifest.is_file() {
                return Err(CliError::new(
                    super::EXIT_MODEL_MISSING,
                    anyhow::anyhow!(
                        "{} is missing: --model-dir takes a model folder (OUT/model of \
                         `happyhorse train nano`)",
                        manifest.display()
                    ),
                ));
            }
            dir.display().to_string()
        }
    };
    let tmp = std::env::temp_dir().join(format!("happyhorse-bench-{}", std::process::id()));
    let opts = RunOptions {
        weights: WeightSearch::from_env(None),
        skip_existing: false,
    };
    let mut best = f64::INFINITY;
    for i in 0..repeats.max(1) {
        let spec = JobSpec {
            prompt: "a red ball bouncing on a green grass field".into(),
            model: Some(model.clone()),
            duration_s: Some(duration),
            aspect: Some(aspect),
            seed: Some(i as u64),
            output: Some(OutputSpec {
                dir: Some(tmp.clone()),
                ..OutputSpec::default()
            }),
            ..JobSpec::default()
        };
        let t = std::time::Instant::now();
        let r = jobs::run_job(
            &spec,
            &registry,
            &opts,
            &mut jobs::make_generator,
            &CancelToken::new(),
            &mut |_| {},
        )
        .map_err(|e| CliError::new(e.exit_code(), e))?;
        let wall = t.elapsed().as_secs_f64();
        best = best.min(wall);
        println!(
            "nano {duration} s {aspect}: {wall:.2} s wall (load {:.2}, generate {:.2}, encode {:.2}) = {:.2}x clip duration",
            r.timings.load_s,
            r.timings.generate_s,
            r.timings.encode_s,
            wall / duration as f64
        );
    }
    let _ = std::fs::remove_dir_all(&tmp);
    println!(
        "best: {best:.2} s = {:.2}x clip duration",
        best / duration as f64
    );
    Ok(())
}

pub fn eval_nano(
    cfg: crate::nano::eval::EvalConfig,
    json: Option<std::path::PathBuf>,
) -> CliResult {
    let model_dir = &cfg.model_dir;
    if !model_dir.join("model.safetensors").is_file() {
        return Err(CliError::new(
            super::EXIT_MODEL_MISSING,
            anyhow::anyhow!(
                "{} holds no model.safetensors; pass --model-dir (models/nano in the source tree, or OUT/model from `happyhorse train nano`)",
                model_dir.display()
            ),
        ));
    }
    let report = crate::nano::eval::run(cfg, &mut |p| {
        eprintln!("eval nano: {}/{}", p.done, p.total);
    })
    .map_err(CliError::runtime)?;
    println!("{report}");
    if let Some(path) = json {
        report.write_json(&path).map_err(CliError::runtime)?;
        eprintln!("eval nano: wrote {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn codec_stages_default_to_all_in_order_and_name_the_allowed_ones() {
        assert_eq!(parse_stages(&[]).unwrap(), CodecStage::ALL);
        assert_eq!(
            parse_stages(&names(&["audio-encode", "wan22-decode"])).unwrap(),
            [CodecStage::AudioEncode, CodecStage::Wan22Decode]
        );
        let all: Vec<&str> = CodecStage::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(
            all,
            [
                "wan22-decode",
                "wan22-encode",
                "turbo-decode",
                "audio-decode",
                "audio-encode",
                "t5gemma-layer"
            ]
        );
        let e = parse_stages(&names(&["audio-decode", "vae"])).unwrap_err();
        assert_eq!(e.code, crate::cli::EXIT_BAD_INPUT);
        let msg = e.error.to_string();
        assert!(
            msg.starts_with("--stage vae: allowed wan22-decode, "),
            "{msg}"
        );
        assert!(msg.ends_with("t5gemma-layer"), "{msg}");
    }

    #[test]
    fn codec_size_is_wxh_in_multiples_of_16() {
        assert_eq!(parse_size("448x256").unwrap(), (448, 256));
        assert_eq!(parse_size("1280X720").unwrap(), (1280, 720));
        for bad in [
            "448", "447x256", "448x250", "0x256", "x", "448x", "-16x16", "a x b",
        ] {
            let e = parse_size(bad).unwrap_err();
            assert_eq!(e.code, crate::cli::EXIT_BAD_INPUT, "{bad}");
            assert!(e.error.to_string().starts_with("--size "), "{bad}");
        }
    }

    #[test]
    fn bench_dtype_names_the_allowed_values() {
        assert_eq!(parse_dtype("bf16").unwrap(), DType::BF16);
        let e = parse_dtype("f64").unwrap_err();
        assert_eq!(e.code, crate::cli::EXIT_BAD_INPUT);
        assert_eq!(e.error.to_string(), "--dtype f64: allowed f32, bf16, f16");
    }

    #[test]
    fn bad_codec_flags_fail_before_any_model_runs() {
        let e = bench_codec(&names(&["nope"]), 5.0, "448x256", "f32", false).unwrap_err();
        assert_eq!(e.code, crate::cli::EXIT_BAD_INPUT);
        let e = bench_codec(&[], 0.0, "448x256", "f32", false).unwrap_err();
        assert!(e.error.to_string().starts_with("--seconds 0"));
        let e = bench_codec(&[], 5.0, "448x256", "f8", false).unwrap_err();
        assert!(e.error.to_string().starts_with("--dtype f8"));
    }
}
