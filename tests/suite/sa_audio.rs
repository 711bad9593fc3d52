//! Golden parity for the audio VAE (decode, encode) and the final resampler. Their timings at
//! the released widths are `happyhorse bench codec --stage audio-decode,audio-encode`.

use candle_core::{DType, Device};
use happyhorse::engine::models::sa_audio::run_golden_case;

use crate::common::{assert_all_close, fixture, tolerance};

fn check_case(name: &str) {
    let dir = fixture(name);
    let case: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("case.json")).unwrap()).unwrap();
    let expected =
        candle_core::safetensors::load(dir.join("expected.safetensors"), &Device::Cpu).unwrap();
    let got = run_golden_case(&dir).unwrap();
    assert_all_close(name, &got, &expected, |n| tolerance(&case, n));
}

#[test]
fn sa_audio_vae_decode() {
    check_case("sa_audio_vae_decode");
}

#[test]
fn sa_audio_vae_encode() {
    check_case("sa_audio_vae_encode");
}

#[test]
fn audio_resample() {
    check_case("audio_resample");
}

/// The pipeline decodes an unbatched `[64, N]` latent; the reference returns `[1, 2, L]`.
#[test]
fn unbatched_decode_matches_batched() {
    use happyhorse::engine::models::sa_audio::{AudioAutoencoder, Config, CHECKPOINT_PREFIX};
    let dir = fixture("sa_audio_vae_decode");
    let case: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("case.json")).unwrap()).unwrap();
    let cfg = Config::from_model_config_value(&case["config"]["model_config.json"]).unwrap();
    let dev = Device::Cpu;
    let weights = candle_core::safetensors::load(dir.join("weights.safetensors"), &dev).unwrap();
    let vb = candle_nn::VarBuilder::from_tensors(weights, DType::F32, &dev);
    let model = AudioAutoencoder::new(&cfg, vb.pp(CHECKPOINT_PREFIX)).unwrap();
    let inputs = candle_core::safetensors::load(dir.join("inputs.safetensors"), &dev).unwrap();
    let latents = &inputs["latents"];
    let batched = model.decode(latents).unwrap();
    let unbatched = model.decode(&latents.squeeze(0).unwrap()).unwrap();
    assert_eq!(unbatched.dims(), batched.dims());
    let diff: f32 = (batched - unbatched)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar()
        .unwrap();
    assert_eq!(diff, 0.0);
    assert_eq!(model.hop_length(), 32);
}
