//! Shared by the parity tests: fixture paths, case tolerances, element-wise comparison.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use candle_core::{DType, Tensor};

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn case_json(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("case.json")).unwrap()).unwrap()
}

/// (atol, rtol) for tensor `name`: `tolerance_per_tensor` when it names it, else `tolerance`.
pub fn tolerance(case: &serde_json::Value, name: &str) -> (f64, f64) {
    let t = case["tolerance_per_tensor"]
        .get(name)
        .unwrap_or(&case["tolerance"]);
    (t["atol"].as_f64().unwrap(), t["rtol"].as_f64().unwrap())
}

/// The case-wide (atol, rtol) of the case folder `dir`.
pub fn case_tolerance(dir: &Path) -> (f64, f64) {
    tolerance(&case_json(dir), "")
}

pub fn to_f64(t: &Tensor) -> Vec<f64> {
    t.flatten_all()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// Returns (max abs error, worst ratio err / (atol + rtol*|exp|)); ≤ 1 means within tolerance.
pub fn compare(got: &Tensor, exp: &Tensor, atol: f64, rtol: f64) -> (f64, f64) {
    assert_eq!(got.dims(), exp.dims(), "shape");
    assert_eq!(got.dtype(), exp.dtype(), "dtype");
    let mut max_abs = 0f64;
    let mut worst = 0f64;
    for (g, e) in to_f64(got).iter().zip(&to_f64(exp)) {
        let err = (g - e).abs();
        max_abs = max_abs.max(err);
        worst = worst.max(err / (atol + rtol * e.abs()));
    }
    (max_abs, worst)
}
