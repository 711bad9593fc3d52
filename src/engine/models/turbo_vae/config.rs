//! Configuration of TurboVAED.
//!
//! Port of the `TurboVAED.__init__` arguments in `inference/model/turbo_vaed/turbo_vaed_module.py`
//! of GAIR-NLP/daVinci-MagiHuman at commit 209209b. Field names are the reference's own, so the
//! released `TurboV3-*.json` (and a golden `case.json` `config`) deserialise as they are. A
//! missing field takes the reference constructor default, as diffusers' `from_config` does.

use candle_core as candle;
use serde::{Deserialize, Serialize};

/// The 48-channel Wan2.2 latent space is the only one the hard-coded mean/std cover.
pub const LATENT_CHANNELS: usize = 48;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Unused by the decoder; kept for compatibility with the reference JSON.
    pub in_channels: usize,
    pub out_channels: usize,
    pub latent_channels: usize,
    /// Encoder order: the decoder walks it reversed.
    pub decoder_block_out_channels: Vec<usize>,
    /// Encoder order, one more entry than the channels: the last one is the mid block's.
    pub decoder_layers_per_block: Vec<usize>,
    pub decoder_spatio_temporal_scaling: Vec<bool>,
    /// Where set, the block's upsampler is spatial only (no time doubling).
    pub decoder_spatio_only: Vec<bool>,
    pub decoder_is_dw_conv: Vec<bool>,
    pub decoder_dw_kernel_size: usize,
    pub patch_size: usize,
    pub patch_size_t: usize,
    pub resnet_norm_eps: f64,
    pub scaling_factor: f64,
    pub decoder_causal: bool,
    /// Latent frames of the first sliding window (without its right context frame).
    pub first_chunk_size: usize,
    /// Latent frames each later window adds.
    pub step_size: usize,
    pub spatial_compression_ratio: usize,
    pub temporal_compression_ratio: usize,
    pub use_unpatchify: bool,
}

impl Default for Config {
    /// The reference constructor defaults (not a released model: use a preset or the JSON).
    fn default() -> Self {
        Self {
            in_channels: 3,
            out_channels: 3,
            latent_channels: 128,
            decoder_block_out_channels: vec![128, 256, 512, 512],
            decoder_layers_per_block: vec![4, 3, 3, 3, 4],
            decoder_spatio_temporal_scaling: vec![true, true, true, false],
            decoder_spatio_only: vec![false, false, false, false],
            decoder_is_dw_conv: vec![false; 5],
            decoder_dw_kernel_size: 3,
            patch_size: 4,
            patch_size_t: 1,
            resnet_norm_eps: 1e-6,
            scaling_factor: 1.0,
            decoder_causal: false,
            first_chunk_size: 3,
            step_size: 5,
            spatial_compression_ratio: 16,
            temporal_compression_ratio: 4,
            use_unpatchify: false,
        }
    }
}

impl Config {
    /// `TurboV3-Wan22-TinyShallow_7_7.json`, the decoder shipped with daVinci-MagiHuman. The JSON
    /// itself was not available to this port: the values are the ones third-party ports publish
    /// (see `shared/goldens/README.md`, section 1).
    pub fn turbo_v3_wan22_tiny_shallow_7_7() -> Self {
        Self {
            latent_channels: LATENT_CHANNELS,
            decoder_block_out_channels: vec![64, 128, 256, 512],
            decoder_layers_per_block: vec![2, 2, 2, 3, 3],
            decoder_spatio_temporal_scaling: vec![false, true, true, true],
            decoder_spatio_only: vec![false, true, false, false],
            decoder_dw_kernel_size: 5,
            patch_size: 2,
            first_chunk_size: 7,
            step_size: 7,
            use_unpatchify: true,
            ..Self::default()
        }
    }

    pub fn from_json_str(s: &str) -> candle::Result<Self> {
        serde_json::from_str(s).map_err(|e| candle::Error::msg(format!("TurboVAED config: {e}")))
    }

    /// Rejects what this port does not implement, with the offending values.
    pub fn validate(&self) -> candle::Result<()> {
        let n = self.decoder_block_out_channels.len();
        if self.latent_channels != LATENT_CHANNELS {
            candle::bail!(
                "TurboVAED: latent_channels is {}, but the de-normalisation constants cover {LATENT_CHANNELS}",
                self.latent_channels
            )
        }
        if n == 0
            || self.decoder_layers_per_block.len() != n + 1
            || self.decoder_spatio_temporal_scaling.len() != n
            || self.decoder_spatio_only.len() != n
        {
            candle::bail!(
                "TurboVAED: inconsistent block lists: {n} channels, {} layers (want {}), {} scaling, {} spatio_only",
                self.decoder_layers_per_block.len(),
                n + 1,
                self.decoder_spatio_temporal_scaling.len(),
                self.decoder_spatio_only.len()
            )
        }
        if self.decoder_causal {
            candle::bail!("TurboVAED: decoder_causal=true is rejected by the reference too")
        }
        if self.decoder_is_dw_conv.iter().any(|&b| b) {
            candle::bail!(
                "TurboVAED: depthwise-separable convs (decoder_is_dw_conv) are not ported"
            )
        }
        if !self.use_unpatchify || self.patch_size != 2 {
            candle::bail!(
                "TurboVAED: only use_unpatchify=true with patch_size 2 is ported (got {}, {})",
                self.use_unpatchify,
                self.patch_size
            )
        }
        if self.first_chunk_size == 0 || self.step_size == 0 {
            candle::bail!(
                "TurboVAED: first_chunk_size ({}) and step_size ({}) must be positive",
                self.first_chunk_size,
                self.step_size
            )
        }
        Ok(())
    }

    /// Pixel frames one latent frame stands for, at the window overlaps.
    pub(crate) fn overlap_pixel_frames(&self) -> usize {
        self.temporal_compression_ratio
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preset_is_valid_and_json_roundtrips() {
        let c = Config::turbo_v3_wan22_tiny_shallow_7_7();
        c.validate().unwrap();
        let s = serde_json::to_string(&c).unwrap();
        assert_eq!(Config::from_json_str(&s).unwrap(), c);
    }
}
