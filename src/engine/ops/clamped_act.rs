//! MagiHuman's clamped activations, `swiglu7` and `gelu7`, as one op each on f32 CPU tensors.
//!
//! As candle composites `swiglu7` records eight ops on the MLP's widest tensor (a strided
//! split, the clamps, `sigmoid`, three products) and `gelu7` four; each costs a pass forward,
//! more backward, and a zeroed buffer plus an add in candle's gradient store. Here the forward
//! is one pass and the backward another, recomputing the sigmoid from the input:
//! with `c = min(x, limit)`, `s = sigmoid(alpha * c)` and `a = c * s`,
//! `da/dx = (s + alpha * c * s * (1 - s)) * [x <= limit]`. Other devices and dtypes keep the
//! composite (`dit.rs` reads these only through [`swiglu_clamped`] and [`gelu_clamped`]).

use candle::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Result, Shape, Tensor};
use candle_core as candle;
use rayon::prelude::*;

/// Values handed to one rayon task.
const CHUNK: usize = 4096;

/// `min(x, limit) * sigmoid(alpha * min(x, limit))`, no lower clamp (`gelu7` at limit 7,
/// alpha 1.702).
pub fn gelu_clamped(x: &Tensor, limit: f32, alpha: f32) -> Result<Tensor> {
    apply(
        x,
        ClampedAct {
            glu: false,
            limit,
            alpha,
        },
    )
}

/// The gated form on interleaved columns of the last dim (even: gate, odd: linear):
/// `gelu_clamped(gate) * (clamp(linear, -limit, limit) + 1)`; the last dim halves
/// (`swiglu7` at limit 7, alpha 1.702).
pub fn swiglu_clamped(x: &Tensor, limit: f32, alpha: f32) -> Result<Tensor> {
    let width = x.dims().last().copied().unwrap_or(0);
    if width % 2 != 0 {
        candle::bail!("swiglu: the last dim ({width}) must be even: gate and linear interleaved")
    }
    apply(
        x,
        ClampedAct {
            glu: true,
            limit,
            alpha,
        },
    )
}

/// The fused op on f32 CPU tensors, candle's composite elsewhere.
fn apply(x: &Tensor, op: ClampedAct) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 && x.rank() > 0 {
        x.contiguous()?.apply_op1(op)
    } else {
        composite(x, op)
    }
}

/// The activation as candle ops (each recorded for the backward).
fn composite(x: &Tensor, op: ClampedAct) -> Result<Tensor> {
    let act = |g: &Tensor| -> Result<Tensor> {
        let c = g.minimum(op.limit as f64)?;
        c.mul(&candle_nn::ops::sigmoid(&(&c * op.alpha as f64)?)?)
    };
    if !op.glu {
        return act(x);
    }
    let mut pairs = x.dims().to_vec();
    let width = pairs.pop().unwrap_or(0);
    pairs.extend([width / 2, 2]);
    let x = x.reshape(pairs)?;
    let last = x.rank() - 1;
    let gate = x.narrow(last, 0, 1)?.squeeze(last)?;
    let lin = x.narrow(last, 1, 1)?.squeeze(last)?;
    act(&gate)?.mul(&(lin.clamp(-op.limit, op.limit)? + 1.0)?)
}

#[derive(Clone, Copy)]
struct ClampedAct {
    /// Gated (pairs in, one out) or plain.
    glu: bool,
    limit: f32,
    alpha: f32,
}

impl ClampedAct {
    /// `(a, da/dx)` of the gate's activation at `x`.
    #[inline]
    fn act(self, x: f32) -> (f32, f32) {
        let c = x.min(self.limit);
        let s = 1.0 / (1.0 + (-self.alpha * c).exp());
        let pass = if x <= self.limit { 1.0 } else { 0.0 };
        (c * s, pass * (s + self.alpha * c * s * (1.0 - s)))
    }

    /// `(clamp(x) + 1, d/dx)` of the linear half.
    #[inline]
    fn lin(self, x: f32) -> (f32, f32) {
        let inside = x >= -self.limit && x <= self.limit;
        (
            x.clamp(-self.limit, self.limit) + 1.0,
            if inside { 1.0 } else { 0.0 },
        )
    }
}

impl CustomOp1 for ClampedAct {
    fn name(&self) -> &'static str {
        if self.glu {
            "swiglu-clamped"
        } else {
            "gelu-clamped"
        }
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = super::cpu_f32(self.name(), s, l, "input")?;
        let op = *self;
        if !op.glu {
            let mut out = vec![0f32; x.len()];
            out.par_chunks_mut(CHUNK)
                .zip(x.par_chunks(CHUNK))
                .for_each(|(o, x)| o.iter_mut().zip(x).for_each(|(o, &x)| *o = op.act(x).0));
            return Ok((CpuStorage::F32(out), l.shape().clone()));
        }
        let mut out = vec![0f32; x.len() / 2];
        out.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(2 * CHUNK))
            .for_each(|(o, x)| {
                for (o, p) in o.iter_mut().zip(x.chunks_exact(2)) {
                    *o = op.act(p[0]).0 * op.lin(p[1]).0;
                }
            });
        let mut dims = l.dims().to_vec();
        if let Some(last) = dims.last_mut() {
            *last /= 2;
        }
        Ok((CpuStorage::F32(out), Shape::from(dims)))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> Result<Option<Tensor>> {
        let grad = grad_res.contiguous()?;
        Ok(Some(
            arg.contiguous()?
                .apply_op2_no_bwd(&grad, &ClampedActBackward(*self))?,
        ))
    }
}

/// `(x, dy) -> dx`, recomputing the activation's derivative from `x`.
struct ClampedActBackward(ClampedAct);

impl CustomOp2 for ClampedActBackward {
    fn name(&self) -> &'static str {
        "clamped-act-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let op = self.0;
        let x = super::cpu_f32(op.name(), s1, l1, "the input")?;
        let dy = super::cpu_f32(op.name(), s2, l2, "the output's gradient")?;
        let per = if op.glu { 2 } else { 1 };
        if dy.len() * per != x.len() {
            candle::bail!(
                "{} backward: input {:?} and gradient {:?}",
                op.name(),
                l1.dims(),
                l2.dims()
            )
        }
        let mut dx = vec![0f32; x.len()];
        dx.par_chunks_mut(per * CHUNK)
            .zip(x.par_chunks(per * CHUNK).zip(dy.par_chunks(CHUNK)))
            .for_each(|(dx, (x, dy))| {
                if op.glu {
                    for ((d, p), &g) in dx.chunks_exact_mut(2).zip(x.chunks_exact(2)).zip(dy) {
                        let (a, da) = op.act(p[0]);
                        let (b, db) = op.lin(p[1]);
                        d[0] = g * b * da;
                        d[1] = g * a * db;
                    }
                } else {
                    for ((d, &x), &g) in dx.iter_mut().zip(x).zip(dy) {
                        *d = g * op.act(x).1;
                    }
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

    const LIMIT: f32 = 7.0;
    const ALPHA: f32 = 1.702;

    /// Forward and gradient equal the composite's, with values past both clamps.
    #[test]
    fn match_the_composites_forward_and_backward() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 5.0, (37, 2 * 53), &dev)?;
        for glu in [true, false] {
            let width = if glu { 53 } else { 2 * 53 };
            let w = Tensor::randn(0f32, 1.0, (37, width), &dev)?;
            let loss = |y: &Tensor| (y * &w)?.sqr()?.sum_all();
            let a = Var::from_tensor(&x)?;
            let ya = if glu {
                swiglu_clamped(a.as_tensor(), LIMIT, ALPHA)?
            } else {
                gelu_clamped(a.as_tensor(), LIMIT, ALPHA)?
            };
            let ga = loss(&ya)?.backward()?;
            let b = Var::from_tensor(&x)?;
            let op = ClampedAct {
                glu,
                limit: LIMIT,
                alpha: ALPHA,
            };
            let yb = composite(b.as_tensor(), op)?;
            let gb = loss(&yb)?.backward()?;

            assert_eq!(ya.dims(), yb.dims());
            assert!(max_abs_diff(&ya, &yb) < 1e-5, "glu {glu}");
            let (ga, gb) = (
                ga.get(a.as_tensor()).unwrap(),
                gb.get(b.as_tensor()).unwrap(),
            );
            let scale = gb.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(scale > 1e-3, "the check needs a gradient that is not ~0");
            assert!(max_abs_diff(ga, gb) < 1e-5 * scale, "glu {glu}");
            // Values past the clamps pass no gradient.
            let past = x.gt(LIMIT as f64)?.to_dtype(DType::F32)?;
            assert!(past.sum_all()?.to_scalar::<f32>()? > 0.0);
            let leaked = (ga.abs()? * past)?.max_all()?.to_scalar::<f32>()?;
            assert_eq!(leaked, 0.0, "glu {glu}");
        }
        Ok(())
    }

    /// An odd width is refused with its size, not split wrong.
    #[test]
    fn refuses_an_odd_gated_width() {
        let x = Tensor::zeros((2, 5), DType::F32, &Device::Cpu).unwrap();
        let err = swiglu_clamped(&x, LIMIT, ALPHA).unwrap_err().to_string();
        assert!(err.contains("(5) must be even"), "{err}");
    }
}
