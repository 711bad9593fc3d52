//! TurboVAED.decode: de-normalise the Wan2.2 latent, then decode it in overlapping windows of
//! latent frames and stitch the pixel frames.
//!
//! Port of `TurboVAED` (`_sliding_window_decode`, `decode`) in
//! `inference/model/turbo_vaed/turbo_vaed_module.py` and `get_turbo_vaed` in
//! `inference/model/turbo_vaed/turbo_vaed_model.py` of GAIR-NLP/daVinci-MagiHuman at commit
//! 209209b.
//!
//! The windows are what bounds memory: only one window's activations are alive at a time, and
//! the window plan changes the output by O(1) (each window sees only its own frames plus one
//! latent frame of context per side), so it is reproduced exactly rather than tuned.

use std::path::Path;

use candle::{DType, Device, Result, Tensor};
use candle_core as candle;
use candle_nn::VarBuilder;

use super::config::{Config, LATENT_CHANNELS};
use super::decoder::Decoder;
use crate::engine::weights::{load_var_builder, LoadOptions};

/// Per-channel mean of the Wan2.2 latent, as hard-coded in `TurboVAED.__init__`.
pub const LATENT_MEAN: [f32; LATENT_CHANNELS] = [
    -0.2289, -0.0052, -0.1323, -0.2339, -0.2799, 0.0174, 0.1838, 0.1557, -0.1382, 0.0542, 0.2813,
    0.0891, 0.1570, -0.0098, 0.0375, -0.1825, -0.2246, -0.1207, -0.0698, 0.5109, 0.2665, -0.2108,
    -0.2158, 0.2502, -0.2055, -0.0322, 0.1109, 0.1567, -0.0729, 0.0899, -0.2799, -0.1230, -0.0313,
    -0.1649, 0.0117, 0.0723, -0.2839, -0.2083, -0.0520, 0.3748, 0.0152, 0.1957, 0.1433, -0.2944,
    0.3573, -0.0548, -0.1681, -0.0667,
];

/// Per-channel std of the Wan2.2 latent, as hard-coded in `TurboVAED.__init__`.
pub const LATENT_STD: [f32; LATENT_CHANNELS] = [
    0.4765, 1.0364, 0.4514, 1.1677, 0.5313, 0.4990, 0.4818, 0.5013, 0.8158, 1.0344, 0.5894, 1.0901,
    0.6885, 0.6165, 0.8454, 0.4978, 0.5759, 0.3523, 0.7135, 0.6804, 0.5833, 1.4146, 0.8986, 0.5659,
    0.7069, 0.5338, 0.4889, 0.4917, 0.4069, 0.4999, 0.6866, 0.4093, 0.5709, 0.6065, 0.6415, 0.4944,
    0.5726, 1.2042, 0.5458, 1.6887, 0.3971, 1.0600, 0.3943, 0.5537, 0.5444, 0.4089, 0.7468, 0.7744,
];

/// One decoder call of the sliding-window plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Latent frames `start..end` of the padded latent.
    pub start: usize,
    pub end: usize,
    pub is_first_chunk: bool,
    /// Pixel frames dropped from the front and the back of the decoder output.
    pub trim_front: usize,
    pub trim_back: usize,
}

/// The sliding-window plan of `_sliding_window_decode` for `t` latent frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowPlan {
    /// Copies of the last latent frame appended before decoding.
    pub pad: usize,
    pub windows: Vec<Window>,
    /// Pixel frames cut from the end of the stitched output (`overlap * pad`).
    pub trim_end: usize,
}

impl WindowPlan {
    /// `first` = first_chunk_size, `step` = step_size, `overlap` = pixel frames per latent frame
    /// at the seams (temporal_compression_ratio).
    pub fn new(t: usize, first: usize, step: usize, overlap: usize) -> Result<Self> {
        if t == 0 || first == 0 || step == 0 {
            candle::bail!("window plan: {t} latent frames, first chunk {first}, step {step}")
        }
        let pad = if t < first {
            first - t
        } else {
            (step - (t - first) % step) % step
        };
        let n = t + pad;
        let mut windows = Vec::new();
        if n == first {
            windows.push(Window {
                start: 0,
                end: n,
                is_first_chunk: true,
                trim_front: 0,
                trim_back: 0,
            });
        } else {
            // Each window carries one latent frame of context on each inner side.
            windows.push(Window {
                start: 0,
                end: first + 1,
                is_first_chunk: true,
                trim_front: 0,
                trim_back: overlap,
            });
            for i in (first..n).step_by(step) {
                let last = i + step == n;
                windows.push(Window {
                    start: i - 1,
                    end: if last { n } else { i + step + 1 },
                    is_first_chunk: false,
                    trim_front: overlap,
                    trim_back: if last { 0 } else { overlap },
                });
            }
        }
        Ok(Self {
            pad,
            windows,
            trim_end: overlap * pad,
        })
    }
}

/// TurboVAED: the fast Wan2.2-latent video decoder of daVinci-MagiHuman.
#[derive(Debug, Clone)]
pub struct TurboVaed {
    decoder: Decoder,
    cfg: Config,
    /// `[1, 48, 1, 1, 1]` f32.
    mean: Tensor,
    /// `1/std`, `[1, 48, 1, 1, 1]` f32: the reference divides by it rather than multiplying by
    /// std, and so does this port, for bit-closeness.
    inv_std: Tensor,
    dtype: DType,
}

impl TurboVaed {
    /// `vb` points at the model root (names `decoder.*`, i.e. after stripping `module.`).
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let dev = vb.device().clone();
        let dtype = vb.dtype();
        let decoder = Decoder::new(cfg, vb.pp("decoder"))?;
        let shape = (1, LATENT_CHANNELS, 1, 1, 1);
        let mean = Tensor::new(&LATENT_MEAN, &dev)?.reshape(shape)?;
        let inv_std = Tensor::new(&LATENT_STD, &dev)?.recip()?.reshape(shape)?;
        Ok(Self {
            decoder,
            cfg: cfg.clone(),
            mean,
            inv_std,
            dtype,
        })
    }

    /// Loads a released `.ckpt` (its `ema_state_dict`, `module.` prefix stripped, as
    /// `get_turbo_vaed` does) or a safetensors file with the same names. Extra keys such as the
    /// distillation-only `aligned_feature_projection_heads.*` are ignored.
    pub fn load(cfg: &Config, ckpt: &Path, dtype: DType, dev: &Device) -> Result<Self> {
        let opts = LoadOptions::default()
            .pickle_key("ema_state_dict")
            .strip_prefix("module.");
        let vb = load_var_builder(ckpt, &opts, dtype, dev).map_err(candle::Error::wrap)?;
        Self::new(cfg, vb)
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn decoder(&self) -> &Decoder {
        &self.decoder
    }

    /// Pixel frames out of `t` latent frames.
    pub fn frames_out(&self, t: usize) -> Result<usize> {
        let plan = self.plan(t)?;
        let mut total = 0;
        for w in &plan.windows {
            total += self.decoder.frames_out(w.end - w.start, w.is_first_chunk)
                - w.trim_front
                - w.trim_back;
        }
        Ok(total.saturating_sub(plan.trim_end))
    }

    pub fn plan(&self, t: usize) -> Result<WindowPlan> {
        WindowPlan::new(
            t,
            self.cfg.first_chunk_size,
            self.cfg.step_size,
            self.cfg.overlap_pixel_frames(),
        )
    }

    /// Normalised latent `[B, 48, T, H, W]` → video `[B, 3, 4T-3, 16H, 16W]`, not clamped
    /// (about [-1, 1]; the pipeline maps `x*0.5+0.5` and clamps).
    pub fn decode(&self, z: &Tensor) -> Result<Tensor> {
        self.decode_with(z, |_, _| Ok(()))
    }

    /// [`Self::decode`], handing each window's raw decoder output (before the overlap trim) to
    /// `on_window` with the window's index.
    pub fn decode_with(
        &self,
        z: &Tensor,
        mut on_window: impl FnMut(usize, &Tensor) -> Result<()>,
    ) -> Result<Tensor> {
        let (_, c, t, _, _) = z.dims5()?;
        if c != LATENT_CHANNELS {
            candle::bail!(
                "TurboVAED.decode: latent {:?} must have {LATENT_CHANNELS} channels",
                z.dims()
            )
        }
        let z = z
            .to_dtype(DType::F32)?
            .broadcast_div(&self.inv_std.to_device(z.device())?)?
            .broadcast_add(&self.mean.to_device(z.device())?)?
            .to_dtype(self.dtype)?;
        let plan = self.plan(t)?;
        let z = if plan.pad > 0 {
            let last = z.narrow(2, t - 1, 1)?;
            let mut parts = vec![z.clone()];
            parts.extend(std::iter::repeat_n(last, plan.pad));
            Tensor::cat(&parts, 2)?
        } else {
            z
        };
        let mut outs = Vec::with_capacity(plan.windows.len());
        for (k, w) in plan.windows.iter().enumerate() {
            let zw = z.narrow(2, w.start, w.end - w.start)?;
            let y = self.decoder.forward(&zw, w.is_first_chunk)?;
            on_window(k, &y)?;
            let f = y.dim(2)?;
            if f < w.trim_front + w.trim_back {
                candle::bail!("TurboVAED: window {k} gave {f} frames, fewer than its trims {w:?}")
            }
            // A copy, so the untrimmed window output is freed now rather than at the end.
            outs.push(
                y.narrow(2, w.trim_front, f - w.trim_front - w.trim_back)?
                    .contiguous()?,
            );
        }
        let out = Tensor::cat(&outs, 2)?;
        drop(outs);
        let f = out.dim(2)?;
        if f < plan.trim_end {
            candle::bail!(
                "TurboVAED: {f} frames decoded, fewer than the {} padded ones",
                plan.trim_end
            )
        }
        out.narrow(2, 0, f - plan.trim_end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_of_the_public_case() {
        let p = WindowPlan::new(9, 3, 5, 4).unwrap();
        assert_eq!(p.pad, 4);
        let s: Vec<_> = p
            .windows
            .iter()
            .map(|w| (w.start, w.end, w.is_first_chunk, w.trim_front, w.trim_back))
            .collect();
        assert_eq!(
            s,
            [
                (0, 4, true, 0, 4),
                (2, 9, false, 4, 4),
                (7, 13, false, 4, 0)
            ]
        );
    }

    #[test]
    fn plan_single_window_and_exact_fit() {
        let p = WindowPlan::new(2, 7, 7, 4).unwrap();
        assert_eq!((p.pad, p.windows.len(), p.trim_end), (5, 1, 20));
        let p = WindowPlan::new(14, 7, 7, 4).unwrap();
        assert_eq!(p.pad, 0);
        assert_eq!(p.windows[1].start..p.windows[1].end, 6..14);
    }
}
