//! Configuration of the Wan2.2 VAE and its latent normalisation.
//!
//! Port of the `WanVAE_` / `Wan2_2_VAE` constructor arguments in
//! `inference/model/vae2_2/vae2_2_module.py` of GAIR-NLP/daVinci-MagiHuman at commit 209209b.

use serde::{Deserialize, Serialize};

/// Architecture of `WanVAE_`. Missing fields take the released `Wan2.2_VAE.pth` values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Latent channels (the encoder emits twice as many: mean and log-variance).
    pub z_dim: usize,
    /// Encoder base width (`dim` of `WanVAE_`, `c_dim` of `Wan2_2_VAE`).
    pub c_dim: usize,
    /// Decoder base width. `Wan2_2_VAE` never passes it, so the released model uses the
    /// `WanVAE_` default of 256 while the encoder is 160 wide.
    pub dec_dim: usize,
    /// Width multipliers in encoder order; the decoder walks them backwards.
    pub dim_mult: Vec<usize>,
    pub num_res_blocks: usize,
    /// Per down block, in encoder order; the decoder uses the reverse for its upsamplers.
    pub temperal_downsample: Vec<bool>,
}

impl Default for Config {
    fn default() -> Self {
        Self::wan22_ti2v_5b()
    }
}

impl Config {
    /// The released `Wan2.2_VAE.pth` (Wan-AI/Wan2.2-TI2V-5B), as `Wan2_2_VAE` builds it.
    pub fn wan22_ti2v_5b() -> Self {
        Self {
            z_dim: 48,
            c_dim: 160,
            dec_dim: 256,
            dim_mult: vec![1, 2, 4, 4],
            num_res_blocks: 2,
            temperal_downsample: vec![false, true, true],
        }
    }

    /// The decoder's temporal upsampling flags (`temperal_downsample[::-1]`).
    pub fn temperal_upsample(&self) -> Vec<bool> {
        self.temperal_downsample.iter().rev().copied().collect()
    }
}

/// Per-channel latent mean of `Wan2_2_VAE` (hard-coded in the reference).
pub const LATENT_MEAN: [f32; 48] = [
    -0.2289, -0.0052, -0.1323, -0.2339, -0.2799, 0.0174, 0.1838, 0.1557, -0.1382, 0.0542, 0.2813,
    0.0891, 0.1570, -0.0098, 0.0375, -0.1825, -0.2246, -0.1207, -0.0698, 0.5109, 0.2665, -0.2108,
    -0.2158, 0.2502, -0.2055, -0.0322, 0.1109, 0.1567, -0.0729, 0.0899, -0.2799, -0.1230, -0.0313,
    -0.1649, 0.0117, 0.0723, -0.2839, -0.2083, -0.0520, 0.3748, 0.0152, 0.1957, 0.1433, -0.2944,
    0.3573, -0.0548, -0.1681, -0.0667,
];

/// Per-channel latent standard deviation of `Wan2_2_VAE` (hard-coded in the reference).
pub const LATENT_STD: [f32; 48] = [
    0.4765, 1.0364, 0.4514, 1.1677, 0.5313, 0.4990, 0.4818, 0.5013, 0.8158, 1.0344, 0.5894, 1.0901,
    0.6885, 0.6165, 0.8454, 0.4978, 0.5759, 0.3523, 0.7135, 0.6804, 0.5833, 1.4146, 0.8986, 0.5659,
    0.7069, 0.5338, 0.4889, 0.4917, 0.4069, 0.4999, 0.6866, 0.4093, 0.5709, 0.6065, 0.6415, 0.4944,
    0.5726, 1.2042, 0.5458, 1.6887, 0.3971, 1.0600, 0.3943, 0.5537, 0.5444, 0.4089, 0.7468, 0.7744,
];
