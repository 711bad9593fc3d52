//! Times one Nano generation, model loading included:
//! `cargo run --release --example nano_bench -- MODEL_DIR [PROMPT]`.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::Instant;

use candle_core::Device;
use happyhorse::engine::pipelines::nano::NanoPipeline;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().unwrap_or_else(|| "models/nano".into()));
    let prompt = args
        .next()
        .unwrap_or_else(|| "a red ball bouncing on a green grass field".into());
    let t0 = Instant::now();
    let pipe = NanoPipeline::load(&dir, &Device::Cpu)?;
    let loaded = t0.elapsed().as_secs_f64();
    let clip = pipe.generate(&prompt, 96, 56, 8, 4.0, 1, 1, 1.0, &mut |s, n| {
        eprintln!("step {s}/{n} at {:.2}s", t0.elapsed().as_secs_f64());
        ControlFlow::Continue(())
    })?;
    println!(
        "4 s 96x56 clip: load {loaded:.2}s, total {:.2}s; {} frames, {} samples",
        t0.elapsed().as_secs_f64(),
        clip.frames_rgb.len() / (96 * 56 * 3),
        clip.audio.len()
    );
    Ok(())
}
