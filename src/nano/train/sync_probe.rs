//! The sync probe: a linear read-out, from the audio tokens' hidden states halfway up the DiT,
//! of whether a contact's hit sounds in each audio latent frame. Its loss joins the DiT
//! stage's, so the audio tokens must carry when the hits come; where their own input is
//! noise and the picture is not (decoupled noise levels), the only place to learn it from is
//! the video tokens. Training only: the export leaves it out.

use candle::{Module, Result, Tensor, D};
use candle_core as candle;
use candle_nn::{linear, Linear, VarBuilder};

/// Prefix of the probe's variables in the training variable map.
pub const PREFIX: &str = "sync_probe";
/// The same read-out on the audio decoder's video cue
/// ([`crate::engine::models::nano::VideoCue::features`]), trained in the audio-decoder stage:
/// the cue must see in the picture which frames a hit sounds in.
pub const CUE_PREFIX: &str = "cue_probe";

pub struct SyncProbe {
    head: Linear,
}

impl SyncProbe {
    pub fn new(hidden: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            head: linear(hidden, 1, vb.pp("hit"))?,
        })
    }

    /// Which DiT layer's output the probe reads: the middle one, so the layers above it are
    /// left to turn "a hit here" into the sound.
    pub fn layer(num_layers: usize) -> usize {
        num_layers / 2
    }

    /// Balanced binary cross-entropy of the probe on `hidden` `[Na, hidden]` against `hits`
    /// (1 where a hit sounds in that audio frame): the mean over the hit frames and the mean
    /// over the others, averaged, so the few hits weigh as much as the many quiet frames.
    pub fn loss(&self, hidden: &Tensor, hits: &[f32]) -> Result<Tensor> {
        let n = hidden.dim(0)?;
        if hits.len() != n {
            candle::bail!("sync probe: {} hit labels for {n} audio tokens", hits.len());
        }
        let logits = self.head.forward(hidden)?.squeeze(D::Minus1)?;
        let dev = hidden.device();
        let y = Tensor::from_slice(hits, n, dev)?;
        // log(1 + e^-x) for a hit, log(1 + e^x) for none: softplus(±x), stable for either sign.
        let softplus =
            |x: &Tensor| -> Result<Tensor> { x.relu()? + (x.abs()?.neg()?.exp()? + 1.0)?.log()? };
        let on = softplus(&logits.neg()?)?;
        let off = softplus(&logits)?;
        let positives = hits.iter().filter(|&&h| h > 0.5).count();
        let mask_off = y.affine(-1.0, 1.0)?;
        let loss_off = ((off * &mask_off)?.sum_all()? / (n - positives).max(1) as f64)?;
        if positives == 0 {
            return Ok(loss_off);
        }
        let loss_on = ((on * &y)?.sum_all()? / positives as f64)?;
        (loss_on + loss_off)? / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle::{DType, Device};
    use candle_nn::{Optimizer, VarMap};

    #[test]
    fn the_loss_is_the_balanced_cross_entropy_and_it_learns_a_marked_frame() -> Result<()> {
        let dev = Device::Cpu;
        let varmap = VarMap::new();
        let probe = SyncProbe::new(4, VarBuilder::from_varmap(&varmap, DType::F32, &dev))?;
        // Frame 2 of 6 carries the hit, and its hidden state says so in channel 0.
        let mut h = vec![0f32; 24];
        for f in 0..6 {
            h[f * 4 + 1] = 1.0;
        }
        h[2 * 4] = 3.0;
        let hidden = Tensor::from_vec(h, (6, 4), &dev)?;
        let hits = [0.0, 0.0, 1.0, 0.0, 0.0, 0.0];

        // At logits of 0 both halves are ln 2.
        for var in varmap.all_vars() {
            var.set(&var.zeros_like()?)?;
        }
        let at_zero = probe.loss(&hidden, &hits)?.to_scalar::<f32>()?;
        assert!((at_zero - std::f32::consts::LN_2).abs() < 1e-6, "{at_zero}");
        // Without hits, only the quiet half counts.
        let quiet = probe.loss(&hidden, &[0.0; 6])?.to_scalar::<f32>()?;
        assert!((quiet - std::f32::consts::LN_2).abs() < 1e-6, "{quiet}");

        let mut opt = candle_nn::SGD::new(varmap.all_vars(), 0.5)?;
        for _ in 0..200 {
            opt.backward_step(&probe.loss(&hidden, &hits)?)?;
        }
        let last = probe.loss(&hidden, &hits)?.to_scalar::<f32>()?;
        assert!(last < 0.05, "{last}");
        let logits = probe.head.forward(&hidden)?.squeeze(1)?.to_vec1::<f32>()?;
        for (f, l) in logits.iter().enumerate() {
            assert_eq!(*l > 0.0, f == 2, "frame {f}: logit {l}");
        }
        assert!(probe.loss(&hidden, &hits[..5]).is_err());
        Ok(())
    }

    #[test]
    fn the_probe_reads_the_middle_layer() {
        assert_eq!(SyncProbe::layer(6), 3);
    }
}
