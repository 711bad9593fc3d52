//! Sound for the preview through rodio. Over SSH there is usually no audio device: then the
//! output is "unavailable" with the reason, said once, and the preview shows a loudness strip
//! instead. The sink's position is the playback clock when sound plays, so frames follow it.

use std::time::Duration;

use rodio::buffer::SamplesBuffer;
use rodio::{OutputStream, OutputStreamBuilder, Sink};

use crate::media::Audio;

pub struct AudioOut {
    /// Kept alive for as long as sound may play; dropping it stops the device.
    stream: Option<OutputStream>,
    sink: Option<Sink>,
    /// Why there is no sound, when there is none.
    pub unavailable: Option<String>,
}

impl AudioOut {
    /// Opens the default output device. Call before the alternate screen: ALSA may print to
    /// stderr while probing, which would otherwise land in the middle of the UI.
    pub fn open() -> AudioOut {
        match OutputStreamBuilder::open_default_stream() {
            Ok(mut stream) => {
                // We drop it on purpose at exit; rodio's drop notice would only be noise.
                stream.log_on_drop(false);
                AudioOut {
                    stream: Some(stream),
                    sink: None,
                    unavailable: None,
                }
            }
            Err(e) => AudioOut::disabled(format!("no audio device ({e})")),
        }
    }

    pub fn disabled(reason: impl Into<String>) -> AudioOut {
        AudioOut {
            stream: None,
            sink: None,
            unavailable: Some(reason.into()),
        }
    }

    pub fn available(&self) -> bool {
        self.stream.is_some()
    }

    /// Starts `audio` at `from` seconds, replacing whatever played.
    pub fn play(&mut self, audio: &Audio, from: f64) {
        self.stop();
        let Some(stream) = &self.stream else { return };
        let channels = audio.channels.max(1) as usize;
        let skip = (from.max(0.0) * audio.sample_rate as f64) as usize * channels;
        let samples: Vec<f32> = audio.samples.iter().skip(skip).copied().collect();
        let sink = Sink::connect_new(stream.mixer());
        sink.append(SamplesBuffer::new(
            audio.channels.max(1),
            audio.sample_rate,
            samples,
        ));
        self.sink = Some(sink);
    }

    pub fn stop(&mut self) {
        if let Some(s) = self.sink.take() {
            s.stop();
        }
    }

    /// Seconds played since [`AudioOut::play`], while sound is playing.
    pub fn position(&self) -> Option<Duration> {
        self.sink
            .as_ref()
            .filter(|s| !s.empty())
            .map(|s| s.get_pos())
    }
}

/// Loudness (RMS, 0–1) of the sound under each of `columns` equal slices of the clip, for the
/// strip drawn under the frames when there is no audio device.
pub fn loudness(audio: &Audio, columns: usize) -> Vec<f32> {
    let ch = audio.channels.max(1) as usize;
    let n = audio.len();
    if columns == 0 || n == 0 {
        return vec![0.0; columns];
    }
    (0..columns)
        .map(|c| {
            let a = c * n / columns;
            let b = ((c + 1) * n / columns).max(a + 1).min(n);
            let slice = &audio.samples[a * ch..b * ch];
            let sum: f32 = slice.iter().map(|s| s * s).sum();
            (sum / slice.len().max(1) as f32).sqrt().min(1.0)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loudness_follows_the_sound() {
        // Silent first half, loud second half, stereo.
        let mut samples = vec![0.0f32; 2000];
        samples.extend(std::iter::repeat_n(0.5f32, 2000));
        let audio = Audio {
            sample_rate: 1000,
            channels: 2,
            samples,
        };
        let l = loudness(&audio, 4);
        assert_eq!(l.len(), 4);
        assert!(l[0] < 0.01 && l[1] < 0.01);
        assert!((l[2] - 0.5).abs() < 0.01 && (l[3] - 0.5).abs() < 0.01);
    }
}
