//! Drives the Nano training recipe until `happyhorse train nano` is wired:
//! `cargo run --release --example train_nano -- OUT_DIR [--smoke] [--codec-steps N] [--dit-steps N]
//! [--batch N] [--stop-after N] [--checkpoint-every N]`.
//! Rerunning with the same OUT_DIR resumes from its checkpoint.

use std::path::PathBuf;

use happyhorse::nano::train::{run, Stage, TrainConfig};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let out = PathBuf::from(args.next().unwrap_or_else(|| "nano-run".into()));
    let mut cfg = TrainConfig::nano(out.clone());
    while let Some(a) = args.next() {
        let mut num = |name: &str| -> anyhow::Result<usize> {
            let v = args
                .next()
                .ok_or_else(|| anyhow::anyhow!("{name} needs a value"))?;
            Ok(v.parse()?)
        };
        match a.as_str() {
            "--smoke" => cfg = TrainConfig::smoke(out.clone()),
            "--codec-steps" => cfg.codec_steps = num("--codec-steps")?,
            "--dit-steps" => cfg.dit_steps = num("--dit-steps")?,
            "--batch" => cfg.batch = num("--batch")?,
            "--stop-after" => cfg.stop_after = Some(num("--stop-after")?),
            "--checkpoint-every" => cfg.checkpoint_every = num("--checkpoint-every")?,
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    let summary = run(cfg, &mut |p| {
        if p.step % 10 == 0 || p.step == p.total || p.step <= 3 {
            let stage = match p.stage {
                Stage::Codec => "codec",
                Stage::Dit => "dit",
            };
            println!(
                "{stage} {}/{} loss {:.5} (video {:.5}, audio {:.5}) {:.0}s",
                p.step, p.total, p.loss, p.loss_video, p.loss_audio, p.elapsed_s
            );
        }
    })?;
    println!(
        "done in {:.0}s: codec loss {:?}, dit loss {:?}; model in {}",
        summary.elapsed_s,
        summary.final_codec_loss,
        summary.final_dit_loss,
        summary.model_dir.display()
    );
    Ok(())
}
