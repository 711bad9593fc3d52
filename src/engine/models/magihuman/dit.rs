//! The MagiHuman single-stream DiT: adapter, transformer layers with per-modality experts, heads.
//!
//! Port of `DiTModel`, `Adapter`, `TransFormerLayer`, `Attention`, `MLP`,
//! `MultiModalityRMSNorm`, `swiglu7` and `gelu7` in `inference/model/dit/dit_module.py` of
//! GAIR-NLP/daVinci-MagiHuman at commit 209209b.
//!
//! Precision follows the released model: the residual stream, every RMSNorm, rope, the
//! activations, the adapter and the final heads run in f32; the block linears and attention run
//! in the dtype of the `VarBuilder` (bf16 for the released checkpoints).

use candle::{DType, Device, Module, Result, Tensor};
use candle_core as candle;
use candle_nn::VarBuilder;

use super::config::{DataProxyConfig, ModelConfig};
use super::packing::{self, AttnBlock, ModalityRanges, Packed};
use super::rope::{apply_rope, ElementWiseFourierEmbed, RopeSinCos};
use crate::engine::ops;

const NORM_EPS: f32 = 1e-6;
const ACT_ALPHA: f32 = 1.702;
const ACT_LIMIT: f32 = 7.0;
/// Largest attention score block, in elements, materialised at once (256 MiB in f32): bounds the
/// memory of long sequences (one released-width GQA group at 3860 tokens is ~75M scores) while
/// keeping whole GQA groups in one batched matmul.
const SCORE_BUDGET: usize = 1 << 26;

/// RMSNorm with the reference's zero-centred weight: `x * rsqrt(mean(x²) + eps) * (w + 1)` in f32.
#[derive(Debug, Clone)]
struct RmsNorm {
    /// `w + 1`, f32, `[dim]`.
    scale: Tensor,
}

impl RmsNorm {
    fn from_weight(w: Tensor) -> Result<Self> {
        Ok(Self {
            scale: (w.to_dtype(DType::F32)? + 1.0)?,
        })
    }

    /// Loads `[experts*dim]` from `vb` (which must be f32) and splits it per expert.
    fn load_experts(vb: &VarBuilder, dim: usize, experts: usize) -> Result<Vec<Self>> {
        let w = vb.get(experts * dim, "weight")?;
        (0..experts)
            .map(|e| Self::from_weight(w.narrow(0, e * dim, dim)?))
            .collect()
    }

    /// Normalises over the last dim; the output is f32 whatever the input dtype.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        ops::rms_norm(&x.to_dtype(DType::F32)?, &self.scale, NORM_EPS)
    }
}

/// Splits a `[experts*out, in]` weight into its per-expert `[out, in]` blocks (stacked on dim 0
/// in the order video, audio, text).
fn load_expert_linear(
    vb: &VarBuilder,
    out: usize,
    inp: usize,
    experts: usize,
) -> Result<Vec<Tensor>> {
    let w = vb.get((experts * out, inp), "weight")?;
    (0..experts).map(|e| w.narrow(0, e * out, out)).collect()
}

fn f32_vb<'a>(vb: &VarBuilder<'a>) -> VarBuilder<'a> {
    vb.to_dtype(DType::F32)
}

fn linear_no_bias(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    x.matmul(&w.t()?)
}

/// `gelu7`: `min(x,7) * sigmoid(1.702*min(x,7))`, no lower clamp.
fn gelu7(x: &Tensor) -> Result<Tensor> {
    ops::gelu_clamped(x, ACT_LIMIT, ACT_ALPHA)
}

/// `swiglu7` on interleaved columns: even = gate, odd = linear (not two halves):
/// `gelu7(gate) * (clamp(linear, -7, 7) + 1)`.
fn swiglu7(x: &Tensor) -> Result<Tensor> {
    ops::swiglu_clamped(x, ACT_LIMIT, ACT_ALPHA)
}

/// One modality's weights inside a layer (the only one when E = 1).
#[derive(Debug, Clone)]
struct Expert {
    attn_pre_norm: RmsNorm,
    linear_qkv: Tensor,
    q_norm: RmsNorm,
    k_norm: RmsNorm,
    linear_proj: Tensor,
    attn_post_norm: Option<RmsNorm>,
    mlp_pre_norm: RmsNorm,
    up_gate_proj: Tensor,
    down_proj: Tensor,
    mlp_post_norm: Option<RmsNorm>,
}

/// One `TransFormerLayer`: gated GQA attention with q/k norm and partial rope, then the MLP,
/// each with optional post-norm, both residual.
#[derive(Debug, Clone)]
pub struct TransformerLayer {
    experts: Vec<Expert>,
    heads_q: usize,
    heads_kv: usize,
    head_dim: usize,
    gating: bool,
    local_attn: bool,
    gelu7: bool,
    dtype: DType,
}

impl TransformerLayer {
    /// `vb` points at `block.layers.{layer_idx}`; its dtype is the compute dtype of the linears.
    pub fn new(cfg: &ModelConfig, layer_idx: usize, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let e = cfg.num_experts(layer_idx);
        let (hidden, d) = (cfg.hidden_size, cfg.head_dim);
        let (hq, hkv) = (cfg.heads_q(), cfg.heads_kv());
        let qkv_out = hq * d + 2 * hkv * d + cfg.gating_size();
        let inter = cfg.intermediate_size(layer_idx);
        let up = cfg.up_gate_size(layer_idx);
        let post = cfg.has_post_norm(layer_idx);

        let va = vb.pp("attention");
        let vm = vb.pp("mlp");
        let attn_pre_norm = RmsNorm::load_experts(&f32_vb(&va.pp("pre_norm")), hidden, e)?;
        let q_norm = RmsNorm::load_experts(&f32_vb(&va.pp("q_norm")), d, e)?;
        let k_norm = RmsNorm::load_experts(&f32_vb(&va.pp("k_norm")), d, e)?;
        let linear_qkv = load_expert_linear(&va.pp("linear_qkv"), qkv_out, hidden, e)?;
        let linear_proj = load_expert_linear(&va.pp("linear_proj"), hidden, hq * d, e)?;
        let mlp_pre_norm = RmsNorm::load_experts(&f32_vb(&vm.pp("pre_norm")), hidden, e)?;
        let up_gate_proj = load_expert_linear(&vm.pp("up_gate_proj"), up, hidden, e)?;
        let down_proj = load_expert_linear(&vm.pp("down_proj"), hidden, inter, e)?;
        let (attn_post, mlp_post) = if post {
            (
                RmsNorm::load_experts(&f32_vb(&vb.pp("attn_post_norm")), hidden, e)?
                    .into_iter()
                    .map(Some)
                    .collect(),
                RmsNorm::load_experts(&f32_vb(&vb.pp("mlp_post_norm")), hidden, e)?
                    .into_iter()
                    .map(Some)
                    .collect(),
            )
        } else {
            (vec![None; e], vec![None; e])
        };

        let mut experts = Vec::with_capacity(e);
        for m in 0..e {
            experts.push(Expert {
                attn_pre_norm: attn_pre_norm[m].clone(),
                linear_qkv: linear_qkv[m].clone(),
                q_norm: q_norm[m].clone(),
                k_norm: k_norm[m].clone(),
                linear_proj: linear_proj[m].clone(),
                attn_post_norm: attn_post[m].clone(),
                mlp_pre_norm: mlp_pre_norm[m].clone(),
                up_gate_proj: up_gate_proj[m].clone(),
                down_proj: down_proj[m].clone(),
                mlp_post_norm: mlp_post[m].clone(),
            });
        }
        Ok(Self {
            experts,
            heads_q: hq,
            heads_kv: hkv,
            head_dim: d,
            gating: cfg.enable_attn_gating,
            local_attn: cfg.is_local_attn(layer_idx),
            gelu7: cfg.is_gelu7(layer_idx),
            dtype: vb.dtype(),
        })
    }

    pub fn is_local_attn(&self) -> bool {
        self.local_attn
    }

    /// Row spans `(start, len, expert)`: the packed order keeps each modality contiguous, so the
    /// experts run on slices.
    fn spans(&self, ranges: &ModalityRanges, l: usize) -> Result<Vec<(usize, usize, usize)>> {
        if ranges.total() != l {
            candle::bail!(
                "magihuman layer: hidden states have {l} rows but the modality ranges {ranges:?} sum to {}",
                ranges.total()
            )
        }
        if self.experts.len() == 1 {
            return Ok(vec![(0, l, 0)]);
        }
        Ok(ranges
            .spans()
            .iter()
            .enumerate()
            .filter(|(_, (_, n))| *n > 0)
            .map(|(m, &(s, n))| (s, n, m))
            .collect())
    }

    /// Runs `f` on each expert's rows and stacks the results back in packed order.
    fn per_expert<F>(&self, x: &Tensor, spans: &[(usize, usize, usize)], f: F) -> Result<Tensor>
    where
        F: Fn(&Tensor, &Expert) -> Result<Tensor>,
    {
        if let [(_, _, m)] = spans {
            return f(x, &self.experts[*m]);
        }
        let parts = spans
            .iter()
            .map(|&(s, n, m)| f(&x.narrow(0, s, n)?, &self.experts[m]))
            .collect::<Result<Vec<_>>>()?;
        Tensor::cat(&parts, 0)
    }

    /// `h` `[L, hidden]` f32 in packed order; `local` (see [`packing::attn_blocks`]) is
    /// required by local-attention layers and ignored by the others. Returns the new hidden
    /// states, f32.
    pub fn forward(
        &self,
        h: &Tensor,
        rope: &RopeSinCos,
        ranges: &ModalityRanges,
        local: Option<&[AttnBlock]>,
    ) -> Result<Tensor> {
        let (l, _) = h.dims2()?;
        let spans = self.spans(ranges, l)?;
        let (hq, hkv, d) = (self.heads_q, self.heads_kv, self.head_dim);
        let wd = self.dtype;

        // q | k | v | gate, with q/k normalised per expert before they leave the expert rows.
        let qkvg = self.per_expert(h, &spans, |x, ex| {
            let n = x.dim(0)?;
            let a = ex.attn_pre_norm.forward(x)?.to_dtype(wd)?;
            let qkv = linear_no_bias(&a, &ex.linear_qkv)?.to_dtype(DType::F32)?;
            let q = ex
                .q_norm
                .forward(&qkv.narrow(1, 0, hq * d)?.reshape((n, hq, d))?)?;
            let k = ex
                .k_norm
                .forward(&qkv.narrow(1, hq * d, hkv * d)?.reshape((n, hkv, d))?)?;
            let rest = qkv.narrow(1, (hq + hkv) * d, qkv.dim(1)? - (hq + hkv) * d)?;
            Tensor::cat(&[q.flatten_from(1)?, k.flatten_from(1)?, rest], 1)
        })?;
        let q = qkvg.narrow(1, 0, hq * d)?.reshape((l, hq, d))?;
        let k = qkvg.narrow(1, hq * d, hkv * d)?.reshape((l, hkv, d))?;
        let v = qkvg.narrow(1, (hq + hkv) * d, hkv * d)?;

        let q = (apply_rope(&q, rope)? * (1.0 / (d as f64).sqrt()))?;
        let k = apply_rope(&k, rope)?;
        let q = q.to_dtype(wd)?.transpose(0, 1)?.contiguous()?;
        let k = k.to_dtype(wd)?.transpose(0, 1)?.contiguous()?;
        let v = v
            .to_dtype(wd)?
            .reshape((l, hkv, d))?
            .transpose(0, 1)?
            .contiguous()?;
        let o = match (self.local_attn, local) {
            (false, _) => attention(&q, &k, &v)?, // [Hq, L, D]
            (true, Some(blocks)) => ranged_attention(&q, &k, &v, blocks)?,
            (true, None) => candle::bail!(
                "magihuman layer: local attention layer needs the local-attention ranges \
                 (frame_receptive_field is -1?)"
            ),
        };
        let mut o = o.transpose(0, 1)?.to_dtype(DType::F32)?; // [L, Hq, D]
        if self.gating {
            let g = qkvg.narrow(1, (hq + 2 * hkv) * d, hq)?.contiguous()?;
            o = o.broadcast_mul(&candle_nn::ops::sigmoid(&g)?.unsqueeze(2)?)?;
        }
        let o = o.reshape((l, hq * d))?.to_dtype(wd)?;
        let attn_out = self.per_expert(&o, &spans, |x, ex| {
            let y = linear_no_bias(x, &ex.linear_proj)?;
            match &ex.attn_post_norm {
                Some(n) => n.forward(&y),
                None => y.to_dtype(DType::F32),
            }
        })?;
        let h = (h + attn_out)?;

        let gelu = self.gelu7;
        let mlp_out = self.per_expert(&h, &spans, |x, ex| {
            let a = ex.mlp_pre_norm.forward(x)?.to_dtype(wd)?;
            let u = linear_no_bias(&a, &ex.up_gate_proj)?.to_dtype(DType::F32)?;
            let act = if gelu { gelu7(&u)? } else { swiglu7(&u)? };
            let y = linear_no_bias(&act.to_dtype(wd)?, &ex.down_proj)?;
            match &ex.mlp_post_norm {
                Some(n) => n.forward(&y),
                None => y.to_dtype(DType::F32),
            }
        })?;
        h + mlp_out
    }
}

/// Softmax attention, q `[Hq, Lq, D]` (already scaled), k/v `[Hkv, Lk, D]`; query head j reads kv
/// head `j / (Hq/Hkv)`. Each GQA group's query heads are contiguous, so a group is one
/// `[rep*Lq, D] x [D, Lk]` matmul against its shared K: the repeated K/V are never materialised.
fn attention(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
    let (hq, l, d) = q.dims3()?;
    let (hkv, lk, _) = k.dims3()?;
    let rep = hq / hkv;
    let per_group = (rep * l * lk).max(1);
    let chunk = (SCORE_BUDGET / per_group).clamp(1, hkv);
    let mut outs = Vec::with_capacity(hkv.div_ceil(chunk));
    let mut g0 = 0;
    while g0 < hkv {
        let n = chunk.min(hkv - g0);
        let qc = q.narrow(0, g0 * rep, n * rep)?.reshape((n, rep * l, d))?;
        let kc = k.narrow(0, g0, n)?;
        let vc = v.narrow(0, g0, n)?;
        let s = qc.matmul(&kc.t()?)?;
        let p = ops::softmax_last_dim(&s)?;
        outs.push(p.matmul(&vc)?.reshape((n * rep, l, d))?);
        g0 += n;
    }
    if outs.len() == 1 {
        Ok(outs.remove(0))
    } else {
        Tensor::cat(&outs, 0)
    }
}

/// [`attention`] over blocks of queries, each reading only its own key ranges (the reference's
/// flex attention for the local layers): q `[Hq, L, D]`, k/v `[Hkv, L, D]`, `blocks` tiling
/// `[0, L)` in order.
fn ranged_attention(q: &Tensor, k: &Tensor, v: &Tensor, blocks: &[AttnBlock]) -> Result<Tensor> {
    let gather = |x: &Tensor, ranges: &[(usize, usize)]| -> Result<Tensor> {
        let parts = ranges
            .iter()
            .map(|&(a, b)| x.narrow(1, a, b - a))
            .collect::<Result<Vec<_>>>()?;
        Tensor::cat(&parts, 1)?.contiguous()
    };
    let mut outs = Vec::with_capacity(blocks.len());
    for b in blocks {
        let qb = q.narrow(1, b.q.0, b.q.1 - b.q.0)?.contiguous()?;
        outs.push(attention(&qb, &gather(k, &b.k)?, &gather(v, &b.k)?)?);
    }
    Tensor::cat(&outs, 1)
}

/// Intermediates of one forward, for parity debugging.
#[derive(Debug, Clone)]
pub struct DitTrace {
    /// `[L, hidden]` after the embedders.
    pub adapter_x: Tensor,
    /// `[L, 6B]` = `[sin | cos]`.
    pub rope: Tensor,
    /// Each layer's output `[L, hidden]`, packed order.
    pub layer_out: Vec<Tensor>,
}

/// The whole DiT with its packer: latents and text features in, velocities out.
#[derive(Debug, Clone)]
pub struct MagiHuman {
    cfg: ModelConfig,
    proxy: DataProxyConfig,
    video_embedder: candle_nn::Linear,
    audio_embedder: candle_nn::Linear,
    text_embedder: candle_nn::Linear,
    rope: ElementWiseFourierEmbed,
    layers: Vec<TransformerLayer>,
    final_norm_video: RmsNorm,
    final_norm_audio: RmsNorm,
    final_linear_video: Tensor,
    final_linear_audio: Tensor,
    device: Device,
    dtype: DType,
}

impl MagiHuman {
    /// `vb` is the checkpoint root. Its dtype is the compute dtype of the block linears and
    /// attention; everything the reference keeps in f32 is loaded in f32.
    pub fn new(
        model_cfg: &ModelConfig,
        proxy_cfg: &DataProxyConfig,
        vb: VarBuilder,
    ) -> Result<Self> {
        model_cfg.validate()?;
        let hidden = model_cfg.hidden_size;
        let f = vb.to_dtype(DType::F32);
        let va = f.pp("adapter");
        let video_embedder =
            candle_nn::linear(model_cfg.video_in_channels, hidden, va.pp("video_embedder"))?;
        let audio_embedder =
            candle_nn::linear(model_cfg.audio_in_channels, hidden, va.pp("audio_embedder"))?;
        let text_embedder =
            candle_nn::linear(model_cfg.text_in_channels, hidden, va.pp("text_embedder"))?;
        let rope = ElementWiseFourierEmbed::new(model_cfg.head_dim, va.pp("rope"))?;
        let vl = vb.pp("block").pp("layers");
        let layers = (0..model_cfg.num_layers)
            .map(|i| TransformerLayer::new(model_cfg, i, vl.pp(i)))
            .collect::<Result<Vec<_>>>()?;
        let final_norm_video =
            RmsNorm::from_weight(f.pp("final_norm_video").get(hidden, "weight")?)?;
        let final_norm_audio =
            RmsNorm::from_weight(f.pp("final_norm_audio").get(hidden, "weight")?)?;
        let final_linear_video = f
            .pp("final_linear_video")
            .get((model_cfg.video_in_channels, hidden), "weight")?;
        let final_linear_audio = f
            .pp("final_linear_audio")
            .get((model_cfg.audio_in_channels, hidden), "weight")?;
        Ok(Self {
            cfg: model_cfg.clone(),
            proxy: proxy_cfg.clone(),
            video_embedder,
            audio_embedder,
            text_embedder,
            rope,
            layers,
            final_norm_video,
            final_norm_audio,
            final_linear_video,
            final_linear_audio,
            device: vb.device().clone(),
            dtype: vb.dtype(),
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    pub fn proxy_config(&self) -> &DataProxyConfig {
        &self.proxy
    }

    pub fn layers(&self) -> &[TransformerLayer] {
        &self.layers
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Compute dtype of the block linears.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// `process_input`: inputs are cast to f32 and moved to the model's device.
    pub fn pack(
        &self,
        latent_video: &Tensor,
        latent_audio: &Tensor,
        txt_feat: &Tensor,
        txt_len: usize,
    ) -> Result<Packed> {
        let prep = |t: &Tensor| t.to_device(&self.device)?.to_dtype(DType::F32);
        let packed = packing::pack(
            &prep(latent_video)?,
            &prep(latent_audio)?,
            &prep(txt_feat)?,
            txt_len,
            &self.proxy,
        )?;
        let (cv, ca) = (packed.grid.token_channels(), packed.audio_channels);
        let ct = txt_feat.dim(2)?;
        if cv != self.cfg.video_in_channels
            || ca != self.cfg.audio_in_channels
            || ct != self.cfg.text_in_channels
        {
            candle::bail!(
                "magihuman: token channels video {cv} / audio {ca} / text {ct} (latent_video {:?}, \
                 latent_audio {:?}, txt_feat {:?}) do not match the model's {} / {} / {}",
                latent_video.dims(),
                latent_audio.dims(),
                txt_feat.dims(),
                self.cfg.video_in_channels,
                self.cfg.audio_in_channels,
                self.cfg.text_in_channels
            )
        }
        Ok(packed)
    }

    /// Rope sin/cos for a packed sequence.
    pub fn rope(&self, packed: &Packed) -> Result<RopeSinCos> {
        self.rope.forward(&packed.coords, &self.device)
    }

    /// The local-attention blocks, when any layer needs them.
    pub fn local_blocks(&self, packed: &Packed) -> Result<Option<Vec<AttnBlock>>> {
        if !self.layers.iter().any(|l| l.is_local_attn()) {
            return Ok(None);
        }
        match &packed.local_ranges {
            Some(pairs) => Ok(Some(packing::attn_blocks(pairs, packed.ranges.total())?)),
            None => candle::bail!(
                "magihuman: local_attn_layers {:?} need frame_receptive_field != -1",
                self.cfg.local_attn_layers
            ),
        }
    }

    fn embed(&self, packed: &Packed) -> Result<Tensor> {
        let embedders = [
            (&self.video_embedder, self.cfg.video_in_channels),
            (&self.audio_embedder, self.cfg.audio_in_channels),
            (&self.text_embedder, self.cfg.text_in_channels),
        ];
        let parts = packed
            .ranges
            .spans()
            .iter()
            .zip(embedders)
            .filter(|((_, n), _)| *n > 0)
            // Contiguous: the GPU matmul takes no row stride wider than the row.
            .map(|(&(s, n), (emb, c))| {
                emb.forward(&packed.x.narrow(0, s, n)?.narrow(1, 0, c)?.contiguous()?)
            })
            .collect::<Result<Vec<_>>>()?;
        Tensor::cat(&parts, 0)
    }

    /// `DiTModel.forward`: `[L, max(Cv, Ca)]` f32 with the video rows in `[:Cv]`, the audio rows
    /// in `[:Ca]` and zero text rows. Fills `trace` when given.
    pub fn forward_packed(
        &self,
        packed: &Packed,
        mut trace: Option<&mut DitTrace>,
    ) -> Result<Tensor> {
        let r = packed.ranges;
        let rope = self.rope(packed)?;
        let local = self.local_blocks(packed)?;
        let mut h = self.embed(packed)?;
        if let Some(t) = trace.as_deref_mut() {
            t.adapter_x = h.clone();
            t.rope = rope.to_packed()?;
            t.layer_out.clear();
        }
        for layer in &self.layers {
            h = layer.forward(&h, &rope, &r, local.as_deref())?;
            if let Some(t) = trace.as_deref_mut() {
                t.layer_out.push(h.clone());
            }
        }

        let (cv, ca) = (self.cfg.video_in_channels, self.cfg.audio_in_channels);
        let cout = cv.max(ca);
        let head = |s: usize, n: usize, norm: &RmsNorm, w: &Tensor, c: usize| -> Result<Tensor> {
            let y = linear_no_bias(&norm.forward(&h.narrow(0, s, n)?)?, w)?;
            if c < cout {
                y.pad_with_zeros(1, 0, cout - c)
            } else {
                Ok(y)
            }
        };
        let mut parts = Vec::with_capacity(3);
        if r.video > 0 {
            parts.push(head(
                0,
                r.video,
                &self.final_norm_video,
                &self.final_linear_video,
                cv,
            )?);
        }
        if r.audio > 0 {
            parts.push(head(
                r.video,
                r.audio,
                &self.final_norm_audio,
                &self.final_linear_audio,
                ca,
            )?);
        }
        if r.text > 0 {
            parts.push(Tensor::zeros((r.text, cout), DType::F32, &self.device)?);
        }
        Tensor::cat(&parts, 0)
    }

    /// Predicted velocities for `latent_video [1,z,T,H,W]`, `latent_audio [1,Na,Ca]` and the
    /// first `txt_len` rows of `txt_feat [1,Nt_pad,Ct]`. Outputs are f32:
    /// `(v_video [1,z,T,H,W], v_audio [1,Na,Ca])`.
    pub fn velocity(
        &self,
        latent_video: &Tensor,
        latent_audio: &Tensor,
        txt_feat: &Tensor,
        txt_len: usize,
    ) -> Result<(Tensor, Tensor)> {
        let packed = self.pack(latent_video, latent_audio, txt_feat, txt_len)?;
        let out = self.forward_packed(&packed, None)?;
        packing::depack(&out, &packed)
    }
}

impl DitTrace {
    pub fn empty(device: &Device) -> Result<Self> {
        let z = Tensor::zeros(0, DType::F32, device)?;
        Ok(Self {
            adapter_x: z.clone(),
            rope: z,
            layer_out: Vec::new(),
        })
    }

    /// `[num_layers, L, hidden]`.
    pub fn stacked_layer_out(&self) -> Result<Tensor> {
        Tensor::stack(&self.layer_out, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::models::magihuman::packing::{attn_blocks, local_qk_ranges};
    use candle::IndexOp;

    /// Ranged attention equals a dense softmax under the `[L, L]` mask of the same pairs.
    #[test]
    fn ranged_attention_is_the_masked_dense_attention() -> Result<()> {
        let dev = Device::Cpu;
        let (frames, per_frame, audio_text, d) = (5, 4, 3, 8);
        let (nv, l) = (frames * per_frame, frames * per_frame + audio_text);
        let q = Tensor::randn(0f32, 1., (4, l, d), &dev)?;
        let k = Tensor::randn(0f32, 1., (2, l, d), &dev)?;
        let v = Tensor::randn(0f32, 1., (2, l, d), &dev)?;
        let pairs = local_qk_ranges(nv, audio_text, frames, 1);
        let ranged = ranged_attention(&q, &k, &v, &attn_blocks(&pairs, l)?)?;

        let mut mask = vec![f32::NEG_INFINITY; l * l];
        for p in &pairs {
            for qi in p.q.0..p.q.1 {
                mask[qi * l + p.k.0..qi * l + p.k.1].fill(0.0);
            }
        }
        let mask = Tensor::from_vec(mask, (1, l, l), &dev)?;
        // Query heads 0, 1 read kv head 0; 2, 3 read kv head 1.
        let kr = Tensor::cat(&[&k.i(0..1)?, &k.i(0..1)?, &k.i(1..2)?, &k.i(1..2)?], 0)?;
        let vr = Tensor::cat(&[&v.i(0..1)?, &v.i(0..1)?, &v.i(1..2)?, &v.i(1..2)?], 0)?;
        let s = q.matmul(&kr.t()?)?.broadcast_add(&mask)?;
        let dense = candle_nn::ops::softmax_last_dim(&s)?.matmul(&vr)?;

        let diff = (ranged - dense)?.abs()?.flatten_all()?.max(0)?;
        assert!(diff.to_scalar::<f32>()? < 1e-5);
        Ok(())
    }
}
