//! AdamW whose moments can be saved and restored, so a resumed run continues the same
//! trajectory (candle's own optimizer keeps them private).

use std::collections::HashMap;
use std::path::Path;

use candle::{backprop::GradStore, Result, Tensor, Var};
use candle_core as candle;

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
            let g = (g * scales[group])?;
            *m = ((&*m * p.beta1)? + (&g * (1.0 - p.beta1))?)?.detach();
            *v = ((&*v * p.beta2)? + (g.sqr()? * (1.0 - p.beta2))?)?.detach();
            let m_hat = (&*m / bc1)?;
            let v_hat = (&*v / bc2)?;
            let upd = (m_hat / (v_hat.sqrt()? + p.eps)?)?;
            let lr = lr(name);
            let theta = var.as_tensor();
            let next = ((theta * (1.0 - lr * p.weight_decay))? - (upd * lr)?)?;
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

#[cfg(test)]
mod tests {
    use super::*;
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
