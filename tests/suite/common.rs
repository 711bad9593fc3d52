//! Shared by the parity tests: fixture paths, case tolerances, element-wise comparison.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

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

/// The tensors of `file` (an `expected.safetensors`), by name.
pub fn load_tensors(file: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(file, &Device::Cpu).unwrap()
}

/// Checks every produced tensor against its expected value at the tolerance `tol(name)` gives,
/// printing each one's error; fails naming every tensor out of tolerance (or not expected),
/// and when the two sets differ in size.
pub fn assert_all_close(
    what: &str,
    got: &[(String, Tensor)],
    exp: &HashMap<String, Tensor>,
    tol: impl Fn(&str) -> (f64, f64),
) {
    assert_eq!(
        got.len(),
        exp.len(),
        "{what}: one output per expected tensor"
    );
    let mut failures = Vec::new();
    for (name, g) in got {
        let Some(e) = exp.get(name) else {
            failures.push(format!("{name} (not expected)"));
            continue;
        };
        let (atol, rtol) = tol(name);
        let (max_abs, worst) = compare(g, e, atol, rtol);
        eprintln!(
            "{what}/{name}: max abs err {max_abs:.3e} ({:.1}% of tolerance atol {atol} rtol {rtol})",
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

/// Asserts `|got-exp| <= atol + rtol*|exp|` everywhere; returns the max abs error.
pub fn assert_close(name: &str, got: &Tensor, exp: &Tensor, atol: f64, rtol: f64) -> f64 {
    assert_eq!(got.dims(), exp.dims(), "{name}: shape");
    let g = got.to_dtype(DType::F64).unwrap().flatten_all().unwrap();
    let e = exp.to_dtype(DType::F64).unwrap().flatten_all().unwrap();
    let (g, e) = (g.to_vec1::<f64>().unwrap(), e.to_vec1::<f64>().unwrap());
    let mut max_err = 0f64;
    for (i, (g, e)) in g.iter().zip(e.iter()).enumerate() {
        let err = (g - e).abs();
        max_err = max_err.max(err);
        assert!(
            err <= atol + rtol * e.abs(),
            "{name}[{i}]: got {g}, expected {e} (err {err})"
        );
    }
    max_err
}
