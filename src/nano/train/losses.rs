//! What the stages' losses read: the clips' latents and noised points, the shape code, the
//! weighted MSE and the audio codec's spectral and loudness-envelope terms (and `blur_cells`,
//! a shape code as smooth as the DiT draws it, which `examples/nano_detail` decodes).

use super::*;

/// Latent channels the shape code takes (one per shape, [`Clip::shape_cells`]).
pub const SHAPE_CODE: usize = 3;

/// The shape code's loss: the mean squared difference between the first [`SHAPE_CODE`]
/// channels of a video latent `[1, C, T, H, W]` and the clip's [`Clip::shape_cells`].
pub(super) fn shape_code_miss(z: &Tensor, clip: &Clip) -> candle::Result<Tensor> {
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

/// Video latent channels `[1, C, T, h, w]` blurred over each latent frame by a [1 2 1]² / 16
/// kernel, averaged over the cells inside the frame at its edges: a shape code as smooth as
/// the DiT draws it (right in which channel it lights, not in the outline).
pub fn blur_cells(code: &Tensor) -> candle::Result<Tensor> {
    let (b, c, t, h, w) = code.dims5()?;
    let k: Vec<f32> = [1f32, 2., 1.]
        .iter()
        .flat_map(|a| [1f32, 2., 1.].map(|b| a * b / 16.0))
        .collect();
    let kernel = Tensor::from_vec(k, (1, 1, 3, 3), code.device())?;
    let planes = code.contiguous()?.reshape((b * c * t, 1, h, w))?;
    let smooth = planes.conv2d(&kernel, 1, 1, 1, 1)?;
    let weight = planes.ones_like()?.conv2d(&kernel, 1, 1, 1, 1)?;
    (smooth / weight)?.reshape((b, c, t, h, w))
}

/// The per-channel scale of the video-decoder stage's latent noise: each channel's std, but
/// the first `code` channels (the shape code, if any) stay clean, since they are what the DiT
/// gets right and the decoder is to draw the shape from them when the rest is noisy.
pub(super) fn decoder_noise_std(video_std: &[f32], code: usize) -> Vec<f32> {
    video_std
        .iter()
        .enumerate()
        .map(|(c, &s)| if c < code { 0.0 } else { s })
        .collect()
}

/// Frames `[n, H, W, 3]` u8 → `[n, 3, H, W]` in [-1, 1].
pub(super) fn frames_tensor(clip: &Clip, dev: &Device) -> candle::Result<Tensor> {
    Tensor::from_slice(
        &clip.frames_rgb,
        (clip.n_frames, clip.height, clip.width, 3),
        dev,
    )?
    .permute((0, 3, 1, 2))?
    .to_dtype(DType::F32)?
    .affine(1.0 / 127.5, -1.0)
}

/// The ground contacts the eval's video analyzer reads from decoded `frames` `[n, 3, H, W]`
/// in [-1, 1] at `fps` (the scene's background known), in seconds; `None` where it reads no
/// bounce or fall, or one without contacts: the picture then shows no contact to time a hit by.
pub(super) fn picture_contacts(
    frames: &Tensor,
    background: crate::nano::world::Background,
    fps: u32,
) -> candle::Result<Option<Vec<f32>>> {
    let (_, _, h, w) = frames.dims4()?;
    let rgb = ((frames + 1.0)? * 127.5)?
        .round()?
        .clamp(0.0, 255.0)?
        .permute((0, 2, 3, 1))?
        .to_dtype(DType::U8)?
        .flatten_all()?
        .to_device(&Device::Cpu)?
        .to_vec1::<u8>()?;
    let pictures: Vec<crate::nano::world::Frame> = rgb
        .chunks_exact(3 * w * h)
        .map(|f| crate::nano::world::Frame {
            width: w,
            height: h,
            rgb: f.to_vec(),
        })
        .collect();
    let seen = crate::nano::analyze::analyze_video(&pictures, fps as f32, Some(background))
        .map_err(|e| candle::Error::Msg(format!("nano train: reading the decoded picture: {e}")))?;
    Ok((!seen.impacts_s.is_empty()).then_some(seen.impacts_s))
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

/// A shape-correcting point and its velocity target
/// ([`TrainConfig::dit_restart_shape_swap`](super::TrainConfig::dit_restart_shape_swap)):
/// the twin's latent `zt` under the clip's first `code` channels (its shape code: at the
/// sampler's last steps the DiT's code already names the caption's shape, its outline does
/// not), noised to `sigma`, and the velocity whose Euler step to 0 lands on the clip's latent
/// `zv`, `(x - zv) / sigma`. With `zt == zv` that is flow matching's own `e - zv`.
pub(super) fn shape_correction(
    zv: &Tensor,
    zt: &Tensor,
    code: usize,
    sigma: f64,
    noise: &mut SeededNoise,
) -> candle::Result<(Tensor, Tensor)> {
    let c = zt.dim(1)?;
    let start = Tensor::cat(&[zv.narrow(1, 0, code)?, zt.narrow(1, code, c - code)?], 1)?;
    let (x, _) = noised(&start, sigma, noise)?;
    let target = ((&x - zv)? / sigma)?;
    Ok((x, target))
}

/// The sampler's noise levels from `sigma0` down: `sigma0`, then the levels of the `steps`-step
/// schedule shifted by `shift` that are under it, then 0 (`[0]` alone for `sigma0` 0). The
/// walk the DiT takes from a clip noised to `sigma0`, as its sampler would from there.
pub fn levels_below(sigma0: f32, steps: usize, shift: f64) -> Vec<f32> {
    if sigma0 <= 0.0 {
        return vec![0.0];
    }
    let mut out = vec![sigma0];
    for i in 1..steps {
        let u = 1.0 - i as f64 / steps as f64;
        let s = (shift * u / (1.0 + (shift - 1.0) * u)) as f32;
        if s < sigma0 - 1e-4 {
            out.push(s);
        }
    }
    out.push(0.0);
    out
}

/// L1 between log-magnitude spectra (256-sample Hann frames, no overlap).
pub(super) fn spectral_l1(
    pred: &Tensor,
    target: &Tensor,
    basis: &(Tensor, Tensor),
) -> candle::Result<Tensor> {
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
pub(super) const ENVELOPE_FRAME: usize = 100;

/// Floor of the envelope loss: -70 dBFS, under the -60 dBFS line where a clip counts as silent.
pub(super) const ENVELOPE_FLOOR: f64 = 1e-7;

/// Log energies of `frame`-sample frames of `x` `[hops, hop]`: `[hops, hop / frame]`.
pub(super) fn log_envelope(x: &Tensor, frame: usize) -> candle::Result<Tensor> {
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
pub(super) fn envelope_l1(
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

pub(super) fn dft_basis(n: usize, dev: &Device) -> candle::Result<(Tensor, Tensor)> {
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

/// `1 + extra * mask`, scaled to mean 1 so the loss keeps its scale, shaped to broadcast.
pub(super) fn weights<S: Into<candle::Shape>>(
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
pub(super) fn weighted_mse(pred: &Tensor, target: &Tensor, w: &Tensor) -> candle::Result<Tensor> {
    (pred - target)?.sqr()?.broadcast_mul(w)?.mean_all()
}

pub(super) fn noise_like(noise: &mut SeededNoise, like: &Tensor) -> candle::Result<Tensor> {
    Tensor::from_vec(noise.sample(like.elem_count()), like.shape(), like.device())
}

/// `z` `[1, N, C]` rolled forward in time by `by` frames (circularly): frame `i` moves to
/// `(i + by) % N`.
pub(super) fn roll_frames(z: &Tensor, by: usize) -> candle::Result<Tensor> {
    let n = z.dim(1)?;
    let by = by % n.max(1);
    if by == 0 {
        return Ok(z.clone());
    }
    Tensor::cat(&[z.narrow(1, n - by, by)?, z.narrow(1, 0, n - by)?], 1)
}

/// A standard gaussian draw turned into a uniform one in [0, 1] (its CDF).
pub(super) fn uniform(gaussian: f32) -> f64 {
    0.5 * (1.0 + libm_erf(gaussian as f64 / std::f64::consts::SQRT_2))
}

/// erf by Abramowitz-Stegun 7.1.26 (|error| < 1.5e-7): turns a gaussian draw into a uniform one.
pub(super) fn libm_erf(x: f64) -> f64 {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ops::max_abs_diff;
    use crate::nano::world::Motion;

    /// A shape-correcting point's Euler step to 0 lands on the clip's latent; its code
    /// channels are the clip's, the rest the twin's; with the twin equal to the clip it is
    /// flow matching's own point and target.
    #[test]
    fn a_shape_correcting_step_to_zero_lands_on_the_clips_latent() {
        let dev = Device::Cpu;
        let zv = Tensor::randn(0f32, 1.0, (1, 5, 2, 3, 4), &dev).unwrap();
        let zt = Tensor::randn(0f32, 1.0, (1, 5, 2, 3, 4), &dev).unwrap();
        let sigma = 0.4;
        let (x, v) = shape_correction(&zv, &zt, 2, sigma, &mut SeededNoise::new(3)).unwrap();
        let landed = (&x - (&v * sigma).unwrap()).unwrap();
        assert!(max_abs_diff(&landed, &zv) < 1e-5);
        // The same noise on the start: its first two channels are the clip's, the rest the twin's.
        let (e_start, _) = noised(&zv, sigma, &mut SeededNoise::new(3)).unwrap();
        let (t_start, _) = noised(&zt, sigma, &mut SeededNoise::new(3)).unwrap();
        let part = |t: &Tensor, from: usize, n: usize| t.narrow(1, from, n).unwrap();
        assert!(max_abs_diff(&part(&x, 0, 2), &part(&e_start, 0, 2)) < 1e-6);
        assert!(max_abs_diff(&part(&x, 2, 3), &part(&t_start, 2, 3)) < 1e-6);
        assert!(max_abs_diff(&part(&x, 2, 3), &part(&e_start, 2, 3)) > 0.1);
        // Twin == clip: flow matching's point and velocity `e - zv`.
        let (x, v) = shape_correction(&zv, &zv, 2, sigma, &mut SeededNoise::new(3)).unwrap();
        let (xf, e) = noised(&zv, sigma, &mut SeededNoise::new(3)).unwrap();
        assert!(max_abs_diff(&x, &xf) < 1e-6);
        assert!(max_abs_diff(&v, &(e - &zv).unwrap()) < 1e-4);
    }

    /// The picture-timed target of the cue stage: on the world's own picture of a bounce the
    /// analyzer's contacts are the clip's within a frame, so the sound for them has the
    /// clip's hit frames (but for a first contact it does not see: at 8 fps a fast drop can
    /// land between two frames neither of which touches the ground, and the eval does not see
    /// it either); a picture without contacts leaves the clip's target.
    #[test]
    fn the_sound_for_the_worlds_own_picture_has_the_clips_hits() {
        let cfg = NanoConfig::tiny_for_tests(10);
        let fps = cfg.native_fps;
        let sampler = ClipSampler::new(&cfg, vec![(96, 56)], (6, 6));
        let mut bounces = 0;
        for i in 0..6 {
            let clip = sampler.clip_with(11, 2, i, |s| {
                s.motion = Motion::Bounce;
                s.silent = false;
                s.second = None;
            });
            let frames = frames_tensor(&clip, &Device::Cpu).unwrap();
            let Some(seen) = picture_contacts(&frames, clip.scene.background, fps).unwrap() else {
                continue;
            };
            bounces += 1;
            let heard = clip.with_contacts(&seen, fps, cfg.sample_rate);
            assert_eq!(heard.audio.len(), clip.audio.len());
            let near = |a: &[f32], b: &[f32]| {
                a.iter()
                    .enumerate()
                    .filter(|(_, &v)| v > 0.0)
                    .all(|(f, _)| {
                        (f.saturating_sub(1)..=f + 1).any(|g| b.get(g).is_some_and(|&v| v > 0.0))
                    })
            };
            let count = |f: &[f32]| f.iter().filter(|&&v| v > 0.0).count();
            let (seen_hits, own_hits) = (count(&heard.impact_frames), count(&clip.impact_frames));
            assert!(
                near(&heard.impact_frames, &clip.impact_frames)
                    && (own_hits.saturating_sub(1)..=own_hits).contains(&seen_hits),
                "clip {i}: {:?} seen for {:?}",
                heard.impact_frames,
                clip.impact_frames
            );
            // Moved a quarter second later, the hits follow.
            let later: Vec<f32> = seen.iter().map(|t| t + 0.25).collect();
            let moved = clip.with_contacts(&later, fps, cfg.sample_rate);
            assert_ne!(moved.audio, heard.audio);
            assert_ne!(moved.impact_frames, heard.impact_frames);
        }
        assert!(bounces >= 4, "{bounces} of 6 bounces showed contacts");
        // A slide shows none.
        let slide = sampler.clip_with(11, 2, 9, |s| s.motion = Motion::SlideRight);
        let frames = frames_tensor(&slide, &Device::Cpu).unwrap();
        assert_eq!(
            picture_contacts(&frames, slide.scene.background, fps).unwrap(),
            None
        );
    }

    #[test]
    fn rolling_moves_every_frame_forward_and_wraps_the_last_ones_round() {
        let z = Tensor::arange(0f32, 8.0, &Device::Cpu)
            .unwrap()
            .reshape((1, 4, 2))
            .unwrap();
        let frames = |t: &Tensor| t.squeeze(0).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(
            frames(&roll_frames(&z, 1).unwrap()),
            [[6.0, 7.0], [0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]
        );
        assert_eq!(frames(&roll_frames(&z, 4).unwrap()), frames(&z));
        assert_eq!(
            frames(&roll_frames(&z, 3).unwrap()),
            frames(&roll_frames(&z, 7).unwrap())
        );
    }

    #[test]
    fn the_walk_from_a_level_is_the_tail_of_the_samplers_schedule() {
        // 8 steps at shift 3: 1, 0.955, 0.9, 0.833, 0.75, 0.643, 0.5, 0.3, then 0.
        let full = levels_below(1.0, 8, 3.0);
        assert_eq!(full.len(), 9, "{full:?}");
        assert_eq!((full[0], full[8]), (1.0, 0.0));
        assert!(
            (full[6] - 0.5).abs() < 1e-6 && (full[7] - 0.3).abs() < 1e-6,
            "{full:?}"
        );
        assert!(full.windows(2).all(|w| w[0] > w[1]), "{full:?}");
        // From 0.6 the walk starts there and takes the schedule's levels under it.
        assert_eq!(levels_below(0.6, 8, 3.0), vec![0.6, 0.5, 0.3, 0.0]);
        // From a level on the schedule, that level once.
        assert_eq!(levels_below(0.5, 8, 3.0), vec![0.5, 0.3, 0.0]);
        assert_eq!(levels_below(0.0, 8, 3.0), vec![0.0]);
    }

    #[test]
    fn blurring_the_cells_spreads_a_lit_cell_keeps_a_flat_plane_and_the_channels_apart() {
        let dev = Device::Cpu;
        // [1, 2, 1, 5, 5]: channel 0 one lit cell in the middle, channel 1 flat.
        let mut v = vec![0f32; 2 * 5 * 5];
        v[2 * 5 + 2] = 16.0;
        v[25..].fill(3.0);
        let got = blur_cells(&Tensor::from_vec(v, (1, 2, 1, 5, 5), &dev).unwrap())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(got[2 * 5 + 2], 4.0, "the centre keeps 4/16");
        assert_eq!(got[5 + 2], 2.0, "an edge neighbour 2/16");
        assert_eq!(got[5 + 1], 1.0, "a corner neighbour 1/16");
        assert_eq!(got[0], 0.0, "two cells away: nothing");
        assert_eq!(
            got[..25].iter().sum::<f32>(),
            16.0,
            "inside the frame: all of it"
        );
        assert!(
            got[25..].iter().all(|&x| (x - 3.0).abs() < 1e-6),
            "flat stays flat"
        );
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
        assert_eq!(decoder_noise_std(&std, 0), std);
        assert_eq!(
            decoder_noise_std(&std, SHAPE_CODE),
            [0.0, 0.0, 0.0, 0.4, 0.5]
        );
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
