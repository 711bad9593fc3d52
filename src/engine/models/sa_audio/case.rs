//! Runs one golden parity case (`/work/shared/goldens` layout) for the audio components:
//! `sa_audio_vae_decode`, `sa_audio_vae_encode` and `audio_resample`.

use std::collections::HashMap;
use std::path::Path;

use candle::{DType, Result, Tensor};
use candle_core as candle;

use super::autoencoder::{AudioAutoencoder, CHECKPOINT_PREFIX};
use super::config::Config;
use super::resample::{resample_audio_sinc, TIME_STRETCHING};
use crate::engine::golden::GoldenCase;

pub const COMPONENTS: [&str; 3] = [
    "sa_audio_vae_decode",
    "sa_audio_vae_encode",
    "audio_resample",
];

fn load_autoencoder(case: &GoldenCase) -> Result<AudioAutoencoder> {
    let full: serde_json::Value = case.config("/config/model_config.json")?;
    let cfg = Config::from_model_config_value(&full)?;
    AudioAutoencoder::new(&cfg, case.var_builder()?.pp(CHECKPOINT_PREFIX))
}

/// Reads `dir/case.json`, `weights.safetensors` and `inputs.safetensors`, runs the component
/// on CPU in float32 and returns every tensor named in `expected.safetensors`, in its dtype.
pub fn run_golden_case(dir: &Path) -> Result<Vec<(String, Tensor)>> {
    let case = GoldenCase::open(dir, &COMPONENTS)?;
    let inputs = case.tensors("inputs.safetensors")?;
    let mut got: HashMap<String, Tensor> = HashMap::new();
    match case.component() {
        "sa_audio_vae_decode" => {
            let model = load_autoencoder(&case)?;
            let latents = inputs.get("latents")?.to_dtype(DType::F32)?;
            got.insert("waveform".into(), model.decode(&latents)?);
        }
        "sa_audio_vae_encode" => {
            let model = load_autoencoder(&case)?;
            let waveform = inputs.get("waveform")?.to_dtype(DType::F32)?;
            let noise = inputs.get("noise")?.to_dtype(DType::F32)?;
            let enc = model.encode_with_noise(&waveform, &noise)?;
            got.insert("pre_bottleneck".into(), enc.pre_bottleneck);
            got.insert("mean".into(), enc.mean);
            if let Some(stdev) = enc.stdev {
                got.insert("stdev".into(), stdev);
            }
            got.insert("latents".into(), enc.latents);
        }
        "audio_resample" => {
            let ts = case
                .json
                .pointer("/config/time_stretching_value")
                .and_then(|v| v.as_f64())
                .unwrap_or(TIME_STRETCHING);
            let audio = inputs.get("audio")?;
            got.insert("audio_resampled".into(), resample_audio_sinc(audio, ts)?);
        }
        other => candle::bail!(
            "not an audio case: component '{other}' in {}",
            dir.display()
        ),
    }

    case.select(got, "expected.safetensors")
}
