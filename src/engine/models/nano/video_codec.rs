//! Nano's video codec: 8x8 spatial, 4x temporal compression, as MagiHuman's Wan 2.2 VAE lays
//! its latents out (`4(T-1)+1` pixel frames for T latent frames), at a size a laptop decodes
//! in a fraction of real time.
//!
//! The first frame is repeated to fill its own group of 4 (Wan's causal first frame), each
//! group of 4 frames is stacked in channels, and everything else is 2-D convolution: a strided
//! encoder and a nearest-upsample + conv decoder.

use candle::{Module, Result, Tensor};
use candle_core as candle;
use candle_nn::{conv2d, Conv2d, Conv2dConfig, VarBuilder};

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

#[derive(Debug, Clone)]
pub struct VideoDecoder {
    conv_in: Conv2d,
    up: Vec<Conv2d>,
    conv_out: Conv2d,
}

impl VideoDecoder {
    pub fn new(cfg: &VideoCodecConfig, vb: VarBuilder) -> Result<Self> {
        let c = cfg.channels;
        let conv_in = conv(cfg.latent_channels, c[3], 3, 1, vb.pp("conv_in"))?;
        let up = (0..3)
            .map(|i| conv(c[3 - i], c[2 - i], 3, 1, vb.pp("up").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        let conv_out = conv(c[0], 3 * GROUP, 3, 1, vb.pp("conv_out"))?;
        Ok(Self {
            conv_in,
            up,
            conv_out,
        })
    }

    /// `[1, z, T, h, w]` → `[4(T-1)+1, 3, 8h, 8w]`, unclamped (roughly [-1, 1]).
    pub fn decode(&self, latent: &Tensor) -> Result<Tensor> {
        let (b, _z, t, h, w) = latent.dims5()?;
        if b != 1 {
            candle::bail!("nano video decoder: batch 1 only, got {:?}", latent.dims())
        }
        let mut x = self
            .conv_in
            .forward(&latent.squeeze(0)?.permute((1, 0, 2, 3))?.contiguous()?)?
            .silu()?;
        let (mut hh, mut ww) = (h, w);
        for u in &self.up {
            hh *= 2;
            ww *= 2;
            x = u.forward(&x.upsample_nearest2d(hh, ww)?)?.silu()?;
        }
        let y = self.conv_out.forward(&x)?.reshape((t * GROUP, 3, hh, ww))?;
        y.narrow(0, GROUP - 1, (t - 1) * GROUP + 1)
    }
}
