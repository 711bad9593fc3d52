//! Does a Nano training run's sound read its picture? Reads a run's checkpoint (the DiT and
//! the sync probe of `train nano --sync-probe-weight` / `--dit-restart-sync-probe-weight`)
//! and prints, on 40 fresh world clips with hits:
//! - how much the audio tokens (after the middle DiT layer) and the sound's velocity move when
//!   the whole picture is swapped for another clip's (relative rms);
//! - the probe's AUC at finding the hit frames, with the sound at pure noise and the picture
//!   clean, half-noised or pure noise, and with the sound half-noised.
//!
//! `cargo run --release --example nano_sync_probe -- RUN/model RUN/checkpoint/vars.safetensors`
//! (any model folder of the same layout gives the config and tokenizer).

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::VarBuilder;
use happyhorse::engine::models::nano::{Nano, NanoConfig, NanoTokenizer};
use happyhorse::engine::pipelines::magihuman::SeededNoise;
use happyhorse::nano::train::{clip_latents, noised, Clip, ClipSampler};

/// Clips are drawn from a stream the recipe never trains on.
const SEED: u64 = 5;
const TAG: u64 = 77;
const CLIPS: usize = 40;

/// Probability that a hit frame scores above a quiet one (ties count half).
fn auc(scores: &[(f32, bool)]) -> f64 {
    let pos: Vec<f32> = scores.iter().filter(|s| s.1).map(|s| s.0).collect();
    let neg: Vec<f32> = scores.iter().filter(|s| !s.1).map(|s| s.0).collect();
    let mut wins = 0f64;
    for p in &pos {
        for n in &neg {
            wins += if p > n {
                1.0
            } else if p == n {
                0.5
            } else {
                0.0
            };
        }
    }
    wins / (pos.len() * neg.len()).max(1) as f64
}

fn rel_rms(x: &Tensor, y: &Tensor) -> Result<f32> {
    let d = (x - y)?.sqr()?.mean_all()?.to_scalar::<f32>()?;
    Ok((d / x.sqr()?.mean_all()?.to_scalar::<f32>()?).sqrt())
}

struct Latents {
    video: Tensor,
    audio: Tensor,
    ids: Vec<u32>,
    hits: Vec<f32>,
}

fn latents(m: &Nano, tok: &NanoTokenizer, clip: &Clip, dev: &Device) -> Result<Latents> {
    let (video, audio) = clip_latents(m, &m.cfg.latent, clip, dev)?;
    let mut hits = clip.impact_frames.clone();
    hits.resize(audio.dim(1)?, 0.0);
    Ok(Latents {
        video,
        audio,
        ids: tok.encode(&clip.caption, m.cfg.text.max_len)?,
        hits,
    })
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, model_dir, vars] = args.as_slice() else {
        bail!("usage: nano_sync_probe MODEL_DIR RUN/checkpoint/vars.safetensors");
    };
    let dev = Device::Cpu;
    let cfg_path = format!("{model_dir}/config.json");
    let text = std::fs::read_to_string(&cfg_path).with_context(|| cfg_path.clone())?;
    let cfg: NanoConfig = serde_json::from_str(&text).with_context(|| cfg_path.clone())?;
    let tok =
        NanoTokenizer::from_file(std::path::Path::new(&format!("{model_dir}/tokenizer.json")))?;
    // SAFETY: the checkpoint is only read, and not changed while this runs.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[vars], DType::F32, &dev)? };
    let m = Nano::new(&cfg, vb.clone())?;
    let head = candle_nn::linear(cfg.dit.hidden_size, 1, vb.pp("sync_probe").pp("hit"))
        .with_context(|| format!("{vars} holds no sync probe: train with one"))?;
    let layer = cfg.dit.num_layers / 2;
    let sampler = ClipSampler::new(&cfg, vec![(96, 56)], (6, 6));
    let clips: Vec<Clip> = (0..)
        .map(|i| sampler.clip(SEED, TAG, i))
        .filter(|c| c.impact_frames.iter().any(|&h| h > 0.5))
        .take(CLIPS)
        .collect();

    for pair in clips.chunks(2).take(3) {
        let (a, b) = (
            latents(&m, &tok, &pair[0], &dev)?,
            latents(&m, &tok, &pair[1], &dev)?,
        );
        if a.video.dims() != b.video.dims() {
            continue;
        }
        let txt = m.text_encoder.forward(&a.ids)?;
        for sa in [1.0f32, 0.5] {
            let (xa, _) = noised(&a.audio, sa as f64, &mut SeededNoise::new(9))?;
            let run = |zv: &Tensor| {
                m.velocity_and_audio_hidden(zv, &xa, &txt, a.ids.len(), [0.0, sa], None, layer)
            };
            let ((_, va, ha), (_, vb, hb)) = (run(&a.video)?, run(&b.video)?);
            println!(
                "picture swapped, sound at sigma {sa}: audio tokens move {:.4}, sound velocity {:.4} (relative rms)",
                rel_rms(&ha, &hb)?,
                rel_rms(&va, &vb)?
            );
        }
    }

    let settings = [
        (0.0f32, 1.0f32),
        (0.5, 1.0),
        (1.0, 1.0),
        (0.0, 0.5),
        (1.0, 0.5),
    ];
    let mut scores = vec![Vec::new(); settings.len()];
    for (i, clip) in clips.iter().enumerate() {
        let z = latents(&m, &tok, clip, &dev)?;
        let txt = m.text_encoder.forward(&z.ids)?;
        for (k, &(sv, sa)) in settings.iter().enumerate() {
            let mut noise = SeededNoise::new(1000 + i as u64);
            let (xv, _) = noised(&z.video, sv as f64, &mut noise)?;
            let (xa, _) = noised(&z.audio, sa as f64, &mut noise)?;
            let (_, _, h) =
                m.velocity_and_audio_hidden(&xv, &xa, &txt, z.ids.len(), [sv, sa], None, layer)?;
            let logits = head.forward(&h)?.squeeze(D::Minus1)?.to_vec1::<f32>()?;
            scores[k].extend(logits.into_iter().zip(z.hits.iter().map(|&h| h > 0.5)));
        }
    }
    for (s, (sv, sa)) in scores.iter().zip(settings) {
        println!(
            "picture at sigma {sv:.1}, sound at sigma {sa:.1}: the probe finds the hit frames at AUC {:.3} ({} frames of {} clips)",
            auc(s),
            s.len(),
            clips.len()
        );
    }
    Ok(())
}
