use std::path::Path;

use super::{write_atomic, Audio, MediaError};

/// Writes 16-bit PCM WAV (the most widely readable form), atomically.
pub fn write_wav(path: &Path, audio: &Audio) -> Result<(), MediaError> {
    let spec = hound::WavSpec {
        channels: audio.channels,
        sample_rate: audio.sample_rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    write_atomic(path, |tmp| {
        let wav_err = |source| MediaError::Wav {
            path: tmp.to_path_buf(),
            source,
        };
        let mut w = hound::WavWriter::create(tmp, spec).map_err(wav_err)?;
        for &s in &audio.samples {
            let v = (s.clamp(-1.0, 1.0) * i16::MAX as f32).round() as i16;
            w.write_sample(v).map_err(wav_err)?;
        }
        w.finalize().map_err(wav_err)
    })
}

/// Reads a WAV file (16/24/32-bit integer or 32-bit float) as f32 samples.
pub fn read_wav(path: &Path) -> Result<Audio, MediaError> {
    let wav_err = |source| MediaError::Wav {
        path: path.to_path_buf(),
        source,
    };
    let r = hound::WavReader::open(path).map_err(wav_err)?;
    let spec = r.spec();
    let samples = match spec.sample_format {
        hound::SampleFormat::Float => r.into_samples::<f32>().collect::<Result<Vec<_>, _>>(),
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32;
            r.into_samples::<i32>()
                .map(|s| s.map(|v| v as f32 * scale))
                .collect()
        }
    }
    .map_err(wav_err)?;
    Ok(Audio {
        sample_rate: spec.sample_rate,
        channels: spec.channels,
        samples,
    })
}
