//! Parity of the Wan2.2 VAE port against the reference goldens (tests/fixtures, copied from
//! shared/goldens): every expected tensor of the decode and encode cases within the case
//! tolerance.

use candle::{DType, Device};
use candle_core as candle;
use happyhorse::engine::models::wan22_vae::run_golden_case;

mod common;
use common::{assert_all_close, case_json, compare, fixture, load_tensors, tolerance};

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

/// Decode time and peak RSS at the released widths (c_dim 160, dec_dim 256) with random
/// weights, on CPU in f32. Defaults to a 256p (256×448) latent of 2 frames; set
/// WAN22_BENCH_T=31 for the full 5 s clip (121 frames). Run alone, in release:
/// `cargo test --release --test wan22_vae bench -- --ignored --nocapture`.
#[test]
#[ignore]
fn bench_decode_256p() {
    use happyhorse::engine::models::wan22_vae::{bench_decode, Config};
    let env = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let (t, h, w) = (
        env("WAN22_BENCH_T", 2),
        env("WAN22_BENCH_H", 16),
        env("WAN22_BENCH_W", 28),
    );
    let r = bench_decode(
        &Config::wan22_ti2v_5b(),
        (t, h, w),
        DType::F32,
        &Device::Cpu,
    )
    .unwrap();
    eprintln!(
        "latent {:?} -> video {:?}: {:.1} s, per latent frame {:?} s, peak RSS {:.2} GiB",
        r.latent_dims,
        r.video_dims,
        r.decode_s,
        r.per_latent_frame_s
            .iter()
            .map(|s| (s * 10.0).round() / 10.0)
            .collect::<Vec<_>>(),
        r.peak_rss_bytes.unwrap_or(0) as f64 / (1u64 << 30) as f64
    );
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
