//! The causal 3D convolution of the Wan2.2 VAE and its streaming feature cache.
//!
//! Port of `CausalConv3d` and the `feat_cache` bookkeeping in
//! `inference/model/vae2_2/vae2_2_module.py` of GAIR-NLP/daVinci-MagiHuman at commit 209209b.
//!
//! Layout: every activation in this port is frame-major, `[B, T, C, H, W]`. candle has no
//! conv3d, and frame-major lets a temporal tap be a plain `narrow` of the frame axis that folds
//! into the conv2d batch for free, and lets the per-frame 2D layers (attention, resampling) run
//! on `[B*T, C, H, W]` without transposing.

use candle::{Module, Result, Tensor};
use candle_core as candle;
use candle_nn::VarBuilder;

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

/// `nn.Conv3d` with a causal time axis, run as one conv2d per temporal tap over frames batched
/// along the batch axis.
#[derive(Debug, Clone)]
pub struct CausalConv3d {
    /// One `[out, in, kH, kW]` kernel per temporal tap, oldest frame first.
    taps: Vec<Tensor>,
    bias: Tensor,
    pad: usize,
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
        let bias = vb.get(out_c, "bias")?.reshape((1, out_c, 1, 1))?;
        let taps = (0..kt)
            .map(|k| w.narrow(2, k, 1)?.squeeze(2)?.contiguous())
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            taps,
            bias,
            pad: kh / 2,
            stride_t,
        })
    }

    pub fn kt(&self) -> usize {
        self.taps.len()
    }

    /// Tap `k` applied to every frame of `frames` `[B, N, C, H, W]`, without the bias.
    fn tap(&self, frames: &Tensor, k: usize) -> Result<Tensor> {
        let (b, n, c, h, w) = frames.dims5()?;
        let y = frames.contiguous()?.reshape((b * n, c, h, w))?.conv2d(
            &self.taps[k],
            self.pad,
            1,
            1,
            1,
        )?;
        let (_, o, ho, wo) = y.dims4()?;
        y.reshape((b, n, o, ho, wo))
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
        let t_out = (t - kt) / self.stride_t + 1;
        let mut acc: Option<Tensor> = None;
        for k in 0..kt {
            let frames = if self.stride_t == 1 {
                x.narrow(1, k, t_out)?
            } else {
                let ids: Vec<u32> = (0..t_out).map(|i| (k + i * self.stride_t) as u32).collect();
                x.index_select(&Tensor::new(ids, x.device())?, 1)?
            };
            let y = self.tap(&frames, k)?;
            acc = Some(match acc {
                None => y,
                Some(a) => (a + y)?,
            });
        }
        let Some(y) = acc else {
            candle::bail!("causal conv without taps")
        };
        y.broadcast_add(&self.bias.unsqueeze(0)?)
    }

    /// `forward_valid` of `x` behind `kT-1` zero frames, skipping the taps that would only
    /// see those zeros: two thirds of the work of a one-frame first chunk.
    fn forward_zero_front(&self, x: &Tensor) -> Result<Tensor> {
        let t = x.dim(1)?;
        let newest = self.kt() - 1;
        let mut acc = self.tap(x, newest)?;
        for k in 0..newest {
            let skip = newest - k;
            if skip >= t {
                continue;
            }
            let y = self.tap(&x.narrow(1, 0, t - skip)?, k)?;
            let tail = (acc.narrow(1, skip, t - skip)? + y)?;
            acc = Tensor::cat(&[&acc.narrow(1, 0, skip)?, &tail], 1)?;
        }
        acc.broadcast_add(&self.bias.unsqueeze(0)?)
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

/// `nn.Conv2d` applied to every frame of `[B, T, C, H, W]`.
#[derive(Debug, Clone)]
pub struct FrameConv2d {
    weight: Tensor,
    bias: Tensor,
    pad: usize,
    stride: usize,
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
        Ok(Self {
            weight: vb.get((out_c, in_c, k, k), "weight")?,
            bias: vb.get(out_c, "bias")?.reshape((1, out_c, 1, 1))?,
            pad,
            stride,
        })
    }

    /// On `[N, C, H, W]`.
    pub fn forward_2d(&self, x: &Tensor) -> Result<Tensor> {
        x.conv2d(&self.weight, self.pad, self.stride, 1, 1)?
            .broadcast_add(&self.bias)
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
