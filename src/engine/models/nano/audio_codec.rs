//! Nano's audio codec: one latent per pixel frame, so audio latents line up with video frames
//! as MagiHuman's do (`Na = 4(T-1)+1`).
//!
//! Latent i sees and rebuilds the window `[i*hop, (i+2)*hop)`; neighbouring windows are
//! overlap-added, which lets the decoder cross-fade instead of clicking at frame edges. Each
//! window is cut into chunks that share one small linear (a strided 1-D conv without im2col),
//! then an MLP maps the chunk features to the latent and back.
//!
//! With `chunk_gain`, each decoded chunk (6.25 ms at 16 kHz) is a waveform times a gain
//! `relu(g)` read from the same chunk features: silence is an exact zero rather than a hum
//! the decoder's biases leave, and a hit's attack is a gain step at the chunk where it
//! starts, not a slope the waveform MLP has to draw.

use candle::{Module, Result, Tensor};
use candle_core as candle;
use candle_nn::{linear, Linear, VarBuilder};

use super::config::AudioCodecConfig;

fn chunks(cfg: &AudioCodecConfig) -> usize {
    2 * cfg.hop / cfg.chunk
}

#[derive(Debug, Clone)]
pub struct AudioEncoder {
    chunk_in: Linear,
    hidden: Linear,
    out: Linear,
    cfg: AudioCodecConfig,
}

impl AudioEncoder {
    pub fn new(cfg: &AudioCodecConfig, vb: VarBuilder) -> Result<Self> {
        let n = chunks(cfg);
        Ok(Self {
            chunk_in: linear(cfg.chunk, cfg.chunk_features, vb.pp("chunk_in"))?,
            hidden: linear(n * cfg.chunk_features, cfg.hidden, vb.pp("hidden"))?,
            out: linear(cfg.hidden, cfg.latent_channels, vb.pp("out"))?,
            cfg: cfg.clone(),
        })
    }

    /// Mono `samples` `[N]` → `[1, Na, Ca]` with `Na = ceil(N / hop)`.
    pub fn encode(&self, samples: &Tensor) -> Result<Tensor> {
        let hop = self.cfg.hop;
        let len = samples.dims1()?;
        let na = len.div_ceil(hop).max(1);
        // One extra hop of zeros: the last window reaches past the end.
        let sig = samples.pad_with_zeros(0, 0, (na + 1) * hop - len)?;
        let a = sig.narrow(0, 0, na * hop)?.reshape((na, hop))?;
        let b = sig.narrow(0, hop, na * hop)?.reshape((na, hop))?;
        let win = Tensor::cat(&[a, b], 1)?;
        let x = win
            .reshape((na * chunks(&self.cfg), self.cfg.chunk))?
            .apply(&self.chunk_in)?
            .silu()?
            .reshape((na, ()))?;
        let x = self.hidden.forward(&x)?.silu()?;
        self.out.forward(&x)?.unsqueeze(0)
    }
}

#[derive(Debug, Clone)]
pub struct AudioDecoder {
    inp: Linear,
    hidden: Linear,
    chunk_out: Linear,
    chunk_gain: Option<Linear>,
    cfg: AudioCodecConfig,
}

impl AudioDecoder {
    pub fn new(cfg: &AudioCodecConfig, vb: VarBuilder) -> Result<Self> {
        let n = chunks(cfg);
        Ok(Self {
            inp: linear(cfg.latent_channels, cfg.hidden, vb.pp("inp"))?,
            hidden: linear(cfg.hidden, n * cfg.chunk_features, vb.pp("hidden"))?,
            chunk_out: linear(cfg.chunk_features, cfg.chunk, vb.pp("chunk_out"))?,
            chunk_gain: if cfg.chunk_gain {
                Some(linear(cfg.chunk_features, 1, vb.pp("chunk_gain"))?)
            } else {
                None
            },
            cfg: cfg.clone(),
        })
    }

    /// `[1, Na, Ca]` → mono samples `[Na * hop]`.
    pub fn decode(&self, latent: &Tensor) -> Result<Tensor> {
        let (b, na, _) = latent.dims3()?;
        if b != 1 {
            candle::bail!("nano audio decoder: batch 1 only, got {:?}", latent.dims())
        }
        let hop = self.cfg.hop;
        let x = self.inp.forward(&latent.squeeze(0)?)?.silu()?;
        let x = self.hidden.forward(&x)?.silu()?;
        let feats = x.reshape((na * chunks(&self.cfg), self.cfg.chunk_features))?;
        let mut win = feats.apply(&self.chunk_out)?;
        if let Some(gain) = &self.chunk_gain {
            win = win.broadcast_mul(&feats.apply(gain)?.relu()?)?;
        }
        let win = win.reshape((na, 2 * hop))?;
        // Overlap-add: block j = first half of window j + second half of window j-1.
        let first = win.narrow(1, 0, hop)?;
        let second = win
            .narrow(1, hop, hop)?
            .pad_with_zeros(0, 1, 0)?
            .narrow(0, 0, na)?;
        (first + second)?.flatten_all()
    }
}
