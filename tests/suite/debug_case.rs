//! `happyhorse debug case DIR --out FILE` on every golden fixture: the written tensors match
//! DIR/expected.safetensors within the case's tolerance.

use std::path::Path;
use std::process::Command;

use candle_core::{DType, Device, Tensor};

use crate::common::{fixture, tolerance};

fn check(case_dir: &str) {
    let dir = fixture(case_dir);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("got.safetensors");
    let run = Command::new(env!("CARGO_BIN_EXE_happyhorse"))
        .args(["debug", "case"])
        .arg(&dir)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&run.stdout).trim(),
        out.display().to_string()
    );
    let case: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("case.json")).unwrap()).unwrap();
    let expected =
        candle_core::safetensors::load(dir.join("expected.safetensors"), &Device::Cpu).unwrap();
    let got = candle_core::safetensors::load(&out, &Device::Cpu).unwrap();
    for (name, exp) in &expected {
        let g = got
            .get(name)
            .unwrap_or_else(|| panic!("{case_dir}: `{name}` missing"));
        assert_eq!(g.dtype(), exp.dtype(), "{case_dir}/{name} dtype");
        assert_eq!(g.dims(), exp.dims(), "{case_dir}/{name} shape");
        let (atol, rtol) = tolerance(&case, name);
        let f = |t: &Tensor| {
            t.to_dtype(DType::F64)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f64>()
                .unwrap()
        };
        for (i, (a, b)) in f(g).iter().zip(f(exp)).enumerate() {
            assert!(
                (a - b).abs() <= atol + rtol * b.abs(),
                "{case_dir}/{name}[{i}]: got {a}, expected {b}"
            );
        }
    }
}

#[test]
fn magihuman_dit_cases() {
    check("magihuman_dit");
    check("magihuman_dit_local");
}

#[test]
fn magihuman_sampler_cases() {
    check("magihuman_sampler_base");
    check("magihuman_sampler_ti2v");
    check("magihuman_sampler_distill");
}

#[test]
fn scheduler_case() {
    check("flow_unipc");
}

#[test]
fn audio_codec_cases() {
    check("sa_audio_vae_decode");
    check("sa_audio_vae_encode");
    check("audio_resample");
}

#[test]
fn text_encoder_case() {
    check("t5gemma_encoder");
}

#[test]
fn video_codec_cases() {
    check("turbo_vae_decode");
    check("wan22_vae_decode");
    check("wan22_vae_encode");
}

#[test]
fn malformed_or_unknown_cases_fail_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |dir: &Path| {
        Command::new(env!("CARGO_BIN_EXE_happyhorse"))
            .args(["debug", "case"])
            .arg(dir)
            .args(["--out", "x.safetensors"])
            .current_dir(tmp.path())
            .output()
            .unwrap()
    };
    let out = run(tmp.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("case.json"));
    std::fs::write(tmp.path().join("case.json"), r#"{"component": "flux_vae"}"#).unwrap();
    let out = run(tmp.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown component `flux_vae`"));
    assert!(out.stdout.is_empty());
}
