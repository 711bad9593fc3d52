//! The Wan2.2 VAE encoder: patchified video chunks → latent statistics.
//!
//! Port of `Encoder3d` in `inference/model/vae2_2/vae2_2_module.py` of
//! GAIR-NLP/daVinci-MagiHuman at commit 209209b.

use candle::{Module, Result, Tensor};
use candle_core as candle;
use candle_nn::VarBuilder;

use super::blocks::{AttentionBlock, DownResidualBlock, ResidualBlock, RmsNorm};
use super::config::Config;
use super::conv::{CausalConv3d, FeatCache};

/// Channels of a patchified RGB frame (3 colours × 2×2 pixels).
pub const PATCHED_CHANNELS: usize = 12;

#[derive(Debug, Clone)]
pub struct Encoder3d {
    conv1: CausalConv3d,
    downsamples: Vec<DownResidualBlock>,
    middle: (ResidualBlock, AttentionBlock, ResidualBlock),
    head_norm: RmsNorm,
    head_conv: CausalConv3d,
}

impl Encoder3d {
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let dims: Vec<usize> = std::iter::once(1)
            .chain(cfg.dim_mult.iter().copied())
            .map(|m| m * cfg.c_dim)
            .collect();
        let n = cfg.dim_mult.len();
        let downsamples = (0..n)
            .map(|i| {
                DownResidualBlock::new(
                    dims[i],
                    dims[i + 1],
                    cfg.num_res_blocks,
                    cfg.temperal_downsample.get(i).copied().unwrap_or(false),
                    i != n - 1,
                    vb.pp("downsamples").pp(i),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let out = dims[n];
        let mid = vb.pp("middle");
        Ok(Self {
            conv1: CausalConv3d::new(PATCHED_CHANNELS, dims[0], (3, 3, 3), 1, vb.pp("conv1"))?,
            downsamples,
            middle: (
                ResidualBlock::new(out, out, mid.pp(0))?,
                AttentionBlock::new(out, mid.pp(1))?,
                ResidualBlock::new(out, out, mid.pp(2))?,
            ),
            head_norm: RmsNorm::new(out, false, vb.pp("head.0"))?,
            head_conv: CausalConv3d::new(out, 2 * cfg.z_dim, (3, 3, 3), 1, vb.pp("head.2"))?,
        })
    }

    /// One chunk `[B, T, 12, H, W]` (frame-major) → `[B, T', 2·z_dim, H/8, W/8]`, carrying the
    /// causal state of the earlier chunks in `cache`.
    pub fn forward_chunk(&self, x: &Tensor, cache: &mut FeatCache) -> Result<Tensor> {
        cache.start_chunk();
        let mut x = self.conv1.forward_cached(x, cache.next_slot())?;
        for block in &self.downsamples {
            x = block.forward(&x, cache)?;
        }
        let x = self.middle.0.forward(&x, cache)?;
        let x = self.middle.1.forward(&x)?;
        let x = self.middle.2.forward(&x, cache)?;
        let x = self.head_norm.forward(&x)?.silu()?;
        self.head_conv.forward_cached(&x, cache.next_slot())
    }
}
