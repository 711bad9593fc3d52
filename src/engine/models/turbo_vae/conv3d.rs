//! The "CausalConv3d" of TurboVAED, which is not causal: time is padded by replicating the edge
//! frames on both sides, space is zero-padded by `k/2`.
//!
//! Port of `TurboVAEDCausalConv3d` in `inference/model/turbo_vaed/turbo_vaed_module.py` of
//! GAIR-NLP/daVinci-MagiHuman at commit 209209b. The arithmetic (time taps stacked on
//! channels, one GEMM per spatial tap) is [`TapConv`], shared with the Wan2.2 VAE; this file
//! only says which frames each output reads.

use candle::{Module, Result, Tensor};
use candle_core as candle;
use candle_nn::VarBuilder;

use crate::engine::ops::TapConv;

#[derive(Debug, Clone)]
pub struct Conv3d {
    conv: TapConv,
}

impl Conv3d {
    /// `vb` points at the `TurboVAEDCausalConv3d` module: its `nn.Conv3d` is `vb.pp("conv")`.
    pub fn new(
        in_c: usize,
        out_c: usize,
        (kt, kh, kw): (usize, usize, usize),
        vb: VarBuilder,
    ) -> Result<Self> {
        let vb = vb.pp("conv");
        let w = vb.get((out_c, in_c, kt, kh, kw), "weight")?;
        let bias = vb.get(out_c, "bias")?;
        Self::from_weights(w, bias)
    }

    /// A per-frame `nn.Conv2d` (`[out, in, kH, kW]` weight, zero padding `k/2`) run the same way.
    pub fn from_conv2d(w: Tensor, bias: Tensor) -> Result<Self> {
        Self::from_weights(w.unsqueeze(2)?, bias)
    }

    /// From a PyTorch `[out, in, kT, kH, kW]` weight and `[out]` bias.
    pub fn from_weights(w: Tensor, bias: Tensor) -> Result<Self> {
        if w.dims5()?.2 % 2 == 0 {
            candle::bail!(
                "Conv3d: only odd kernels keep the frame count, got {:?}",
                w.dims()
            )
        }
        Ok(Self {
            conv: TapConv::from_weights(w, bias)?,
        })
    }

    pub fn out_channels(&self) -> usize {
        self.conv.out_channels()
    }
}

impl Module for Conv3d {
    /// `[B, T, C, H, W]` → `[B, T, out, H, W]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let t = x.dim(1)?;
        let pad = (self.conv.kt() - 1) / 2;
        // Output frame `i` reads input frame `i + k - pad`, clamped: the replicate padding.
        self.conv
            .forward_frames(x, t, |i, k| Some((i + k).saturating_sub(pad).min(t - 1)))
    }
}
