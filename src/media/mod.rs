//! Media out and in: MP4 (H.264/H.265 + AAC) through ffmpeg, WAV through hound, PNG frames
//! through image. Every file is written atomically: to a temporary name beside the target, then
//! renamed, so an interrupted run never leaves a truncated file under a final name.

mod atomic;
mod decode;
mod png;
mod probe;
mod retime;
mod video;
mod wav;

pub use atomic::{temp_path_for, write_atomic};
pub use decode::{decode_audio, decode_frames};
pub use png::write_png_frames;
pub use probe::{probe, MediaInfo, StreamInfo, StreamKind};
pub use retime::retime_frames;
pub use video::{encode_mp4, VideoOptions};
pub use wav::{read_wav, write_wav};

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: ffmpeg {op} failed: {source}")]
    Ffmpeg {
        path: PathBuf,
        op: &'static str,
        source: ffmpeg_next::Error,
    },
    #[error("the {codec} encoder is not available in this ffmpeg build; install ffmpeg with {lib} (Debian/Ubuntu: `apt-get install libavcodec-extra`) or choose output.video_codec \"h264\"")]
    MissingEncoder {
        codec: &'static str,
        lib: &'static str,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("{path}: WAV error: {source}")]
    Wav { path: PathBuf, source: hound::Error },
    #[error("{path}: PNG error: {source}")]
    Png {
        path: PathBuf,
        source: image::ImageError,
    },
}

/// Video frames, RGB 8-bit, packed row-major: `data.len() == frames * height * width * 3`.
#[derive(Debug, Clone, PartialEq)]
pub struct Frames {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub data: Vec<u8>,
}

impl Frames {
    pub fn frame_len(&self) -> usize {
        self.width as usize * self.height as usize * 3
    }

    pub fn count(&self) -> usize {
        match self.frame_len() {
            0 => 0,
            n => self.data.len() / n,
        }
    }

    pub fn frame(&self, i: usize) -> &[u8] {
        let n = self.frame_len();
        &self.data[i * n..(i + 1) * n]
    }

    pub fn duration_s(&self) -> f64 {
        self.count() as f64 / self.fps as f64
    }
}

/// Sound, f32 in [-1, 1], interleaved by channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Audio {
    pub sample_rate: u32,
    pub channels: u16,
    pub samples: Vec<f32>,
}

impl Audio {
    /// Samples per channel.
    pub fn len(&self) -> usize {
        self.samples.len() / self.channels.max(1) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    pub fn duration_s(&self) -> f64 {
        self.len() as f64 / self.sample_rate as f64
    }
}

/// A finished clip: its picture and its sound.
#[derive(Debug, Clone, PartialEq)]
pub struct Clip {
    pub frames: Frames,
    pub audio: Audio,
}

fn ffmpeg_init() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        // init only registers codecs; it cannot fail on the versions we build against.
        let _ = ffmpeg_next::init();
        ffmpeg_next::util::log::set_level(ffmpeg_next::util::log::Level::Error);
    });
}
