//! The "CausalConv3d" of TurboVAED, which is not causal: time is padded by replicating the edge
//! frames on both sides, space is zero-padded by `k/2`.
//!
//! Port of `TurboVAEDCausalConv3d` in `inference/model/turbo_vaed/turbo_vaed_module.py` of
//! GAIR-NLP/daVinci-MagiHuman at commit 209209b.
//!
//! candle has no conv3d. Activations here are kept frame-major, `[B, T, C, H, W]`, so that every
//! frame is a contiguous `[C, H, W]` image. The `kT` time-shifted copies of the frames are stacked
//! on channels, so time costs no extra GEMMs: a `(kT, kH, kW)` kernel is `kH*kW` GEMMs with a
//! reduction over `kT*C`, run straight on strided views of the zero-padded frames (see
//! [`Conv3d::conv_frames`]). This beats candle's conv2d (tiled im2col) by about 3x on CPU. Frames
//! go through in chunks so the stacked and padded copies stay small. `(1,1,1)` and `(kT,1,1)`
//! kernels are a single GEMM.

use candle::{Module, Result, Tensor};
use candle_core as candle;
use candle_nn::VarBuilder;

/// Elements of the time-stacked input built per chunk (64 MiB of f32).
const CHUNK_ELEMS: usize = 16 << 20;

#[derive(Debug, Clone)]
pub struct Conv3d {
    /// One `[out, kT*in]` matrix per spatial tap `(kh, kw)`, row-major over the taps; the
    /// columns are tap-major over time, matching the time-stacked input.
    taps: Vec<Tensor>,
    /// `[1, out, 1, 1]`.
    bias: Tensor,
    in_c: usize,
    out_c: usize,
    kt: usize,
    k_hw: (usize, usize),
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
        let per_tap = w
            .permute((3, 4, 0, 2, 1))?
            .reshape((kh * kw, out_c, kt * in_c))?
            .contiguous()?;
        let taps = (0..kh * kw)
            .map(|i| per_tap.get(i))
            .collect::<Result<_>>()?;
        Ok(Self {
            taps,
            bias: bias.reshape((1, out_c, 1, 1))?,
            in_c,
            out_c,
            kt,
            k_hw: (kh, kw),
        })
    }

    pub fn out_channels(&self) -> usize {
        self.out_c
    }

    /// `[n, K, H, W]` (K = kT*in, time taps already stacked) → `[n, out, H, W]`, zero-padded.
    ///
    /// No im2col: the frames are zero-padded once and flattened, so the input under spatial tap
    /// `(i, j)` is a plain strided window of it that starts `i*Wp + j` elements in, and each tap
    /// is one GEMM straight on that view. Outputs are computed over the padded width and the
    /// junk columns cut at the end. One extra bottom row keeps the last tap's window in bounds.
    fn conv_frames(&self, x: &Tensor) -> Result<Tensor> {
        let (n, k, h, w) = x.dims4()?;
        let (kh, kw) = self.k_hw;
        if kh == 1 && kw == 1 {
            let y = self.taps[0].broadcast_matmul(&x.reshape((n, k, h * w))?)?;
            return y.reshape((n, self.out_c, h, w))?.broadcast_add(&self.bias);
        }
        let (ph, pw) = (kh / 2, kw / 2);
        let wp = w + 2 * pw;
        let hp = h + 2 * ph + 1;
        let xp = x
            .pad_with_zeros(2, ph, ph + 1)?
            .pad_with_zeros(3, pw, pw)?
            .reshape((n, k, hp * wp))?;
        let mut acc: Option<Tensor> = None;
        for i in 0..kh {
            for j in 0..kw {
                let view = xp.narrow(2, i * wp + j, h * wp)?;
                let y = self.taps[i * kw + j].broadcast_matmul(&view)?;
                acc = Some(match acc {
                    Some(a) => (a + y)?,
                    None => y,
                });
            }
        }
        let Some(acc) = acc else {
            candle::bail!("Conv3d: empty kernel")
        };
        acc.reshape((n, self.out_c, h, wp))?
            .narrow(3, 0, w)?
            .broadcast_add(&self.bias)
    }
}

impl Module for Conv3d {
    /// `[B, T, C, H, W]` → `[B, T, out, H, W]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, c, h, w) = x.dims5()?;
        if c != self.in_c {
            candle::bail!(
                "Conv3d: input {:?} for a kernel over {} channels",
                x.dims(),
                self.in_c
            )
        }
        let out_c = self.out_c;
        let pad = (self.kt - 1) / 2;
        let (kh, kw) = self.k_hw;
        let frame = self.kt * c * (h + kh) * (w + kw);
        let chunk = (CHUNK_ELEMS / (frame * b).max(1)).clamp(1, t);
        let mut outs = Vec::with_capacity(t.div_ceil(chunk));
        let mut t0 = 0;
        while t0 < t {
            let len = chunk.min(t - t0);
            let stacked = if self.kt == 1 {
                x.narrow(1, t0, len)?
            } else {
                let mut taps = Vec::with_capacity(self.kt);
                for k in 0..self.kt {
                    // Output frame `t` reads input frame `t + k - pad`, clamped: the replicate
                    // padding.
                    let ids: Vec<u32> = (t0..t0 + len)
                        .map(|i| (i + k).saturating_sub(pad).min(t - 1) as u32)
                        .collect();
                    let ids = Tensor::new(ids, x.device())?;
                    taps.push(x.index_select(&ids, 1)?);
                }
                Tensor::cat(&taps, 2)?
            };
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
