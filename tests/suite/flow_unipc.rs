//! Parity of the FlowUniPC scheduler with the reference (golden case `flow_unipc`).

use candle_core as candle;

use candle::{DType, Device, Tensor};
use happyhorse::engine::samplers::{run_golden_case, FlowUniPcScheduler};

use crate::common::{assert_close, fixture};

#[test]
fn flow_unipc_golden_case() {
    let dir = fixture("flow_unipc");
    let expected =
        candle::safetensors::load(dir.join("expected.safetensors"), &Device::Cpu).unwrap();
    let got = run_golden_case(&dir).unwrap();
    assert_eq!(
        got.len(),
        expected.len(),
        "every expected tensor is produced"
    );
    for (name, t) in &got {
        let exp = &expected[name];
        if name.starts_with("timesteps_") {
            assert_eq!(t.dtype(), DType::I64);
            assert_eq!(
                t.to_vec1::<i64>().unwrap(),
                exp.to_vec1::<i64>().unwrap(),
                "{name}"
            );
            continue;
        }
        let err = assert_close(name, t, exp, 2.5e-5, 1e-4);
        eprintln!("{name}: max abs err {err:.3e}");
    }
}

#[test]
fn schedule_quirks() {
    // 666.0000086 truncates to 666 only with the f32 sigma_max.
    let s = FlowUniPcScheduler::new(6, 1.0).unwrap();
    assert_eq!(s.timesteps()[2], 666);
    assert_eq!(*s.sigmas().last().unwrap(), 0.0);
    // Shift 5: t <= 500 only at the end of a schedule.
    let s = FlowUniPcScheduler::new(6, 5.0).unwrap();
    assert_eq!(*s.timesteps().last().unwrap(), 499);
    let s = FlowUniPcScheduler::new(8, 5.0).unwrap();
    assert_eq!(*s.timesteps().last().unwrap(), 416);
}

#[test]
fn last_step_returns_x0_prediction() {
    let dev = Device::Cpu;
    let mut s = FlowUniPcScheduler::new(1, 5.0).unwrap();
    let x = Tensor::new(&[1f32, 2., 3.], &dev).unwrap();
    let v = Tensor::new(&[0.5f32, -1., 0.], &dev).unwrap();
    let t = s.timesteps()[0];
    let sigma = s.sigmas()[0];
    let out = s.step(&v, t, &x).unwrap();
    let exp = (&x - v.affine(sigma, 0.).unwrap()).unwrap();
    assert_close("x0", &out, &exp, 1e-6, 0.);
    assert!(
        s.step(&v, t, &out).is_err(),
        "stepping past the schedule fails"
    );
}
