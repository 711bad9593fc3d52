//! `probe`, `spec`, `debug case`, `bench`.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device};

use super::{CliError, CliResult};
use crate::engine::bench::{bench_dit_layer, DitBench};
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

pub fn bench_dit(dtypes: &[String], hidden: usize, repeats: usize, gpu: bool) -> CliResult {
    let dev = if gpu { gpu_device()? } else { Device::Cpu };
    eprintln!(
        "bench dit: one shared swiglu7 layer, hidden {hidden}, head_dim 128, {} q heads, 8 kv groups, 3584+126+150 tokens, {:?}",
        hidden / 128,
        dev
    );
    for name in dtypes {
        let dtype = match name.as_str() {
            "f32" => DType::F32,
            "bf16" => DType::BF16,
            "f16" => DType::F16,
            other => {
                return Err(CliError::bad_input(format!(
                    "--dtype {other}: allowed f32, bf16, f16"
                )))
            }
        };
        let b = DitBench {
            hidden,
            repeats,
            ..DitBench::released(dtype)
        };
        let r = bench_dit_layer(&b, &dev).map_err(CliError::runtime)?;
        println!(
            "dit layer {name}: {:.3} s, {:.0} tokens/s, {:.1} GFLOP/s ({:.1} GFLOP)",
            r.seconds,
            r.tokens_per_s,
            r.gflops,
            b.flops() / 1e9
        );
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
            };
            eprintln!(
                "train nano: {stage} {}/{} loss {:.5} (video {:.5}, audio {:.5}) {:.0} s",
                p.step, p.total, p.loss, p.loss_video, p.loss_audio, p.elapsed_s
            );
        }
    })
    .map_err(CliError::runtime)?;
    eprintln!(
        "train nano: done in {:.0} s; codec loss {:?}, dit loss {:?}",
        summary.elapsed_s, summary.final_codec_loss, summary.final_dit_loss
    );
    println!("{}", summary.model_dir.display());
    Ok(())
}

/// Times whole jobs as a user runs them (model load, generation, MP4 + WAV encoding) and
/// reports the ratio of wall time to clip duration: below 1 is faster than real time.
pub fn bench_nano(duration: f32, aspect: Aspect, repeats: usize) -> CliResult {
    let registry = Registry::builtin().map_err(CliError::runtime)?;
    let tmp = std::env::temp_dir().join(format!("happyhorse-bench-{}", std::process::id()));
    let opts = RunOptions {
        weights: WeightSearch::from_env(None),
        skip_existing: false,
    };
    let mut best = f64::INFINITY;
    for i in 0..repeats.max(1) {
        let spec = JobSpec {
            prompt: "a red ball bouncing on a green grass field".into(),
            model: Some("nano".into()),
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
    model_dir: std::path::PathBuf,
    scenes: usize,
    seed: u64,
    steps: Option<usize>,
    source: &str,
    json: Option<std::path::PathBuf>,
    dump: Option<std::path::PathBuf>,
) -> CliResult {
    use crate::nano::eval::Source;
    let source = match source {
        "codec" => Source::Codec,
        "world" => Source::World,
        _ => Source::Model,
    };
    if !model_dir.join("model.safetensors").is_file() {
        return Err(CliError::new(
            super::EXIT_MODEL_MISSING,
            anyhow::anyhow!(
                "{} holds no model.safetensors; pass --model-dir (models/nano in the source tree, or OUT/model from `happyhorse train nano`)",
                model_dir.display()
            ),
        ));
    }
    let cfg = crate::nano::eval::EvalConfig {
        scenes_per_split: scenes,
        seed,
        steps,
        source,
        dump,
        ..crate::nano::eval::EvalConfig::new(model_dir)
    };
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
