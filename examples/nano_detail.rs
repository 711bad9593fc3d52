//! Where does Nano's picture lose the object's shape? Takes world clips (8 balls, 8 squares,
//! 8 triangles), noises their encoded latents to a level σ0, denoises them back with the DiT
//! (Euler on the sampler's shifted schedule, classifier-free guidance as the defaults) and
//! reads the decoded picture with the eval's analyzers. For each σ0 it prints how often the
//! shape is read right and the mean bounding-box fill (a square fills 1.0, a ball π/4, the
//! analyzer says square from 0.89) and taper (an upright triangle ≈ 0.3), both for the
//! finished denoising and for the DiT's one-step guess of the clean latent at σ0.
//!
//! σ0 = 0 is the codecs alone (the ceiling); σ0 = 1 is sampling from pure noise. If the fills
//! drop only from some σ0 up, the DiT loses the shape in the steps above it; if they drop
//! from the lowest σ0 on, it blurs even a nearly clean latent.
//!
//! First it judges the codec's shape code (`train nano --codec-shape-weight`): how often the
//! first latent channels name the shape that covers most of a latent cell, and whether the
//! decoder follows them. Each clip has a twin, the same scene with another shape (a ball's
//! is a square); the twin's latent with this clip's shape channels is decoded and read. A
//! decoder that draws from the code reads this clip's shape; one that ignores it, the twin's.
//! The same again with the code blurred over the latent cells, as the DiT draws it: a
//! decoder that copies the code's outline then draws a blob.
//! For each σ0 it also says how often the denoised latent's code names the asked shape.
//!
//! `cargo run --release --example nano_detail -- MODEL_DIR [WEIGHTS.safetensors [SIGMAS]]`
//! (WEIGHTS: any file of Nano's tensor names, a run's `model/model.safetensors` or
//! `checkpoint/vars.safetensors`; default MODEL_DIR/model.safetensors. SIGMAS: the σ0 to
//! try, comma-separated, default 0,0.2,0.4,0.6,0.8,1; `0` alone judges a run's codecs, before
//! its DiT is trained).

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use happyhorse::engine::models::nano::{self, Nano, NanoConfig, NanoTokenizer};
use happyhorse::engine::pipelines::magihuman::SeededNoise;
use happyhorse::nano::analyze::analyze_video;
use happyhorse::nano::train::{
    blur_cells, clip_latents, levels_below, noised, Clip, ClipSampler, SHAPE_CODE,
};
use happyhorse::nano::world::{Frame, Shape};

/// Clips are drawn from a stream the recipe never trains on.
const SEED: u64 = 5;
const TAG: u64 = 78;
const PER_SHAPE: usize = 8;
const SIGMA0: &str = "0,0.2,0.4,0.6,0.8,1";

/// The decoded picture of normalised video latents, as the analyzers' frames.
fn picture(m: &Nano, zv: &Tensor, clip: &Clip) -> Result<Vec<Frame>> {
    let lat = &m.cfg.latent;
    let z = nano::denormalize(zv, &lat.video_mean, &lat.video_std, 1)?;
    let frames = ((m.video_decoder.decode(&z)?.clamp(-1.0, 1.0)? + 1.0)? * 127.5)?
        .round()?
        .permute((0, 2, 3, 1))?
        .to_dtype(DType::U8)?;
    let n = frames.dim(0)?;
    let rgb = frames.flatten_all()?.to_vec1::<u8>()?;
    let size = clip.width * clip.height * 3;
    Ok((0..n)
        .map(|i| Frame {
            width: clip.width,
            height: clip.height,
            rgb: rgb[i * size..(i + 1) * size].to_vec(),
        })
        .collect())
}

#[derive(Default, Clone, Copy)]
struct Tally {
    right: usize,
    read: usize,
    fill: f32,
    taper: f32,
}

impl Tally {
    fn add(&mut self, want: Shape, frames: &[Frame], clip: &Clip) -> Result<()> {
        let v = analyze_video(frames, 8.0, Some(clip.scene.background))?;
        if let Some(s) = v.shape_measures {
            self.read += 1;
            self.fill += s.fill;
            self.taper += s.taper;
            self.right += usize::from(s.shape() == want);
        }
        Ok(())
    }

    fn show(&self) -> String {
        let n = self.read.max(1) as f32;
        format!(
            "{}/{} right, fill {:.2}, taper {:.2}",
            self.right,
            self.read,
            self.fill / n,
            self.taper / n
        )
    }
}

/// The shape the first [`SHAPE_CODE`] channels of a normalised video latent name: the one
/// whose channel holds the most over the whole clip (a codec without a code names noise).
fn code_names(cfg: &NanoConfig, zv: &Tensor) -> Result<Shape> {
    let z = nano::denormalize(zv, &cfg.latent.video_mean, &cfg.latent.video_std, 1)?;
    let sums = z
        .narrow(1, 0, SHAPE_CODE)?
        .relu()?
        .sum((0, 2, 3, 4))?
        .to_vec1::<f32>()?;
    let best = (0..sums.len()).fold(0, |b, j| if sums[j] > sums[b] { j } else { b });
    Ok(Shape::ALL[best])
}

/// The shape code's report: how often the code names the shape of the cells an object
/// covers most, and how often the twin's latent with this clip's code decodes to this clip's
/// shape (against the twin's latent alone).
fn shape_code(
    m: &Nano,
    cfg: &NanoConfig,
    clips: &[Clip],
    twins: &[Clip],
    dev: &Device,
) -> Result<()> {
    let (mut named, mut cells) = (0usize, 0usize);
    let mut swapped = [Tally::default(); 3];
    let mut swapped_blurred = [Tally::default(); 3];
    let mut alone = [Tally::default(); 3];
    for (i, (clip, twin)) in clips.iter().zip(twins).enumerate() {
        let want = clip.scene.object.shape;
        let k = i / PER_SHAPE;
        let (zv, _) = clip_latents(m, &cfg.latent, clip, dev)?;
        let (zt, _) = clip_latents(m, &cfg.latent, twin, dev)?;
        let code = nano::denormalize(&zv, &cfg.latent.video_mean, &cfg.latent.video_std, 1)?
            .narrow(1, 0, SHAPE_CODE)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        let plane = code.len() / SHAPE_CODE;
        for c in 0..plane {
            let truth: Vec<f32> = (0..SHAPE_CODE)
                .map(|j| clip.shape_cells[j * plane + c])
                .collect();
            if truth.iter().copied().fold(0.0, f32::max) < 0.5 {
                continue;
            }
            let argmax = |v: &[f32]| (0..v.len()).fold(0, |b, j| if v[j] > v[b] { j } else { b });
            let got: Vec<f32> = (0..SHAPE_CODE).map(|j| code[j * plane + c]).collect();
            cells += 1;
            named += usize::from(argmax(&got) == argmax(&truth));
        }
        let channels = zt.dim(1)?;
        let mixed = Tensor::cat(
            &[
                zv.narrow(1, 0, SHAPE_CODE)?,
                zt.narrow(1, SHAPE_CODE, channels - SHAPE_CODE)?,
            ],
            1,
        )?;
        swapped[k].add(want, &picture(m, &mixed, twin)?, twin)?;
        let blurred = Tensor::cat(
            &[
                blur_cells(&zv.narrow(1, 0, SHAPE_CODE)?)?,
                zt.narrow(1, SHAPE_CODE, channels - SHAPE_CODE)?,
            ],
            1,
        )?;
        swapped_blurred[k].add(want, &picture(m, &blurred, twin)?, twin)?;
        alone[k].add(want, &picture(m, &zt, twin)?, twin)?;
    }
    println!(
        "shape code: names the shape of {named} of {cells} latent cells an object covers at least half"
    );
    for (k, name) in ["ball", "square", "triangle"].iter().enumerate() {
        println!(
            "shape code {name:>8}: the twin with this code {:<32} the twin alone {}",
            swapped[k].show(),
            alone[k].show()
        );
    }
    for (k, name) in ["ball", "square", "triangle"].iter().enumerate() {
        println!(
            "shape code {name:>8}: the twin with this code blurred {}",
            swapped_blurred[k].show()
        );
    }
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (model_dir, weights, sigmas) = match args.as_slice() {
        [_, dir] => (dir.clone(), format!("{dir}/model.safetensors"), SIGMA0),
        [_, dir, w] => (dir.clone(), w.clone(), SIGMA0),
        [_, dir, w, s] => (dir.clone(), w.clone(), s.as_str()),
        _ => bail!("usage: nano_detail MODEL_DIR [WEIGHTS.safetensors [SIGMAS]]"),
    };
    let sigmas = sigmas
        .split(',')
        .map(|s| match s.trim().parse::<f32>() {
            Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
            _ => bail!("SIGMAS: {s:?} is not a noise level from 0 to 1"),
        })
        .collect::<Result<Vec<f32>>>()?;
    let dev = Device::Cpu;
    let cfg_path = format!("{model_dir}/config.json");
    let text = std::fs::read_to_string(&cfg_path).with_context(|| cfg_path.clone())?;
    let cfg: NanoConfig = serde_json::from_str(&text).with_context(|| cfg_path.clone())?;
    let tok =
        NanoTokenizer::from_file(std::path::Path::new(&format!("{model_dir}/tokenizer.json")))?;
    // SAFETY: the weights are only read, and not changed while this runs.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, &dev)? };
    let m = Nano::new(&cfg, vb)?;
    let (gv, ga) = (cfg.sampler.guidance_video, cfg.sampler.guidance_audio);
    let (steps, shift) = (cfg.sampler.steps, cfg.sampler.shift);
    let cfg_steps = cfg.sampler.cfg_steps.unwrap_or(usize::MAX);

    // The DiT's training placements (the middle of each path's range), 3 s clips.
    let sampler = ClipSampler::new(&cfg, vec![(96, 56)], (6, 6)).with_placement_spread(0.0);
    let mut clips = Vec::new();
    let mut twins = Vec::new();
    for want in [Shape::Ball, Shape::Square, Shape::Triangle] {
        let picked: Vec<(u64, Clip)> = (0..)
            .map(|i| (i, sampler.clip(SEED, TAG, i)))
            .filter(|(_, c)| c.scene.object.shape == want && c.scene.second.is_none())
            .take(PER_SHAPE)
            .collect();
        for (i, clip) in picked {
            twins.push(sampler.clip_with(SEED, TAG, i, |s| s.object.shape = want.twin()));
            clips.push(clip);
        }
    }
    shape_code(&m, &cfg, &clips, &twins, &dev)?;
    let null_ids = tok.encode("", cfg.text.max_len)?;
    let (null, null_len) = (m.text_encoder.forward(&null_ids)?, null_ids.len());

    println!(
        "Nano detail: {} clips, Euler on the {steps}-step schedule (shift {shift}), guidance {gv} / {ga} on the first {}",
        clips.len(),
        cfg_steps.min(steps)
    );
    for sigma0 in sigmas {
        let mut done = [Tally::default(); 3];
        let mut guess = [Tally::default(); 3];
        let mut coded = [0usize; 3];
        for (i, clip) in clips.iter().enumerate() {
            let want = clip.scene.object.shape;
            let k = i / PER_SHAPE;
            let (zv, za) = clip_latents(&m, &cfg.latent, clip, &dev)?;
            let ids = tok.encode(&clip.caption, cfg.text.max_len)?;
            let txt = m.text_encoder.forward(&ids)?;
            let mut noise = SeededNoise::new(1000 + i as u64);
            let (mut xv, _) = noised(&zv, sigma0 as f64, &mut noise)?;
            let (mut xa, _) = noised(&za, sigma0 as f64, &mut noise)?;
            let levels = levels_below(sigma0, steps, shift);
            for (j, pair) in levels.windows(2).enumerate() {
                let (s, next) = (pair[0], pair[1]);
                let (mut v, mut a) = m.velocity(&xv, &xa, &txt, ids.len(), s)?;
                let first_step = steps - (levels.len() - 1) + j;
                if first_step < cfg_steps && (gv != 1.0 || ga != 1.0) {
                    let (nv, na) = m.velocity(&xv, &xa, &null, null_len, s)?;
                    v = (&nv + ((&v - &nv)? * gv)?)?;
                    a = (&na + ((&a - &na)? * ga)?)?;
                }
                if j == 0 {
                    let x0 = (&xv - (&v * s as f64)?)?;
                    guess[k].add(want, &picture(&m, &x0, clip)?, clip)?;
                }
                xv = (&xv + (&v * (next - s) as f64)?)?;
                xa = (&xa + (&a * (next - s) as f64)?)?;
            }
            done[k].add(want, &picture(&m, &xv, clip)?, clip)?;
            coded[k] += usize::from(code_names(&cfg, &xv)? == want);
        }
        for (k, name) in ["ball", "square", "triangle"].iter().enumerate() {
            println!(
                "sigma0 {sigma0:.1} {name:>8}: denoised {:<32} code names it {}/{PER_SHAPE}, one-step guess {}",
                done[k].show(),
                coded[k],
                if sigma0 > 0.0 {
                    guess[k].show()
                } else {
                    "-".into()
                }
            );
        }
    }
    Ok(())
}
