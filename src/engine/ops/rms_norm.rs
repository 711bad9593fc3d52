//! RMSNorm over the last dim with a fused backward, for training on the CPU.
//!
//! candle's fused `rms_norm` has no backward and its composite (`rms_norm_slow`) records seven
//! ops, two of them broadcasts over the whole activation, so its backward makes a dozen passes
//! plus a zeroed buffer and an add per gradient. Here each direction is one pass per row:
//! `y = a * x * r` with `r = 1 / sqrt(mean(x²) + eps)`, and
//! `dx = r * (a * dy - x * r² * mean(a * dy * x))`, `da = sum over rows of dy * x * r`.
//! Inference and other devices keep candle's ops.

use candle::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};
use candle_core as candle;
use rayon::prelude::*;

/// Rows handed to one rayon task.
const ROWS_PER_TASK: usize = 64;

/// `x * alpha / sqrt(mean(x²) + eps)` over the last dim; `alpha` is `[d]`. Tracked f32 CPU
/// tensors (training) go through the fused op with a backward; untracked ones through candle's
/// fused kernel; anything else through candle's composite.
pub fn rms_norm(x: &Tensor, alpha: &Tensor, eps: f32) -> Result<Tensor> {
    let tracked = x.track_op() || alpha.track_op();
    let cpu_f32 = [x, alpha]
        .iter()
        .all(|t| t.device().is_cpu() && t.dtype() == DType::F32);
    if !tracked {
        candle_nn::ops::rms_norm(&x.contiguous()?, alpha, eps)
    } else if cpu_f32 {
        x.contiguous()?
            .apply_op2(&alpha.contiguous()?, RmsNorm { eps })
    } else {
        candle_nn::ops::rms_norm_slow(x, alpha, eps)
    }
}

fn values<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    super::cpu_f32("rms norm", s, l, what)
}

/// `1 / sqrt(mean(x²) + eps)` of one row.
fn inv_rms(x: &[f32], eps: f32) -> f32 {
    let ms = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    1.0 / (ms + eps).sqrt()
}

/// The row width, checked against `alpha`.
fn width(x: &Layout, alpha: &Layout) -> Result<usize> {
    let d = x.dims().last().copied().unwrap_or(0);
    if alpha.dims() != [d] || d == 0 {
        candle::bail!(
            "rms norm: scale {:?} for input {:?} (wants [last dim])",
            alpha.dims(),
            x.dims()
        )
    }
    Ok(d)
}

struct RmsNorm {
    eps: f32,
}

impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "rms-norm-with-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let d = width(l1, l2)?;
        let (x, a) = (values(s1, l1, "input")?, values(s2, l2, "scale")?);
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(d)
            .zip(x.par_chunks(d))
            .with_min_len(ROWS_PER_TASK)
            .for_each(|(y, x)| {
                let r = inv_rms(x, self.eps);
                for ((y, &x), &a) in y.iter_mut().zip(x).zip(a) {
                    *y = a * x * r;
                }
            });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        alpha: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dy = grad_res.detach().contiguous()?;
        let x = x.detach().contiguous()?;
        let out = x.apply_op3_no_bwd(
            &alpha.detach().contiguous()?,
            &dy,
            &RmsNormBackward { eps: self.eps },
        )?;
        let (n, d) = (x.elem_count(), alpha.elem_count());
        let dx = out.narrow(0, 0, n)?.reshape(x.shape())?;
        let da = out.narrow(0, n, n)?.reshape((n / d, d))?.sum(0)?;
        Ok((Some(dx), Some(da)))
    }
}

/// `(x, alpha, dy)` to `dx` and the per-row terms of `dalpha`, stacked as one `[2 * n]` vector.
struct RmsNormBackward {
    eps: f32,
}

impl candle::CustomOp3 for RmsNormBackward {
    fn name(&self) -> &'static str {
        "rms-norm-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let d = width(l1, l2)?;
        let (x, a, dy) = (
            values(s1, l1, "input")?,
            values(s2, l2, "scale")?,
            values(s3, l3, "gradient")?,
        );
        if dy.len() != x.len() {
            candle::bail!(
                "rms norm backward: gradient {:?} for input {:?}",
                l3.dims(),
                l1.dims()
            )
        }
        let n = x.len();
        let mut out = vec![0f32; 2 * n];
        let (dx, da) = out.split_at_mut(n);
        dx.par_chunks_mut(d)
            .zip(da.par_chunks_mut(d))
            .zip(x.par_chunks(d).zip(dy.par_chunks(d)))
            .with_min_len(ROWS_PER_TASK)
            .for_each(|((dx, da), (x, dy))| {
                let r = inv_rms(x, self.eps);
                let mut dot = 0f32;
                for (((&x, &dy), &a), da) in x.iter().zip(dy).zip(a).zip(da.iter_mut()) {
                    dot += a * dy * x;
                    *da = dy * x * r;
                }
                let c = r * r * dot / d as f32;
                for (((dx, &x), &dy), &a) in dx.iter_mut().zip(x).zip(dy).zip(a) {
                    *dx = r * (a * dy - x * c);
                }
            });
        Ok((CpuStorage::F32(out), Shape::from(2 * n)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ops::max_abs_diff;
    use candle::{Device, Var};

    /// Output and the gradients of x and the scale equal those of candle's composite.
    #[test]
    fn matches_the_composite_forward_and_backward() -> Result<()> {
        let dev = Device::Cpu;
        let x0 = (Tensor::randn(0f32, 2.0, (3, 7, 24), &dev)? + 0.5)?;
        let a0 = Tensor::randn(1f32, 0.3, 24, &dev)?;
        let w = Tensor::randn(0f32, 1.0, (3, 7, 24), &dev)?;
        let run = |fused: bool| -> Result<(Tensor, Tensor, Tensor)> {
            let (x, a) = (Var::from_tensor(&x0)?, Var::from_tensor(&a0)?);
            let y = if fused {
                rms_norm(x.as_tensor(), a.as_tensor(), 1e-6)?
            } else {
                candle_nn::ops::rms_norm_slow(x.as_tensor(), a.as_tensor(), 1e-6)?
            };
            let g = (&y * &w)?.sqr()?.sum_all()?.backward()?;
            let grad = |v: &Var| {
                g.get(v.as_tensor())
                    .cloned()
                    .ok_or_else(|| candle::Error::Msg("a gradient is missing".into()))
            };
            Ok((y, grad(&x)?, grad(&a)?))
        };
        let (ya, dxa, daa) = run(true)?;
        let (yb, dxb, dab) = run(false)?;
        assert!(max_abs_diff(&ya, &yb) < 1e-5);
        for (a, b) in [(&dxa, &dxb), (&daa, &dab)] {
            assert_eq!(a.dims(), b.dims());
            let scale = b.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(scale > 1e-3, "the check needs a gradient that is not ~0");
            assert!(max_abs_diff(a, b) < 1e-5 * scale, "{a} {b}");
        }
        Ok(())
    }

    /// A scale of the wrong width is refused, naming both shapes.
    #[test]
    fn refuses_a_scale_of_another_width() -> Result<()> {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::ones((2, 8), DType::F32, &dev)?)?;
        let a = Tensor::ones(6, DType::F32, &dev)?;
        let err = rms_norm(x.as_tensor(), &a, 1e-6).unwrap_err().to_string();
        assert!(err.contains("[6]") && err.contains("[2, 8]"), "{err}");
        Ok(())
    }
}
