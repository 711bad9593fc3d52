//! Configuration of the Stable Audio Open "Oobleck" autoencoder.
//!
//! Port of the config handling in `inference/model/sa_audio/sa_audio_module.py` and
//! `inference/model/sa_audio/sa_audio_model.py` (GAIR-NLP/daVinci-MagiHuman @ 209209b).
//! Field defaults are the Python constructor defaults, so a `model_config.json` that leaves a
//! field out builds the same network as the reference.

use candle_core as candle;
use serde::Deserialize;

/// `OobleckEncoder` constructor arguments (`encoder.config`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct EncoderConfig {
    #[serde(default = "default_io_channels")]
    pub in_channels: usize,
    #[serde(default = "default_channels")]
    pub channels: usize,
    /// Output width of the encoder: mean and scale stacked, so twice the VAE latent size.
    #[serde(default = "default_latent_dim")]
    pub latent_dim: usize,
    #[serde(default = "default_c_mults")]
    pub c_mults: Vec<usize>,
    #[serde(default = "default_strides")]
    pub strides: Vec<usize>,
    #[serde(default)]
    pub use_snake: bool,
    #[serde(default)]
    pub antialias_activation: bool,
}

/// `OobleckDecoder` constructor arguments (`decoder.config`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DecoderConfig {
    #[serde(default = "default_io_channels")]
    pub out_channels: usize,
    #[serde(default = "default_channels")]
    pub channels: usize,
    #[serde(default = "default_latent_dim")]
    pub latent_dim: usize,
    #[serde(default = "default_c_mults")]
    pub c_mults: Vec<usize>,
    #[serde(default = "default_strides")]
    pub strides: Vec<usize>,
    #[serde(default)]
    pub use_snake: bool,
    #[serde(default)]
    pub antialias_activation: bool,
    #[serde(default)]
    pub use_nearest_upsample: bool,
    #[serde(default = "default_true")]
    pub final_tanh: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct EncoderSection {
    #[serde(rename = "type")]
    pub kind: String,
    pub config: EncoderConfig,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DecoderSection {
    #[serde(rename = "type")]
    pub kind: String,
    pub config: DecoderConfig,
    /// Sits next to `config`, not inside it: the reference reads `decoder.soft_clip`.
    #[serde(default)]
    pub soft_clip: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BottleneckSection {
    #[serde(rename = "type")]
    pub kind: String,
}

/// The autoencoder dict (`model.pretransform.config` of a Stable Audio `model_config.json`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    pub encoder: EncoderSection,
    pub decoder: DecoderSection,
    #[serde(default)]
    pub bottleneck: Option<BottleneckSection>,
    pub latent_dim: usize,
    pub downsampling_ratio: usize,
    pub io_channels: usize,
    /// Not part of the autoencoder dict: copied from the top level of `model_config.json`.
    #[serde(default = "default_sample_rate")]
    pub sample_rate: usize,
}

fn default_io_channels() -> usize {
    2
}
fn default_channels() -> usize {
    128
}
fn default_latent_dim() -> usize {
    32
}
fn default_c_mults() -> Vec<usize> {
    vec![1, 2, 4, 8]
}
fn default_strides() -> Vec<usize> {
    vec![2, 4, 8, 8]
}
fn default_true() -> bool {
    true
}
fn default_sample_rate() -> usize {
    44100
}

impl Config {
    /// The VAE of stabilityai/stable-audio-open-1.0 `model_config.json`, as daVinci-MagiHuman
    /// loads it (`SAAudioFeatureExtractor._get_vae_only` @ 209209b).
    pub fn stable_audio_open_1_0() -> Self {
        let c_mults = vec![1, 2, 4, 8, 16];
        let strides = vec![2, 4, 4, 8, 8];
        Self {
            encoder: EncoderSection {
                kind: "oobleck".into(),
                config: EncoderConfig {
                    in_channels: 2,
                    channels: 128,
                    latent_dim: 128,
                    c_mults: c_mults.clone(),
                    strides: strides.clone(),
                    use_snake: true,
                    antialias_activation: false,
                },
            },
            decoder: DecoderSection {
                kind: "oobleck".into(),
                config: DecoderConfig {
                    out_channels: 2,
                    channels: 128,
                    latent_dim: 64,
                    c_mults,
                    strides,
                    use_snake: true,
                    antialias_activation: false,
                    use_nearest_upsample: false,
                    final_tanh: false,
                },
                soft_clip: false,
            },
            bottleneck: Some(BottleneckSection { kind: "vae".into() }),
            latent_dim: 64,
            downsampling_ratio: 2048,
            io_channels: 2,
            sample_rate: 44100,
        }
    }

    /// Parses a full Stable Audio `model_config.json` (VAE under `model.pretransform.config`).
    pub fn from_model_config_json(text: &str) -> candle::Result<Self> {
        let full: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| candle::Error::Msg(format!("model_config.json: {e}")))?;
        Self::from_model_config_value(&full)
    }

    pub fn from_model_config_value(full: &serde_json::Value) -> candle::Result<Self> {
        let Some(vae) = full.pointer("/model/pretransform/config") else {
            candle::bail!("model_config.json: no model.pretransform.config section")
        };
        let mut cfg: Self = serde_json::from_value(vae.clone())
            .map_err(|e| candle::Error::Msg(format!("model_config.json pretransform: {e}")))?;
        if let Some(sr) = full.get("sample_rate").and_then(|v| v.as_u64()) {
            cfg.sample_rate = sr as usize;
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Rejects the options the reference itself refuses, plus shape mismatches that would
    /// otherwise surface as an obscure conv error deep inside the network.
    pub fn validate(&self) -> candle::Result<()> {
        if self.encoder.kind != "oobleck" || self.decoder.kind != "oobleck" {
            candle::bail!(
                "only oobleck encoder/decoder are supported, got {}/{}",
                self.encoder.kind,
                self.decoder.kind
            )
        }
        if let Some(b) = &self.bottleneck {
            if b.kind != "vae" {
                candle::bail!("only the 'vae' bottleneck is supported, got {}", b.kind)
            }
        }
        let (e, d) = (&self.encoder.config, &self.decoder.config);
        if e.antialias_activation || d.antialias_activation {
            candle::bail!("antialias activation is not supported (nor by the reference)")
        }
        if d.use_nearest_upsample {
            candle::bail!("use_nearest_upsample is not supported by this port")
        }
        if e.strides.len() != e.c_mults.len() || d.strides.len() != d.c_mults.len() {
            candle::bail!(
                "strides and c_mults differ in length: encoder {:?}/{:?}, decoder {:?}/{:?}",
                e.strides,
                e.c_mults,
                d.strides,
                d.c_mults
            )
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preset_matches_json() {
        let json = r#"{"sample_rate": 44100, "model": {"pretransform": {"type": "autoencoder",
          "iterate_batch": true, "config": {
            "encoder": {"type": "oobleck", "requires_grad": false, "config": {"in_channels": 2,
              "channels": 128, "c_mults": [1, 2, 4, 8, 16], "strides": [2, 4, 4, 8, 8],
              "latent_dim": 128, "use_snake": true}},
            "decoder": {"type": "oobleck", "config": {"out_channels": 2, "channels": 128,
              "c_mults": [1, 2, 4, 8, 16], "strides": [2, 4, 4, 8, 8], "latent_dim": 64,
              "use_snake": true, "final_tanh": false}},
            "bottleneck": {"type": "vae"}, "latent_dim": 64, "downsampling_ratio": 2048,
            "io_channels": 2}}}}"#;
        let cfg = Config::from_model_config_json(json).unwrap();
        assert_eq!(cfg, Config::stable_audio_open_1_0());
    }
}
