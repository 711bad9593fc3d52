//! Parity of the MagiHuman DiT port against the reference goldens (tests/fixtures, copied from
//! shared/goldens): every expected tensor within the case tolerance, plus the debug
//! intermediates to localise a divergence.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle::{DType, Device, Tensor};
use candle_core as candle;
use happyhorse::engine::models::magihuman::{
    run_golden_case, run_golden_case_debug, DataProxyConfig, ModelConfig,
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn tolerance(dir: &Path) -> (f64, f64) {
    let case: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("case.json")).unwrap()).unwrap();
    let tol = &case["tolerance"];
    (tol["atol"].as_f64().unwrap(), tol["rtol"].as_f64().unwrap())
}

/// Returns (max abs error, worst ratio err / (atol + rtol*|exp|)).
fn compare(got: &Tensor, exp: &Tensor, atol: f64, rtol: f64) -> (f64, f64) {
    assert_eq!(got.dims(), exp.dims(), "shape");
    assert_eq!(got.dtype(), exp.dtype(), "dtype");
    let g: Vec<f64> = got
        .flatten_all()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1()
        .unwrap();
    let e: Vec<f64> = exp
        .flatten_all()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1()
        .unwrap();
    let mut max_abs = 0f64;
    let mut worst = 0f64;
    for (g, e) in g.iter().zip(&e) {
        let err = (g - e).abs();
        max_abs = max_abs.max(err);
        worst = worst.max(err / (atol + rtol * e.abs()));
    }
    (max_abs, worst)
}

fn check(results: Vec<(String, Tensor)>, reference: &Path, atol: f64, rtol: f64, what: &str) {
    let exp: HashMap<String, Tensor> = candle::safetensors::load(reference, &Device::Cpu).unwrap();
    assert_eq!(
        results.len(),
        exp.len(),
        "{what}: every reference tensor is produced"
    );
    let mut failures = Vec::new();
    for (name, got) in &results {
        let (max_abs, worst) = compare(got, &exp[name], atol, rtol);
        eprintln!(
            "{what} {name}: max abs err {max_abs:.3e} ({:.1}% of tolerance)",
            worst * 100.0
        );
        if worst > 1.0 {
            failures.push(name.clone());
        }
    }
    assert!(
        failures.is_empty(),
        "{what}: out of tolerance: {failures:?}"
    );
}

fn run_case(name: &str) {
    let dir = fixture(name);
    let (atol, rtol) = tolerance(&dir);
    let debug = run_golden_case_debug(&dir).unwrap();
    // Intermediates share the case tolerance; checked first so a failure names the stage.
    check(
        debug,
        &dir.join("debug.safetensors"),
        atol,
        rtol,
        &format!("{name} debug"),
    );
    let results = run_golden_case(&dir).unwrap();
    check(results, &dir.join("expected.safetensors"), atol, rtol, name);
}

#[test]
fn magihuman_dit_golden() {
    run_case("magihuman_dit");
}

#[test]
fn magihuman_dit_local_golden() {
    run_case("magihuman_dit_local");
}

#[test]
fn presets_and_case_configs() {
    for name in ["base", "distill", "sr_540p", "sr_1080p"] {
        let cfg = ModelConfig::preset(name).unwrap();
        cfg.validate().unwrap();
        let json = serde_json::to_string(&cfg).unwrap();
        assert_eq!(serde_json::from_str::<ModelConfig>(&json).unwrap(), cfg);
    }
    let base = ModelConfig::base();
    assert_eq!((base.heads_q(), base.heads_kv()), (40, 8));
    assert_eq!(base.num_experts(0), 3);
    assert_eq!(base.num_experts(4), 1);
    assert_eq!(base.num_experts(39), 3);
    // int(5120*4*2/3)//4*4 and 4*5120.
    assert_eq!(base.intermediate_size(10), 13652);
    assert_eq!(base.up_gate_size(10), 2 * 13652);
    assert_eq!(base.intermediate_size(2), 20480);
    assert_eq!(base.up_gate_size(2), 20480);
    assert!(ModelConfig::sr_1080p().is_local_attn(35));
    assert!(!ModelConfig::sr_1080p().is_local_attn(3));
    assert_eq!(
        DataProxyConfig::sr().coords_style,
        happyhorse::engine::models::magihuman::CoordsStyle::V1
    );

    // An empty object is the released base; unknown fields are tolerated.
    let cfg: ModelConfig = serde_json::from_str(r#"{"something_new": 1}"#).unwrap();
    assert_eq!(cfg, ModelConfig::base());

    let case: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("magihuman_dit_local").join("case.json")).unwrap(),
    )
    .unwrap();
    let cfg: ModelConfig = serde_json::from_value(case["config"]["model"].clone()).unwrap();
    let proxy: DataProxyConfig =
        serde_json::from_value(case["config"]["data_proxy"].clone()).unwrap();
    assert_eq!((cfg.hidden_size, cfg.heads_q(), cfg.heads_kv()), (48, 3, 3));
    assert_eq!(cfg.intermediate_size(2), 128);
    assert_eq!(cfg.intermediate_size(0), 192);
    assert!(cfg.has_post_norm(4) && cfg.is_local_attn(2));
    assert_eq!(proxy.frame_receptive_field, 2);
}
