//! Exponential moving average of the trained weights: what the recipe exports for the DiT
//! stage. A batch of two clips gives noisy gradients, and a diffusion model samples from
//! the average of its last few hundred steps much better than from the last one.

use std::collections::HashMap;
use std::path::Path;

use candle::{Result, Tensor, Var};
use candle_core as candle;
use rayon::prelude::*;

use super::adamw::cpu_f32;

/// Values one rayon task averages.
const CHUNK: usize = 1 << 14;

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
            let live = var.as_tensor().detach();
            *avg = match fused(avg, &live, d)? {
                Some(next) => next,
                None => composite(avg, &live, d)?,
            };
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

/// `avg * d + live * (1 - d)` as candle ops: the reference of [`fused`] and the path on
/// other devices.
fn composite(avg: &Tensor, live: &Tensor, d: f64) -> Result<Tensor> {
    (avg * d)? + (live * (1.0 - d))?
}

/// [`composite`] in one pass over contiguous f32 CPU tensors (`None` for others), rounded
/// as candle rounds each op (`affine` is `x * a + 0` in f32), so it gives the same bits.
fn fused(avg: &Tensor, live: &Tensor, d: f64) -> Result<Option<Tensor>> {
    let (as_, al) = avg.storage_and_layout();
    let (ls, ll) = live.storage_and_layout();
    let (Some(a), Some(x)) = (cpu_f32(&as_, al), cpu_f32(&ls, ll)) else {
        return Ok(None);
    };
    if a.len() != x.len() {
        return Ok(None);
    }
    let (d, e) = (d as f32, (1.0 - d) as f32);
    let mut out = vec![0f32; a.len()];
    out.par_chunks_mut(CHUNK)
        .zip(a.par_chunks(CHUNK).zip(x.par_chunks(CHUNK)))
        .for_each(|(o, (a, x))| {
            for ((o, a), x) in o.iter_mut().zip(a).zip(x) {
                *o = (a * d + 0.0) + (x * e + 0.0);
            }
        });
    Tensor::from_vec(out, avg.shape(), &candle::Device::Cpu).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ops::f32_bits;
    use candle::Device;

    /// The fused average gives the composite's bits, over decays of the ramp and the
    /// recipe's, on a length that is not a multiple of the chunk.
    #[test]
    fn the_fused_average_is_the_composite_bit_for_bit() -> Result<()> {
        let dev = Device::Cpu;
        let n = CHUNK + 77;
        let vals = |k: u32| -> Vec<f32> {
            (0..n as u32)
                .map(|i| ((i.wrapping_mul(2654435761) ^ k) % 20001) as f32 * 1e-3 - 10.0)
                .collect()
        };
        let mut a = Tensor::from_vec(vals(1), n, &dev)?;
        let mut c = a.clone();
        for (k, d) in [(2u32, 0.1f64), (3, 0.5), (4, 0.999), (5, 0.9989)] {
            let live = Tensor::from_vec(vals(k), n, &dev)?;
            a = fused(&a, &live, d)?.expect("f32 CPU contiguous");
            c = composite(&c, &live, d)?;
            assert_eq!(f32_bits(&a), f32_bits(&c), "decay {d}");
        }
        Ok(())
    }

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
