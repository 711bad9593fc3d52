//! Nano's audio codec: one latent per pixel frame, so audio latents line up with video frames
//! as MagiHuman's do (`Na = 4(T-1)+1`).
//!
//! Latent i sees and rebuilds the window `[i*hop, (i+2)*hop)`; neighbouring windows are
//! overlap-added, which lets the decoder cross-fade instead of clicking at frame edges. Each
//! window is cut into chunks that share one small linear (a strided 1-D conv without im2col),
//! then an MLP maps the chunk features to the latent and back.
//!
//! With `chunk_gain`, each decoded chunk (6.25 ms at 16 kHz) is a waveform times a gain
//! `relu(g)` read from the same chunk features: silence is an exact zero rather than a hum
//! the decoder's biases leave, and a hit's attack is a gain step at the chunk where it
//! starts, not a slope the waveform MLP has to draw.
//!
//! With `video_cue`, the decoder also sees the decoded picture ([`VideoCue`]): the sound is
//! still the DiT's audio latent, but each frame of it is decoded knowing what the picture
//! shows around that frame, so a hit can sound where the picture's contact is.

use candle::{Module, Result, Tensor};
use candle_core as candle;
use candle_nn::{conv2d, linear, Conv2d, Conv2dConfig, Linear, VarBuilder};

use super::config::AudioCodecConfig;

/// Width of [`VideoCue`]'s per-cell features.
const CUE_WIDTH: usize = 128;

fn chunks(cfg: &AudioCodecConfig) -> usize {
    2 * cfg.hop / cfg.chunk
}

#[derive(Debug, Clone)]
pub struct AudioEncoder {
    chunk_in: Linear,
    hidden: Linear,
    out: Linear,
    cfg: AudioCodecConfig,
}

impl AudioEncoder {
    pub fn new(cfg: &AudioCodecConfig, vb: VarBuilder) -> Result<Self> {
        let n = chunks(cfg);
        Ok(Self {
            chunk_in: linear(cfg.chunk, cfg.chunk_features, vb.pp("chunk_in"))?,
            hidden: linear(n * cfg.chunk_features, cfg.hidden, vb.pp("hidden"))?,
            out: linear(cfg.hidden, cfg.latent_channels, vb.pp("out"))?,
            cfg: cfg.clone(),
        })
    }

    /// Mono `samples` `[N]` → `[1, Na, Ca]` with `Na = ceil(N / hop)`.
    pub fn encode(&self, samples: &Tensor) -> Result<Tensor> {
        let hop = self.cfg.hop;
        let len = samples.dims1()?;
        let na = len.div_ceil(hop).max(1);
        // One extra hop of zeros: the last window reaches past the end.
        let sig = samples.pad_with_zeros(0, 0, (na + 1) * hop - len)?;
        let a = sig.narrow(0, 0, na * hop)?.reshape((na, hop))?;
        let b = sig.narrow(0, hop, na * hop)?.reshape((na, hop))?;
        let win = Tensor::cat(&[a, b], 1)?;
        let x = win
            .reshape((na * chunks(&self.cfg), self.cfg.chunk))?
            .apply(&self.chunk_in)?
            .silu()?
            .reshape((na, ()))?;
        let x = self.hidden.forward(&x)?.silu()?;
        self.out.forward(&x)?.unsqueeze(0)
    }
}

/// What the audio decoder sees of the picture ([`AudioCodecConfig::video_cue`]): the decoded
/// frames, the ones the viewer sees. Each frame goes through three stride-2 convs to the
/// latent grid, every cell (with its place in the frame, `y` and `x` in `[-1, 1]`) through
/// a small MLP, and the mean and the max over the cells make the frame's feature. Each audio
/// frame reads the features of the five pixel frames around its own (two before, two after:
/// a contact between two frames sounds in either window), and the clip's mean audio latent
/// (which sounds, whatever their timing) adds its own. Resolution-free: any aspect's frames
/// read the same weights. `out` and `context` start at zero (the trainer's init), so a
/// decoder trained without the cue decodes as before until the audio-decoder stage trains it.
#[derive(Debug, Clone)]
pub struct VideoCue {
    convs: [Conv2d; 3],
    cell: Linear,
    out: Linear,
    context: Linear,
}

impl VideoCue {
    /// Pixel frames each audio frame reads: its own and `REACH` on either side.
    pub const REACH: usize = 2;
    /// Width of [`Self::features`]: `2 * REACH + 1` frames of mean and max.
    pub const FEATURES: usize = (2 * Self::REACH + 1) * 2 * CUE_WIDTH;

    fn new(cfg: &AudioCodecConfig, vb: VarBuilder) -> Result<Self> {
        let down = Conv2dConfig {
            stride: 2,
            padding: 1,
            ..Default::default()
        };
        let widths = [3, 16, 32, 32];
        let conv = |i: usize| conv2d(widths[i], widths[i + 1], 3, down, vb.pp(format!("conv{i}")));
        Ok(Self {
            convs: [conv(0)?, conv(1)?, conv(2)?],
            cell: linear(widths[3] + 2, CUE_WIDTH, vb.pp("cell"))?,
            out: linear(Self::FEATURES, cfg.hidden, vb.pp("out"))?,
            context: linear(cfg.latent_channels, cfg.hidden, vb.pp("context"))?,
        })
    }

    /// Frames `[N, 3, H, W]` in `[-1, 1]` → `[N, FEATURES]`: per pixel frame, what the
    /// frames around it show (what the decoder's cue and the trainer's hit probe read).
    pub fn features(&self, frames: &Tensor) -> Result<Tensor> {
        let n = frames.dim(0)?;
        let mut x = frames.clone();
        for c in &self.convs {
            x = x.apply(c)?.silu()?;
        }
        let (_, _, h, w) = x.dims4()?;
        let dev = x.device();
        let axis = |len: usize| -> Result<Tensor> {
            let step = if len > 1 { 2.0 / (len - 1) as f64 } else { 0.0 };
            Tensor::arange(0u32, len as u32, dev)?
                .to_dtype(x.dtype())?
                .affine(step, if len > 1 { -1.0 } else { 0.0 })
        };
        let y = axis(h)?.reshape((1, 1, h, 1))?.broadcast_as((n, 1, h, w))?;
        let xs = axis(w)?.reshape((1, 1, 1, w))?.broadcast_as((n, 1, h, w))?;
        let cells = Tensor::cat(&[&x, &y, &xs], 1)?
            .flatten_from(2)?
            .transpose(1, 2)?
            // [N, h*w, C + 2], laid out: candle 0.11's CPU matmul, which `Linear` uses on a
            // transposed 3-D input, gives every frame the first frame's product
            // (huggingface/candle#3744); `each_audio_frame_sees_...` below guards it.
            .contiguous()?;
        let f = cells.apply(&self.cell)?.silu()?;
        // [N, 2 * CUE_WIDTH]
        let per_frame = Tensor::cat(&[f.mean(1)?, f.max(1)?], 1)?;
        // Neighbours in time, the edge frames standing in for the missing ones.
        let r = Self::REACH;
        let padded = Tensor::cat(
            &[
                per_frame.narrow(0, 0, 1)?.repeat((r, 1))?,
                per_frame.clone(),
                per_frame.narrow(0, n - 1, 1)?.repeat((r, 1))?,
            ],
            0,
        )?;
        let around: Vec<Tensor> = (0..=2 * r)
            .map(|d| padded.narrow(0, d, n))
            .collect::<Result<_>>()?;
        Tensor::cat(&around, 1)
    }

    /// Frames `[Na, 3, H, W]` and audio latent `[1, Na, Ca]` → `[Na, hidden]`, added to the
    /// decoder's first layer.
    pub fn forward(&self, frames: &Tensor, audio: &Tensor) -> Result<Tensor> {
        let na = audio.dim(1)?;
        if frames.dims().len() != 4 || frames.dim(0)? != na {
            candle::bail!(
                "nano audio decoder: the frames {:?} do not cover the audio latent {:?} (one \
                 pixel frame per audio frame)",
                frames.dims(),
                audio.dims()
            )
        }
        let context = audio.squeeze(0)?.mean_keepdim(0)?.apply(&self.context)?;
        self.features(frames)?
            .apply(&self.out)?
            .broadcast_add(&context)
    }
}

#[derive(Debug, Clone)]
pub struct AudioDecoder {
    inp: Linear,
    hidden: Linear,
    chunk_out: Linear,
    chunk_gain: Option<Linear>,
    cue: Option<VideoCue>,
    cfg: AudioCodecConfig,
}

impl AudioDecoder {
    pub fn new(cfg: &AudioCodecConfig, vb: VarBuilder) -> Result<Self> {
        let n = chunks(cfg);
        Ok(Self {
            cue: if cfg.video_cue {
                Some(VideoCue::new(cfg, vb.pp("cue"))?)
            } else {
                None
            },
            inp: linear(cfg.latent_channels, cfg.hidden, vb.pp("inp"))?,
            hidden: linear(cfg.hidden, n * cfg.chunk_features, vb.pp("hidden"))?,
            chunk_out: linear(cfg.chunk_features, cfg.chunk, vb.pp("chunk_out"))?,
            chunk_gain: if cfg.chunk_gain {
                Some(linear(cfg.chunk_features, 1, vb.pp("chunk_gain"))?)
            } else {
                None
            },
            cfg: cfg.clone(),
        })
    }

    /// The video cue, if the decoder has one.
    pub fn cue(&self) -> Option<&VideoCue> {
        self.cue.as_ref()
    }

    /// `[1, Na, Ca]` → mono samples `[Na * hop]`. `frames`, the clip's decoded frames `[Na,
    /// 3, H, W]` in `[-1, 1]`, are what a decoder with the cue sees of the picture; `None`
    /// decodes without the cue (the codec stage, which trains the decoder before the cue
    /// exists).
    pub fn decode(&self, latent: &Tensor, frames: Option<&Tensor>) -> Result<Tensor> {
        let (b, na, _) = latent.dims3()?;
        if b != 1 {
            candle::bail!("nano audio decoder: batch 1 only, got {:?}", latent.dims())
        }
        let hop = self.cfg.hop;
        let mut x = self.inp.forward(&latent.squeeze(0)?)?;
        if let (Some(cue), Some(frames)) = (&self.cue, frames) {
            x = (x + cue.forward(frames, latent)?)?;
        }
        let x = x.silu()?;
        let x = self.hidden.forward(&x)?.silu()?;
        let feats = x.reshape((na * chunks(&self.cfg), self.cfg.chunk_features))?;
        let mut win = feats.apply(&self.chunk_out)?;
        if let Some(gain) = &self.chunk_gain {
            win = win.broadcast_mul(&feats.apply(gain)?.relu()?)?;
        }
        let win = win.reshape((na, 2 * hop))?;
        // Overlap-add: block j = first half of window j + second half of window j-1.
        let first = win.narrow(1, 0, hop)?;
        let second = win
            .narrow(1, hop, hop)?
            .pad_with_zeros(0, 1, 0)?
            .narrow(0, 0, na)?;
        (first + second)?.flatten_all()
    }
}

#[cfg(test)]
mod tests {
    use candle::{DType, Device};
    use candle_nn::VarMap;

    use super::*;
    use crate::engine::models::nano::NanoConfig;
    use crate::engine::ops::max_abs_diff as max_diff;

    /// A tiny decoder with the cue, its weights random except `cue.out` and `cue.context`,
    /// which are zero (as the trainer starts them) unless `open`.
    fn decoder(open: bool) -> AudioDecoder {
        let mut cfg = NanoConfig::tiny_for_tests(40);
        cfg.audio.video_cue = true;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let dec = AudioDecoder::new(&cfg.audio, vb).unwrap();
        for (name, var) in varmap.data().lock().unwrap().iter() {
            let t = var.as_tensor();
            let zero = !open && (name.starts_with("cue.out") || name.starts_with("cue.context"));
            let v = if zero {
                t.zeros_like().unwrap()
            } else {
                t.randn_like(0.0, 0.3).unwrap()
            };
            var.set(&v).unwrap();
        }
        dec
    }

    /// `n` frames of `h` x `w` and the audio latent of as many frames.
    fn clip(n: usize, h: usize, w: usize, seed: f64) -> (Tensor, Tensor) {
        let dev = &Device::Cpu;
        let ca = NanoConfig::tiny_for_tests(40).audio.latent_channels;
        let ramp = |len: usize, scale: f64| {
            Tensor::arange(0f32, len as f32, dev)
                .unwrap()
                .affine(scale, seed)
                .unwrap()
                .sin()
                .unwrap()
        };
        let frames = ramp(n * 3 * h * w, 0.37).reshape((n, 3, h, w)).unwrap();
        let za = ramp(n * ca, 0.11).reshape((1, n, ca)).unwrap();
        (frames, za)
    }

    #[test]
    fn a_closed_cue_decodes_as_the_decoder_without_it_and_an_open_one_sees_the_picture() {
        let (frames, za) = clip(9, 24, 32, 0.0);
        let (other, _) = clip(9, 24, 32, 1.3);
        let closed = decoder(false);
        assert!(closed.cue().is_some());
        let plain = closed.decode(&za, None).unwrap();
        assert_eq!(plain.dims(), [9 * closed.cfg.hop]);
        assert_eq!(
            max_diff(&plain, &closed.decode(&za, Some(&frames)).unwrap()),
            0.0
        );

        let open = decoder(true);
        let heard = open.decode(&za, Some(&frames)).unwrap();
        assert!(max_diff(&heard, &open.decode(&za, None).unwrap()) > 1e-4);
        assert!(max_diff(&heard, &open.decode(&za, Some(&other)).unwrap()) > 1e-4);
    }

    #[test]
    fn the_cue_reads_any_aspects_frames_and_refuses_a_picture_of_another_length() {
        let open = decoder(true);
        for (h, w) in [(56, 96), (96, 56), (72, 72), (8, 8)] {
            let (frames, za) = clip(5, h, w, 0.5);
            let cue = open.cue().unwrap().forward(&frames, &za).unwrap();
            assert_eq!(cue.dims(), [5, open.cfg.hidden], "{h}x{w}");
        }
        let (frames, _) = clip(9, 24, 32, 0.0);
        let (_, za) = clip(5, 24, 32, 0.0);
        let err = open.decode(&za, Some(&frames)).unwrap_err().to_string();
        assert!(err.contains("do not cover the audio latent"), "{err}");
    }

    #[test]
    fn each_audio_frame_sees_the_two_pixel_frames_either_side_of_its_own() {
        let cue = decoder(true).cue.unwrap();
        let (frames, _) = clip(9, 24, 32, 0.0);
        let base = cue.features(&frames).unwrap();
        assert_eq!(base.dims(), [9, VideoCue::FEATURES]);
        // Change frame 6 only: audio frames 4 to 8 see it, 0 to 3 do not.
        let changed = (frames.narrow(0, 6, 1).unwrap() + 0.5).unwrap();
        let moved = Tensor::cat(
            &[
                &frames.narrow(0, 0, 6).unwrap(),
                &changed,
                &frames.narrow(0, 7, 2).unwrap(),
            ],
            0,
        )
        .unwrap();
        let after = cue.features(&moved).unwrap();
        for i in 0..9 {
            let d = max_diff(
                &base.narrow(0, i, 1).unwrap(),
                &after.narrow(0, i, 1).unwrap(),
            );
            assert_eq!(d > 0.0, i >= 4, "frame {i}: {d}");
        }
    }
}
