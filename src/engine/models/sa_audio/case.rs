//! Runs one golden parity case (`/work/shared/goldens` layout) for the audio components:
//! `sa_audio_vae_decode`, `sa_audio_vae_encode` and `audio_resample`.

use std::collections::HashMap;
use std::path::Path;

use candle::{DType, Device, Result, Tensor};
use candle_core as candle;
use candle_nn::VarBuilder;

use super::autoencoder::{AudioAutoencoder, CHECKPOINT_PREFIX};
use super::config::Config;
use super::resample::{resample_audio_sinc, TIME_STRETCHING};

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| candle::Error::Msg(format!("{}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| candle::Error::Msg(format!("{}: {e}", path.display())))
}

fn input<'a>(inputs: &'a HashMap<String, Tensor>, name: &str) -> Result<&'a Tensor> {
    inputs
        .get(name)
        .ok_or_else(|| candle::Error::Msg(format!("inputs.safetensors has no '{name}'")))
}

fn load_autoencoder(
    dir: &Path,
    case: &serde_json::Value,
    dev: &Device,
) -> Result<AudioAutoencoder> {
    let Some(full) = case.pointer("/config/model_config.json") else {
        candle::bail!("case.json has no config.\"model_config.json\"")
    };
    let cfg = Config::from_model_config_value(full)?;
    let weights = candle::safetensors::load(dir.join("weights.safetensors"), dev)?;
    let vb = VarBuilder::from_tensors(weights, DType::F32, dev);
    AudioAutoencoder::new(&cfg, vb.pp(CHECKPOINT_PREFIX))
}

/// Reads `dir/case.json`, `weights.safetensors` and `inputs.safetensors`, runs the component
/// on CPU in float32 and returns every tensor named in `expected.safetensors`, in its dtype.
pub fn run_golden_case(dir: &Path) -> Result<Vec<(String, Tensor)>> {
    let dev = Device::Cpu;
    let case = read_json(&dir.join("case.json"))?;
    let component = case
        .get("component")
        .and_then(|c| c.as_str())
        .unwrap_or_default()
        .to_string();
    let inputs = candle::safetensors::load(dir.join("inputs.safetensors"), &dev)?;
    let expected = candle::safetensors::load(dir.join("expected.safetensors"), &dev)?;

    let mut got: HashMap<&str, Tensor> = HashMap::new();
    match component.as_str() {
        "sa_audio_vae_decode" => {
            let model = load_autoencoder(dir, &case, &dev)?;
            let latents = input(&inputs, "latents")?.to_dtype(DType::F32)?;
            got.insert("waveform", model.decode(&latents)?);
        }
        "sa_audio_vae_encode" => {
            let model = load_autoencoder(dir, &case, &dev)?;
            let waveform = input(&inputs, "waveform")?.to_dtype(DType::F32)?;
            let noise = input(&inputs, "noise")?.to_dtype(DType::F32)?;
            let enc = model.encode_with_noise(&waveform, &noise)?;
            got.insert("pre_bottleneck", enc.pre_bottleneck);
            got.insert("mean", enc.mean);
            if let Some(stdev) = enc.stdev {
                got.insert("stdev", stdev);
            }
            got.insert("latents", enc.latents);
        }
        "audio_resample" => {
            let ts = case
                .pointer("/config/time_stretching_value")
                .and_then(|v| v.as_f64())
                .unwrap_or(TIME_STRETCHING);
            let audio = input(&inputs, "audio")?;
            got.insert("audio_resampled", resample_audio_sinc(audio, ts)?);
        }
        other => candle::bail!(
            "not an audio case: component '{other}' in {}",
            dir.display()
        ),
    }

    let mut names: Vec<&String> = expected.keys().collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let Some(t) = got.get(name.as_str()) else {
                candle::bail!("{component}: no output for expected tensor '{name}'")
            };
            Ok((name.clone(), t.to_dtype(expected[name].dtype())?))
        })
        .collect()
}
