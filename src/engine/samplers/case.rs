//! Golden parity runner for the `flow_unipc` case: the scheduler alone, under a model output
//! fixed by the inputs (`v_k = a[k]*x_k + b[k]`), for each schedule in `params.schedules`.

use std::path::Path;

use candle_core as candle;

use candle::{bail, DType, Device, Result, Tensor};

use super::FlowUniPcScheduler;
use crate::engine::golden::GoldenCase;

/// Runs DIR (component `flow_unipc`) on CPU in f32: timesteps (i64), sigmas and the `step` and
/// `step_ddim` trajectories of every schedule.
pub fn run_golden_case(dir: &Path) -> Result<Vec<(String, Tensor)>> {
    let case = GoldenCase::open(dir, &["flow_unipc"])?;
    let Some(schedules) = case.json["params"]["schedules"].as_array() else {
        bail!(
            "{}: params.schedules is missing",
            dir.join("case.json").display()
        )
    };
    let inputs = case.tensors("inputs.safetensors")?;
    let file = "inputs.safetensors";
    let mut out = Vec::new();
    for sched in schedules {
        let (Some(name), Some(n), Some(shift)) = (
            sched["name"].as_str(),
            sched["num_inference_steps"].as_u64(),
            sched["shift"].as_f64(),
        ) else {
            bail!(
                "{}: a schedule lacks name, num_inference_steps or shift",
                dir.join("case.json").display()
            )
        };
        let n = n as usize;
        let x_init = inputs
            .get(&format!("x_init_{name}"))?
            .to_dtype(DType::F32)?;
        let a = inputs
            .get(&format!("a_{name}"))?
            .to_dtype(DType::F32)?
            .to_vec1::<f32>()?;
        let b = inputs.get(&format!("b_{name}"))?.to_dtype(DType::F32)?;
        let noise = inputs.get(&format!("noise_{name}"))?.to_dtype(DType::F32)?;
        if a.len() < n || b.dim(0)? < n || noise.dim(0)? < n {
            bail!("{file}: schedule {name} has fewer than {n} entries in a/b/noise")
        }
        let velocity =
            |k: usize, x: &Tensor| -> Result<Tensor> { x.affine(a[k] as f64, 0.0)? + b.get(k)? };

        let mut sched = FlowUniPcScheduler::new(n, shift)?;
        let timesteps = sched.timesteps().to_vec();
        let sigmas: Vec<f32> = sched.sigmas().iter().map(|s| *s as f32).collect();

        let mut x = x_init.clone();
        let mut unipc = Vec::with_capacity(n);
        for (k, t) in timesteps.iter().enumerate() {
            let v = velocity(k, &x)?;
            x = sched.step(&v, *t, &x)?;
            unipc.push(x.clone());
        }

        let mut x = x_init;
        let mut ddim = Vec::with_capacity(n);
        for k in 0..n {
            let v = velocity(k, &x)?;
            x = sched.step_ddim(&v, k, &x, &noise.get(k)?)?;
            ddim.push(x.clone());
        }

        out.push((
            format!("timesteps_{name}"),
            Tensor::new(timesteps.as_slice(), &Device::Cpu)?,
        ));
        out.push((
            format!("sigmas_{name}"),
            Tensor::new(sigmas.as_slice(), &Device::Cpu)?,
        ));
        out.push((format!("x_unipc_{name}"), Tensor::stack(&unipc, 0)?));
        out.push((format!("x_ddim_{name}"), Tensor::stack(&ddim, 0)?));
    }
    Ok(out)
}
