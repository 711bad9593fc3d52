//! Exponential moving average of the trained weights: what the recipe exports for the DiT
//! stage. A batch of two clips gives noisy gradients, and a diffusion model samples from
//! the average of its last few hundred steps much better than from the last one.

use std::collections::HashMap;
use std::path::Path;

use candle::{Result, Tensor, Var};
use candle_core as candle;

pub struct Ema {
    decay: f64,
    /// `(name, live variable, average)`.
    vars: Vec<(String, Var, Tensor)>,
}

impl Ema {
    /// Starts the average at the variables' current values.
    pub fn new(vars: Vec<(String, Var)>, decay: f64) -> Result<Self> {
        let vars = vars
            .into_iter()
            .map(|(n, v)| {
                let avg = v.as_tensor().detach().copy()?;
                Ok((n, v, avg))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { decay, vars })
    }

    /// Folds the live values in after optimizer step `step` (0-based). The decay ramps up
    /// as `(1 + step) / (10 + step)`, so the first steps' weights do not linger.
    pub fn update(&mut self, step: usize) -> Result<()> {
        let d = self.decay.min((1 + step) as f64 / (10 + step) as f64);
        for (_, var, avg) in &mut self.vars {
            *avg = ((&*avg * d)? + (var.as_tensor().detach() * (1.0 - d))?)?;
        }
        Ok(())
    }

    /// The averages by variable name.
    pub fn tensors(&self) -> HashMap<String, Tensor> {
        self.vars
            .iter()
            .map(|(n, _, t)| (n.clone(), t.clone()))
            .collect()
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        candle::safetensors::save(&self.tensors(), path)
    }

    pub fn load(&mut self, path: &Path) -> Result<()> {
        let map = candle::safetensors::load(path, &candle::Device::Cpu)?;
        for (n, var, avg) in &mut self.vars {
            let t = map
                .get(n.as_str())
                .ok_or_else(|| candle::Error::Msg(format!("{}: no `{n}`", path.display())))?;
            *avg = t.to_device(var.device())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle::Device;

    #[test]
    fn the_average_trails_the_live_value() {
        let v = Var::new(&[0f32], &Device::Cpu).unwrap();
        let mut ema = Ema::new(vec![("w".into(), v.clone())], 0.5).unwrap();
        v.set(&Tensor::new(&[1f32], &Device::Cpu).unwrap()).unwrap();
        // Step 0: the ramp gives d = 0.1 (under 0.5): 0.1 * 0 + 0.9 * 1.
        ema.update(0).unwrap();
        let got = ema.tensors()["w"].to_vec1::<f32>().unwrap()[0];
        assert!((got - 0.9).abs() < 1e-6, "{got}");
        // Step 100: d = 0.5: halfway to the live value 3.
        v.set(&Tensor::new(&[3f32], &Device::Cpu).unwrap()).unwrap();
        ema.update(100).unwrap();
        let got = ema.tensors()["w"].to_vec1::<f32>().unwrap()[0];
        assert!((got - 1.95).abs() < 1e-6, "{got}");
        assert_eq!(
            v.as_tensor().to_vec1::<f32>().unwrap()[0],
            3.0,
            "live value untouched"
        );
    }
}
