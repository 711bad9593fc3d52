//! Nano's video codec: 8x8 spatial, 4x temporal compression, as MagiHuman's Wan 2.2 VAE lays
//! its latents out (`4(T-1)+1` pixel frames for T latent frames), at a size a laptop decodes
//! in a fraction of real time.
//!
//! The first frame is repeated to fill its own group of 4 (Wan's causal first frame), each
//! group of 4 frames is stacked in channels, and everything else is 2-D convolution: a strided
//! encoder and a nearest-upsample + conv decoder. With `temporal_mix` the decoder also reads
//! each latent frame's neighbours (a residual conv over the features of frames t-1, t, t+1,
//! at the latent's resolution and again before the output): decoded alone, a group of 4
//! frames from an imperfect latent drifts within itself and jumps back at the next group, a
//! sawtooth that reads as a hop every 0.5 s. With `refine` its two finest levels end in a
//! residual block that also reads the latent, upsampled bilinearly to that level: the shape
//! code (the latent's first channels, see `train nano --codec-shape-weight`) then reaches the
//! pixels where a square's corners are drawn, not only through three nearest upsamplings.
//! With `shape_token` every level's features are scaled and shifted by what the whole clip's
//! shape code says (its peak and its share in each shape's channel, over every cell and
//! frame): one decision per clip, which a code the DiT blurs over the cells still carries.

use candle::{Module, Result, Tensor};
use candle_core as candle;
use candle_nn::{conv2d, linear, Conv2d, Conv2dConfig, Linear, VarBuilder};

use super::config::VideoCodecConfig;

const GROUP: usize = VideoCodecConfig::TEMPORAL_STRIDE;

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
    conv_in: Conv2d,
    down: Vec<Conv2d>,
    conv_out: Conv2d,
}

impl VideoEncoder {
    pub fn new(cfg: &VideoCodecConfig, vb: VarBuilder) -> Result<Self> {
        let c = cfg.channels;
        let conv_in = conv(3 * GROUP, c[0], 3, 1, vb.pp("conv_in"))?;
        let down = (0..3)
            .map(|i| conv(c[i], c[i + 1], 4, 2, vb.pp("down").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        let conv_out = conv(c[3], cfg.latent_channels, 3, 1, vb.pp("conv_out"))?;
        Ok(Self {
            conv_in,
            down,
            conv_out,
        })
    }

    /// `frames` `[n, 3, H, W]` in [-1, 1] with `n = 4(T-1)+1` and H, W multiples of 8 →
    /// `[1, z, T, H/8, W/8]`.
    pub fn encode(&self, frames: &Tensor) -> Result<Tensor> {
        let (n, c, h, w) = frames.dims4()?;
        let s = VideoCodecConfig::SPATIAL_STRIDE;
        if c != 3 || n % GROUP != 1 || h % s != 0 || w % s != 0 {
            candle::bail!(
                "nano video encoder: frames {:?} must be [4(T-1)+1, 3, H, W] with H, W multiples of {s}",
                frames.dims()
            )
        }
        let t = (n - 1) / GROUP + 1;
        let first = frames.narrow(0, 0, 1)?.repeat((GROUP - 1, 1, 1, 1))?;
        let grouped = Tensor::cat(&[&first, frames], 0)?.reshape((t, GROUP * 3, h, w))?;
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

/// `x + out(silu(read([x, latent↑])))` at one level, `latent↑` the latent upsampled
/// bilinearly to it. `out` is trained from zero, so the block starts as the identity.
#[derive(Debug, Clone)]
struct Refine {
    read: Conv2d,
    out: Conv2d,
}

impl Refine {
    fn new(channels: usize, latent_channels: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            read: conv(channels + latent_channels, channels, 3, 1, vb.pp("read"))?,
            out: conv(channels, channels, 3, 1, vb.pp("out"))?,
        })
    }

    /// `x` `[T, C, H, W]`, `latent` `[T, z, h, w]`. The latent is read as given: its
    /// gradient reaches an encoder through the main path only (candle has no backward for
    /// the bilinear upsampling).
    fn forward(&self, x: &Tensor, latent: &Tensor) -> Result<Tensor> {
        let (_, _, h, w) = x.dims4()?;
        let up = latent.detach().upsample_bilinear2d(h, w, false)?;
        let y = self.read.forward(&Tensor::cat(&[x, &up], 1)?)?.silu()?;
        x + self.out.forward(&y)?
    }
}

/// The clip's shape read from its whole shape code, as a scale and shift of each decoder
/// level's channels (`out` starts at zero: the identity).
#[derive(Debug, Clone)]
struct ShapeToken {
    read: Linear,
    out: Vec<Linear>,
}

impl ShapeToken {
    const HIDDEN: usize = 32;
    const CODE: usize = VideoCodecConfig::SHAPE_CODE;

    fn new(widths: &[usize], vb: VarBuilder) -> Result<Self> {
        let read = linear(2 * Self::CODE, Self::HIDDEN, vb.pp("read"))?;
        let out = widths
            .iter()
            .enumerate()
            .map(|(i, &c)| linear(Self::HIDDEN, 2 * c, vb.pp("out").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { read, out })
    }

    /// `frames` `[T, z, h, w]` → the token `[1, HIDDEN]`: from each shape channel's peak and
    /// its share of the code's positive mass over the whole clip. Reads the latent detached.
    fn read(&self, frames: &Tensor) -> Result<Tensor> {
        let code = frames
            .detach()
            .narrow(1, 0, Self::CODE)?
            .relu()?
            .transpose(0, 1)?
            .contiguous()?
            .flatten_from(1)?;
        let peak = code.max(1)?;
        let mass = code.sum(1)?;
        let share = mass.broadcast_div(&(mass.sum_all()? + 1e-6)?)?;
        self.read
            .forward(&Tensor::cat(&[&peak, &share], 0)?.unsqueeze(0)?)?
            .silu()
    }

    /// `x` `[T, C, H, W]` at decoder level `level`, scaled by `1 + a` and shifted by `b`.
    fn modulate(&self, level: usize, x: &Tensor, token: &Tensor) -> Result<Tensor> {
        let c = x.dim(1)?;
        let ab = self.out[level].forward(token)?.reshape((1, 2 * c, 1, 1))?;
        let scale = (ab.narrow(1, 0, c)? + 1.0)?;
        x.broadcast_mul(&scale)?.broadcast_add(&ab.narrow(1, c, c)?)
    }
}

#[derive(Debug, Clone)]
pub struct VideoDecoder {
    conv_in: Conv2d,
    up: Vec<Conv2d>,
    conv_out: Conv2d,
    /// `(mix_in, mix_out)` with `temporal_mix`.
    mix: Option<(TemporalMix, TemporalMix)>,
    /// With `refine`: the blocks after the 1/2- and full-resolution levels.
    refine: Vec<Refine>,
    /// With `shape_token`: the modulation after `conv_in` and after each `up` level.
    shape: Option<ShapeToken>,
}

impl VideoDecoder {
    pub fn new(cfg: &VideoCodecConfig, vb: VarBuilder) -> Result<Self> {
        let c = cfg.channels;
        let conv_in = conv(cfg.latent_channels, c[3], 3, 1, vb.pp("conv_in"))?;
        let up = (0..3)
            .map(|i| conv(c[3 - i], c[2 - i], 3, 1, vb.pp("up").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        let conv_out = conv(c[0], 3 * GROUP, 3, 1, vb.pp("conv_out"))?;
        let mix = if cfg.temporal_mix {
            Some((
                TemporalMix::new(c[3], 3, vb.pp("mix_in"))?,
                TemporalMix::new(c[0], 1, vb.pp("mix_out"))?,
            ))
        } else {
            None
        };
        let refine = if cfg.refine {
            (0..2)
                .map(|i| Refine::new(c[1 - i], cfg.latent_channels, vb.pp("refine").pp(i)))
                .collect::<Result<Vec<_>>>()?
        } else {
            Vec::new()
        };
        let shape = if cfg.shape_token {
            Some(ShapeToken::new(&[c[3], c[2], c[1], c[0]], vb.pp("shape"))?)
        } else {
            None
        };
        Ok(Self {
            conv_in,
            up,
            conv_out,
            mix,
            refine,
            shape,
        })
    }

    /// `[1, z, T, h, w]` → `[4(T-1)+1, 3, 8h, 8w]`, unclamped (roughly [-1, 1]).
    pub fn decode(&self, latent: &Tensor) -> Result<Tensor> {
        let (b, _z, t, h, w) = latent.dims5()?;
        if b != 1 {
            candle::bail!("nano video decoder: batch 1 only, got {:?}", latent.dims())
        }
        let frames = latent.squeeze(0)?.permute((1, 0, 2, 3))?.contiguous()?;
        let token = match &self.shape {
            Some(shape) => Some((shape, shape.read(&frames)?)),
            None => None,
        };
        let mut x = self.conv_in.forward(&frames)?.silu()?;
        if let Some((shape, token)) = &token {
            x = shape.modulate(0, &x, token)?;
        }
        if let Some((mix_in, _)) = &self.mix {
            x = mix_in.forward(&x)?;
        }
        let (mut hh, mut ww) = (h, w);
        let n_up = self.up.len();
        for (i, u) in self.up.iter().enumerate() {
            hh *= 2;
            ww *= 2;
            x = u.forward(&x.upsample_nearest2d(hh, ww)?)?.silu()?;
            if let Some((shape, token)) = &token {
                x = shape.modulate(i + 1, &x, token)?;
            }
            // The refine blocks follow the last levels: [1/2, full] for two blocks.
            if let Some(r) = (i + self.refine.len())
                .checked_sub(n_up)
                .and_then(|k| self.refine.get(k))
            {
                x = r.forward(&x, &frames)?;
            }
        }
        if let Some((_, mix_out)) = &self.mix {
            x = mix_out.forward(&x)?;
        }
        let y = self.conv_out.forward(&x)?.reshape((t * GROUP, 3, hh, ww))?;
        y.narrow(0, GROUP - 1, (t - 1) * GROUP + 1)
    }
}

#[cfg(test)]
mod tests {
    use candle::{DType, Device, IndexOp};
    use candle_nn::VarMap;

    use super::*;
    use crate::engine::ops::max_abs_diff;

    fn config(temporal_mix: bool) -> VideoCodecConfig {
        VideoCodecConfig {
            latent_channels: 4,
            channels: [4, 8, 8, 8],
            temporal_mix,
            refine: false,
            shape_token: false,
        }
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

    #[test]
    fn refine_starts_as_the_identity_and_reads_the_latent_at_full_resolution() {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let plain = VideoDecoder::new(&config(false), vb.clone()).unwrap();
        let cfg = VideoCodecConfig {
            refine: true,
            ..config(false)
        };
        let refined = VideoDecoder::new(&cfg, vb).unwrap();
        assert_eq!(refined.refine.len(), 2);
        let names: Vec<String> = varmap.data().lock().unwrap().keys().cloned().collect();
        for want in ["refine.0.read.weight", "refine.1.out.bias"] {
            assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
        }
        // With random `out` convs the blocks change the frames.
        assert_ne!(values(&decode(&refined, 1.0)), values(&decode(&plain, 1.0)));
        // Zeroed, as training starts them, they change nothing.
        for (name, var) in varmap.data().lock().unwrap().iter() {
            if name.starts_with("refine.") && name.contains(".out.") {
                var.set(&var.as_tensor().zeros_like().unwrap()).unwrap();
            }
        }
        assert_eq!(values(&decode(&refined, 1.0)), values(&decode(&plain, 1.0)));
    }

    #[test]
    fn the_shape_token_reads_which_shape_not_where_and_starts_as_the_identity() {
        let dev = Device::Cpu;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
        let plain = VideoDecoder::new(&config(false), vb.clone()).unwrap();
        let cfg = VideoCodecConfig {
            shape_token: true,
            ..config(false)
        };
        let shaped = VideoDecoder::new(&cfg, vb).unwrap();
        let token = shaped.shape.as_ref().unwrap();
        // A latent `[T=2, z=4, 3, 3]` whose code lights one cell of `channel` at `(y, x)`.
        let code = |channel: usize, y: usize, x: usize| {
            let mut v = vec![0.05f32; 2 * 4 * 9];
            for t in 0..2 {
                v[t * 36 + channel * 9 + y * 3 + x] = 1.0;
            }
            Tensor::from_vec(v, (2, 4, 3, 3), &dev).unwrap()
        };
        let read = |z: &Tensor| token.read(z).unwrap();
        // Where the object is does not change the token (but for summation order); which
        // channel lights it does.
        assert!(max_abs_diff(&read(&code(1, 0, 0)), &read(&code(1, 2, 1))) < 1e-6);
        assert!(max_abs_diff(&read(&code(1, 0, 0)), &read(&code(0, 0, 0))) > 1e-2);
        // Random `out` layers change the frames, and by shape.
        let latent = |channel| {
            code(channel, 1, 1)
                .permute((1, 0, 2, 3))
                .unwrap()
                .unsqueeze(0)
        };
        let frames =
            |dec: &VideoDecoder, channel| values(&dec.decode(&latent(channel).unwrap()).unwrap());
        assert_ne!(frames(&shaped, 1), frames(&plain, 1));
        // Zeroed, as training starts them, they change nothing.
        for (name, var) in varmap.data().lock().unwrap().iter() {
            if name.starts_with("shape.out.") {
                var.set(&var.as_tensor().zeros_like().unwrap()).unwrap();
            }
        }
        assert_eq!(frames(&shaped, 1), frames(&plain, 1));
        assert_eq!(frames(&shaped, 2), frames(&plain, 2));
    }
}
