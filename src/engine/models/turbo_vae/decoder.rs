//! The per-window decoder of TurboVAED: conv_in, mid block, up blocks, conv_out, unpatchify.
//!
//! Port of `TurboVAEDDecoder3d`, `TurboVAEDMidBlock3d`, `TurboVAEDUpBlock3d`,
//! `TurboVAEDResnetBlock3d`, `WanResample` and `unpatchify` in
//! `inference/model/turbo_vaed/turbo_vaed_module.py` of GAIR-NLP/daVinci-MagiHuman at commit
//! 209209b.
//!
//! Inside, activations are frame-major `[B, T, C, H, W]` (see [`super::conv3d`]): the channel
//! RMS norms, the per-frame 2D upsamplers and the time-conv channel→time interleave are then
//! plain reshapes of contiguous frames.

use candle::{DType, Module, Result, Tensor};
use candle_core as candle;
use candle_nn::VarBuilder;

use super::config::Config;
use super::conv3d::Conv3d;

/// Weightless RMS norm over the channel axis (dim 2 of `[B, T, C, H, W]`), computed in f32 as
/// the reference does whatever the activation dtype.
fn rms_norm_channels(x: &Tensor, eps: f64) -> Result<Tensor> {
    let dtype = x.dtype();
    let xf = x.to_dtype(DType::F32)?;
    let scale = (xf.sqr()?.mean_keepdim(2)? + eps)?.sqrt()?.recip()?;
    xf.broadcast_mul(&scale)?.to_dtype(dtype)
}

/// `TurboVAEDResnetBlock3d` with 3x3x3 convs.
#[derive(Debug, Clone)]
pub struct ResnetBlock {
    conv1: Conv3d,
    conv2: Conv3d,
    /// `conv_shortcut`, present when the channel count changes.
    shortcut: Option<Conv3d>,
    /// ReLU instead of SiLU after `norm1` (`is_upsampler_modified`).
    relu_first: bool,
    shortcut_eps: f64,
}

impl ResnetBlock {
    pub fn new(
        cfg: &Config,
        in_c: usize,
        out_c: usize,
        relu_first: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        let conv1 = Conv3d::new(in_c, out_c, (3, 3, 3), vb.pp("conv1"))?;
        let conv2 = Conv3d::new(out_c, out_c, (3, 3, 3), vb.pp("conv2"))?;
        let shortcut = if in_c != out_c {
            Some(Conv3d::new(in_c, out_c, (1, 1, 1), vb.pp("conv_shortcut"))?)
        } else {
            None
        };
        Ok(Self {
            conv1,
            conv2,
            shortcut,
            relu_first,
            shortcut_eps: cfg.resnet_norm_eps,
        })
    }
}

impl Module for ResnetBlock {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // norm1 and norm2 hard-code eps 1e-8; only norm3 takes resnet_norm_eps.
        let h = rms_norm_channels(x, 1e-8)?;
        let h = if self.relu_first {
            h.relu()?
        } else {
            h.silu()?
        };
        let h = self.conv1.forward(&h)?;
        let h = rms_norm_channels(&h, 1e-8)?.silu()?;
        let h = self.conv2.forward(&h)?;
        match &self.shortcut {
            Some(sc) => h + sc.forward(&rms_norm_channels(x, self.shortcut_eps)?)?,
            None => h + x,
        }
    }
}

/// `WanResample` in `upsample2d` (no `time_conv`) or `upsample3d` mode.
#[derive(Debug, Clone)]
pub struct Upsampler {
    /// `(3,1,1)`, C → 2C: each input frame becomes two output frames.
    time_conv: Option<Conv3d>,
    /// `resample.1`: the per-frame 3x3 `nn.Conv2d` after the nearest x2.
    conv: Conv3d,
}

impl Upsampler {
    pub fn new(dim: usize, temporal: bool, vb: VarBuilder) -> Result<Self> {
        let time_conv = if temporal {
            Some(Conv3d::new(dim, 2 * dim, (3, 1, 1), vb.pp("time_conv"))?)
        } else {
            None
        };
        let vr = vb.pp("resample").pp("1");
        let conv = Conv3d::from_conv2d(vr.get((dim, dim, 3, 3), "weight")?, vr.get(dim, "bias")?)?;
        Ok(Self { time_conv, conv })
    }

    pub fn forward(&self, x: &Tensor, is_first_chunk: bool) -> Result<Tensor> {
        let mut x = x.clone();
        if let Some(tc) = &self.time_conv {
            let (b, t, c, h, w) = x.dims5()?;
            // Channels `[s*C, (s+1)*C)` of frame t become frame 2t+s: with frames contiguous this
            // is only a reshape.
            x = tc.forward(&x)?.reshape((b, 2 * t, c, h, w))?;
            if is_first_chunk {
                // The first window has no frame before frame 0 to pair with.
                x = x.narrow(1, 1, 2 * t - 1)?;
            }
        }
        let (b, t, c, h, w) = x.dims5()?;
        // nearest-exact at an exact x2 picks the same source pixels as nearest.
        let y = x
            .reshape((b * t, c, h, w))?
            .upsample_nearest2d(2 * h, 2 * w)?
            .reshape((b, t, c, 2 * h, 2 * w))?;
        self.conv.forward(&y)
    }
}

/// `TurboVAEDUpBlock3d`.
#[derive(Debug, Clone)]
pub struct UpBlock {
    conv_in: Option<ResnetBlock>,
    upsampler: Option<Upsampler>,
    resnets: Vec<ResnetBlock>,
}

impl UpBlock {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cfg: &Config,
        in_c: usize,
        out_c: usize,
        layers: usize,
        scale: bool,
        spatio_only: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        let conv_in = if in_c != out_c {
            Some(ResnetBlock::new(cfg, in_c, out_c, false, vb.pp("conv_in"))?)
        } else {
            None
        };
        let upsampler = if scale {
            Some(Upsampler::new(
                out_c,
                !spatio_only,
                vb.pp("upsamplers").pp("0"),
            )?)
        } else {
            None
        };
        let vr = vb.pp("resnets");
        let resnets = (0..layers)
            .map(|j| ResnetBlock::new(cfg, out_c, out_c, scale, vr.pp(j)))
            .collect::<Result<_>>()?;
        Ok(Self {
            conv_in,
            upsampler,
            resnets,
        })
    }

    pub fn forward(&self, x: &Tensor, is_first_chunk: bool) -> Result<Tensor> {
        let mut x = match &self.conv_in {
            Some(r) => r.forward(x)?,
            None => x.clone(),
        };
        if let Some(u) = &self.upsampler {
            x = u.forward(&x, is_first_chunk)?;
        }
        for r in &self.resnets {
            x = r.forward(&x)?;
        }
        Ok(x)
    }
}

/// `TurboVAEDDecoder3d`: one sliding window of latent frames to pixels.
#[derive(Debug, Clone)]
pub struct Decoder {
    conv_in: Conv3d,
    mid: Vec<ResnetBlock>,
    up_blocks: Vec<UpBlock>,
    conv_out: Conv3d,
    patch: usize,
    out_channels: usize,
    /// Up blocks whose upsampler doubles time.
    temporal_ups: usize,
}

impl Decoder {
    /// `vb` points at `decoder`.
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        // The config lists are in encoder order.
        let chans: Vec<usize> = cfg
            .decoder_block_out_channels
            .iter()
            .rev()
            .copied()
            .collect();
        let layers: Vec<usize> = cfg.decoder_layers_per_block.iter().rev().copied().collect();
        let scaling: Vec<bool> = cfg
            .decoder_spatio_temporal_scaling
            .iter()
            .rev()
            .copied()
            .collect();
        let spatio_only: Vec<bool> = cfg.decoder_spatio_only.iter().rev().copied().collect();

        let mut c = chans[0];
        let conv_in = Conv3d::new(cfg.latent_channels, c, (3, 3, 3), vb.pp("conv_in"))?;
        let vm = vb.pp("mid_block").pp("resnets");
        let mid = (0..layers[0])
            .map(|j| ResnetBlock::new(cfg, c, c, false, vm.pp(j)))
            .collect::<Result<_>>()?;
        let vu = vb.pp("up_blocks");
        let mut up_blocks = Vec::with_capacity(chans.len());
        for (i, &out_c) in chans.iter().enumerate() {
            up_blocks.push(UpBlock::new(
                cfg,
                c,
                out_c,
                layers[i + 1],
                scaling[i],
                spatio_only[i],
                vu.pp(i),
            )?);
            c = out_c;
        }
        let out_channels = cfg.out_channels;
        let patch = cfg.patch_size;
        let conv_out = Conv3d::new(
            c,
            out_channels * patch * patch,
            (3, 3, 3),
            vb.pp("conv_out"),
        )?;
        let temporal_ups = scaling
            .iter()
            .zip(&spatio_only)
            .filter(|(s, o)| **s && !**o)
            .count();
        Ok(Self {
            conv_in,
            mid,
            up_blocks,
            conv_out,
            patch,
            out_channels,
            temporal_ups,
        })
    }

    /// Pixel frames out of a window of `m` latent frames: each temporal upsampler doubles the
    /// frames, and drops one in the first window.
    pub fn frames_out(&self, m: usize, is_first_chunk: bool) -> usize {
        (0..self.temporal_ups).fold(m, |t, _| {
            if is_first_chunk {
                (2 * t).saturating_sub(1)
            } else {
                2 * t
            }
        })
    }

    /// `[B, 48, m, H, W]` latent window → `[B, 3, frames_out(m), 16H, 16W]` (not clamped).
    pub fn forward(&self, z: &Tensor, is_first_chunk: bool) -> Result<Tensor> {
        let x = z.permute((0, 2, 1, 3, 4))?.contiguous()?;
        let mut x = self.conv_in.forward(&x)?;
        for r in &self.mid {
            x = r.forward(&x)?;
        }
        for u in &self.up_blocks {
            x = u.forward(&x, is_first_chunk)?;
        }
        let x = rms_norm_channels(&x, 1e-8)?.silu()?;
        let x = self.conv_out.forward(&x)?;
        self.unpatchify(&x)
    }

    /// `[B, T, c*p*p, H, W]` → `[B, c, T, pH, pW]` with
    /// `out[b, c, t, p*h + q, p*w + r] = x[b, t, c*p*p + p*r + q, h, w]`: the channel order is
    /// (c, width offset, height offset), as in Wan2.2.
    fn unpatchify(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, cpp, h, w) = x.dims5()?;
        let p = self.patch;
        let c = self.out_channels;
        if cpp != c * p * p {
            candle::bail!(
                "unpatchify: {:?} has {cpp} channels, want {c}*{p}*{p}",
                x.dims()
            )
        }
        // [b, t, c, r, q, h, w] → [b, c, t, h, q, w, r]
        x.reshape(vec![b, t, c, p, p, h, w])?
            .permute(vec![0, 2, 1, 5, 4, 6, 3])?
            .contiguous()?
            .reshape((b, c, t, p * h, p * w))
    }
}
