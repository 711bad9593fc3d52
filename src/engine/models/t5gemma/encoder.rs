//! T5Gemma encoder stack (`T5GemmaEncoder` / `T5GemmaEncoderModel`), ported from
//! huggingface/transformers `src/transformers/models/t5gemma/modeling_t5gemma.py` (v5.24, the
//! release the goldens ran), as used by `inference/model/t5_gemma/t5_gemma_model.py` of
//! GAIR-NLP/daVinci-MagiHuman at commit 209209b. Encoder only: the decoder is never run.
//!
//! Precision follows the reference: the activation dtype is the VarBuilder's (f32 on CPU, bf16
//! on GPU) while RMSNorm and the attention softmax run in f32.

use std::time::{Duration, Instant};

use candle::{DType, Device, Module, Result, Tensor, D};
use candle_core as candle;
use candle_nn::{embedding, linear_b, Activation, Embedding, Linear, VarBuilder};

use super::config::{Config, LayerType, WindowRule};

/// Gemma RMSNorm: normalised and scaled in f32, then cast back. The checkpoint stores the scale
/// as an offset from 1, so `1 + w` is formed once here (in f32, as the reference does per call).
#[derive(Debug, Clone)]
pub struct RmsNorm {
    scale: Tensor,
    eps: f64,
}

impl RmsNorm {
    pub fn new(dim: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        let w = vb.get(dim, "weight")?.to_dtype(DType::F32)?;
        Ok(Self {
            scale: (w + 1.0)?,
            eps,
        })
    }
}

impl Module for RmsNorm {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let dtype = xs.dtype();
        let xs = xs.to_dtype(DType::F32)?;
        let inv_rms = (xs.sqr()?.mean_keepdim(D::Minus1)? + self.eps)?
            .sqrt()?
            .recip()?;
        xs.broadcast_mul(&inv_rms)?
            .broadcast_mul(&self.scale)?
            .to_dtype(dtype)
    }
}

/// RoPE tables `[L, head_dim/2]` for positions `0..L`, computed in f32 and cast to the
/// activation dtype like the reference's `cos.to(x.dtype)`.
#[derive(Debug, Clone)]
pub struct Rope {
    cos: Tensor,
    sin: Tensor,
}

impl Rope {
    pub fn new(
        head_dim: usize,
        theta: f64,
        seq_len: usize,
        dtype: DType,
        dev: &Device,
    ) -> Result<Self> {
        let half = head_dim / 2;
        let inv_freq: Vec<f32> = (0..half)
            .map(|i| (1.0 / theta.powf((2 * i) as f64 / head_dim as f64)) as f32)
            .collect();
        let mut freqs = Vec::with_capacity(seq_len * half);
        for p in 0..seq_len {
            freqs.extend(inv_freq.iter().map(|f| p as f32 * f));
        }
        let freqs = Tensor::from_vec(freqs, (seq_len, half), dev)?;
        Ok(Self {
            cos: freqs.cos()?.to_dtype(dtype)?,
            sin: freqs.sin()?.to_dtype(dtype)?,
        })
    }

    /// Rotate-half RoPE on `[B, H, L, D]`.
    pub fn apply(&self, xs: &Tensor) -> Result<Tensor> {
        candle_nn::rotary_emb::rope(&xs.contiguous()?, &self.cos, &self.sin)
    }
}

#[derive(Debug, Clone)]
struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    num_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
    scale: f64,
    softcap: Option<f64>,
}

impl Attention {
    fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let (h, nh, nkv, hd) = (
            cfg.hidden_size,
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
        );
        let bias = cfg.attention_bias;
        Ok(Self {
            q_proj: linear_b(h, nh * hd, bias, vb.pp("q_proj"))?,
            k_proj: linear_b(h, nkv * hd, bias, vb.pp("k_proj"))?,
            v_proj: linear_b(h, nkv * hd, bias, vb.pp("v_proj"))?,
            o_proj: linear_b(nh * hd, h, bias, vb.pp("o_proj"))?,
            num_heads: nh,
            num_kv_heads: nkv,
            head_dim: hd,
            // query_pre_attn_scalar, not head_dim: the two differ in the goldens on purpose.
            scale: cfg.query_pre_attn_scalar.powf(-0.5),
            softcap: cfg.attn_logit_softcapping,
        })
    }

    fn forward(&self, xs: &Tensor, rope: &Rope, mask: Option<&Tensor>) -> Result<Tensor> {
        let (b, l, _) = xs.dims3()?;
        let (nh, nkv, hd) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let rep = nh / nkv;
        let heads = |t: Tensor, n: usize| t.reshape((b, l, n, hd))?.transpose(1, 2);
        let q = rope.apply(&heads(self.q_proj.forward(xs)?, nh)?)?;
        let k = rope.apply(&heads(self.k_proj.forward(xs)?, nkv)?)?;
        let v = heads(self.v_proj.forward(xs)?, nkv)?.contiguous()?;

        // GQA without materialising repeated K/V: query head `g*rep + r` uses KV head `g`, so
        // the `rep` query heads of a group stack into one longer query sequence.
        let q = q.reshape((b, nkv, rep * l, hd))?;
        let logits = (q.matmul(&k.t()?)? * self.scale)?;
        let logits = match self.softcap {
            // The cap comes before the mask, so masked keys still end up at ~-inf.
            Some(cap) => ((logits / cap)?.tanh()? * cap)?,
            None => logits,
        };
        let logits = logits.reshape((b, nh, l, l))?.to_dtype(DType::F32)?;
        let logits = match mask {
            Some(m) => logits.broadcast_add(m)?,
            None => logits,
        };
        let probs = candle_nn::ops::softmax_last_dim(&logits)?.to_dtype(v.dtype())?;
        let out = probs.reshape((b, nkv, rep * l, l))?.matmul(&v)?;
        let out = out
            .reshape((b, nh, l, hd))?
            .transpose(1, 2)?
            .reshape((b, l, nh * hd))?;
        self.o_proj.forward(&out)
    }
}

#[derive(Debug, Clone)]
struct Mlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
    act: Activation,
}

impl Mlp {
    fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        Ok(Self {
            gate_proj: linear_b(h, i, false, vb.pp("gate_proj"))?,
            up_proj: linear_b(h, i, false, vb.pp("up_proj"))?,
            down_proj: linear_b(i, h, false, vb.pp("down_proj"))?,
            act: cfg.hidden_activation,
        })
    }
}

impl Module for Mlp {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let gate = self.act.forward(&self.gate_proj.forward(xs)?)?;
        self.down_proj.forward(&(gate * self.up_proj.forward(xs)?)?)
    }
}

#[derive(Debug, Clone)]
struct EncoderLayer {
    self_attn: Attention,
    mlp: Mlp,
    pre_self_attn_layernorm: RmsNorm,
    post_self_attn_layernorm: RmsNorm,
    pre_feedforward_layernorm: RmsNorm,
    post_feedforward_layernorm: RmsNorm,
    layer_type: LayerType,
}

impl EncoderLayer {
    fn new(cfg: &Config, layer: usize, vb: VarBuilder) -> Result<Self> {
        let norm = |name: &str| RmsNorm::new(cfg.hidden_size, cfg.rms_norm_eps, vb.pp(name));
        Ok(Self {
            self_attn: Attention::new(cfg, vb.pp("self_attn"))?,
            mlp: Mlp::new(cfg, vb.pp("mlp"))?,
            pre_self_attn_layernorm: norm("pre_self_attn_layernorm")?,
            post_self_attn_layernorm: norm("post_self_attn_layernorm")?,
            pre_feedforward_layernorm: norm("pre_feedforward_layernorm")?,
            post_feedforward_layernorm: norm("post_feedforward_layernorm")?,
            layer_type: cfg.layer_type(layer),
        })
    }

    fn forward(&self, xs: &Tensor, rope: &Rope, mask: Option<&Tensor>) -> Result<Tensor> {
        let h = self.pre_self_attn_layernorm.forward(xs)?;
        let h = self.self_attn.forward(&h, rope, mask)?;
        let xs = (xs + self.post_self_attn_layernorm.forward(&h)?)?;
        let h = self.pre_feedforward_layernorm.forward(&xs)?;
        let h = self.mlp.forward(&h)?;
        xs + self.post_feedforward_layernorm.forward(&h)?
    }
}

/// Additive f32 masks `[B, 1, L, L]` for the two layer kinds; `None` where nothing is masked.
struct Masks {
    full: Option<Tensor>,
    sliding: Option<Tensor>,
}

impl Masks {
    fn new(
        keep: &[Vec<bool>],
        seq_len: usize,
        window: usize,
        rule: WindowRule,
        dev: &Device,
    ) -> Result<Self> {
        let padded = keep.iter().any(|row| row.iter().any(|k| !k));
        let windowed = seq_len > 0 && !rule.visible(seq_len - 1, 0, window);
        let build = |with_window: bool| -> Result<Tensor> {
            let b = keep.len();
            let mut data = Vec::with_capacity(b * seq_len * seq_len);
            for row in keep {
                for i in 0..seq_len {
                    for (j, &k) in row.iter().enumerate() {
                        let ok = k && (!with_window || rule.visible(i, j, window));
                        // finfo.min rather than -inf, as transformers does: a fully masked row
                        // softmaxes to uniform instead of NaN.
                        data.push(if ok { 0f32 } else { f32::MIN });
                    }
                }
            }
            Tensor::from_vec(data, (b, 1, seq_len, seq_len), dev)
        };
        Ok(Self {
            full: if padded { Some(build(false)?) } else { None },
            sliding: if padded || windowed {
                Some(build(true)?)
            } else {
                None
            },
        })
    }

    fn get(&self, kind: LayerType) -> Option<&Tensor> {
        match kind {
            LayerType::FullAttention => self.full.as_ref(),
            LayerType::SlidingAttention => self.sliding.as_ref(),
        }
    }
}

/// `T5GemmaEncoderModel` up to `last_hidden_state`. Build it from a VarBuilder positioned at
/// the checkpoint's `model.encoder`.
#[derive(Debug, Clone)]
pub struct T5GemmaEncoder {
    embed_tokens: Embedding,
    layers: Vec<EncoderLayer>,
    norm: RmsNorm,
    hidden_size: usize,
    head_dim: usize,
    rope_theta: f64,
    sliding_window: usize,
    window_rule: WindowRule,
    dtype: DType,
    device: Device,
}

impl T5GemmaEncoder {
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let embed_tokens = embedding(cfg.vocab_size, cfg.hidden_size, vb.pp("embed_tokens"))?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| EncoderLayer::new(cfg, i, vb.pp("layers").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        let norm = RmsNorm::new(cfg.hidden_size, cfg.rms_norm_eps, vb.pp("norm"))?;
        Ok(Self {
            embed_tokens,
            layers,
            norm,
            hidden_size: cfg.hidden_size,
            head_dim: cfg.head_dim,
            rope_theta: cfg.rope_theta(),
            sliding_window: cfg.sliding_window,
            window_rule: cfg.window_rule,
            dtype: vb.dtype(),
            device: vb.device().clone(),
        })
    }

    /// The same weights with another sliding-window rule (see [`WindowRule`]).
    pub fn with_window_rule(mut self, rule: WindowRule) -> Self {
        self.window_rule = rule;
        self
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn hidden_size(&self) -> usize {
        self.hidden_size
    }

    /// `input_ids` `[B, L]` (u32 or i64); `attention_mask` `[B, L]`, nonzero = real token, masks
    /// keys only (`None` = all real, as for the pipeline's single prompt). Returns
    /// `last_hidden_state` `[B, L, hidden]` in the activation dtype.
    pub fn forward(&self, input_ids: &Tensor, attention_mask: Option<&Tensor>) -> Result<Tensor> {
        let (b, l) = input_ids.dims2()?;
        if l == 0 {
            candle::bail!("T5Gemma: empty input_ids {:?}", input_ids.dims())
        }
        let keep: Vec<Vec<bool>> = match attention_mask {
            Some(m) => {
                if m.dims() != input_ids.dims() {
                    candle::bail!(
                        "T5Gemma: attention_mask {:?} does not match input_ids {:?}",
                        m.dims(),
                        input_ids.dims()
                    )
                }
                m.to_dtype(DType::F32)?
                    .to_vec2::<f32>()?
                    .into_iter()
                    .map(|row| row.into_iter().map(|v| v != 0.0).collect())
                    .collect()
            }
            None => vec![vec![true; l]; b],
        };
        let masks = Masks::new(
            &keep,
            l,
            self.sliding_window,
            self.window_rule,
            &self.device,
        )?;
        let rope = Rope::new(self.head_dim, self.rope_theta, l, self.dtype, &self.device)?;

        let ids = input_ids.to_device(&self.device)?;
        let xs = self.embed_tokens.forward(&ids)?;
        // The reference builds sqrt(hidden) as a tensor in the activation dtype, so under bf16 it
        // is rounded (sqrt(3584) becomes 59.75).
        let normalizer = Tensor::new(self.hidden_size as f64, &self.device)?
            .sqrt()?
            .to_dtype(self.dtype)?;
        let mut xs = xs.broadcast_mul(&normalizer)?;
        for layer in &self.layers {
            xs = layer.forward(&xs, &rope, masks.get(layer.layer_type))?;
        }
        self.norm.forward(&xs)
    }
}

/// Times one encoder layer with random weights at `cfg`'s width for a `seq_len`-token prompt:
/// a warm-up pass, then the mean of `iters` passes.
pub fn bench_layer(
    cfg: &Config,
    seq_len: usize,
    iters: usize,
    dtype: DType,
    dev: &Device,
) -> Result<Duration> {
    cfg.validate()?;
    let varmap = candle_nn::VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, dtype, dev);
    let layer = EncoderLayer::new(cfg, 0, vb)?;
    let rope = Rope::new(cfg.head_dim, cfg.rope_theta(), seq_len, dtype, dev)?;
    let keep = vec![vec![true; seq_len]];
    let masks = Masks::new(&keep, seq_len, cfg.sliding_window, cfg.window_rule, dev)?;
    let xs = Tensor::randn(0f32, 1.0, (1, seq_len, cfg.hidden_size), dev)?.to_dtype(dtype)?;
    let mask = masks.get(layer.layer_type);
    layer.forward(&xs, &rope, mask)?;
    dev.synchronize()?;
    let iters = iters.max(1);
    let start = Instant::now();
    for _ in 0..iters {
        layer.forward(&xs, &rope, mask)?;
    }
    dev.synchronize()?;
    Ok(start.elapsed() / iters as u32)
}
