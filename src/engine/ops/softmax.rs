//! Softmax over the last dim with a fused backward, for training on the CPU.
//!
//! candle's fused `softmax_last_dim` has no backward, and its composite (`max`, `sub`, `exp`,
//! `sum`, `div`) records five ops on the attention scores, whose backward makes a dozen passes
//! over them (the max's mask, the quotient rule, a zeroed buffer and an add per gradient). Here
//! the forward is one pass per row and the backward another: `dx = p * (dy - sum(dy * p))`.
//! Inference and other devices keep candle's ops.

use candle::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Tensor, D};
use candle_core as candle;
use rayon::prelude::*;

/// Rows handed to one rayon task (a row is one query's scores).
const ROWS_PER_TASK: usize = 16;

/// Softmax over the last dim. Tracked f32 CPU tensors (training) go through the fused op with a
/// backward; untracked ones through candle's fused kernel; anything else through the composite.
pub fn softmax_last_dim(xs: &Tensor) -> Result<Tensor> {
    if !xs.track_op() {
        candle_nn::ops::softmax_last_dim(xs)
    } else if xs.device().is_cpu() && xs.dtype() == DType::F32 && xs.rank() > 0 {
        xs.contiguous()?.apply_op1(Softmax)
    } else {
        candle_nn::ops::softmax(xs, D::Minus1)
    }
}

/// The contiguous f32 values of a CPU tensor and the length of its last dim.
fn rows<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<(&'a [f32], usize)> {
    let v = super::cpu_f32("softmax", s, l, what)?;
    let width = l.dims().last().copied().unwrap_or(1).max(1);
    Ok((v, width))
}

struct Softmax;

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "softmax-last-dim-with-backward"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (x, width) = rows(s, l, "input")?;
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(width)
            .zip(x.par_chunks(width))
            .with_min_len(ROWS_PER_TASK)
            .for_each(|(o, x)| {
                let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0f32;
                for (o, &x) in o.iter_mut().zip(x) {
                    *o = (x - max).exp();
                    sum += *o;
                }
                let inv = 1.0 / sum;
                o.iter_mut().for_each(|o| *o *= inv);
            });
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let grad = grad_res.contiguous()?;
        Ok(Some(
            res.contiguous()?
                .apply_op2_no_bwd(&grad, &SoftmaxBackward)?,
        ))
    }
}

/// `(p, dy) -> p * (dy - sum(dy * p))` row by row.
struct SoftmaxBackward;

impl CustomOp2 for SoftmaxBackward {
    fn name(&self) -> &'static str {
        "softmax-last-dim-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (p, width) = rows(s1, l1, "the softmax output")?;
        let (dy, _) = rows(s2, l2, "its gradient")?;
        if l1.dims() != l2.dims() {
            candle::bail!(
                "softmax backward: output {:?} and gradient {:?}",
                l1.dims(),
                l2.dims()
            )
        }
        let mut dx = vec![0f32; p.len()];
        dx.par_chunks_mut(width)
            .zip(p.par_chunks(width).zip(dy.par_chunks(width)))
            .with_min_len(ROWS_PER_TASK)
            .for_each(|(dx, (p, dy))| {
                let dot: f32 = p.iter().zip(dy).map(|(p, dy)| p * dy).sum();
                for ((dx, &p), &dy) in dx.iter_mut().zip(p).zip(dy) {
                    *dx = p * (dy - dot);
                }
            });
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ops::max_abs_diff;
    use candle::{Device, Var};

    /// Forward and gradient equal the composite's, on scores with a wide range per row.
    #[test]
    fn matches_the_composite_forward_and_backward() -> Result<()> {
        let dev = Device::Cpu;
        let x = (Tensor::randn(0f32, 4.0, (3, 37, 53), &dev)? + 2.0)?;
        let w = Tensor::randn(0f32, 1.0, (3, 37, 53), &dev)?;
        let loss = |p: &Tensor| (p * &w)?.sqr()?.sum_all();

        let a = Var::from_tensor(&x)?;
        let pa = softmax_last_dim(a.as_tensor())?;
        let ga = loss(&pa)?.backward()?;
        let b = Var::from_tensor(&x)?;
        let pb = candle_nn::ops::softmax(b.as_tensor(), D::Minus1)?;
        let gb = loss(&pb)?.backward()?;

        assert!(max_abs_diff(&pa, &pb) < 1e-6);
        let (ga, gb) = (
            ga.get(a.as_tensor()).unwrap(),
            gb.get(b.as_tensor()).unwrap(),
        );
        let scale = gb.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(scale > 1e-3, "the check needs a gradient that is not ~0");
        assert!(max_abs_diff(ga, gb) < 1e-5 * scale);
        Ok(())
    }

    /// A transposed (strided) input is made contiguous, not misread.
    #[test]
    fn reads_strided_input() -> Result<()> {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (8, 5), &dev)?)?;
        let t = x.as_tensor().t()?;
        let p = softmax_last_dim(&t)?;
        let want = candle_nn::ops::softmax(&t.contiguous()?.detach(), D::Minus1)?;
        assert!(max_abs_diff(&p, &want) < 1e-6);
        let g = p.sqr()?.sum_all()?.backward()?;
        assert_eq!(g.get(x.as_tensor()).unwrap().dims(), [8, 5]);
        Ok(())
    }
}
