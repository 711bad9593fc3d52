//! HappyHorse Nano: the small model of the MagiHuman family the project trains and ships (codecs, text encoder, config).
//!
//! The DiT is the engine's [`MagiHuman`] port at a tiny size (same packing, rope and experts);
//! around it sit three small stages of our own design: an 8x8x4 video codec, an audio codec
//! with one latent per pixel frame, and a word-level text encoder. Everything lives in one
//! safetensors file under the prefixes `dit.`, `video_encoder.`, `video_decoder.`,
//! `audio_encoder.`, `audio_decoder.`, `text_encoder.`; `config.json` and `tokenizer.json`
//! sit next to it. `crate::nano::train` produces all three.

pub mod audio_codec;
pub mod conditioning;
pub mod config;
pub mod embedded;
pub mod text;
pub mod video_codec;

use candle::{DType, Result, Tensor};
use candle_core as candle;
use candle_nn::VarBuilder;

use crate::engine::models::magihuman::{packing, DitTrace, MagiHuman};

pub use audio_codec::{AudioDecoder, AudioEncoder, VideoCue};
pub use config::{
    AudioCodecConfig, FrameLayout, LatentStats, NanoConfig, NanoSamplerDefaults, SampleOrder,
    TextEncoderConfig, VideoCodecConfig,
};
pub use text::{NanoTokenizer, TextEncoder};
pub use video_codec::{VideoDecoder, VideoEncoder};

pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const CONFIG_FILE: &str = "config.json";
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// Every stage of Nano, built from one `VarBuilder`.
#[derive(Debug, Clone)]
pub struct Nano {
    pub cfg: NanoConfig,
    pub dit: MagiHuman,
    pub video_encoder: VideoEncoder,
    pub video_decoder: VideoDecoder,
    pub audio_encoder: AudioEncoder,
    pub audio_decoder: AudioDecoder,
    pub text_encoder: TextEncoder,
}

impl Nano {
    pub fn new(cfg: &NanoConfig, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        Ok(Self {
            cfg: cfg.clone(),
            dit: MagiHuman::new(&cfg.dit, &cfg.data_proxy, vb.pp("dit"))?,
            video_encoder: VideoEncoder::new(&cfg.video, vb.pp("video_encoder"))?,
            video_decoder: VideoDecoder::new(&cfg.video, vb.pp("video_decoder"))?,
            audio_encoder: AudioEncoder::new(&cfg.audio, vb.pp("audio_encoder"))?,
            audio_decoder: AudioDecoder::new(&cfg.audio, vb.pp("audio_decoder"))?,
            text_encoder: TextEncoder::new(&cfg.text, vb.pp("text_encoder"))?,
        })
    }
}

impl Nano {
    /// The DiT's velocity for normalised latents `xv` `[1, z, T, H, W]` and `xa` `[1, Na, Ca]`
    /// at noise level `sigma`, with the [`conditioning`] channels appended when the config
    /// has them (and their velocity dropped): what training and sampling both call.
    pub fn velocity(
        &self,
        xv: &Tensor,
        xa: &Tensor,
        txt: &Tensor,
        txt_len: usize,
        sigma: f32,
    ) -> Result<(Tensor, Tensor)> {
        self.velocity_at(xv, xa, txt, txt_len, sigma, sigma)
    }

    /// [`Self::velocity`] with the video and the audio at noise levels of their own (the
    /// noise-level channels tell the DiT each one's): training at unequal levels makes one
    /// modality learn from the other.
    pub fn velocity_at(
        &self,
        xv: &Tensor,
        xa: &Tensor,
        txt: &Tensor,
        txt_len: usize,
        sigma_video: f32,
        sigma_audio: f32,
    ) -> Result<(Tensor, Tensor)> {
        self.velocity_in(xv, xa, txt, txt_len, [sigma_video, sigma_audio], None)
    }

    /// [`Self::velocity_at`] for latents cut from a longer clip at `span` (latent frames,
    /// [`conditioning::Span`]): their tokens read the time, progress and clock of that place.
    /// `None` is a whole clip.
    pub fn velocity_in(
        &self,
        xv: &Tensor,
        xa: &Tensor,
        txt: &Tensor,
        txt_len: usize,
        [sigma_video, sigma_audio]: [f32; 2],
        span: Option<conditioning::Span>,
    ) -> Result<(Tensor, Tensor)> {
        let sigmas = [sigma_video, sigma_audio];
        let (xv, xa) = self.dit_inputs(xv, xa, txt, txt_len, sigmas, span)?;
        let (v, a) = self.dit.velocity(&xv, &xa, txt, txt_len)?;
        self.latent_parts(&v, &a)
    }

    /// [`Self::velocity_in`], and the audio tokens' hidden states `[Na, hidden]` after DiT
    /// layer `layer` (0-based): what training's sync probe reads.
    #[allow(clippy::too_many_arguments)]
    pub fn velocity_and_audio_hidden(
        &self,
        xv: &Tensor,
        xa: &Tensor,
        txt: &Tensor,
        txt_len: usize,
        sigmas: [f32; 2],
        span: Option<conditioning::Span>,
        layer: usize,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let (xv, xa) = self.dit_inputs(xv, xa, txt, txt_len, sigmas, span)?;
        let packed = self.dit.pack(&xv, &xa, txt, txt_len)?;
        let mut trace = DitTrace::empty(xv.device())?;
        let out = self.dit.forward_packed(&packed, Some(&mut trace))?;
        let Some(h) = trace.layer_out.get(layer) else {
            candle::bail!(
                "nano: no DiT layer {layer} (the DiT has {})",
                trace.layer_out.len()
            )
        };
        let r = packed.ranges;
        let hidden = h.narrow(0, r.video, r.audio)?;
        let (v, a) = packing::depack(&out, &packed)?;
        let (v, a) = self.latent_parts(&v, &a)?;
        Ok((v, a, hidden))
    }

    /// The DiT's inputs: the latents with the [`conditioning`] channels appended when the
    /// config has them, for latents cut at `span` (latent frames; `None`: a whole clip).
    fn dit_inputs(
        &self,
        xv: &Tensor,
        xa: &Tensor,
        txt: &Tensor,
        txt_len: usize,
        [sigma_video, sigma_audio]: [f32; 2],
        span: Option<conditioning::Span>,
    ) -> Result<(Tensor, Tensor)> {
        if !self.cfg.conditioning {
            return Ok((xv.clone(), xa.clone()));
        }
        let (_, _, t, h, w) = xv.dims5()?;
        let (dev, fps) = (xv.device(), self.cfg.native_fps);
        let na = xa.dim(1)?;
        // Audio latents are pixel frames: latent frame `k` starts the group ending on pixel
        // frame `k * stride`.
        let layout = self.cfg.video.frames();
        let (video_span, audio_span) = match span {
            Some(s) => (
                s,
                conditioning::Span {
                    start: s.start * layout.stride,
                    total: layout.pixel_frames(s.total),
                },
            ),
            None => (conditioning::Span::whole(t), conditioning::Span::whole(na)),
        };
        let progress = self.cfg.progress;
        let frame_s = self.cfg.latent_frame_s();
        let video =
            conditioning::video((t, h, w), frame_s, sigma_video, progress, video_span, dev)?;
        let mut xv = conditioning::append(xv, &video, 1)?;
        let audio = conditioning::audio(na, fps, sigma_audio, progress, audio_span, dev)?;
        let mut xa = conditioning::append(xa, &audio, 2)?;
        if self.cfg.clock {
            let periods = &self.cfg.clock_periods_s;
            let cv = conditioning::clock_video((t, h, w), frame_s, periods, video_span.start, dev)?;
            xv = conditioning::append(&xv, &cv, 1)?;
            let ca = conditioning::clock_audio(na, fps, periods, audio_span.start, dev)?;
            xa = conditioning::append(&xa, &ca, 2)?;
        }
        if self.cfg.pooled_text {
            let pooled = conditioning::pooled_text(txt, txt_len)?;
            xv = conditioning::append(&xv, &conditioning::pooled_video(&pooled, (t, h, w))?, 1)?;
            xa = conditioning::append(&xa, &conditioning::pooled_audio(&pooled, na)?, 2)?;
        }
        Ok((xv, xa))
    }

    /// The latent channels of the DiT's velocities (the conditioning channels' dropped).
    fn latent_parts(&self, v: &Tensor, a: &Tensor) -> Result<(Tensor, Tensor)> {
        if !self.cfg.conditioning {
            return Ok((v.clone(), a.clone()));
        }
        Ok((
            conditioning::latent_part(v, self.cfg.video.latent_channels, 1)?,
            conditioning::latent_part(a, self.cfg.audio.latent_channels, 2)?,
        ))
    }
}

/// `(z - mean) / std` per channel; `channel_dim` is 1 for video `[1,z,T,H,W]`, 2 for audio
/// `[1,Na,Ca]`.
pub fn normalize(z: &Tensor, mean: &[f32], std: &[f32], channel_dim: usize) -> Result<Tensor> {
    let (m, s) = stats_tensors(z, mean, std, channel_dim)?;
    z.broadcast_sub(&m)?.broadcast_div(&s)
}

/// Inverse of [`normalize`].
pub fn denormalize(z: &Tensor, mean: &[f32], std: &[f32], channel_dim: usize) -> Result<Tensor> {
    let (m, s) = stats_tensors(z, mean, std, channel_dim)?;
    z.broadcast_mul(&s)?.broadcast_add(&m)
}

fn stats_tensors(
    z: &Tensor,
    mean: &[f32],
    std: &[f32],
    channel_dim: usize,
) -> Result<(Tensor, Tensor)> {
    let c = z.dim(channel_dim)?;
    if mean.len() != c || std.len() != c {
        candle::bail!(
            "nano latent stats have {} / {} channels, latent {:?} has {c} on dim {channel_dim}",
            mean.len(),
            std.len(),
            z.dims()
        )
    }
    let mut shape = vec![1usize; z.rank()];
    shape[channel_dim] = c;
    let dev = z.device();
    let m = Tensor::from_slice(mean, c, dev)?.reshape(shape.clone())?;
    let s = Tensor::from_slice(std, c, dev)?.reshape(shape)?;
    Ok((m.to_dtype(DType::F32)?, s.to_dtype(DType::F32)?))
}
