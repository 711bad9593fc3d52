//! Nano's text side: a word-level tokenizer over the world's caption vocabulary and a
//! one-layer bidirectional transformer. The DiT's text expert layers do the rest of the
//! language work, as in MagiHuman where the DiT reads encoder features through its own experts.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use candle::{DType, Module, Result, Tensor, D};
use candle_core as candle;
use candle_nn::{embedding, linear_no_bias, Embedding, Linear, VarBuilder};
use tokenizers::models::wordlevel::WordLevel;
use tokenizers::normalizers::Lowercase;
use tokenizers::pre_tokenizers::whitespace::Whitespace;
use tokenizers::Tokenizer;

use super::config::TextEncoderConfig;

pub const UNK: &str = "[UNK]";
/// The whole content of the empty prompt, which is also the negative prompt of CFG: the DiT
/// needs at least one text token.
pub const EMPTY: &str = "[EMPTY]";
const EPS: f32 = 1e-6;

#[derive(Clone)]
pub struct NanoTokenizer {
    inner: Tokenizer,
}

impl std::fmt::Debug for NanoTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NanoTokenizer({} words)", self.vocab_size())
    }
}

fn tok_err(e: impl std::fmt::Display) -> candle::Error {
    candle::Error::Msg(format!("nano tokenizer: {e}"))
}

impl NanoTokenizer {
    /// A lowercase word-level vocabulary: the special tokens, then `words` in sorted order, so
    /// the ids depend only on the set of words.
    pub fn from_words<I: IntoIterator<Item = String>>(words: I) -> Result<Self> {
        let words: BTreeSet<String> = words.into_iter().map(|w| w.to_lowercase()).collect();
        let mut vocab: HashMap<String, u32> = HashMap::new();
        for w in [UNK, EMPTY].into_iter().map(String::from).chain(words) {
            let id = vocab.len() as u32;
            vocab.entry(w).or_insert(id);
        }
        let model = WordLevel::builder()
            .vocab(vocab.into_iter().collect())
            .unk_token(UNK.into())
            .build()
            .map_err(tok_err)?;
        let mut inner = Tokenizer::new(model);
        inner.with_normalizer(Some(Lowercase)).map_err(tok_err)?;
        inner.with_pre_tokenizer(Some(Whitespace {}));
        Ok(Self { inner })
    }

    /// The words the pre-tokenizer cuts `text` into (runs of word characters, runs of other
    /// non-space characters), lowercased: what a vocabulary must cover.
    pub fn words(text: &str) -> Vec<String> {
        #[derive(PartialEq, Clone, Copy)]
        enum Class {
            Word,
            Space,
            Other,
        }
        let class = |c: char| {
            if c.is_alphanumeric() || c == '_' {
                Class::Word
            } else if c.is_whitespace() {
                Class::Space
            } else {
                Class::Other
            }
        };
        let mut out = Vec::new();
        let mut cur = String::new();
        let mut cur_class = Class::Space;
        for c in text.to_lowercase().chars() {
            let k = class(c);
            if k != cur_class && !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            if k != Class::Space {
                cur.push(c);
            }
            cur_class = k;
        }
        if !cur.is_empty() {
            out.push(cur);
        }
        out
    }

    pub fn from_file(path: &Path) -> Result<Self> {
        let inner =
            Tokenizer::from_file(path).map_err(|e| tok_err(format!("{}: {e}", path.display())))?;
        Ok(Self { inner })
    }

    /// Parses the contents of a `tokenizer.json` (the embedded model's copy).
    pub fn from_bytes(json: &[u8]) -> Result<Self> {
        let inner =
            Tokenizer::from_bytes(json).map_err(|e| tok_err(format!("tokenizer.json: {e}")))?;
        Ok(Self { inner })
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        self.inner
            .save(path, true)
            .map_err(|e| tok_err(format!("{}: {e}", path.display())))
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Token ids of `text`, cut to `max_len`; the empty prompt is `[EMPTY]`.
    pub fn encode(&self, text: &str, max_len: usize) -> Result<Vec<u32>> {
        let enc = self.inner.encode(text, false).map_err(tok_err)?;
        let mut ids = enc.get_ids().to_vec();
        ids.truncate(max_len.max(1));
        if ids.is_empty() {
            let empty = self
                .inner
                .token_to_id(EMPTY)
                .ok_or_else(|| tok_err(format!("vocabulary has no {EMPTY} token")))?;
            ids.push(empty);
        }
        Ok(ids)
    }
}

/// Zero-centred RMSNorm (`w + 1`), as in the DiT; the composite form when training.
#[derive(Debug, Clone)]
struct Norm {
    scale: Tensor,
}

impl Norm {
    fn new(dim: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            scale: (vb.get(dim, "weight")? + 1.0)?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if x.track_op() || self.scale.track_op() {
            candle_nn::ops::rms_norm_slow(x, &self.scale, EPS)
        } else {
            candle_nn::ops::rms_norm(&x.contiguous()?, &self.scale, EPS)
        }
    }
}

#[derive(Debug, Clone)]
struct Layer {
    attn_norm: Norm,
    qkv: Linear,
    proj: Linear,
    mlp_norm: Norm,
    up: Linear,
    down: Linear,
    heads: usize,
}

impl Layer {
    fn new(cfg: &TextEncoderConfig, vb: VarBuilder) -> Result<Self> {
        let d = cfg.hidden;
        Ok(Self {
            attn_norm: Norm::new(d, vb.pp("attn_norm"))?,
            qkv: linear_no_bias(d, 3 * d, vb.pp("qkv"))?,
            proj: linear_no_bias(d, d, vb.pp("proj"))?,
            mlp_norm: Norm::new(d, vb.pp("mlp_norm"))?,
            up: linear_no_bias(d, 4 * d, vb.pp("up"))?,
            down: linear_no_bias(4 * d, d, vb.pp("down"))?,
            heads: cfg.heads,
        })
    }

    /// `x` `[L, d]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (l, d) = x.dims2()?;
        let hd = d / self.heads;
        let qkv = self
            .qkv
            .forward(&self.attn_norm.forward(x)?)?
            .reshape((l, 3, self.heads, hd))?
            .permute((1, 2, 0, 3))?;
        let q = (qkv.get(0)? * (1.0 / (hd as f64).sqrt()))?.contiguous()?;
        let k = qkv.get(1)?.contiguous()?;
        let v = qkv.get(2)?.contiguous()?;
        let p = candle_nn::ops::softmax(&q.matmul(&k.t()?)?, D::Minus1)?;
        let o = p.matmul(&v)?.transpose(0, 1)?.reshape((l, d))?;
        let x = (x + self.proj.forward(&o)?)?;
        let m = self.mlp_norm.forward(&x)?.apply(&self.up)?.gelu()?;
        x + self.down.forward(&m)?
    }
}

#[derive(Debug, Clone)]
pub struct TextEncoder {
    embed: Embedding,
    pos: Tensor,
    layers: Vec<Layer>,
    norm_out: Norm,
    max_len: usize,
}

impl TextEncoder {
    pub fn new(cfg: &TextEncoderConfig, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            embed: embedding(cfg.vocab_size, cfg.hidden, vb.pp("embed"))?,
            pos: vb.get((cfg.max_len, cfg.hidden), "pos")?,
            layers: (0..cfg.layers)
                .map(|i| Layer::new(cfg, vb.pp("layers").pp(i)))
                .collect::<Result<Vec<_>>>()?,
            norm_out: Norm::new(cfg.hidden, vb.pp("norm_out"))?,
            max_len: cfg.max_len,
        })
    }

    /// Token ids → features `[1, L, hidden]`.
    pub fn forward(&self, ids: &[u32]) -> Result<Tensor> {
        let l = ids.len();
        if l == 0 || l > self.max_len {
            candle::bail!(
                "nano text encoder: {l} tokens, expected 1..={}",
                self.max_len
            )
        }
        let dev = self.pos.device();
        let ids = Tensor::from_slice(ids, l, dev)?;
        let mut x = self
            .embed
            .forward(&ids)?
            .broadcast_add(&self.pos.narrow(0, 0, l)?)?;
        for layer in &self.layers {
            x = layer.forward(&x)?;
        }
        self.norm_out
            .forward(&x)?
            .to_dtype(DType::F32)?
            .unsqueeze(0)
    }
}
