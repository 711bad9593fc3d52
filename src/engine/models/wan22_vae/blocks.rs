//! Building blocks shared by the Wan2.2 VAE encoder and decoder.
//!
//! Port of `RMS_norm`, `ResidualBlock`, `AttentionBlock`, `Resample`, `AvgDown3D`, `DupUp3D`,
//! `Down_ResidualBlock` and `Up_ResidualBlock` in `inference/model/vae2_2/vae2_2_module.py` of
//! GAIR-NLP/daVinci-MagiHuman at commit 209209b. Activations are frame-major `[B, T, C, H, W]`
//! (see [`super::conv`]).

use candle::{DType, Module, Result, Tensor};
use candle_core as candle;
use candle_nn::VarBuilder;

use super::conv::{CausalConv3d, FeatCache, FrameConv2d};

/// `F.normalize(x, dim=channels) * sqrt(C) * gamma`: an L2 normalisation, so the only epsilon is
/// `F.normalize`'s clamp of the norm at 1e-12.
#[derive(Debug, Clone)]
pub struct RmsNorm {
    /// `sqrt(C) * gamma` as `[C, 1, 1]`.
    scale: Tensor,
}

impl RmsNorm {
    /// `images` selects the attention norm's `[C, 1, 1]` gamma; the others are `[C, 1, 1, 1]`.
    pub fn new(dim: usize, images: bool, vb: VarBuilder) -> Result<Self> {
        let gamma = if images {
            vb.get((dim, 1, 1), "gamma")?
        } else {
            vb.get((dim, 1, 1, 1), "gamma")?.reshape((dim, 1, 1))?
        };
        Ok(Self {
            scale: (gamma * (dim as f64).sqrt())?,
        })
    }
}

impl Module for RmsNorm {
    /// On `[B, T, C, H, W]` or `[N, C, H, W]`: the channel axis is the third from last.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let c_dim = x.rank().saturating_sub(3);
        // A sum of 1024 squares in bf16 would lose the norm; torch accumulates in f32 too.
        let norm = match x.dtype() {
            DType::F32 | DType::F64 => x.sqr()?.sum_keepdim(c_dim)?,
            _ => x.to_dtype(DType::F32)?.sqr()?.sum_keepdim(c_dim)?,
        };
        let norm = norm.sqrt()?.maximum(1e-12)?.to_dtype(x.dtype())?;
        x.broadcast_div(&norm)?.broadcast_mul(&self.scale)
    }
}

/// `ResidualBlock`: norm → SiLU → conv → norm → SiLU → conv, plus a 1×1×1 shortcut when the
/// width changes.
#[derive(Debug, Clone)]
pub struct ResidualBlock {
    norm1: RmsNorm,
    conv1: CausalConv3d,
    norm2: RmsNorm,
    conv2: CausalConv3d,
    shortcut: Option<CausalConv3d>,
}

impl ResidualBlock {
    pub fn new(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Self> {
        let r = vb.pp("residual");
        let shortcut = if in_dim != out_dim {
            Some(CausalConv3d::new(
                in_dim,
                out_dim,
                (1, 1, 1),
                1,
                vb.pp("shortcut"),
            )?)
        } else {
            None
        };
        Ok(Self {
            norm1: RmsNorm::new(in_dim, false, r.pp(0))?,
            conv1: CausalConv3d::new(in_dim, out_dim, (3, 3, 3), 1, r.pp(2))?,
            norm2: RmsNorm::new(out_dim, false, r.pp(3))?,
            conv2: CausalConv3d::new(out_dim, out_dim, (3, 3, 3), 1, r.pp(6))?,
            shortcut,
        })
    }

    pub fn forward(&self, x: &Tensor, cache: &mut FeatCache) -> Result<Tensor> {
        let h = match &self.shortcut {
            Some(s) => s.forward(x)?,
            None => x.clone(),
        };
        let y = self.norm1.forward(x)?.silu()?;
        let y = self.conv1.forward_cached(&y, cache.next_slot())?;
        let y = self.norm2.forward(&y)?.silu()?;
        let y = self.conv2.forward_cached(&y, cache.next_slot())?;
        y + h
    }
}

/// `AttentionBlock`: single-head self-attention over the H·W positions of each frame.
#[derive(Debug, Clone)]
pub struct AttentionBlock {
    norm: RmsNorm,
    to_qkv: FrameConv2d,
    proj: FrameConv2d,
    dim: usize,
}

impl AttentionBlock {
    pub fn new(dim: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            norm: RmsNorm::new(dim, true, vb.pp("norm"))?,
            to_qkv: FrameConv2d::new(dim, 3 * dim, 1, 0, 1, vb.pp("to_qkv"))?,
            proj: FrameConv2d::new(dim, dim, 1, 0, 1, vb.pp("proj"))?,
            dim,
        })
    }
}

impl Module for AttentionBlock {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, c, h, w) = x.dims5()?;
        if c != self.dim {
            candle::bail!("attention block of width {} got {:?}", self.dim, x.dims())
        }
        let n = b * t;
        let frames = x.reshape((n, c, h, w))?;
        let qkv = self
            .to_qkv
            .forward_2d(&self.norm.forward(&frames)?)?
            .reshape((n, 3 * c, h * w))?;
        let q = qkv.narrow(1, 0, c)?.transpose(1, 2)?.contiguous()?;
        let k = qkv.narrow(1, c, c)?.contiguous()?;
        let v = qkv.narrow(1, 2 * c, c)?.transpose(1, 2)?.contiguous()?;
        let att = (q.matmul(&k)? * (1.0 / (c as f64).sqrt()))?;
        let att = candle_nn::ops::softmax_last_dim(&att)?;
        let o = att.matmul(&v)?.transpose(1, 2)?.reshape((n, c, h, w))?;
        let o = self.proj.forward_2d(&o)?.reshape((b, t, c, h, w))?;
        o + x
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResampleMode {
    Upsample2d,
    Upsample3d,
    Downsample2d,
    Downsample3d,
}

/// `Resample`: per-frame spatial ×2 / ÷2, plus a temporal `time_conv` in the 3d modes.
#[derive(Debug, Clone)]
pub struct Resample {
    mode: ResampleMode,
    conv: FrameConv2d,
    time_conv: Option<CausalConv3d>,
}

impl Resample {
    pub fn new(dim: usize, mode: ResampleMode, vb: VarBuilder) -> Result<Self> {
        use ResampleMode::*;
        let conv = match mode {
            Upsample2d | Upsample3d => FrameConv2d::new(dim, dim, 3, 1, 1, vb.pp("resample.1"))?,
            // The asymmetric ZeroPad2d((0, 1, 0, 1)) is applied by hand before this conv.
            Downsample2d | Downsample3d => {
                FrameConv2d::new(dim, dim, 3, 0, 2, vb.pp("resample.1"))?
            }
        };
        let time_conv = match mode {
            Upsample3d => Some(CausalConv3d::new(
                dim,
                2 * dim,
                (3, 1, 1),
                1,
                vb.pp("time_conv"),
            )?),
            Downsample3d => Some(CausalConv3d::new(
                dim,
                dim,
                (3, 1, 1),
                2,
                vb.pp("time_conv"),
            )?),
            Upsample2d | Downsample2d => None,
        };
        Ok(Self {
            mode,
            conv,
            time_conv,
        })
    }

    pub fn forward(&self, x: &Tensor, cache: &mut FeatCache) -> Result<Tensor> {
        use ResampleMode::*;
        let mut x = x.clone();
        if let (Upsample3d, Some(tc)) = (self.mode, &self.time_conv) {
            let slot = cache.next_slot();
            if slot.is_none() {
                // The first chunk skips time_conv (the reference's "Rep" sentinel), and the
                // stream the later chunks convolve starts from zero padding, not from it.
                let (b, _, c, h, w) = x.dims5()?;
                *slot = Some(Tensor::zeros((b, 2, c, h, w), x.dtype(), x.device())?);
            } else {
                let y = tc.forward_cached(&x, slot)?;
                let (b, t, c2, h, w) = y.dims5()?;
                // Channel block s of frame t becomes frame 2t+s.
                x = y.reshape((b, 2 * t, c2 / 2, h, w))?;
            }
        }

        let (b, t, c, h, w) = x.dims5()?;
        let frames = x.reshape((b * t, c, h, w))?;
        let frames = match self.mode {
            Upsample2d | Upsample3d => frames.upsample_nearest2d(2 * h, 2 * w)?,
            Downsample2d | Downsample3d => {
                frames.pad_with_zeros(3, 0, 1)?.pad_with_zeros(2, 0, 1)?
            }
        };
        let y = self.conv.forward_2d(&frames)?;
        let (_, c, ho, wo) = y.dims4()?;
        let y = y.reshape((b, t, c, ho, wo))?;

        match (self.mode, &self.time_conv) {
            (Downsample3d, Some(tc)) => {
                let slot = cache.next_slot();
                let last = y.narrow(1, t - 1, 1)?.contiguous()?;
                match slot.replace(last) {
                    // The first chunk passes through; later ones see the previous last frame.
                    None => Ok(y),
                    Some(prev) => tc.forward_valid(&Tensor::cat(&[&prev, &y], 1)?),
                }
            }
            _ => Ok(y),
        }
    }
}

/// `AvgDown3D`: space/time-to-channel regrouping averaged down to `out` channels.
#[derive(Debug, Clone)]
pub struct AvgDown3d {
    out_c: usize,
    ft: usize,
    fs: usize,
    group: usize,
}

impl AvgDown3d {
    pub fn new(in_c: usize, out_c: usize, ft: usize, fs: usize) -> Result<Self> {
        let total = in_c * ft * fs * fs;
        if total % out_c != 0 {
            candle::bail!("AvgDown3D: {in_c}·{ft}·{fs}² channels do not split into {out_c}")
        }
        Ok(Self {
            out_c,
            ft,
            fs,
            group: total / out_c,
        })
    }
}

impl Module for AvgDown3d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (ft, fs) = (self.ft, self.fs);
        let t = x.dim(1)?;
        let x = x.pad_with_zeros(1, (ft - t % ft) % ft, 0)?;
        let (b, t, c, h, w) = x.dims5()?;
        if h % fs != 0 || w % fs != 0 {
            candle::bail!("AvgDown3D: {h}×{w} is not a multiple of {fs}")
        }
        let (t2, h2, w2) = (t / ft, h / fs, w / fs);
        // Channel k of the regrouped tensor is (c, time offset, row offset, column offset).
        x.reshape(&[b * t2, ft, c, h2, fs, w2, fs])?
            .permute([0, 2, 1, 4, 6, 3, 5])?
            .reshape(&[b, t2, self.out_c, self.group, h2, w2])?
            .mean(3)
    }
}

/// `DupUp3D`: channel-to-space/time unfolding of a `repeat_interleave`d input.
#[derive(Debug, Clone)]
pub struct DupUp3d {
    out_c: usize,
    ft: usize,
    fs: usize,
    /// Source channel of each of the `out·ft·fs²` unfolded channels.
    ids: Tensor,
}

impl DupUp3d {
    pub fn new(
        in_c: usize,
        out_c: usize,
        ft: usize,
        fs: usize,
        dev: &candle::Device,
    ) -> Result<Self> {
        let total = out_c * ft * fs * fs;
        if total % in_c != 0 {
            candle::bail!("DupUp3D: {out_c}·{ft}·{fs}² channels are not a multiple of {in_c}")
        }
        let repeats = total / in_c;
        let ids: Vec<u32> = (0..total).map(|k| (k / repeats) as u32).collect();
        Ok(Self {
            out_c,
            ft,
            fs,
            ids: Tensor::new(ids, dev)?,
        })
    }

    pub fn forward(&self, x: &Tensor, first_chunk: bool) -> Result<Tensor> {
        let (ft, fs) = (self.ft, self.fs);
        let (b, t, _, h, w) = x.dims5()?;
        let y = x
            .index_select(&self.ids, 2)?
            .reshape(&[b * t, self.out_c, ft, fs, fs, h, w])?
            .permute([0, 2, 1, 5, 3, 6, 4])?
            .reshape((b, t * ft, self.out_c, h * fs, w * fs))?;
        if first_chunk {
            y.narrow(1, ft - 1, t * ft - (ft - 1))
        } else {
            Ok(y)
        }
    }
}

/// `Down_ResidualBlock`: residual blocks, an optional downsampler, plus `AvgDown3D(x)`.
#[derive(Debug, Clone)]
pub struct DownResidualBlock {
    blocks: Vec<ResidualBlock>,
    resample: Option<Resample>,
    shortcut: AvgDown3d,
}

impl DownResidualBlock {
    pub fn new(
        in_dim: usize,
        out_dim: usize,
        mult: usize,
        temporal: bool,
        down: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        let vb = vb.pp("downsamples");
        let blocks = (0..mult)
            .map(|j| ResidualBlock::new(if j == 0 { in_dim } else { out_dim }, out_dim, vb.pp(j)))
            .collect::<Result<Vec<_>>>()?;
        let resample = if down {
            let mode = if temporal {
                ResampleMode::Downsample3d
            } else {
                ResampleMode::Downsample2d
            };
            Some(Resample::new(out_dim, mode, vb.pp(mult))?)
        } else {
            None
        };
        let ft = if temporal { 2 } else { 1 };
        let fs = if down { 2 } else { 1 };
        Ok(Self {
            blocks,
            resample,
            shortcut: AvgDown3d::new(in_dim, out_dim, ft, fs)?,
        })
    }

    pub fn forward(&self, x: &Tensor, cache: &mut FeatCache) -> Result<Tensor> {
        let mut y = x.clone();
        for block in &self.blocks {
            y = block.forward(&y, cache)?;
        }
        if let Some(r) = &self.resample {
            y = r.forward(&y, cache)?;
        }
        y + self.shortcut.forward(x)?
    }
}

/// `Up_ResidualBlock`: residual blocks, an optional upsampler, plus `DupUp3D(x)` when it
/// upsamples.
#[derive(Debug, Clone)]
pub struct UpResidualBlock {
    blocks: Vec<ResidualBlock>,
    resample: Option<Resample>,
    shortcut: Option<DupUp3d>,
}

impl UpResidualBlock {
    pub fn new(
        in_dim: usize,
        out_dim: usize,
        mult: usize,
        temporal: bool,
        up: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        let dev = vb.device().clone();
        let vb = vb.pp("upsamples");
        let blocks = (0..mult)
            .map(|j| ResidualBlock::new(if j == 0 { in_dim } else { out_dim }, out_dim, vb.pp(j)))
            .collect::<Result<Vec<_>>>()?;
        let (resample, shortcut) = if up {
            let mode = if temporal {
                ResampleMode::Upsample3d
            } else {
                ResampleMode::Upsample2d
            };
            let ft = if temporal { 2 } else { 1 };
            (
                Some(Resample::new(out_dim, mode, vb.pp(mult))?),
                Some(DupUp3d::new(in_dim, out_dim, ft, 2, &dev)?),
            )
        } else {
            (None, None)
        };
        Ok(Self {
            blocks,
            resample,
            shortcut,
        })
    }

    pub fn forward(&self, x: &Tensor, cache: &mut FeatCache, first_chunk: bool) -> Result<Tensor> {
        let mut y = x.clone();
        for block in &self.blocks {
            y = block.forward(&y, cache)?;
        }
        if let Some(r) = &self.resample {
            y = r.forward(&y, cache)?;
        }
        match &self.shortcut {
            Some(s) => y + s.forward(x, first_chunk)?,
            None => Ok(y),
        }
    }
}
