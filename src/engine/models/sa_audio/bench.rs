//! Decode and encode timing of the released-size audio VAE (Stable Audio Open 1.0 Oobleck) with
//! random weights (no checkpoint needed). `happyhorse bench codec` runs them.

use std::time::Instant;

use candle::{DType, Device, Module, Result, Tensor};
use candle_core as candle;

use super::oobleck::{OobleckDecoder, OobleckEncoder};
use super::Config;
use crate::engine::bench::{gib, peak_rss_bytes, random_var_builder};

/// Latent frames per second of audio: 51 200 Hz over a hop of 2048 samples.
pub const LATENT_FPS: f32 = 25.0;

/// Latent frames of `seconds` of audio (at least one).
pub fn latent_frames(seconds: f32) -> usize {
    ((seconds * LATENT_FPS).round() as usize).max(1)
}

/// One timed Oobleck pass: a decode (latent → waveform) or an encode (waveform → latent).
#[derive(Debug, Clone)]
pub struct AudioBench {
    pub latent_frames: usize,
    /// Waveform samples per channel (stereo, 51 200 Hz).
    pub samples: usize,
    /// Building the network: random init and weight-norm folding.
    pub load_s: f64,
    /// The pass itself.
    pub run_s: f64,
    /// Seconds of audio per second of compute.
    pub realtime_factor: f64,
    /// Peak RSS of this process after the pass, in bytes.
    pub peak_rss_bytes: Option<u64>,
}

/// What [`bench_decode`] measures (the decode's name for [`AudioBench`]).
pub type DecodeBench = AudioBench;

impl std::fmt::Display for AudioBench {
    /// `N latent frames <-> L samples: seconds (x real time), load seconds, peak RSS GiB`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} latent frames <-> [2, {}] samples: {:.2} s ({:.2}x real time), load {:.2} s, \
             peak RSS {:.2} GiB",
            self.latent_frames,
            self.samples,
            self.run_s,
            self.realtime_factor,
            self.load_s,
            gib(self.peak_rss_bytes)
        )
    }
}

/// Times `forward` of the network built by `build` on `input`, forcing the result.
fn time_pass<M: Module>(
    seconds: f32,
    latent_frames: usize,
    build: impl FnOnce() -> Result<M>,
    input: &Tensor,
    samples_of: impl Fn(&Tensor, &Tensor) -> Result<usize>,
) -> Result<AudioBench> {
    let start = Instant::now();
    let net = build()?;
    let load_s = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let out = net.forward(input)?;
    let _ = out.to_dtype(DType::F32)?.sum_all()?.to_scalar::<f32>()?;
    let run_s = start.elapsed().as_secs_f64();
    Ok(AudioBench {
        latent_frames,
        samples: samples_of(input, &out)?,
        load_s,
        run_s,
        realtime_factor: seconds as f64 / run_s,
        peak_rss_bytes: peak_rss_bytes(),
    })
}

/// Decodes `seconds` of audio ([`LATENT_FPS`] latent frames per second) with the
/// stable-audio-open-1.0 decoder widths and random weights on `device`.
pub fn bench_decode(seconds: f32, dtype: DType, device: &Device) -> Result<AudioBench> {
    let cfg = Config::stable_audio_open_1_0().decoder.config;
    let frames = latent_frames(seconds);
    let latents =
        Tensor::randn(0f32, 1f32, (1, cfg.latent_dim, frames), device)?.to_dtype(dtype)?;
    time_pass(
        seconds,
        frames,
        || OobleckDecoder::new(&cfg, random_var_builder(dtype, device).pp("decoder")),
        &latents,
        |_, wave| wave.dim(2),
    )
}

/// Encodes `seconds` of random stereo audio (`latent_frames * 2048` samples in [-1, 1]) with
/// the stable-audio-open-1.0 encoder widths and random weights on `device`; the VAE
/// bottleneck after it (a softplus and a sample) is left out.
pub fn bench_encode(seconds: f32, dtype: DType, device: &Device) -> Result<AudioBench> {
    let full = Config::stable_audio_open_1_0();
    let cfg = full.encoder.config;
    let frames = latent_frames(seconds);
    let hop: usize = cfg.strides.iter().product();
    let audio =
        Tensor::rand(-1f32, 1f32, (1, cfg.in_channels, frames * hop), device)?.to_dtype(dtype)?;
    time_pass(
        seconds,
        frames,
        || OobleckEncoder::new(&cfg, random_var_builder(dtype, device).pp("encoder")),
        &audio,
        |audio, _| audio.dim(2),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latent_frames_are_25_per_second() {
        assert_eq!(latent_frames(5.0), 125);
        assert_eq!(latent_frames(1.0), 25);
        assert_eq!(latent_frames(0.0), 1);
    }
}
