//! Element-wise Fourier rotary embedding of the MagiHuman DiT.
//!
//! Port of `ElementWiseFourierEmbed` and `apply_rotary_emb_torch` (non-interleaved) in
//! `inference/model/dit/dit_module.py` of GAIR-NLP/daVinci-MagiHuman at commit 209209b.

use candle::{DType, Device, Result, Tensor};
use candle_core as candle;
use candle_nn::VarBuilder;

/// The frequency bands. They are loaded from the checkpoint buffer `adapter.rope.bands`, never
/// recomputed: the released weights hold them rounded to bf16.
#[derive(Debug, Clone)]
pub struct ElementWiseFourierEmbed {
    bands: Vec<f32>,
}

/// Per-token `sin` and `cos`, each `[L, 3B]` f32, shared by every head.
#[derive(Debug, Clone)]
pub struct RopeSinCos {
    pub sin: Tensor,
    pub cos: Tensor,
}

impl RopeSinCos {
    /// The reference layout `[L, 6B]` = `[sin | cos]`.
    pub fn to_packed(&self) -> Result<Tensor> {
        Tensor::cat(&[&self.sin, &self.cos], 1)
    }

    /// Rotated width R = 6B = 3D/4.
    pub fn rotary_dim(&self) -> Result<usize> {
        Ok(2 * self.sin.dim(1)?)
    }
}

impl ElementWiseFourierEmbed {
    /// `vb` points at `adapter.rope`.
    pub fn new(head_dim: usize, vb: VarBuilder) -> Result<Self> {
        let b = head_dim / 8;
        let bands = vb.get_with_hints_dtype(b, "bands", Default::default(), DType::F32)?;
        Ok(Self {
            bands: bands.to_device(&Device::Cpu)?.to_vec1::<f32>()?,
        })
    }

    pub fn from_bands(bands: Vec<f32>) -> Self {
        Self { bands }
    }

    pub fn bands(&self) -> &[f32] {
        &self.bands
    }

    /// Sin/cos for `coords` rows `(t, h, w, T, H, W, refT, refH, refW)`, in f32 with the
    /// reference's operation order so the values match bit for bit on most rows.
    pub fn forward(&self, coords: &[[f32; 9]], device: &Device) -> Result<RopeSinCos> {
        let nb = self.bands.len();
        let l = coords.len();
        let mut sin = Vec::with_capacity(l * 3 * nb);
        let mut cos = Vec::with_capacity(l * 3 * nb);
        for (row, c) in coords.iter().enumerate() {
            for a in 0..3 {
                let (x, size, reference) = (c[a], c[3 + a], c[6 + a]);
                let scale = if reference == 1.0 && size == 1.0 {
                    1.0
                } else {
                    (reference - 1.0) / (size - 1.0)
                };
                if !scale.is_finite() {
                    candle::bail!(
                        "magihuman rope: coords row {row} axis {a} has size {size} and reference {reference}"
                    )
                }
                // Time is not centred, so video time starts at 0 and text time stays negative.
                let center = if a == 0 { 0.0 } else { (size - 1.0) / 2.0 };
                let xs = (x - center) * scale;
                for &band in &self.bands {
                    let proj = xs * band;
                    sin.push(proj.sin());
                    cos.push(proj.cos());
                }
            }
        }
        Ok(RopeSinCos {
            sin: Tensor::from_vec(sin, (l, 3 * nb), device)?,
            cos: Tensor::from_vec(cos, (l, 3 * nb), device)?,
        })
    }
}

/// Rotates the first R = 6B dims of `x` `[L, H, D]` (f32) with non-interleaved rotate-half;
/// the remaining `D - R` dims pass through.
pub fn apply_rope(x: &Tensor, rope: &RopeSinCos) -> Result<Tensor> {
    crate::engine::ops::rotate_half(x, &rope.sin, &rope.cos)
}
