//! Nano's video codec: 8x8 spatial, 4x temporal compression (`temporal_stride`, 2 or 1 for
//! finer time), as MagiHuman's Wan 2.2 VAE lays its latents out (`4(T-1)+1` pixel frames for
//! T latent frames), at a size a laptop decodes in a fraction of real time.
//!
//! The first frame is repeated to fill its own group (Wan's causal first frame), each group
//! of frames is stacked in channels, and everything else is 2-D convolution: a strided
//! encoder and a nearest-upsample + conv decoder. With `temporal_mix` the decoder also reads
//! each latent frame's neighbours (a residual conv over the features of frames t-1, t, t+1,
//! at the latent's resolution and again before the output): decoded alone, a group of 4
//! frames from an imperfect latent drifts within itself and jumps back at the next group, a
//! sawtooth that reads as a hop every 0.5 s.

use candle::{Module, Result, Tensor};
use candle_core as candle;
use candle_nn::{conv2d, Conv2d, Conv2dConfig, VarBuilder};

use super::config::VideoCodecConfig;

fn conv(cin: usize, cout: usize, k: usize, stride: usize, vb: VarBuilder) -> Result<Conv2d> {
    let cfg = Conv2dConfig {
        padding: if stride == 2 { 1 } else { k / 2 },
        stride,
        ..Default::default()
    };
    conv2d(cin, cout, k, cfg, vb)
}

#[derive(Debug, Clone)]
pub struct VideoEncoder {
    /// Pixel frames per latent frame.
    group: usize,
    conv_in: Conv2d,
    down: Vec<Conv2d>,
    conv_out: Conv2d,
}

impl VideoEncoder {
    pub fn new(cfg: &VideoCodecConfig, vb: VarBuilder) -> Result<Self> {
        let (c, group) = (cfg.channels, cfg.temporal_stride);
        let conv_in = conv(3 * group, c[0], 3, 1, vb.pp("conv_in"))?;
        let down = (0..3)
            .map(|i| conv(c[i], c[i + 1], 4, 2, vb.pp("down").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        let conv_out = conv(c[3], cfg.latent_channels, 3, 1, vb.pp("conv_out"))?;
        Ok(Self {
            group,
            conv_in,
            down,
            conv_out,
        })
    }

    /// `frames` `[n, 3, H, W]` in [-1, 1] with `n = s(T-1)+1` (s the temporal stride) and
    /// H, W multiples of 8 → `[1, z, T, H/8, W/8]`.
    pub fn encode(&self, frames: &Tensor) -> Result<Tensor> {
        let (n, c, h, w) = frames.dims4()?;
        let (s, g) = (VideoCodecConfig::SPATIAL_STRIDE, self.group);
        if c != 3 || n == 0 || (n - 1) % g != 0 || h % s != 0 || w % s != 0 {
            candle::bail!(
                "nano video encoder: frames {:?} must be [{g}(T-1)+1, 3, H, W] with H, W multiples of {s}",
                frames.dims()
            )
        }
        let t = (n - 1) / g + 1;
        let grouped = if g == 1 {
            frames.clone()
        } else {
            let first = frames.narrow(0, 0, 1)?.repeat((g - 1, 1, 1, 1))?;
            Tensor::cat(&[&first, frames], 0)?.reshape((t, g * 3, h, w))?
        };
        let mut x = self.conv_in.forward(&grouped)?.silu()?;
        for d in &self.down {
            x = d.forward(&x)?.silu()?;
        }
        self.conv_out
            .forward(&x)?
            .permute((1, 0, 2, 3))?
            .unsqueeze(0)
    }
}

/// `x + conv([x(t-1), x(t), x(t+1)])` over `[T, C, H, W]` features, the first and last frames
/// standing in for their missing neighbours. Trained from zero, so it starts as the identity.
#[derive(Debug, Clone)]
struct TemporalMix(Conv2d);

impl TemporalMix {
    fn new(channels: usize, kernel: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self(conv(3 * channels, channels, kernel, 1, vb)?))
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let t = x.dim(0)?;
        let (prev, next) = if t == 1 {
            (x.clone(), x.clone())
        } else {
            (
                Tensor::cat(&[&x.narrow(0, 0, 1)?, &x.narrow(0, 0, t - 1)?], 0)?,
                Tensor::cat(&[&x.narrow(0, 1, t - 1)?, &x.narrow(0, t - 1, 1)?], 0)?,
            )
        };
        x + self.0.forward(&Tensor::cat(&[&prev, x, &next], 1)?)?
    }
}

#[derive(Debug, Clone)]
pub struct VideoDecoder {
    /// Pixel frames per latent frame.
    group: usize,
    conv_in: Conv2d,
    up: Vec<Conv2d>,
    conv_out: Conv2d,
    /// `(mix_in, mix_out)` with `temporal_mix`.
    mix: Option<(TemporalMix, TemporalMix)>,
}

impl VideoDecoder {
    pub fn new(cfg: &VideoCodecConfig, vb: VarBuilder) -> Result<Self> {
        let c = cfg.channels;
        let conv_in = conv(cfg.latent_channels, c[3], 3, 1, vb.pp("conv_in"))?;
        let up = (0..3)
            .map(|i| conv(c[3 - i], c[2 - i], 3, 1, vb.pp("up").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        let group = cfg.temporal_stride;
        let conv_out = conv(c[0], 3 * group, 3, 1, vb.pp("conv_out"))?;
        let mix = if cfg.temporal_mix {
            Some((
                TemporalMix::new(c[3], 3, vb.pp("mix_in"))?,
                TemporalMix::new(c[0], 1, vb.pp("mix_out"))?,
            ))
        } else {
            None
        };
        Ok(Self {
            group,
            conv_in,
            up,
            conv_out,
            mix,
        })
    }

    /// `[1, z, T, h, w]` → `[s(T-1)+1, 3, 8h, 8w]`, unclamped (roughly [-1, 1]).
    pub fn decode(&self, latent: &Tensor) -> Result<Tensor> {
        let (b, _z, t, h, w) = latent.dims5()?;
        if b != 1 {
            candle::bail!("nano video decoder: batch 1 only, got {:?}", latent.dims())
        }
        let frames = latent.squeeze(0)?.permute((1, 0, 2, 3))?.contiguous()?;
        let mut x = self.conv_in.forward(&frames)?.silu()?;
        if let Some((mix_in, _)) = &self.mix {
            x = mix_in.forward(&x)?;
        }
        let (mut hh, mut ww) = (h, w);
        for u in &self.up {
            hh *= 2;
            ww *= 2;
            x = u.forward(&x.upsample_nearest2d(hh, ww)?)?.silu()?;
        }
        if let Some((_, mix_out)) = &self.mix {
            x = mix_out.forward(&x)?;
        }
        let g = self.group;
        let y = self.conv_out.forward(&x)?.reshape((t * g, 3, hh, ww))?;
        y.narrow(0, g - 1, (t - 1) * g + 1)
    }
}

#[cfg(test)]
mod tests {
    use candle::{DType, Device, IndexOp};
    use candle_nn::VarMap;

    use super::*;

    fn config(temporal_mix: bool) -> VideoCodecConfig {
        VideoCodecConfig {
            latent_channels: 4,
            channels: [4, 8, 8, 8],
            temporal_mix,
            temporal_stride: 4,
        }
    }

    #[test]
    fn each_temporal_stride_encodes_its_frames_to_its_latent_frames_and_back() {
        let dev = Device::Cpu;
        for (stride, frames, latent_frames) in [(4, 9, 3), (2, 9, 5), (1, 3, 3)] {
            let cfg = VideoCodecConfig {
                temporal_stride: stride,
                ..config(false)
            };
            let vb = VarBuilder::from_varmap(&VarMap::new(), DType::F32, &dev);
            let (enc, dec) = (
                VideoEncoder::new(&cfg, vb.pp("e")).unwrap(),
                VideoDecoder::new(&cfg, vb.pp("d")).unwrap(),
            );
            let x = Tensor::zeros((frames, 3, 16, 24), DType::F32, &dev).unwrap();
            let z = enc.encode(&x).unwrap();
            assert_eq!(z.dims(), &[1, 4, latent_frames, 2, 3], "stride {stride}");
            assert_eq!(dec.decode(&z).unwrap().dims(), &[frames, 3, 16, 24]);
            assert_eq!(cfg.frames().pixel_frames(latent_frames), frames);
        }
        // A frame count the layout cannot hold is refused, with the layout named.
        let cfg = VideoCodecConfig {
            temporal_stride: 2,
            ..config(false)
        };
        let vb = VarBuilder::from_varmap(&VarMap::new(), DType::F32, &dev);
        let x = Tensor::zeros((8, 3, 16, 24), DType::F32, &dev).unwrap();
        let err = VideoEncoder::new(&cfg, vb).unwrap().encode(&x).unwrap_err();
        assert!(err.to_string().contains("[2(T-1)+1, 3, H, W]"), "{err}");
    }

    /// Frames decoded from `[1, 4, 3, 2, 2]` latents whose last latent frame is `last`.
    fn decode(dec: &VideoDecoder, last: f32) -> Tensor {
        let dev = Device::Cpu;
        let z = Tensor::ones((1, 4, 2, 2, 2), DType::F32, &dev).unwrap();
        let l = (Tensor::ones((1, 4, 1, 2, 2), DType::F32, &dev).unwrap() * last as f64).unwrap();
        dec.decode(&Tensor::cat(&[&z, &l], 2).unwrap()).unwrap()
    }

    fn values(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1().unwrap()
    }

    #[test]
    fn temporal_mix_starts_as_the_identity_and_lets_a_group_see_the_next_latent() {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let plain = VideoDecoder::new(&config(false), vb.clone()).unwrap();
        let mixed = VideoDecoder::new(&config(true), vb).unwrap();
        // Decoded alone, the middle group (frames 1..5) ignores the last latent frame.
        let (a, b) = (decode(&plain, 1.0), decode(&plain, -1.0));
        assert_eq!(a.dims(), &[9, 3, 16, 16]);
        assert_eq!(values(&a.i(1..5).unwrap()), values(&b.i(1..5).unwrap()));
        // With the mixing layers it reads it.
        let (c, d) = (decode(&mixed, 1.0), decode(&mixed, -1.0));
        assert_ne!(values(&c.i(1..5).unwrap()), values(&d.i(1..5).unwrap()));
        // Zeroed, as training starts them, the layers change nothing.
        for (name, var) in varmap.data().lock().unwrap().iter() {
            if name.starts_with("mix_") {
                var.set(&var.as_tensor().zeros_like().unwrap()).unwrap();
            }
        }
        assert_eq!(values(&decode(&mixed, 1.0)), values(&a));
    }
}
