//! The soundtrack: every sound is caused by something in the scene.
//!
//! Ambience and continuous motion sounds fade in over `FADE_S` and never change abruptly, so
//! the only sharp onsets in a clip are contacts; that is what lets the onset detector (and AV
//! sync on generated clips) be judged against `Trajectory::impacts`.

use std::f32::consts::TAU;

use super::motion::Trajectory;
use super::rng::SplitMix64;
use super::scene::{Ambience, Motion, Scene, Shape, Size};

const FADE_S: f32 = 0.3;

/// Mono samples in [-1, 1] at `sample_rate`, `round(duration_s * sample_rate)` long. All
/// zeros for a silent scene.
pub fn render_audio(scene: &Scene, sample_rate: u32, duration_s: f32) -> Vec<f32> {
    let own: Vec<f32> = Trajectory::new(scene, duration_s)
        .impacts()
        .iter()
        .map(|c| c.time_s)
        .collect();
    render_audio_with_contacts(scene, sample_rate, duration_s, &own)
}

/// The scene's soundtrack with its hits at `contacts_s` (seconds) instead of where its own
/// trajectory puts them: the sound the world would make for a picture whose contacts come at
/// those times. The `k`-th hit is as loud as the scene's `k`-th (the last one's past them);
/// ambience and motion sounds are the scene's own, sample for sample. A motion without
/// contacts (slide, orbit, still) keeps its own sound and takes no hits; a silent scene
/// stays silent.
pub fn render_audio_with_contacts(
    scene: &Scene,
    sample_rate: u32,
    duration_s: f32,
    contacts_s: &[f32],
) -> Vec<f32> {
    let sr = sample_rate.max(1) as f32;
    let n = (duration_s * sr).round().max(0.0) as usize;
    let mut out = vec![0f32; n];
    if scene.silent || n == 0 {
        return out;
    }
    let mut rng = SplitMix64::new(scene.seed ^ 0x50FD_A0D1_0000_0001);
    add_ambience(&mut out, scene.ambience, sr, &mut rng);

    let traj = Trajectory::new(scene, duration_s);
    let pitch = size_pitch(scene.object.size);
    match scene.motion {
        Motion::SlideLeft | Motion::SlideRight => add_whoosh(&mut out, pitch, sr, &mut rng),
        Motion::Orbit => add_whirr(&mut out, pitch, scene.physics.orbit_period_s, sr),
        _ => {}
    }
    let loudest = traj.impacts().first().map_or(1.0, |c| c.speed.max(1e-6));
    let strengths: Vec<f32> = traj
        .impacts()
        .iter()
        .map(|c| 0.5 + 0.5 * (c.speed / loudest).min(1.0))
        .collect();
    // The k-th hit as loud as the scene's k-th contact (the last one's past them).
    let hits = contacts_s
        .iter()
        .enumerate()
        .filter_map(|(k, &t)| Some((t, *strengths.get(k).or(strengths.last())?)));
    for (time_s, strength) in hits {
        add_hit(
            &mut out,
            time_s.max(0.0),
            strength,
            pitch,
            scene.object.shape,
            sr,
            &mut rng,
        );
    }
    for s in &mut out {
        *s = s.clamp(-1.0, 1.0);
    }
    out
}

/// Fundamental of an object's sounds: small things sound high.
fn size_pitch(size: Size) -> f32 {
    match size {
        Size::Small => 1200.0,
        Size::Medium => 600.0,
        Size::Large => 300.0,
    }
}

fn fade_in(i: usize, sr: f32) -> f32 {
    let t = i as f32 / sr / FADE_S;
    if t >= 1.0 {
        1.0
    } else {
        0.5 - 0.5 * (std::f32::consts::PI * t).cos()
    }
}

/// One-pole low-pass coefficient for a cutoff in Hz.
fn one_pole(cutoff: f32, sr: f32) -> f32 {
    1.0 - (-TAU * cutoff / sr).exp()
}

fn add_ambience(out: &mut [f32], ambience: Ambience, sr: f32, rng: &mut SplitMix64) {
    let (mut lp1, mut lp2) = (0f32, 0f32);
    let phase = rng.range(0.0, TAU);
    let nyquist = sr * 0.5;
    for (i, s) in out.iter_mut().enumerate() {
        let t = i as f32 / sr;
        let v = match ambience {
            Ambience::None => 0.0,
            // Hiss: white noise minus its low end.
            Ambience::Rain => {
                let w = rng.signed();
                lp1 += one_pole(800.0, sr) * (w - lp1);
                0.08 * (w - lp1)
            }
            // Rumble that swells and fades every few seconds.
            Ambience::Wind => {
                let w = rng.signed();
                lp1 += one_pole(500.0, sr) * (w - lp1);
                lp2 += one_pole(500.0, sr) * (lp1 - lp2);
                let swell = 0.6 + 0.4 * (TAU * 0.25 * t + phase).sin();
                0.3 * swell * lp2
            }
            Ambience::Hum => [(110.0, 1.0), (220.0, 0.5), (330.0, 0.25)]
                .iter()
                .filter(|(f, _)| *f < nyquist)
                .map(|(f, a)| 0.04 * a * (TAU * f * t).sin())
                .sum(),
            // Slow organ notes, A F C G, two seconds each, swelling in and out (sin²) with
            // no overlap: partials are harmonics at least 170 Hz apart, so no beating
            // within a 10 ms window, and a soft attack, so music makes no sharp onset.
            Ambience::Music => {
                const ROOTS: [f32; 4] = [220.0, 174.61, 261.63, 196.0];
                let pos = t / 2.0;
                let root = ROOTS[pos as usize % ROOTS.len()];
                let env = (std::f32::consts::PI * (pos - pos.floor())).sin().powi(2);
                let organ: f32 = [(1.0, 1.0), (2.0, 0.5), (3.0, 0.3)]
                    .iter()
                    .filter(|(h, _)| root * h < nyquist)
                    .map(|(h, a)| a * (TAU * root * h * t).sin())
                    .sum();
                0.05 * env * organ
            }
        };
        *s += v * fade_in(i, sr);
    }
}

/// Friction noise for a slide; brighter for smaller objects.
fn add_whoosh(out: &mut [f32], pitch: f32, sr: f32, rng: &mut SplitMix64) {
    let (mut lo, mut hi) = (0f32, 0f32);
    let (a_lo, a_hi) = (one_pole(pitch * 0.5, sr), one_pole(pitch * 2.0, sr));
    for (i, s) in out.iter_mut().enumerate() {
        let w = rng.signed();
        lo += a_lo * (w - lo);
        hi += a_hi * (w - hi);
        *s += 0.35 * (hi - lo) * fade_in(i, sr);
    }
}

/// A soft tone that swells once per revolution.
fn add_whirr(out: &mut [f32], pitch: f32, period_s: f32, sr: f32) {
    let f = pitch * 0.5;
    if f >= sr * 0.5 {
        return;
    }
    for (i, s) in out.iter_mut().enumerate() {
        let t = i as f32 / sr;
        let swell = 0.7 + 0.3 * (TAU * t / period_s).sin();
        *s += 0.06 * swell * (TAU * f * t).sin() * fade_in(i, sr);
    }
}

/// A percussive contact: a short noise click over decaying partials whose ratios depend on
/// the shape (a ball rings, a square knocks, a triangle clinks).
fn add_hit(
    out: &mut [f32],
    at_s: f32,
    strength: f32,
    pitch: f32,
    shape: Shape,
    sr: f32,
    rng: &mut SplitMix64,
) {
    let start = (at_s * sr).round() as usize;
    let (partials, decay_s): (&[(f32, f32)], f32) = match shape {
        Shape::Ball => (&[(1.0, 1.0), (2.76, 0.4)], 0.09),
        Shape::Square => (&[(1.0, 1.0), (2.0, 0.5), (3.0, 0.25)], 0.06),
        Shape::Triangle => (&[(1.0, 0.8), (2.4, 0.6), (4.1, 0.3)], 0.14),
    };
    let len = (decay_s * 5.0 * sr) as usize;
    let click = (0.004 * sr) as usize;
    let nyquist = sr * 0.5;
    let end = (start + len).min(out.len());
    for (j, s) in out[start.min(end)..end].iter_mut().enumerate() {
        let t = j as f32 / sr;
        let env = (-t / decay_s).exp();
        let tone: f32 = partials
            .iter()
            .filter(|(r, _)| pitch * r < nyquist)
            .map(|(r, a)| a * (TAU * pitch * r * t).sin())
            .sum();
        let noise = if j < click {
            rng.signed() * (1.0 - j as f32 / click as f32)
        } else {
            0.0
        };
        *s += strength * (0.6 * env * tone + 0.3 * noise);
    }
}
