//! The Wan2.2 VAE decoder: one latent frame at a time → patchified video frames.
//!
//! Port of `Decoder3d` in `inference/model/vae2_2/vae2_2_module.py` of
//! GAIR-NLP/daVinci-MagiHuman at commit 209209b.

use candle::{Module, Result, Tensor};
use candle_core as candle;
use candle_nn::VarBuilder;

use super::blocks::{AttentionBlock, ResidualBlock, RmsNorm, UpResidualBlock};
use super::config::Config;
use super::conv::{CausalConv3d, FeatCache};
use super::encoder::PATCHED_CHANNELS;

#[derive(Debug, Clone)]
pub struct Decoder3d {
    conv1: CausalConv3d,
    middle: (ResidualBlock, AttentionBlock, ResidualBlock),
    upsamples: Vec<UpResidualBlock>,
    head_norm: RmsNorm,
    head_conv: CausalConv3d,
}

impl Decoder3d {
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let Some(&last_mult) = cfg.dim_mult.last() else {
            candle::bail!("Wan2.2 VAE config: dim_mult is empty")
        };
        let dims: Vec<usize> = std::iter::once(last_mult)
            .chain(cfg.dim_mult.iter().rev().copied())
            .map(|m| m * cfg.dec_dim)
            .collect();
        let n = cfg.dim_mult.len();
        let temporal = cfg.temperal_upsample();
        let upsamples = (0..n)
            .map(|i| {
                UpResidualBlock::new(
                    dims[i],
                    dims[i + 1],
                    cfg.num_res_blocks + 1,
                    temporal.get(i).copied().unwrap_or(false),
                    i != n - 1,
                    vb.pp("upsamples").pp(i),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let (first, out) = (dims[0], dims[n]);
        let mid = vb.pp("middle");
        Ok(Self {
            conv1: CausalConv3d::new(cfg.z_dim, first, (3, 3, 3), 1, vb.pp("conv1"))?,
            middle: (
                ResidualBlock::new(first, first, mid.pp(0))?,
                AttentionBlock::new(first, mid.pp(1))?,
                ResidualBlock::new(first, first, mid.pp(2))?,
            ),
            upsamples,
            head_norm: RmsNorm::new(out, false, vb.pp("head.0"))?,
            head_conv: CausalConv3d::new(out, PATCHED_CHANNELS, (3, 3, 3), 1, vb.pp("head.2"))?,
        })
    }

    /// One chunk of latent frames `[B, T, z_dim, H, W]` (frame-major) →
    /// `[B, T', 12, 8H, 8W]`; the first chunk yields one frame per latent frame fewer temporal
    /// doublings (1 frame for 1 latent frame), later ones 4 per latent frame.
    pub fn forward_chunk(
        &self,
        x: &Tensor,
        cache: &mut FeatCache,
        first_chunk: bool,
    ) -> Result<Tensor> {
        cache.start_chunk();
        let x = self.conv1.forward_cached(x, cache.next_slot())?;
        let x = self.middle.0.forward(&x, cache)?;
        let x = self.middle.1.forward(&x)?;
        let mut x = self.middle.2.forward(&x, cache)?;
        for block in &self.upsamples {
            x = block.forward(&x, cache, first_chunk)?;
        }
        let x = self.head_norm.forward(&x)?.silu()?;
        self.head_conv.forward_cached(&x, cache.next_slot())
    }
}
