//! The video critic: a patch discriminator over decoded frames, trained against the video
//! decoder in the video-decoder stage ([`super::TrainConfig::video_decoder_adversarial`]).
//!
//! A decoder trained by a pixel loss alone draws the mean of what a latent leaves open: where
//! the DiT's latent is unsure whether a corner is there, a rounded one (a square's box filled
//! 0.80-0.87, read as a ball). The world draws exact discs, squares and triangles, so a critic
//! that scores each patch of a frame as the world's or the decoder's makes a rounded corner
//! cost something, and the decoder commits to one shape, the one the latent (and its shape
//! code) says. Hinge losses as in SAGAN; the patches over the clip's objects weigh more, since
//! they are a few percent of a frame. Training only: the export leaves it out.

use candle::{Module, Result, Tensor};
use candle_core as candle;
use candle_nn::{conv2d, ops::leaky_relu, Conv2d, Conv2dConfig, VarBuilder};

/// Prefix of the critic's variables in the training variable map.
pub const PREFIX: &str = "video_critic";

/// Each critic logit scores a patch of this many pixels on a side (two stride-2 convs).
pub const PATCH: usize = 4;

const SLOPE: f64 = 0.2;

pub struct VideoCritic {
    convs: Vec<Conv2d>,
}

impl VideoCritic {
    /// Four convs: 3 -> 32 (k4, s2), 32 -> 64 (k4, s2), 64 -> 64 (k3), 64 -> 1 (k3); each
    /// logit sees about 22 pixels, a whole small object and its surroundings.
    pub fn new(vb: VarBuilder) -> Result<Self> {
        let down = Conv2dConfig {
            padding: 1,
            stride: 2,
            ..Default::default()
        };
        let same = Conv2dConfig {
            padding: 1,
            ..Default::default()
        };
        let convs = vec![
            conv2d(3, 32, 4, down, vb.pp("conv0"))?,
            conv2d(32, 64, 4, down, vb.pp("conv1"))?,
            conv2d(64, 64, 3, same, vb.pp("conv2"))?,
            conv2d(64, 1, 3, same, vb.pp("conv3"))?,
        ];
        Ok(Self { convs })
    }

    /// `frames` `[n, 3, H, W]` in [-1, 1], H and W multiples of [`PATCH`] -> logits
    /// `[n, 1, H/4, W/4]`: positive where a patch looks like the world's.
    pub fn logits(&self, frames: &Tensor) -> Result<Tensor> {
        let last = self.convs.len() - 1;
        let mut x = frames.clone();
        for (i, c) in self.convs.iter().enumerate() {
            x = c.forward(&x)?;
            if i < last {
                x = leaky_relu(&x, SLOPE)?;
            }
        }
        Ok(x)
    }

    /// The critic's hinge loss, `relu(1 - D(real)) + relu(1 + D(fake))` weighted over the
    /// patches; `fake` should be detached so that only the critic learns from it.
    pub fn loss(&self, real: &Tensor, fake: &Tensor, patch_weights: &Tensor) -> Result<Tensor> {
        let on_real = (1.0 - self.logits(real)?)?.relu()?;
        let on_fake = (self.logits(fake)? + 1.0)?.relu()?;
        weighted_mean(&(on_real + on_fake)?, patch_weights)
    }

    /// The decoder's adversarial loss, `-D(fake)` weighted over the patches.
    pub fn generator_loss(&self, fake: &Tensor, patch_weights: &Tensor) -> Result<Tensor> {
        weighted_mean(&self.logits(fake)?.neg()?, patch_weights)
    }
}

fn weighted_mean(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    x.broadcast_mul(w)?.mean_all()
}

/// Per-patch weights `[n, 1, H/4, W/4]` from a per-pixel object mask `[n, 1, H, W]` (0 or 1):
/// `1 + extra * (share of the patch an object covers)`, scaled to mean 1.
pub fn patch_weights(object_mask: &Tensor, extra: f32) -> Result<Tensor> {
    let w = object_mask.avg_pool2d(PATCH)?.affine(extra as f64, 1.0)?;
    let mean = w.mean_all()?;
    w.broadcast_div(&mean)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle::{DType, Device};
    use candle_nn::VarMap;

    #[test]
    fn a_patch_over_an_object_weighs_more_and_the_weights_average_one() -> Result<()> {
        let dev = Device::Cpu;
        // One 8x8 frame, an object over the top-left 4x4 patch only.
        let mut mask = vec![0f32; 64];
        for y in 0..4 {
            for x in 0..4 {
                mask[y * 8 + x] = 1.0;
            }
        }
        let mask = Tensor::from_vec(mask, (1, 1, 8, 8), &dev)?;
        let w = patch_weights(&mask, 3.0)?.flatten_all()?.to_vec1::<f32>()?;
        // Raw weights 4, 1, 1, 1: mean 1.75.
        let want = [4.0 / 1.75, 1.0 / 1.75, 1.0 / 1.75, 1.0 / 1.75];
        for (g, e) in w.iter().zip(want) {
            assert!((g - e).abs() < 1e-6, "{w:?}");
        }
        Ok(())
    }

    #[test]
    fn the_critic_scores_patches_and_learning_tells_a_square_from_a_disc() -> Result<()> {
        let dev = Device::Cpu;
        let varmap = VarMap::new();
        let critic = VideoCritic::new(VarBuilder::from_varmap(&varmap, DType::F32, &dev))?;
        // A white square (real) against a white disc of the same box (fake), 16x16 frames.
        let draw = |disc: bool| {
            let mut px = vec![-1f32; 3 * 16 * 16];
            for c in 0..3 {
                for y in 0..16 {
                    for x in 0..16 {
                        let (dx, dy) = (x as f32 - 7.5, y as f32 - 7.5);
                        let inside = dx.abs() < 5.0 && dy.abs() < 5.0;
                        let inside = inside && (!disc || dx * dx + dy * dy < 25.0);
                        if inside {
                            px[(c * 16 + y) * 16 + x] = 1.0;
                        }
                    }
                }
            }
            Tensor::from_vec(px, (1, 3, 16, 16), &dev)
        };
        let (real, fake) = (draw(false)?, draw(true)?);
        assert_eq!(critic.logits(&real)?.dims(), &[1, 1, 4, 4]);
        let w = Tensor::ones((1, 1, 4, 4), DType::F32, &dev)?;
        let mut opt = candle_nn::AdamW::new_lr(varmap.all_vars(), 1e-3)?;
        let first = critic.loss(&real, &fake, &w)?.to_scalar::<f32>()?;
        for _ in 0..60 {
            candle_nn::Optimizer::backward_step(&mut opt, &critic.loss(&real, &fake, &w)?)?;
        }
        let last = critic.loss(&real, &fake, &w)?.to_scalar::<f32>()?;
        assert!(last < 0.5 * first, "critic loss {first} -> {last}");
        // It now scores the square above the disc, so the decoder's loss is lower for it.
        let g_real = critic.generator_loss(&real, &w)?.to_scalar::<f32>()?;
        let g_fake = critic.generator_loss(&fake, &w)?.to_scalar::<f32>()?;
        assert!(
            g_real < g_fake,
            "generator loss square {g_real}, disc {g_fake}"
        );
        Ok(())
    }
}
