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
    /// Global gradient-norm clip; 0 disables it.
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
            state,
            t: 0,
            params,
        })
    }

    /// One update with the sum of `grads` (one store per clip, say, added in the order
    /// given), each variable at the learning rate `lr(name)`; returns the gradient norm
    /// before clipping.
    pub fn step(&mut self, grads: &[GradStore], lr: &dyn Fn(&str) -> f64) -> Result<f64> {
        let p = self.params;
        let mut summed = Vec::with_capacity(self.state.len());
        let mut sq = 0f64;
        for (_, var, _, _) in &self.state {
            let mut total: Option<Tensor> = None;
            for g in grads.iter().filter_map(|s| s.get(var.as_tensor())) {
                total = Some(match total {
                    None => g.detach(),
                    Some(t) => (t + g.detach())?,
                });
            }
            if let Some(g) = &total {
                sq += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
            }
            summed.push(total);
        }
        let norm = sq.sqrt();
        let scale = if p.clip_norm > 0.0 && norm > p.clip_norm {
            p.clip_norm / norm
        } else {
            1.0
        };
        self.t += 1;
        let bc1 = 1.0 - p.beta1.powi(self.t as i32);
        let bc2 = 1.0 - p.beta2.powi(self.t as i32);
        for ((name, var, m, v), g) in self.state.iter_mut().zip(summed) {
            // Detached (above): gradients carry the forward graph, and the moments outlive
            // the step.
            let Some(g) = g else {
                continue;
            };
            let g = (g * scale)?;
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
        Ok(norm)
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

    pub fn load(&mut self, path: &Path) -> Result<()> {
        let map = candle::safetensors::load(path, &candle::Device::Cpu)?;
        let get = |k: &str| {
            map.get(k)
                .cloned()
                .ok_or_else(|| candle::Error::Msg(format!("{}: no `{k}`", path.display())))
        };
        for (n, var, m, v) in self.state.iter_mut() {
            *m = get(&format!("m.{n}"))?.to_device(var.device())?;
            *v = get(&format!("v.{n}"))?.to_device(var.device())?;
        }
        self.t = get("t")?.to_vec1::<f32>()?.first().copied().unwrap_or(0.0) as u64;
        Ok(())
    }
}
