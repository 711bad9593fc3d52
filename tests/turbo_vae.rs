//! Parity of the TurboVAED port against the reference goldens (tests/fixtures, copied from
//! shared/goldens): every expected tensor, window outputs included, within the case tolerance.
//! Plus an ignored CPU benchmark of a 256p 5 s clip at the released widths.

use candle::{DType, Device, Shape, Tensor};
use candle_core as candle;
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};
use happyhorse::engine::models::turbo_vae::{run_golden_case, Config, TurboVaed, WindowPlan};

mod common;
use common::{assert_all_close, case_json, fixture, load_tensors, tolerance};

#[test]
fn turbo_vae_decode_golden() {
    let dir = fixture("turbo_vae_decode");
    let case = case_json(&dir);
    let exp = load_tensors(&dir.join("expected.safetensors"));
    let results = run_golden_case(&dir).unwrap();
    assert_all_close("turbo_vae_decode", &results, &exp, |n| tolerance(&case, n));
}

#[test]
fn window_plan_matches_the_case() {
    let dir = fixture("turbo_vae_decode");
    let case = case_json(&dir);
    let cfg: Config = serde_json::from_value(case["config"].clone()).unwrap();
    let p = &case["params"];
    let t = p["latent_frames"].as_u64().unwrap() as usize;
    let plan = WindowPlan::new(
        t,
        cfg.first_chunk_size,
        cfg.step_size,
        cfg.temporal_compression_ratio,
    )
    .unwrap();
    assert_eq!(
        plan.pad as u64,
        p["padding_latent_frames"].as_u64().unwrap()
    );
    let windows = p["windows"].as_array().unwrap();
    assert_eq!(plan.windows.len(), windows.len());
    for (w, e) in plan.windows.iter().zip(windows) {
        let u = |v: &serde_json::Value| v.as_u64().unwrap() as usize;
        assert_eq!(w.start, u(&e["z_slice"][0]));
        assert_eq!(w.end, u(&e["z_slice"][1]));
        assert_eq!(w.is_first_chunk, e["is_first_chunk"].as_bool().unwrap());
        assert_eq!(w.trim_front, u(&e["trim_front_pixel_frames"]));
        assert_eq!(w.trim_back, u(&e["trim_back_pixel_frames"]));
    }
}

/// Random weights for any shape, scaled by fan-in so activations stay O(1).
struct RandomWeights;

impl SimpleBackend for RandomWeights {
    fn get(
        &self,
        s: Shape,
        _: &str,
        _: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle::Result<Tensor> {
        let fan_in: usize = s.dims().iter().skip(1).product::<usize>().max(1);
        Tensor::randn(0f32, (1.0 / fan_in as f64).sqrt() as f32, s, dev)?.to_dtype(dtype)
    }
    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle::Result<Tensor> {
        candle::bail!("RandomWeights: no shape for {name}")
    }
    fn contains_tensor(&self, _: &str) -> bool {
        true
    }
}

fn vm_hwm_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// 256p 5 s clip (latent [1,48,32,16,28] → 125 frames of 256×448) at the released widths, random
/// weights, CPU f32. `TURBO_BENCH_T` overrides the latent frames (e.g. 7 for one window).
#[test]
#[ignore = "benchmark: minutes on CPU; run with --ignored --nocapture"]
fn bench_decode_256p_5s() {
    let t: usize = std::env::var("TURBO_BENCH_T")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32);
    let dev = Device::Cpu;
    let cfg = Config::turbo_v3_wan22_tiny_shallow_7_7();
    let vb = VarBuilder::from_backend(Box::new(RandomWeights), DType::F32, dev.clone());
    let vae = TurboVaed::new(&cfg, vb).unwrap();
    let z = Tensor::randn(0f32, 1., (1, 48, t, 16, 28), &dev).unwrap();
    let before = vm_hwm_kib();
    let start = std::time::Instant::now();
    let mut last = start;
    let video = vae
        .decode_with(&z, |k, y| {
            let now = std::time::Instant::now();
            eprintln!("window {k}: {:?} in {:.1?}", y.dims(), now - last);
            last = now;
            Ok(())
        })
        .unwrap();
    let took = start.elapsed();
    assert_eq!(video.dims(), [1, 3, 4 * t - 3, 256, 448]);
    eprintln!(
        "decode [1,48,{t},16,28] -> {:?}: {took:.1?}; VmHWM before {:?} KiB, after {:?} KiB",
        video.dims(),
        before,
        vm_hwm_kib()
    );
}
