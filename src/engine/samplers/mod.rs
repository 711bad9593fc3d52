//! Noise schedulers.
//!
//! [`flow_unipc::FlowUniPcScheduler`] is the scheduler of daVinci-MagiHuman (UniPC for flow
//! matching, plus the distilled model's `step_ddim`). [`run_golden_case`] replays a
//! `flow_unipc` golden case folder, for tests and `happyhorse debug case`.

pub mod flow_unipc;

use std::collections::HashMap;
use std::path::Path;

use candle_core as candle;

use candle::{bail, DType, Device, Result, Tensor};

pub use flow_unipc::FlowUniPcScheduler;

/// Reads `case.json` of a golden case folder.
pub(crate) fn read_case_json(dir: &Path) -> Result<serde_json::Value> {
    let path = dir.join("case.json");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        candle::Error::Msg(format!(
            "cannot read {}: {e}; pass a golden case folder that holds case.json",
            path.display()
        ))
    })?;
    serde_json::from_str(&text).map_err(|e| {
        candle::Error::Msg(format!(
            "{} is not valid JSON ({e}); regenerate the golden case",
            path.display()
        ))
    })
}

/// Loads `<dir>/<name>` (a safetensors file) on the CPU.
pub(crate) fn read_case_tensors(dir: &Path, name: &str) -> Result<HashMap<String, Tensor>> {
    let path = dir.join(name);
    candle::safetensors::load(&path, &Device::Cpu).map_err(|e| {
        candle::Error::Msg(format!(
            "cannot load {}: {e}; the golden case folder is incomplete",
            path.display()
        ))
    })
}

pub(crate) fn take<'a>(
    map: &'a HashMap<String, Tensor>,
    name: &str,
    file: &str,
) -> Result<&'a Tensor> {
    map.get(name).ok_or_else(|| {
        candle::Error::Msg(format!(
            "tensor `{name}` is missing from {file}; the golden case does not match this port"
        ))
    })
}

/// Runs a `flow_unipc` golden case folder on the CPU in f32 and returns every tensor
/// `expected.safetensors` names: `timesteps_<s>` (i64), `sigmas_<s>`, `x_unipc_<s>` and
/// `x_ddim_<s>` for each schedule `<s>` of `case.json`.
pub fn run_golden_case(dir: &Path) -> Result<Vec<(String, Tensor)>> {
    let case = read_case_json(dir)?;
    let component = case["component"].as_str().unwrap_or_default();
    if component != "flow_unipc" {
        bail!(
            "{}: component is `{component}`, expected `flow_unipc`",
            dir.join("case.json").display()
        )
    }
    let Some(schedules) = case["params"]["schedules"].as_array() else {
        bail!(
            "{}: params.schedules is missing",
            dir.join("case.json").display()
        )
    };
    let inputs = read_case_tensors(dir, "inputs.safetensors")?;
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
        let x_init = take(&inputs, &format!("x_init_{name}"), file)?.to_dtype(DType::F32)?;
        let a = take(&inputs, &format!("a_{name}"), file)?
            .to_dtype(DType::F32)?
            .to_vec1::<f32>()?;
        let b = take(&inputs, &format!("b_{name}"), file)?.to_dtype(DType::F32)?;
        let noise = take(&inputs, &format!("noise_{name}"), file)?.to_dtype(DType::F32)?;
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
