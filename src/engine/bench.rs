//! Benchmarks behind `happyhorse bench`: random weights at released widths, timed end to end.
//! Measured here, never in tests.

use std::collections::HashMap;
use std::time::Instant;

use candle_core::{bail, DType, Device, Result, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};

use super::models::magihuman::packing::{attn_blocks, local_qk_ranges};
use super::models::magihuman::{
    AttnBlock, ElementWiseFourierEmbed, ModalityRanges, ModelConfig, TransformerLayer,
};

/// Shape of the `bench dit` run: one shared (single-expert, swiglu7) layer.
#[derive(Debug, Clone)]
pub struct DitBench {
    pub hidden: usize,
    pub head_dim: usize,
    pub kv_groups: usize,
    pub video_tokens: usize,
    pub audio_tokens: usize,
    pub text_tokens: usize,
    /// Latent frames the video tokens split into (what a local layer's window counts).
    pub frames: usize,
    /// `Some(f)`: a local-attention layer whose video tokens read their frame and `f` frames
    /// each side (`frame_receptive_field`); `None`: a global layer.
    pub local_field: Option<usize>,
    pub dtype: DType,
    pub repeats: usize,
}

impl DitBench {
    /// The released width on a 256p 5 s sequence: 448×256 → 28×16 latent patches × 8 latent
    /// frames... as the issue states it: 3584 video + 126 audio + 150 text tokens.
    pub fn released(dtype: DType) -> DitBench {
        DitBench {
            hidden: 5120,
            head_dim: 128,
            kv_groups: 8,
            video_tokens: 3584,
            audio_tokens: 126,
            text_tokens: 150,
            frames: 8,
            local_field: None,
            dtype,
            repeats: 1,
        }
    }

    pub fn tokens(&self) -> usize {
        self.video_tokens + self.audio_tokens + self.text_tokens
    }

    fn config(&self) -> ModelConfig {
        ModelConfig {
            num_layers: 1,
            hidden_size: self.hidden,
            head_dim: self.head_dim,
            num_query_groups: self.kv_groups,
            num_heads_q: 0,
            num_heads_kv: 0,
            mm_layers: vec![],
            gelu7_layers: vec![],
            local_attn_layers: if self.local_field.is_some() {
                vec![0]
            } else {
                vec![]
            },
            post_norm_layers: vec![],
            ..ModelConfig::base()
        }
    }

    /// The local layer's attention blocks, or `None` for a global layer.
    fn blocks(&self) -> Result<Option<Vec<AttnBlock>>> {
        let Some(field) = self.local_field else {
            return Ok(None);
        };
        if self.frames == 0 || self.video_tokens % self.frames != 0 {
            bail!(
                "bench dit: {} video tokens do not split into {} frames",
                self.video_tokens,
                self.frames
            )
        }
        let pairs = local_qk_ranges(
            self.video_tokens,
            self.audio_tokens + self.text_tokens,
            self.frames,
            field,
        );
        attn_blocks(&pairs, self.tokens()).map(Some)
    }

    /// Query-key pairs the attention scores: `L²` for a global layer, fewer for a local one.
    fn scored_pairs(&self) -> f64 {
        match self.blocks() {
            Ok(Some(blocks)) => blocks
                .iter()
                .map(|b| {
                    let keys: usize = b.k.iter().map(|(a, z)| z - a).sum();
                    ((b.q.1 - b.q.0) * keys) as f64
                })
                .sum(),
            _ => (self.tokens() as f64).powi(2),
        }
    }

    /// Floating-point operations of one layer forward (matmuls and attention; norms, rope and
    /// activations are a rounding error next to them).
    pub fn flops(&self) -> f64 {
        let cfg = self.config();
        let (l, h, d) = (
            self.tokens() as f64,
            self.hidden as f64,
            self.head_dim as f64,
        );
        let (hq, hkv) = (cfg.heads_q() as f64, cfg.heads_kv() as f64);
        let qkv = hq * d + 2.0 * hkv * d + cfg.gating_size() as f64;
        let linears = h * qkv
            + hq * d * h
            + h * cfg.up_gate_size(0) as f64
            + cfg.intermediate_size(0) as f64 * h;
        2.0 * l * linears + 4.0 * self.scored_pairs() * hq * d
    }
}

#[derive(Debug, Clone)]
pub struct BenchReport {
    pub seconds: f64,
    pub tokens_per_s: f64,
    pub gflops: f64,
}

fn layer_weights(cfg: &ModelConfig, dev: &Device) -> Result<HashMap<String, Tensor>> {
    let (h, d) = (cfg.hidden_size, cfg.head_dim);
    let qkv = cfg.heads_q() * d + 2 * cfg.heads_kv() * d + cfg.gating_size();
    let shapes: [(&str, Vec<usize>, f64); 8] = [
        ("attention.pre_norm.weight", vec![h], 0.1),
        ("attention.linear_qkv.weight", vec![qkv, h], 0.02),
        ("attention.q_norm.weight", vec![d], 0.1),
        ("attention.k_norm.weight", vec![d], 0.1),
        (
            "attention.linear_proj.weight",
            vec![h, cfg.heads_q() * d],
            0.02,
        ),
        ("mlp.pre_norm.weight", vec![h], 0.1),
        (
            "mlp.up_gate_proj.weight",
            vec![cfg.up_gate_size(0), h],
            0.02,
        ),
        (
            "mlp.down_proj.weight",
            vec![h, cfg.intermediate_size(0)],
            0.02,
        ),
    ];
    shapes
        .into_iter()
        .map(|(n, s, std)| Ok((n.to_string(), Tensor::randn(0f32, std as f32, s, dev)?)))
        .collect()
}

/// Times one transformer layer forward at the given width; the first run warms up caches.
pub fn bench_dit_layer(b: &DitBench, dev: &Device) -> Result<BenchReport> {
    let cfg = b.config();
    let vb = VarBuilder::from_tensors(layer_weights(&cfg, dev)?, b.dtype, dev);
    let layer = TransformerLayer::new(&cfg, 0, vb)?;
    let l = b.tokens();
    let ranges = ModalityRanges {
        video: b.video_tokens,
        audio: b.audio_tokens,
        text: b.text_tokens,
    };
    let coords: Vec<[f32; 9]> = (0..l)
        .map(|i| [i as f32, 0., 0., l as f32, 1., 1., l as f32, 1., 1.])
        .collect();
    let bands = b.head_dim / 8;
    let rope = ElementWiseFourierEmbed::from_bands(
        (0..bands)
            .map(|k| 1e-4f32.powf(k as f32 / bands as f32))
            .collect(),
    )
    .forward(&coords, dev)?;
    let x = Tensor::randn(0f32, 1., (l, cfg.hidden_size), dev)?;
    let blocks = b.blocks()?;
    let mut best = f64::INFINITY;
    for _ in 0..b.repeats.max(1) {
        let t = Instant::now();
        let out = layer.forward(&x, &rope, &ranges, blocks.as_deref())?;
        dev.synchronize()?;
        drop(out);
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(BenchReport {
        seconds: best,
        tokens_per_s: l as f64 / best,
        gflops: b.flops() / best / 1e9,
    })
}

/// Random parameters for every name asked, for timing the released widths without their
/// checkpoints: unit norm gains (`gamma`), zero biases, weight-norm magnitudes of 0.5
/// (`weight_g`), small SnakeBeta log-scales (`alpha`, `beta`), and kernels scaled by
/// `1/sqrt(fan_in)` so activations keep a sane range through deep networks.
pub struct RandomWeights;

impl SimpleBackend for RandomWeights {
    fn get(&self, s: Shape, name: &str, _: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        let t = if name.ends_with("gamma") {
            Tensor::ones(s, DType::F32, dev)?
        } else if name.ends_with("weight_g") {
            Tensor::full(0.5f32, s, dev)?
        } else if name.ends_with("alpha") || name.ends_with("beta") {
            (Tensor::randn(0f32, 1f32, s, dev)? * 0.1)?
        } else if name.ends_with("bias") {
            Tensor::zeros(s, DType::F32, dev)?
        } else {
            let fan_in: usize = s.dims().iter().skip(1).product();
            Tensor::randn(0f32, 1.0 / (fan_in.max(1) as f32).sqrt(), s, dev)?
        };
        t.to_dtype(dtype)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> Result<Tensor> {
        bail!("random weights need a shape for {name}")
    }

    fn contains_tensor(&self, _: &str) -> bool {
        true
    }
}

/// A [`VarBuilder`] over [`RandomWeights`].
pub fn random_var_builder(dtype: DType, dev: &Device) -> VarBuilder<'static> {
    VarBuilder::from_backend(Box::new(RandomWeights), dtype, dev.clone())
}

/// The process's peak resident set (`VmHWM` of `/proc/self/status`; Linux only).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Frees what the allocator keeps of released memory (glibc `malloc_trim`), then resets the
/// kernel's peak-RSS mark to the current RSS (writes `5` to `/proc/self/clear_refs`, Linux
/// 4.0+), so the next [`peak_rss_bytes`] is the peak of what runs in between. Returns whether
/// the mark was reset; elsewhere, or without the permission, the peak stays the process's.
pub fn reset_peak_rss() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the kernel; it is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The process's resident set now (`VmRSS` of `/proc/self/status`; Linux only).
pub fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Frame rate of the codec benchmarks' clips (MagiHuman's native rate).
pub const CODEC_FPS: f64 = 24.0;

/// Video frames of a `seconds` clip at [`CODEC_FPS`] as the Wan2.2 latent covers it:
/// `round(seconds * 24) + 1`, rounded down to the form `4k + 1` (5 s: 121 frames).
pub fn codec_video_frames(seconds: f64) -> usize {
    let f = (seconds.max(0.0) * CODEC_FPS).round() as usize + 1;
    f - (f - 1) % 4
}

/// Latent frames of `frames` video frames (`1 + 4k` → `1 + k`; 121 → 31).
pub fn codec_latent_frames(frames: usize) -> usize {
    frames.saturating_sub(1) / 4 + 1
}

/// Peak RSS as GiB for a report line (0 where unknown).
pub fn gib(bytes: Option<u64>) -> f64 {
    bytes.unwrap_or(0) as f64 / (1u64 << 30) as f64
}

/// One timed video decode with random weights (Wan2.2 VAE, TurboVAED).
#[derive(Debug, Clone)]
pub struct VideoDecodeBench {
    /// `[B, z, T, H, W]` of the latent decoded.
    pub latent_dims: Vec<usize>,
    /// `[B, 3, F, 16H, 16W]` of the video produced.
    pub video_dims: Vec<usize>,
    /// Wall time of the whole decode, weights excluded.
    pub decode_s: f64,
    /// Wall time of each piece the decoder hands out: a latent frame for Wan2.2 (the first
    /// yields 1 video frame, the others 4), a window for TurboVAED.
    pub per_chunk_s: Vec<f64>,
    /// Peak RSS of this process after the decode, in bytes.
    pub peak_rss_bytes: Option<u64>,
}

impl std::fmt::Display for VideoDecodeBench {
    /// `latent -> video: seconds, per chunk [..] s, peak RSS GiB`, chunk times to 0.1 s.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let chunks: Vec<f64> = self
            .per_chunk_s
            .iter()
            .map(|s| (s * 10.0).round() / 10.0)
            .collect();
        write!(
            f,
            "decode {:?} -> {:?}: {:.1} s, per chunk {chunks:?} s, peak RSS {:.2} GiB",
            self.latent_dims,
            self.video_dims,
            self.decode_s,
            gib(self.peak_rss_bytes)
        )
    }
}

/// Times `decode` of a random latent `[1, z, t, h, w]`; `decode` hands each finished chunk
/// `[1, 3, f, H, W]` to its callback, which forces and times it (lazy on GPU backends), and
/// returns the whole video's dims when its chunks overlap (otherwise they are summed).
pub fn time_video_decode(
    z: &Tensor,
    decode: impl FnOnce(&Tensor, &mut dyn FnMut(&Tensor) -> Result<()>) -> Result<Option<Vec<usize>>>,
) -> Result<VideoDecodeBench> {
    let (_, _, _, h, w) = z.dims5()?;
    let start = Instant::now();
    let mut last = start;
    let mut per_chunk_s = Vec::new();
    let mut video_dims = vec![1, 3, 0, 16 * h, 16 * w];
    let whole = decode(z, &mut |chunk: &Tensor| {
        let chunk = chunk.clamp(-1f32, 1f32)?.to_dtype(DType::F32)?;
        let _ = chunk.sum_all()?.to_scalar::<f32>()?;
        video_dims[2] += chunk.dim(2)?;
        let now = Instant::now();
        per_chunk_s.push((now - last).as_secs_f64());
        last = now;
        Ok(())
    })?;
    Ok(VideoDecodeBench {
        latent_dims: z.dims().to_vec(),
        video_dims: whole.unwrap_or(video_dims),
        decode_s: start.elapsed().as_secs_f64(),
        per_chunk_s,
        peak_rss_bytes: peak_rss_bytes(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_frames_take_the_form_4k_plus_1() {
        assert_eq!(codec_video_frames(5.0), 121);
        assert_eq!(codec_latent_frames(121), 31);
        assert_eq!(codec_video_frames(1.0), 25);
        assert_eq!(codec_latent_frames(25), 7);
        // 2.1 s: round(50.4) + 1 = 51 → 49.
        assert_eq!(codec_video_frames(2.1), 49);
        assert_eq!(codec_video_frames(0.0), 1);
        assert_eq!(codec_latent_frames(1), 1);
        for s in [0.1, 0.5, 1.3, 3.7, 10.0] {
            assert_eq!((codec_video_frames(s) - 1) % 4, 0, "{s} s");
        }
    }

    #[test]
    fn peak_rss_reset_is_harmless() {
        // On Linux the mark drops to the current RSS; elsewhere nothing happens.
        let _ = reset_peak_rss();
        let now = rss_bytes();
        if let (Some(now), Some(peak)) = (now, peak_rss_bytes()) {
            assert!(peak >= now, "peak {peak} below RSS {now}");
        }
    }
}
