//! The causal 3D convolution of the Wan2.2 VAE and its streaming feature cache.
//!
//! Port of `CausalConv3d` and the `feat_cache` bookkeeping in
//! `inference/model/vae2_2/vae2_2_module.py` of GAIR-NLP/daVinci-MagiHuman at commit 209209b.
//!
//! Layout: every activation in this port is frame-major, `[B, T, C, H, W]`: the convolution
//! ([`TapConv`]) stacks the frames each output reads on channels, and the per-frame 2D layers
//! (attention, resampling) run on `[B*T, C, H, W]` without transposing.

use candle::{Module, Result, Tensor};
use candle_core as candle;
use candle_nn::VarBuilder;

use crate::engine::ops::TapConv;

/// The per-call state of the reference's `feat_cache` list. Layers take slots in a fixed order
/// on every chunk, so slot `i` always belongs to the same layer.
#[derive(Debug, Default)]
pub struct FeatCache {
    slots: Vec<Option<Tensor>>,
    pos: usize,
}

impl FeatCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Rewinds to the first slot; call before each chunk.
    pub fn start_chunk(&mut self) {
        self.pos = 0;
    }

    /// The next layer's slot (`None` on the first chunk).
    pub fn next_slot(&mut self) -> &mut Option<Tensor> {
        if self.pos == self.slots.len() {
            self.slots.push(None);
        }
        let i = self.pos;
        self.pos += 1;
        &mut self.slots[i]
    }
}

/// `nn.Conv3d` with a causal time axis. The arithmetic is [`TapConv`] (time taps stacked on
/// channels, one GEMM per spatial tap), shared with TurboVAED; this type says which frames
/// each output reads and keeps the streaming cache.
#[derive(Debug, Clone)]
pub struct CausalConv3d {
    conv: TapConv,
    stride_t: usize,
}

impl CausalConv3d {
    /// `kernel = (kT, kH, kW)`; spatial zero padding is `kH/2` as in every use in the reference.
    pub fn new(
        in_c: usize,
        out_c: usize,
        kernel: (usize, usize, usize),
        stride_t: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let (kt, kh, kw) = kernel;
        let w = vb.get((out_c, in_c, kt, kh, kw), "weight")?;
        let bias = vb.get(out_c, "bias")?;
        Ok(Self {
            conv: TapConv::from_weights(w, bias)?,
            stride_t: stride_t.max(1),
        })
    }

    pub fn kt(&self) -> usize {
        self.conv.kt()
    }

    /// Convolution over `x` `[B, T, C, H, W]` without temporal padding.
    pub fn forward_valid(&self, x: &Tensor) -> Result<Tensor> {
        let t = x.dim(1)?;
        let kt = self.kt();
        if t < kt {
            candle::bail!(
                "causal conv: {t} frames for a {kt}-tap kernel ({:?})",
                x.dims()
            )
        }
        let s = self.stride_t;
        self.conv
            .forward_frames(x, (t - kt) / s + 1, |i, k| Some(k + i * s))
    }

    /// `forward_valid` of `x` behind `kT-1` zero frames.
    fn forward_zero_front(&self, x: &Tensor) -> Result<Tensor> {
        let newest = self.kt() - 1;
        self.conv
            .forward_frames(x, x.dim(1)?, |i, k| (i + k).checked_sub(newest))
    }

    /// Streaming causal convolution: the slot holds the last `kT-1` input frames of the
    /// previous chunks, zeros before the first. Net effect (README "net effect"): one causal conv
    /// over the whole sequence, zero-padded only at its very start.
    pub fn forward_cached(&self, x: &Tensor, slot: &mut Option<Tensor>) -> Result<Tensor> {
        let keep = self.kt() - 1;
        if keep == 0 {
            return self.forward_valid(x);
        }
        if self.stride_t != 1 {
            candle::bail!("causal conv: the cached path is for stride 1 only")
        }
        match slot.take() {
            Some(history) => {
                let xp = Tensor::cat(&[&history, x], 1)?;
                let n = xp.dim(1)?;
                *slot = Some(xp.narrow(1, n - keep, keep)?.contiguous()?);
                self.forward_valid(&xp)
            }
            None => {
                let t = x.dim(1)?;
                let recent = if t >= keep {
                    x.narrow(1, t - keep, keep)?.contiguous()?
                } else {
                    x.pad_with_zeros(1, keep - t, 0)?
                };
                *slot = Some(recent);
                self.forward_zero_front(x)
            }
        }
    }
}

impl Module for CausalConv3d {
    /// Only for kernels without a temporal extent (`1×k×k`), which need no cache.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_valid(x)
    }
}

/// `nn.Conv2d` applied to every frame of `[B, T, C, H, W]`: through [`TapConv`] where the
/// padding keeps the size (stride 1, pad `k/2`), through candle's conv2d otherwise.
#[derive(Debug, Clone)]
pub enum FrameConv2d {
    Same(TapConv),
    Strided {
        weight: Tensor,
        bias: Tensor,
        pad: usize,
        stride: usize,
    },
}

impl FrameConv2d {
    pub fn new(
        in_c: usize,
        out_c: usize,
        k: usize,
        pad: usize,
        stride: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let weight = vb.get((out_c, in_c, k, k), "weight")?;
        let bias = vb.get(out_c, "bias")?;
        if stride == 1 && k % 2 == 1 && pad == k / 2 {
            return Ok(Self::Same(TapConv::from_conv2d(weight, bias)?));
        }
        Ok(Self::Strided {
            weight,
            bias: bias.reshape((1, out_c, 1, 1))?,
            pad,
            stride,
        })
    }

    /// On `[N, C, H, W]`.
    pub fn forward_2d(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::Same(conv) => conv.conv_stacked(x),
            Self::Strided {
                weight,
                bias,
                pad,
                stride,
            } => x.conv2d(weight, *pad, *stride, 1, 1)?.broadcast_add(bias),
        }
    }
}

impl Module for FrameConv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, c, h, w) = x.dims5()?;
        let y = self.forward_2d(&x.reshape((b * t, c, h, w))?)?;
        let (_, o, ho, wo) = y.dims4()?;
        y.reshape((b, t, o, ho, wo))
    }
}
