//! Parity of the Wan2.2 VAE port against the reference goldens (tests/fixtures, copied from
//! shared/goldens): every expected tensor of the decode and encode cases within the case
//! tolerance. Decode and encode timings at the released widths are
//! `happyhorse bench codec --stage wan22-decode,wan22-encode`.

use candle::{DType, Device};
use candle_core as candle;
use happyhorse::engine::models::wan22_vae::run_golden_case;

use crate::common::{assert_all_close, case_json, compare, fixture, load_tensors, tolerance};

fn check_case(name: &str) {
    let dir = fixture(name);
    let exp = load_tensors(&dir.join("expected.safetensors"));
    let got = run_golden_case(&dir).unwrap();
    let case = case_json(&dir);
    assert_all_close(name, &got, &exp, |n| tolerance(&case, n));
}

#[test]
fn decode_matches_reference() {
    check_case("wan22_vae_decode");
}

#[test]
fn encode_matches_reference() {
    check_case("wan22_vae_encode");
}

/// Causality, as the pipeline relies on it: an image encodes to the first latent frame of its
/// video, and frames past the last 1+4k are dropped, so a prefix encodes to a latent prefix.
#[test]
fn encode_is_causal_and_drops_trailing_frames() {
    use candle_nn::VarBuilder;
    use happyhorse::engine::models::wan22_vae::{Config, Wan22VaeEncoder};
    let dir = fixture("wan22_vae_encode");
    let dev = Device::Cpu;
    let weights = candle::safetensors::load(dir.join("weights.safetensors"), &dev).unwrap();
    let cfg = Config {
        c_dim: 8,
        dec_dim: 8,
        ..Config::wan22_ti2v_5b()
    };
    let vae =
        Wan22VaeEncoder::new(&cfg, VarBuilder::from_tensors(weights, DType::F32, &dev)).unwrap();
    let inputs = candle::safetensors::load(dir.join("inputs.safetensors"), &dev).unwrap();
    let video = &inputs["video"];
    let full = vae.encode(video).unwrap();
    for (frames, latents) in [(1, 1), (4, 1), (5, 2), (8, 2)] {
        let part = vae.encode(&video.narrow(2, 0, frames).unwrap()).unwrap();
        let want = full.narrow(2, 0, latents).unwrap();
        let (max_abs, _) = compare(&part, &want, 1e-5, 0.0);
        assert!(max_abs <= 1e-5, "{frames} frames: max |err| {max_abs:.3e}");
    }
}

/// The Wan2.2 causal conv's arithmetic before and after it moved onto `TapConv`: one candle
/// conv2d per temporal tap (summed) against time taps stacked on channels with one GEMM per
/// spatial tap. A released-width layer of the 1/4-resolution decoder stage (256 channels,
/// 3x3x3) on 4 frames of a 256p clip, side by side in one run.
/// `cargo test --test suite wan22_vae::bench_conv -- --ignored --nocapture`.
#[test]
#[ignore = "benchmark"]
fn bench_conv_tap_gemm_vs_conv2d_per_tap() {
    use happyhorse::engine::ops::TapConv;
    use std::time::Instant;
    let dev = Device::Cpu;
    let (c, t, h, w) = (256usize, 4usize, 64usize, 112usize);
    let x = candle::Tensor::randn(0f32, 1.0, (1, t + 2, c, h, w), &dev).unwrap();
    let wt = candle::Tensor::randn(0f32, 0.02, (c, c, 3, 3, 3), &dev).unwrap();
    let bias = candle::Tensor::zeros(c, DType::F32, &dev).unwrap();
    let tap = TapConv::from_weights(wt.clone(), bias).unwrap();
    let per_tap: Vec<_> = (0..3)
        .map(|k| {
            wt.narrow(2, k, 1)
                .unwrap()
                .squeeze(2)
                .unwrap()
                .contiguous()
                .unwrap()
        })
        .collect();
    let conv2d = || {
        let mut acc: Option<candle::Tensor> = None;
        for (k, kern) in per_tap.iter().enumerate() {
            let f = x
                .narrow(1, k, t)
                .unwrap()
                .contiguous()
                .unwrap()
                .reshape((t, c, h, w))
                .unwrap();
            let y = f.conv2d(kern, 1, 1, 1, 1).unwrap();
            acc = Some(match acc {
                None => y,
                Some(a) => (a + y).unwrap(),
            });
        }
        acc.unwrap()
    };
    let gemm = || tap.forward_frames(&x, t, |i, k| Some(i + k)).unwrap();
    let a = conv2d();
    let b = gemm().reshape((t, c, h, w)).unwrap();
    let err = (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(err < 1e-3, "the two agree: {err}");
    let time = |f: &dyn Fn() -> candle::Tensor| {
        (0..3)
            .map(|_| {
                let s = Instant::now();
                let _ = f();
                s.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min)
    };
    let (t_conv2d, t_gemm) = (time(&|| conv2d()), time(&|| gemm()));
    let gflop = 2.0 * (c * c * 27 * t * h * w) as f64 / 1e9;
    eprintln!(
        "3x3x3 conv {c}->{c} on {t}x{h}x{w} ({gflop:.1} GFLOP): conv2d per tap {t_conv2d:.2} s, \
         TapConv {t_gemm:.2} s, ratio {:.2}x",
        t_conv2d / t_gemm
    );
}
