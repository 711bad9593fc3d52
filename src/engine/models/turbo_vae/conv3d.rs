//! The "CausalConv3d" of TurboVAED, which is not causal: time is padded by replicating the edge
//! frames on both sides, space is zero-padded by `k/2`.
//!
//! Port of `TurboVAEDCausalConv3d` in `inference/model/turbo_vaed/turbo_vaed_module.py` of
//! GAIR-NLP/daVinci-MagiHuman at commit 209209b.
//!
//! candle has no conv3d. Activations here are kept frame-major, `[B, T, C, H, W]`, so that every
//! frame is a contiguous `[C, H, W]` image. A `(kT, kH, kW)` kernel then becomes one conv2d with
//! `kT*C` input channels over the `kT` time-shifted copies of the frames stacked on channels: a
//! single GEMM with the whole reduction in it instead of `kT` GEMMs and `kT-1` output additions.
//! Frames go through in chunks so the stacked copy stays small (candle's conv2d already tiles its
//! im2col). `(1,1,1)` and `(kT,1,1)` kernels land on candle's 1x1 conv2d fast path (a plain GEMM).

use candle::{Module, Result, Tensor, D};
use candle_core as candle;
use candle_nn::VarBuilder;

/// Elements of the time-stacked input built per chunk (64 MiB of f32).
const CHUNK_ELEMS: usize = 16 << 20;

#[derive(Debug, Clone)]
pub struct Conv3d {
    /// `[out, kT*in, kH, kW]`, tap-major on the input channels.
    weight: Tensor,
    /// `[1, out, 1, 1]`.
    bias: Tensor,
    kt: usize,
    pad_hw: (usize, usize),
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

    /// From a PyTorch `[out, in, kT, kH, kW]` weight and `[out]` bias.
    pub fn from_weights(w: Tensor, bias: Tensor) -> Result<Self> {
        let (out_c, in_c, kt, kh, kw) = w.dims5()?;
        if kt % 2 == 0 || kh % 2 == 0 || kw % 2 == 0 {
            candle::bail!(
                "Conv3d: only odd kernels keep the frame count, got {:?}",
                w.dims()
            )
        }
        if bias.dims() != [out_c] {
            candle::bail!("Conv3d: bias {:?} for weight {:?}", bias.dims(), w.dims())
        }
        let weight = w
            .permute((0, 2, 1, 3, 4))?
            .reshape((out_c, kt * in_c, kh, kw))?
            .contiguous()?;
        Ok(Self {
            weight,
            bias: bias.reshape((1, out_c, 1, 1))?,
            kt,
            pad_hw: (kh / 2, kw / 2),
        })
    }

    pub fn out_channels(&self) -> usize {
        self.weight.dim(0).unwrap_or(0)
    }

    fn conv_frames(&self, x: &Tensor) -> Result<Tensor> {
        let (ph, pw) = self.pad_hw;
        let y = if ph == pw {
            x.conv2d(&self.weight, ph, 1, 1, 1)?
        } else {
            // candle's conv2d pads both axes alike.
            x.pad_with_zeros(D::Minus2, ph, ph)?
                .pad_with_zeros(D::Minus1, pw, pw)?
                .conv2d(&self.weight, 0, 1, 1, 1)?
        };
        y.broadcast_add(&self.bias)
    }
}

impl Module for Conv3d {
    /// `[B, T, C, H, W]` → `[B, T, out, H, W]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, c, h, w) = x.dims5()?;
        let in_c = self.weight.dim(1)? / self.kt;
        if c != in_c {
            candle::bail!(
                "Conv3d: input {:?} for a kernel over {in_c} channels",
                x.dims()
            )
        }
        let out_c = self.out_channels();
        if self.kt == 1 {
            let y = self.conv_frames(&x.reshape((b * t, c, h, w))?)?;
            return y.reshape((b, t, out_c, h, w));
        }
        let pad = (self.kt - 1) / 2;
        let frame = c * h * w;
        let chunk = (CHUNK_ELEMS / (self.kt * frame * b).max(1)).clamp(1, t);
        let mut outs = Vec::with_capacity(t.div_ceil(chunk));
        let mut t0 = 0;
        while t0 < t {
            let len = chunk.min(t - t0);
            let mut taps = Vec::with_capacity(self.kt);
            for k in 0..self.kt {
                // Output frame `t` reads input frame `t + k - pad`, clamped: the replicate padding.
                let ids: Vec<u32> = (t0..t0 + len)
                    .map(|i| (i + k).saturating_sub(pad).min(t - 1) as u32)
                    .collect();
                let ids = Tensor::new(ids, x.device())?;
                taps.push(x.index_select(&ids, 1)?);
            }
            let stacked = Tensor::cat(&taps, 2)?;
            drop(taps);
            let y = self.conv_frames(&stacked.reshape((b * len, self.kt * c, h, w))?)?;
            outs.push(y.reshape((b, len, out_c, h, w))?);
            t0 += len;
        }
        if outs.len() == 1 {
            Ok(outs.remove(0))
        } else {
            Tensor::cat(&outs, 1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle::Device;

    /// Direct definition: replicate-pad time, zero-pad space, sum over every tap.
    fn naive(x: &Tensor, w: &Tensor, bias: &Tensor) -> Vec<f32> {
        let (b, t, c, h, wd) = x.dims5().unwrap();
        let (o, _, kt, kh, kw) = w.dims5().unwrap();
        let xv: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
        let wv: Vec<f32> = w.flatten_all().unwrap().to_vec1().unwrap();
        let bv: Vec<f32> = bias.to_vec1().unwrap();
        let (pt, ph, pw) = ((kt - 1) / 2, kh / 2, kw / 2);
        let mut out = vec![0f32; b * t * o * h * wd];
        for bi in 0..b {
            for ti in 0..t {
                for oi in 0..o {
                    for yi in 0..h {
                        for xi in 0..wd {
                            let mut s = bv[oi];
                            for ci in 0..c {
                                for a in 0..kt {
                                    let ts = (ti + a).saturating_sub(pt).min(t - 1);
                                    for p in 0..kh {
                                        for q in 0..kw {
                                            let (yy, xx) = (yi + p, xi + q);
                                            if yy < ph || xx < pw || yy - ph >= h || xx - pw >= wd {
                                                continue;
                                            }
                                            let xin = xv[(((bi * t + ts) * c + ci) * h + yy - ph)
                                                * wd
                                                + xx
                                                - pw];
                                            let wi = (((oi * c + ci) * kt + a) * kh + p) * kw + q;
                                            s += xin * wv[wi];
                                        }
                                    }
                                }
                            }
                            out[(((bi * t + ti) * o + oi) * h + yi) * wd + xi] = s;
                        }
                    }
                }
            }
        }
        out
    }

    #[test]
    fn matches_the_direct_definition() {
        let dev = Device::Cpu;
        for (k, b, t) in [
            ((3, 3, 3), 2, 5),
            ((3, 1, 1), 1, 4),
            ((1, 1, 1), 2, 3),
            ((3, 3, 3), 1, 1),
        ] {
            let x = Tensor::randn(0f32, 1., (b, t, 3, 4, 5), &dev).unwrap();
            let w = Tensor::randn(0f32, 1., (6, 3, k.0, k.1, k.2), &dev).unwrap();
            let bias = Tensor::randn(0f32, 1., 6, &dev).unwrap();
            let conv = Conv3d::from_weights(w.clone(), bias.clone()).unwrap();
            let got: Vec<f32> = conv
                .forward(&x)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let exp = naive(&x, &w, &bias);
            let err = got
                .iter()
                .zip(&exp)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(err < 1e-4, "kernel {k:?}: max err {err}");
        }
    }
}
