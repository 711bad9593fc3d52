//! Rotary embedding by rotate-half, non-interleaved, on the first `2 * half` dims of each
//! head, as one op on f32 CPU tensors.
//!
//! As candle ops it records two narrows, four products, a difference, a sum and a concat
//! on q and on k of every layer; backward each of them costs passes, zero-padded copies
//! and a zeroed buffer plus an add in candle's gradient store. Here the forward is one pass
//! and the backward another. Each value is rounded as the composite rounds it (no fused
//! multiply-add, the gradient's two terms summed onto a zero as candle's store sums them),
//! so a model trains to the same bits either way. Other devices and dtypes keep the
//! composite.

use candle::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor, D};
use candle_core as candle;
use rayon::prelude::*;

/// `x` `[L, H, D]` with its first `half` dims of every head rotated against the next
/// `half` by the angles whose `sin`/`cos` are given per token, `[L, half]`:
/// `(x1 cos - x2 sin, x2 cos + x1 sin)`; dims past `2 * half` pass through.
pub fn rotate_half(x: &Tensor, sin: &Tensor, cos: &Tensor) -> Result<Tensor> {
    let (l, _h, d) = x.dims3()?;
    let (ls, half) = sin.dims2()?;
    if ls != l || cos.dims() != sin.dims() || 2 * half > d {
        candle::bail!(
            "rotate_half: x {:?} does not fit sin {:?} / cos {:?}",
            x.dims(),
            sin.dims(),
            cos.dims()
        )
    }
    let fused = x.device().is_cpu()
        && [x, sin, cos].iter().all(|t| t.dtype() == DType::F32)
        && !sin.is_variable()
        && !cos.is_variable();
    if fused {
        let op = RotateHalf {
            sin: sin.contiguous()?.detach(),
            cos: cos.contiguous()?.detach(),
            half,
            backward: false,
        };
        x.contiguous()?.apply_op1(op)
    } else {
        composite(x, sin, cos)
    }
}

/// The rotation as candle ops: the reference of the fused op and the path elsewhere.
fn composite(x: &Tensor, sin: &Tensor, cos: &Tensor) -> Result<Tensor> {
    let d = x.dim(D::Minus1)?;
    let half = sin.dim(1)?;
    let sin = sin.unsqueeze(1)?;
    let cos = cos.unsqueeze(1)?;
    let x1 = x.narrow(D::Minus1, 0, half)?;
    let x2 = x.narrow(D::Minus1, half, half)?;
    let out1 = (x1.broadcast_mul(&cos)? - x2.broadcast_mul(&sin)?)?;
    let out2 = (x2.broadcast_mul(&cos)? + x1.broadcast_mul(&sin)?)?;
    if 2 * half == d {
        Tensor::cat(&[out1, out2], D::Minus1)
    } else {
        let rest = x.narrow(D::Minus1, 2 * half, d - 2 * half)?;
        Tensor::cat(&[out1, out2, rest], D::Minus1)
    }
}

/// The forward (`backward: false`) or its gradient map (`true`), with the angles.
#[derive(Clone)]
struct RotateHalf {
    sin: Tensor,
    cos: Tensor,
    half: usize,
    backward: bool,
}

impl CustomOp1 for RotateHalf {
    fn name(&self) -> &'static str {
        if self.backward {
            "rotate-half-backward"
        } else {
            "rotate-half"
        }
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = super::cpu_f32(self.name(), s, l, "input")?;
        let (sin_s, sin_l) = self.sin.storage_and_layout();
        let (cos_s, cos_l) = self.cos.storage_and_layout();
        let (candle::Storage::Cpu(sin_s), candle::Storage::Cpu(cos_s)) = (&*sin_s, &*cos_s) else {
            candle::bail!("{}: sin/cos must be on the CPU", self.name())
        };
        let sin = super::cpu_f32(self.name(), sin_s, sin_l, "sin")?;
        let cos = super::cpu_f32(self.name(), cos_s, cos_l, "cos")?;
        let (_, h, d) = l.shape().dims3()?;
        let half = self.half;
        let backward = self.backward;
        let mut out = vec![0f32; x.len()];
        // One task per token: its heads share the token's angles.
        out.par_chunks_mut(h * d)
            .zip(x.par_chunks(h * d))
            .enumerate()
            .for_each(|(t, (o, x))| {
                let (s, c) = (&sin[t * half..][..half], &cos[t * half..][..half]);
                for (o, x) in o.chunks_exact_mut(d).zip(x.chunks_exact(d)) {
                    let (o1, o2) = o.split_at_mut(half);
                    let (x1, x2) = x.split_at(half);
                    for i in 0..half {
                        let (a, b) = (x1[i], x2[i]);
                        if backward {
                            // The composite's gradient store: a zero, plus the two terms.
                            o1[i] = (0.0 + a * c[i]) + b * s[i];
                            o2[i] = (0.0 + b * c[i]) + (0.0 - a) * s[i];
                        } else {
                            o1[i] = a * c[i] - b * s[i];
                            o2[i] = b * c[i] + a * s[i];
                        }
                    }
                    for (o, &x) in o2[half..].iter_mut().zip(&x2[half..]) {
                        *o = if backward { 0.0 + x } else { x };
                    }
                }
            });
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let op = RotateHalf {
            backward: true,
            ..self.clone()
        };
        Ok(Some(grad_res.contiguous()?.apply_op1_no_bwd(&op)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ops::f32_bits as bits;
    use candle::{Device, Var};

    /// Forward and gradient are the composite's bit for bit, with and without dims that
    /// pass through, under a loss that weighs every output differently.
    #[test]
    fn match_the_composite_bit_for_bit() -> Result<()> {
        let dev = Device::Cpu;
        for (d, half) in [(32, 12), (8, 4)] {
            let (l, h) = (7, 3);
            let x = Tensor::randn(0f32, 2.0, (l, h, d), &dev)?;
            let ang = Tensor::randn(0f32, 3.0, (l, half), &dev)?;
            let (sin, cos) = (ang.sin()?, ang.cos()?);
            let w = Tensor::randn(0f32, 1.0, (l, h, d), &dev)?;
            let loss = |y: &Tensor| (y * &w)?.sqr()?.sum_all();
            let a = Var::from_tensor(&x)?;
            let ya = rotate_half(a.as_tensor(), &sin, &cos)?;
            let ga = loss(&ya)?.backward()?;
            let b = Var::from_tensor(&x)?;
            let yb = composite(b.as_tensor(), &sin, &cos)?;
            let gb = loss(&yb)?.backward()?;
            assert_eq!(bits(&ya), bits(&yb), "forward, d {d}");
            let (ga, gb) = (ga.get(a.as_tensor()), gb.get(b.as_tensor()));
            let (Some(ga), Some(gb)) = (ga, gb) else {
                panic!("no gradient for x")
            };
            assert!(gb.abs()?.max_all()?.to_scalar::<f32>()? > 1e-3);
            assert_eq!(bits(ga), bits(gb), "gradient, d {d}");
            // The rotation moved the rotated dims and kept the rest.
            let moved = (&ya - &x)?.narrow(2, 0, 2 * half)?.abs()?.max_all()?;
            assert!(moved.to_scalar::<f32>()? > 1e-2);
            if 2 * half < d {
                let rest = |t: &Tensor| t.narrow(2, 2 * half, d - 2 * half);
                assert_eq!(bits(&rest(&ya)?), bits(&rest(&x)?));
            }
        }
        Ok(())
    }

    #[test]
    fn angles_that_do_not_fit_are_refused() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::zeros((4, 2, 8), DType::F32, &dev)?;
        let a = Tensor::zeros((4, 5), DType::F32, &dev)?;
        let err = rotate_half(&x, &a, &a).unwrap_err().to_string();
        assert!(err.contains("does not fit"), "{err}");
        Ok(())
    }
}
