//! AdamW whose moments can be saved and restored, so a resumed run continues the same
//! trajectory (candle's own optimizer keeps them private).

use std::collections::HashMap;
use std::path::Path;

use candle::{backprop::GradStore, Result, Tensor, Var};
use candle_core as candle;
use rayon::prelude::*;

/// Values of a variable one rayon task updates.
const CHUNK: usize = 1 << 14;

#[derive(Debug, Clone, Copy)]
pub struct AdamWParams {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Gradient-norm clip, applied to each clip group's norm on its own (see
    /// [`AdamW::with_clip_groups`]); 0 disables it.
    pub clip_norm: f64,
}

impl Default for AdamWParams {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
            clip_norm: 1.0,
        }
    }
}

pub struct AdamW {
    /// `(name, var, m, v)`, sorted by name so updates run in a fixed order.
    state: Vec<(String, Var, Tensor, Tensor)>,
    /// Clip group of each entry of `state`.
    groups: Vec<usize>,
    t: u64,
    pub params: AdamWParams,
}

impl AdamW {
    pub fn new(mut vars: Vec<(String, Var)>, params: AdamWParams) -> Result<Self> {
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let state = vars
            .into_iter()
            .map(|(n, v)| {
                let z = v.as_tensor().zeros_like()?;
                Ok((n, v, z.clone(), z))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            groups: vec![0; state.len()],
            state,
            t: 0,
            params,
        })
    }

    /// Clips the gradients of the variables `group(name)` puts together by their own norm,
    /// so that models trained side by side (say two codecs with losses of different scales)
    /// do not scale each other's steps. By default all variables form one group.
    pub fn with_clip_groups(mut self, group: impl Fn(&str) -> usize) -> Self {
        self.groups = self.state.iter().map(|(n, ..)| group(n)).collect();
        self
    }

    /// One update with the sum of `grads` (one store per clip, say, added in the order
    /// given), each variable at the learning rate `lr(name)`; returns the gradient norm
    /// (of all groups together) before clipping.
    pub fn step(&mut self, grads: &[GradStore], lr: &dyn Fn(&str) -> f64) -> Result<f64> {
        let p = self.params;
        let mut summed = Vec::with_capacity(self.state.len());
        let n_groups = self.groups.iter().max().map_or(0, |g| g + 1);
        let mut sq = vec![0f64; n_groups];
        for ((_, var, _, _), &group) in self.state.iter().zip(&self.groups) {
            let mut total: Option<Tensor> = None;
            for g in grads.iter().filter_map(|s| s.get(var.as_tensor())) {
                total = Some(match total {
                    None => g.detach(),
                    Some(t) => (t + g.detach())?,
                });
            }
            if let Some(g) = &total {
                sq[group] += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
            }
            summed.push(total);
        }
        let scales: Vec<f64> = sq
            .iter()
            .map(|s| {
                let norm = s.sqrt();
                if p.clip_norm > 0.0 && norm > p.clip_norm {
                    p.clip_norm / norm
                } else {
                    1.0
                }
            })
            .collect();
        self.t += 1;
        let bc1 = 1.0 - p.beta1.powi(self.t as i32);
        let bc2 = 1.0 - p.beta2.powi(self.t as i32);
        for (((name, var, m, v), g), &group) in self.state.iter_mut().zip(summed).zip(&self.groups)
        {
            // Detached (above): gradients carry the forward graph, and the moments outlive
            // the step.
            let Some(g) = g else {
                continue;
            };
            let lr = lr(name);
            let k = Update {
                scale: scales[group],
                beta1: p.beta1,
                beta2: p.beta2,
                inv_bc1: 1.0 / bc1,
                inv_bc2: 1.0 / bc2,
                eps: p.eps,
                decay: 1.0 - lr * p.weight_decay,
                lr,
            };
            let (next, m_next, v_next) = match fused(var.as_tensor(), &g, m, v, &k)? {
                Some(out) => out,
                None => composite(var.as_tensor(), &g, m, v, &k)?,
            };
            *m = m_next;
            *v = v_next;
            var.set(&next)?;
        }
        Ok(sq.iter().sum::<f64>().sqrt())
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let mut map: HashMap<String, Tensor> = HashMap::new();
        for (n, _, m, v) in &self.state {
            map.insert(format!("m.{n}"), m.clone());
            map.insert(format!("v.{n}"), v.clone());
        }
        map.insert(
            "t".into(),
            Tensor::new(&[self.t as f32], &candle::Device::Cpu)?,
        );
        candle::safetensors::save(&map, path)
    }

    /// The moments saved by [`Self::save`]; a variable `may_lack` names that the file lacks
    /// starts from zero moments (a probe added by a later phase).
    pub fn load(&mut self, path: &Path, may_lack: &dyn Fn(&str) -> bool) -> Result<()> {
        let map = candle::safetensors::load(path, &candle::Device::Cpu)?;
        let get = |k: &str| {
            map.get(k)
                .cloned()
                .ok_or_else(|| candle::Error::Msg(format!("{}: no `{k}`", path.display())))
        };
        for (n, var, m, v) in self.state.iter_mut() {
            if may_lack(n) && !map.contains_key(&format!("m.{n}")) {
                continue;
            }
            *m = get(&format!("m.{n}"))?.to_device(var.device())?;
            *v = get(&format!("v.{n}"))?.to_device(var.device())?;
        }
        self.t = get("t")?.to_vec1::<f32>()?.first().copied().unwrap_or(0.0) as u64;
        Ok(())
    }
}

/// The values of a contiguous f32 CPU storage; `None` for any other (the fused updates'
/// cue to use candle's ops).
pub(super) fn cpu_f32<'a>(s: &'a candle::Storage, l: &candle::Layout) -> Option<&'a [f32]> {
    match s {
        candle::Storage::Cpu(candle::CpuStorage::F32(x)) => {
            l.contiguous_offsets().map(|(a, b)| &x[a..b])
        }
        _ => None,
    }
}

/// The constants of one variable's update.
#[derive(Debug, Clone, Copy)]
struct Update {
    /// The gradient clip's factor for the variable's group.
    scale: f64,
    beta1: f64,
    beta2: f64,
    /// `1 / (1 - beta^t)`: the bias corrections.
    inv_bc1: f64,
    inv_bc2: f64,
    eps: f64,
    /// `1 - lr * weight_decay`.
    decay: f64,
    lr: f64,
}

/// The update as candle ops: `(theta', m', v')`. The reference of [`fused`] and the path on
/// devices other than the CPU.
fn composite(
    theta: &Tensor,
    g: &Tensor,
    m: &Tensor,
    v: &Tensor,
    k: &Update,
) -> Result<(Tensor, Tensor, Tensor)> {
    let g = (g * k.scale)?;
    let m = ((m * k.beta1)? + (&g * (1.0 - k.beta1))?)?.detach();
    let v = ((v * k.beta2)? + (g.sqr()? * (1.0 - k.beta2))?)?.detach();
    let m_hat = (&m * k.inv_bc1)?;
    let v_hat = (&v * k.inv_bc2)?;
    let upd = (m_hat / (v_hat.sqrt()? + k.eps)?)?;
    let theta = ((theta * k.decay)? - (upd * k.lr)?)?;
    Ok((theta, m, v))
}

/// [`composite`] in one pass over contiguous f32 CPU tensors, `None` for any other. Every
/// value is rounded as candle rounds each of the composite's ops (a scalar product is
/// candle's `affine`, `x * a + 0` in f32; no fused multiply-add), so the two give the same
/// bits and a run trained either way is the same run; the composite makes about twenty
/// passes and allocations per variable.
fn fused(
    theta: &Tensor,
    g: &Tensor,
    m: &Tensor,
    v: &Tensor,
    k: &Update,
) -> Result<Option<(Tensor, Tensor, Tensor)>> {
    let (ts, tl) = theta.storage_and_layout();
    let (gs, gl) = g.storage_and_layout();
    let (ms, ml) = m.storage_and_layout();
    let (vs, vl) = v.storage_and_layout();
    let (Some(t), Some(gv), Some(mv), Some(vv)) = (
        cpu_f32(&ts, tl),
        cpu_f32(&gs, gl),
        cpu_f32(&ms, ml),
        cpu_f32(&vs, vl),
    ) else {
        return Ok(None);
    };
    let n = t.len();
    if gv.len() != n || mv.len() != n || vv.len() != n {
        return Ok(None);
    }
    // candle's `affine(mul, add)` on f32: `x * mul as f32 + add as f32`.
    let f = |x: f64| x as f32;
    let (scale, b1, omb1, b2, omb2) = (
        f(k.scale),
        f(k.beta1),
        f(1.0 - k.beta1),
        f(k.beta2),
        f(1.0 - k.beta2),
    );
    let (ibc1, ibc2, eps, decay, lr) = (f(k.inv_bc1), f(k.inv_bc2), f(k.eps), f(k.decay), f(k.lr));
    let mut out_t = vec![0f32; n];
    let mut out_m = vec![0f32; n];
    let mut out_v = vec![0f32; n];
    let each = |c: usize, (ot, (om, ov)): (&mut [f32], (&mut [f32], &mut [f32]))| {
        let i0 = c * CHUNK;
        for (j, ((ot, om), ov)) in ot.iter_mut().zip(om).zip(ov).enumerate() {
            let i = i0 + j;
            let g = gv[i] * scale + 0.0;
            let m = (mv[i] * b1 + 0.0) + (g * omb1 + 0.0);
            let v = (vv[i] * b2 + 0.0) + ((g * g) * omb2 + 0.0);
            let upd = (m * ibc1 + 0.0) / ((v * ibc2 + 0.0).sqrt() * 1.0 + eps);
            *ot = (t[i] * decay + 0.0) - (upd * lr + 0.0);
            *om = m;
            *ov = v;
        }
    };
    out_t
        .par_chunks_mut(CHUNK)
        .zip(out_m.par_chunks_mut(CHUNK).zip(out_v.par_chunks_mut(CHUNK)))
        .enumerate()
        .for_each(|(c, outs)| each(c, outs));
    let dev = candle::Device::Cpu;
    let shape = theta.shape();
    Ok(Some((
        Tensor::from_vec(out_t, shape, &dev)?,
        Tensor::from_vec(out_m, shape, &dev)?,
        Tensor::from_vec(out_v, shape, &dev)?,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ops::{f32_bits, max_abs_diff};
    use candle::Device;

    /// `b` after three steps where `a`'s gradient (if `a` is trained) swings by 500x.
    fn train_b(with_a: bool, grouped: bool) -> Result<Vec<f32>> {
        let dev = Device::Cpu;
        let a = Var::new(&[1f32, -1.0], &dev)?;
        let b = Var::new(&[0.5f32, 2.0], &dev)?;
        let mut vars = vec![("b".to_string(), b.clone())];
        if with_a {
            vars.push(("a".to_string(), a.clone()));
        }
        let mut opt = AdamW::new(vars, AdamWParams::default())?;
        if grouped {
            opt = opt.with_clip_groups(|n| usize::from(n == "a"));
        }
        for (ca, cb) in [(1000f64, 3.0f64), (10.0, 2.0), (5000.0, 4.0)] {
            let loss = ((a.as_tensor() * ca)?.sum_all()? + (b.as_tensor() * cb)?.sum_all()?)?;
            opt.step(&[loss.backward()?], &|_| 0.1)?;
        }
        b.as_tensor().to_vec1::<f32>()
    }

    /// The fused update gives the composite's bits: m, v and the weights, over steps
    /// whose bias corrections, clip scales and learning rates all differ, on values from
    /// zero to large, a length that is not a multiple of the chunk and a weight decay.
    #[test]
    fn the_fused_update_is_the_composite_bit_for_bit() -> Result<()> {
        let dev = Device::Cpu;
        let n = CHUNK + 1234;
        let seq = |seed: u32| -> Vec<f32> {
            (0..n as u32)
                .map(|i| {
                    let h = (i.wrapping_mul(2654435761) ^ seed.wrapping_mul(40503)) % 20001;
                    match i % 7 {
                        0 => 0.0,
                        1 => (h as f32 - 10000.0) * 1e-9,
                        _ => (h as f32 - 10000.0) * 1e-3,
                    }
                })
                .collect()
        };
        let mut theta = Tensor::from_vec(seq(1), n, &dev)?;
        let mut m = theta.zeros_like()?;
        let mut v = m.clone();
        let (mut theta_c, mut m_c, mut v_c) = (theta.clone(), m.clone(), v.clone());
        for t in 1..=4u32 {
            let g = Tensor::from_vec(seq(10 + t), n, &dev)?;
            let (b1, b2) = (0.9f64, 0.99f64);
            let k = Update {
                scale: [1.0, 0.37, 1.0, 0.0123][t as usize - 1],
                beta1: b1,
                beta2: b2,
                inv_bc1: 1.0 / (1.0 - b1.powi(t as i32)),
                inv_bc2: 1.0 / (1.0 - b2.powi(t as i32)),
                eps: 1e-8,
                decay: 1.0 - 3e-4 * 0.01 * t as f64,
                lr: 3e-4 * t as f64,
            };
            let f = fused(&theta, &g, &m, &v, &k)?.expect("f32 CPU contiguous");
            let c = composite(&theta_c, &g, &m_c, &v_c, &k)?;
            (theta, m, v) = f;
            (theta_c, m_c, v_c) = c;
            for (a, b) in [(&theta, &theta_c), (&m, &m_c), (&v, &v_c)] {
                assert_eq!(f32_bits(a), f32_bits(b), "step {t}");
            }
        }
        // The weights moved: the comparison was not between two copies of the start.
        let start = Tensor::from_vec(seq(1), n, &dev)?;
        assert!(max_abs_diff(&theta, &start) > 1e-4);
        Ok(())
    }

    #[test]
    fn a_clip_group_is_not_scaled_by_another_groups_gradient() -> Result<()> {
        let alone = train_b(false, false)?;
        assert_eq!(train_b(true, true)?, alone);
        // One global norm: a's swings reweight b's steps, and b ends elsewhere.
        let global = train_b(true, false)?;
        let moved = alone.iter().zip(&global).any(|(x, y)| (x - y).abs() > 1e-3);
        assert!(moved, "alone {alone:?} global {global:?}");
        Ok(())
    }
}
