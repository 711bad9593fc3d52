//! What the soundtrack does: onsets (energy flux) and loudness.

/// Below this RMS level a clip counts as silent.
pub const SILENCE_DBFS: f32 = -60.0;
/// Hop of the energy envelope; onset times are resolved to about half of it.
const HOP_S: f32 = 0.005;
/// Rise in dB over a few hops that marks an onset.
const ONSET_RISE_DB: f32 = 9.0;
/// Onsets quieter than this are ignored (fade-ins, reverb tails).
const ONSET_FLOOR_DBFS: f32 = -45.0;
/// Two onsets closer than this are one event.
const MIN_GAP_S: f32 = 0.05;

/// RMS level in dBFS (full-scale sine ≈ -3 dBFS); -inf-like (-200) for digital silence.
pub fn loudness_dbfs(samples: &[f32]) -> f32 {
    if samples.is_empty() {
        return -200.0;
    }
    let ms = samples
        .iter()
        .map(|&s| (s as f64) * (s as f64))
        .sum::<f64>()
        / samples.len() as f64;
    (10.0 * (ms + 1e-20).log10()) as f32
}

pub fn is_silent(samples: &[f32]) -> bool {
    loudness_dbfs(samples) < SILENCE_DBFS
}

/// Onset times in seconds. The envelope is the log energy of 2-hop windows every hop; an
/// onset is a local maximum of its rise over the previous three hops (so soft attacks spread
/// over a few hops still count), placed at the first window of that rise.
pub fn detect_onsets(samples: &[f32], sample_rate: u32) -> Vec<f32> {
    let sr = sample_rate as f32;
    let hop = ((sr * HOP_S).round() as usize).max(1);
    let win = 2 * hop;
    if samples.len() < win {
        return Vec::new();
    }
    let frames = (samples.len() - win) / hop + 1;
    let level: Vec<f32> = (0..frames)
        .map(|k| {
            let w = &samples[k * hop..k * hop + win];
            let ms = w.iter().map(|&s| s * s).sum::<f32>() / win as f32;
            (10.0 * (ms + 1e-12).log10()).max(-90.0)
        })
        .collect();
    let rise: Vec<f32> = (0..frames)
        .map(|k| {
            let before = level[k.saturating_sub(3)..k]
                .iter()
                .copied()
                .fold(f32::INFINITY, f32::min);
            if before.is_finite() {
                level[k] - before
            } else {
                0.0
            }
        })
        .collect();
    let gap = (MIN_GAP_S / HOP_S).round() as usize;
    // (first window of the rise, size of the rise)
    let mut found: Vec<(usize, f32)> = Vec::new();
    for k in 1..frames {
        let local_max = rise[k.saturating_sub(2)..(k + 3).min(frames)]
            .iter()
            .all(|&r| r <= rise[k]);
        if rise[k] < ONSET_RISE_DB || level[k] < ONSET_FLOOR_DBFS || !local_max {
            continue;
        }
        // The rise may peak a hop or two after the sound starts; step back to the first
        // window that already rose by half of it.
        let base = level[k.saturating_sub(3)..k]
            .iter()
            .copied()
            .fold(f32::INFINITY, f32::min);
        let start = (k.saturating_sub(3)..=k)
            .find(|&j| level[j] - base >= 0.5 * rise[k])
            .unwrap_or(k);
        match found.last_mut() {
            // Too close to the previous onset to be another event: keep the stronger.
            Some(last) if start < last.0 + gap => {
                if rise[k] > last.1 {
                    *last = (start, rise[k]);
                }
            }
            _ => found.push((start, rise[k])),
        }
    }
    // The window `start` is the first to hold the sound, which thus began in its last hop.
    found
        .iter()
        .map(|&(start, _)| (start * hop) as f32 / sr + 1.5 * HOP_S)
        .collect()
}
