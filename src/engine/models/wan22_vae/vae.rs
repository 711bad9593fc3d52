//! The public Wan2.2 VAE: normalised latent ↔ video in [-1, 1].
//!
//! Port of `WanVAE_.encode` / `WanVAE_.decode`, `patchify` / `unpatchify` and the `Wan2_2_VAE`
//! wrapper in `inference/model/vae2_2/vae2_2_module.py` of GAIR-NLP/daVinci-MagiHuman at commit
//! 209209b. The decoder and encoder load separately because a pipeline that only decodes need
//! not hold the encoder (and the goldens ship one half each).

use std::path::Path;

use candle::{DType, Device, Module, Result, Tensor};
use candle_core as candle;
use candle_nn::VarBuilder;

use super::config::{Config, LATENT_MEAN, LATENT_STD};
use super::conv::{CausalConv3d, FeatCache};
use super::decoder::Decoder3d;
use super::encoder::{Encoder3d, PATCHED_CHANNELS};
use crate::engine::weights::{load_var_builder, LoadOptions};

/// A `VarBuilder` over `Wan2.2_VAE.pth` (or a safetensors file with the same names).
fn open_checkpoint(path: &Path, dtype: DType, dev: &Device) -> Result<VarBuilder<'static>> {
    load_var_builder(path, &LoadOptions::default(), dtype, dev).map_err(candle::Error::wrap)
}

/// Pixels per latent cell along H and W (patch 2 × three spatial halvings).
pub const SPATIAL_STRIDE: usize = 16;
/// Video frames per latent frame after the first one.
pub const TEMPORAL_STRIDE: usize = 4;

/// `(mean, 1/std)` as `[1, C, 1, 1, 1]`. `1/std` is rounded in f32 first because the reference
/// multiplies and divides by that reciprocal, never by `std` itself.
fn latent_scale(z_dim: usize, dtype: DType, dev: &Device) -> Result<(Tensor, Tensor)> {
    if z_dim != LATENT_MEAN.len() {
        candle::bail!(
            "Wan2.2 VAE: the latent statistics are for {} channels, the config has z_dim {z_dim}",
            LATENT_MEAN.len()
        )
    }
    let inv: Vec<f32> = LATENT_STD.iter().map(|s| 1.0 / s).collect();
    let shape = (1, z_dim, 1, 1, 1);
    let mean = Tensor::new(&LATENT_MEAN, dev)?
        .reshape(shape)?
        .to_dtype(dtype)?;
    let inv = Tensor::new(inv, dev)?.reshape(shape)?.to_dtype(dtype)?;
    Ok((mean, inv))
}

/// `b c f (h q) (w r) -> b f (c r q) h w`: video `[B, 3, T, H, W]` → frame-major patches.
pub fn patchify(x: &Tensor) -> Result<Tensor> {
    let (b, c, t, h, w) = x.dims5()?;
    if h % 2 != 0 || w % 2 != 0 {
        candle::bail!("patchify: {h}×{w} is not a multiple of 2")
    }
    let (h2, w2) = (h / 2, w / 2);
    x.reshape(&[b, c, t, h2, 2, w2, 2])?
        .permute([0, 2, 1, 6, 4, 3, 5])?
        .reshape((b, t, c * 4, h2, w2))
}

/// `b f (c r q) h w -> b c f (h q) (w r)`: frame-major patches → video `[B, C/4, T, 2h, 2w]`.
pub fn unpatchify(x: &Tensor) -> Result<Tensor> {
    let (b, t, c4, h, w) = x.dims5()?;
    if c4 % 4 != 0 {
        candle::bail!("unpatchify: {c4} channels are not a multiple of 4")
    }
    let c = c4 / 4;
    x.reshape(&[b, t, c, 2, 2, h, w])?
        .permute([0, 2, 1, 5, 4, 6, 3])?
        .reshape((b, c, t, 2 * h, 2 * w))
}

/// `conv2` + `Decoder3d`: normalised latents → video.
#[derive(Debug, Clone)]
pub struct Wan22VaeDecoder {
    z_dim: usize,
    conv2: CausalConv3d,
    decoder: Decoder3d,
}

impl Wan22VaeDecoder {
    /// `vb` is the root of a `Wan2.2_VAE.pth` state dict (`conv2.*`, `decoder.*`).
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            z_dim: cfg.z_dim,
            conv2: CausalConv3d::new(cfg.z_dim, cfg.z_dim, (1, 1, 1), 1, vb.pp("conv2"))?,
            decoder: Decoder3d::new(cfg, vb.pp("decoder"))?,
        })
    }

    /// Loads the decoder half of the checkpoint at `path`.
    pub fn load(cfg: &Config, path: &Path, dtype: DType, dev: &Device) -> Result<Self> {
        Self::new(cfg, open_checkpoint(path, dtype, dev)?)
    }

    /// Streams the decode of `z` (`[B, 48, T, H, W]` or unbatched `[48, T, H, W]`, normalised)
    /// one latent frame at a time: `on_chunk` gets each piece of raw (unclamped) video,
    /// `[B, 3, n, 16H, 16W]` with n = 1 for the first latent frame and 4 for the others.
    /// Peak memory is that of one latent frame whatever T is.
    pub fn decode_with(
        &self,
        z: &Tensor,
        mut on_chunk: impl FnMut(Tensor) -> Result<()>,
    ) -> Result<()> {
        let z = if z.rank() == 4 {
            z.unsqueeze(0)?
        } else {
            z.clone()
        };
        let (_, c, t, _, _) = z.dims5()?;
        if c != self.z_dim {
            candle::bail!(
                "Wan2.2 VAE decode: z has {c} channels, expected {} ({:?})",
                self.z_dim,
                z.dims()
            )
        }
        let (mean, inv) = latent_scale(self.z_dim, z.dtype(), z.device())?;
        let z = z.broadcast_div(&inv)?.broadcast_add(&mean)?;
        let x = self.conv2.forward(&z.transpose(1, 2)?.contiguous()?)?;
        let mut cache = FeatCache::new();
        for i in 0..t {
            let y = self
                .decoder
                .forward_chunk(&x.narrow(1, i, 1)?, &mut cache, i == 0)?;
            on_chunk(unpatchify(&y)?)?;
        }
        Ok(())
    }

    /// `WanVAE_.decode`: the video before the clamp, `[B, 3, 1+4(T-1), 16H, 16W]`.
    pub fn decode_raw(&self, z: &Tensor) -> Result<Tensor> {
        let mut chunks = Vec::new();
        self.decode_with(z, |c| {
            chunks.push(c);
            Ok(())
        })?;
        Tensor::cat(&chunks, 2)
    }

    /// `Wan2_2_VAE.decode`: the video clamped to [-1, 1].
    pub fn decode(&self, z: &Tensor) -> Result<Tensor> {
        self.decode_raw(z)?.clamp(-1f32, 1f32)
    }
}

/// `Encoder3d` + `conv1`: video → normalised posterior mean.
#[derive(Debug, Clone)]
pub struct Wan22VaeEncoder {
    z_dim: usize,
    encoder: Encoder3d,
    conv1: CausalConv3d,
}

impl Wan22VaeEncoder {
    /// `vb` is the root of a `Wan2.2_VAE.pth` state dict (`conv1.*`, `encoder.*`).
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            z_dim: cfg.z_dim,
            encoder: Encoder3d::new(cfg, vb.pp("encoder"))?,
            conv1: CausalConv3d::new(2 * cfg.z_dim, 2 * cfg.z_dim, (1, 1, 1), 1, vb.pp("conv1"))?,
        })
    }

    /// Loads the encoder half of the checkpoint at `path`.
    pub fn load(cfg: &Config, path: &Path, dtype: DType, dev: &Device) -> Result<Self> {
        Self::new(cfg, open_checkpoint(path, dtype, dev)?)
    }

    /// `WanVAE_.encode(video, scale=[0, 1])`: the un-normalised posterior mean
    /// `[B, 48, 1+(T-1)/4, H/16, W/16]` of `video` `[B, 3, T, H, W]` in [-1, 1]. As in the
    /// reference, frames past the last `1+4k` are dropped.
    pub fn encode_mu_raw(&self, video: &Tensor) -> Result<Tensor> {
        self.encode_mu_raw_with(video, |_| Ok(()))
    }

    /// [`Self::encode_mu_raw`], handing `on_chunk` the encoder's output for each chunk of video
    /// as it is computed (`[B, 1, 96, H/16, W/16]`, frame-major: the first chunk is 1 frame,
    /// the others 4), e.g. to time them. The result is the same.
    pub fn encode_mu_raw_with(
        &self,
        video: &Tensor,
        mut on_chunk: impl FnMut(&Tensor) -> Result<()>,
    ) -> Result<Tensor> {
        let (_, c, t, h, w) = video.dims5()?;
        if c * 4 != PATCHED_CHANNELS || t == 0 || h % SPATIAL_STRIDE != 0 || w % SPATIAL_STRIDE != 0
        {
            candle::bail!(
                "Wan2.2 VAE encode: expected [B, 3, T>=1, H, W] with H and W multiples of \
                 {SPATIAL_STRIDE}, got {:?}",
                video.dims()
            )
        }
        let x = patchify(video)?;
        let mut cache = FeatCache::new();
        let mut outs = Vec::new();
        let chunks = 1 + (t - 1) / TEMPORAL_STRIDE;
        for i in 0..chunks {
            let (start, len) = if i == 0 {
                (0, 1)
            } else {
                (1 + TEMPORAL_STRIDE * (i - 1), TEMPORAL_STRIDE)
            };
            let out = self
                .encoder
                .forward_chunk(&x.narrow(1, start, len)?, &mut cache)?;
            on_chunk(&out)?;
            outs.push(out);
        }
        let stats = self.conv1.forward(&Tensor::cat(&outs, 1)?)?;
        stats
            .narrow(2, 0, self.z_dim)?
            .transpose(1, 2)?
            .contiguous()
    }

    /// `Wan2_2_VAE.encode`: the posterior mean normalised as `(mu - mean) / std`.
    pub fn encode(&self, video: &Tensor) -> Result<Tensor> {
        self.normalise(&self.encode_mu_raw(video)?)
    }

    /// `(mu - mean) * (1/std)` of a raw posterior mean `[B, 48, T, H, W]`.
    pub fn normalise(&self, mu: &Tensor) -> Result<Tensor> {
        let (mean, inv) = latent_scale(self.z_dim, mu.dtype(), mu.device())?;
        mu.broadcast_sub(&mean)?.broadcast_mul(&inv)
    }
}
