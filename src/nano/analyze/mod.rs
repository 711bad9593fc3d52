//! Analyzers that judge decoded clips (frames and samples, never latents): does the clip show
//! what the prompt asked, and are sound and picture in sync?
//!
//! Validated on the world's own renders (see the tests), where the ground truth is known.

mod audio;
mod video;

pub use audio::{detect_onsets, is_silent, loudness_dbfs, SILENCE_DBFS};
pub use video::{analyze_video, estimate_background, Detection, ShapeMeasures, VideoAnalysis};

use serde::{Deserialize, Serialize};

use super::world::{Background, Frame};

#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    #[error("no frames to analyse")]
    NoFrames,
    #[error("frame {index} is {width}x{height} with {bytes} bytes; all frames must share one non-empty size with 3 bytes per pixel")]
    FrameSize {
        index: usize,
        width: usize,
        height: usize,
        bytes: usize,
    },
    #[error("frame rate must be positive, got {0}")]
    Rate(f32),
}

/// Audio-visual sync: for each contact seen in the picture, the signed distance to the
/// nearest audio onset (positive: the sound comes late).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncReport {
    pub errors_ms: Vec<f32>,
    /// Visual contacts with no audio onset at all (the whole clip has none).
    pub unmatched: usize,
    pub mean_abs_ms: Option<f32>,
    pub max_abs_ms: Option<f32>,
}

pub fn av_sync(visual_impacts_s: &[f32], onsets_s: &[f32]) -> SyncReport {
    let errors_ms: Vec<f32> = visual_impacts_s
        .iter()
        .filter_map(|&v| {
            onsets_s
                .iter()
                .map(|&o| (o - v) * 1000.0)
                .min_by(|a, b| a.abs().total_cmp(&b.abs()))
        })
        .collect();
    let abs = errors_ms.iter().map(|e| e.abs());
    let n = errors_ms.len();
    SyncReport {
        unmatched: visual_impacts_s.len() - n,
        mean_abs_ms: (n > 0).then(|| abs.clone().sum::<f32>() / n as f32),
        max_abs_ms: abs.reduce(f32::max),
        errors_ms,
    }
}

/// Everything the analyzers say about one clip.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClipAnalysis {
    pub video: VideoAnalysis,
    pub onsets_s: Vec<f32>,
    pub loudness_dbfs: f32,
    pub silent: bool,
    pub sync: SyncReport,
}

pub fn analyze_clip(
    frames: &[Frame],
    fps: f32,
    audio: &[f32],
    sample_rate: u32,
    background: Option<Background>,
) -> Result<ClipAnalysis, AnalyzeError> {
    let video = analyze_video(frames, fps, background)?;
    let onsets_s = detect_onsets(audio, sample_rate);
    let sync = av_sync(&video.impacts_s, &onsets_s);
    Ok(ClipAnalysis {
        loudness_dbfs: loudness_dbfs(audio),
        silent: is_silent(audio),
        onsets_s,
        sync,
        video,
    })
}

#[cfg(test)]
mod tests;
