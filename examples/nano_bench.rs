//! Times one Nano generation end to end, model loading and MP4 encoding included:
//! `cargo run --release --example nano_bench -- [MODEL_DIR] [PROMPT] [--fps N] [--runs N]`.
//!
//! Each run loads the model afresh (the CLI does too), generates a 4 s 96x56 (16:9) clip with
//! its sound and encodes it to an H.264 + AAC MP4 in the temporary directory.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::Instant;

use candle_core::Device;
use happyhorse::engine::pipelines::nano::NanoPipeline;
use happyhorse::media::{encode_mp4, Audio, Frames, VideoOptions};

fn main() -> anyhow::Result<()> {
    let mut dir = PathBuf::from("models/nano");
    let mut prompt = "a red ball bouncing on a green grass field".to_string();
    let (mut fps, mut runs) = (24u32, 3usize);
    let mut positional = 0;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--fps" => fps = args.next().unwrap_or_default().parse()?,
            "--runs" => runs = args.next().unwrap_or_default().parse()?,
            _ => {
                match positional {
                    0 => dir = PathBuf::from(&a),
                    _ => prompt = a,
                }
                positional += 1;
            }
        }
    }
    let (w, h, secs) = (96u32, 56u32, 4.0f32);
    let out = std::env::temp_dir().join(format!("nano_bench_{}.mp4", std::process::id()));
    let mut totals = Vec::new();
    for run in 0..runs {
        let t0 = Instant::now();
        let pipe = NanoPipeline::load(&dir, &Device::Cpu)?;
        let loaded = t0.elapsed().as_secs_f64();
        let clip = pipe.generate(&prompt, w, h, fps, secs, 1, 1, 1.0, &mut |_, _| {
            ControlFlow::Continue(())
        })?;
        let generated = t0.elapsed().as_secs_f64();
        let frames = Frames {
            width: w,
            height: h,
            fps,
            data: clip.frames_rgb,
        };
        let audio = Audio {
            sample_rate: clip.sample_rate,
            channels: clip.channels,
            samples: clip.audio,
        };
        encode_mp4(&out, &frames, Some(&audio), VideoOptions::default())?;
        let total = t0.elapsed().as_secs_f64();
        println!(
            "run {run}: 4 s {w}x{h}@{fps} with audio -> MP4: load {loaded:.2}s, generate {:.2}s, \
             encode {:.2}s, total {total:.2}s ({} steps, cfg on {:?})",
            generated - loaded,
            total - generated,
            pipe.sampler.steps,
            pipe.sampler.cfg_steps
        );
        totals.push(total);
    }
    let _ = std::fs::remove_file(&out);
    totals.sort_by(f64::total_cmp);
    if let Some(med) = totals.get(totals.len() / 2) {
        println!("median total {med:.2}s over {runs} runs (target < {secs:.1}s)");
    }
    Ok(())
}
