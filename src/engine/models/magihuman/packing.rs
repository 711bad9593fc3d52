//! Sequence packing of the MagiHuman DiT: video, audio and text tokens in one stream.
//!
//! Port of `MagiDataProxy.process_input` / `process_output`, `get_coords` and
//! `calc_local_qk_range` in `inference/pipeline/data_proxy.py` of GAIR-NLP/daVinci-MagiHuman at
//! commit 209209b, for batch 1 (the only size the pipeline uses).

use candle::{Device, IndexOp, Result, Tensor};
use candle_core as candle;

use super::config::{CoordsStyle, DataProxyConfig};

/// Modality ids as the reference numbers them; also the expert index in multi-modality layers.
pub const VIDEO: usize = 0;
pub const AUDIO: usize = 1;
pub const TEXT: usize = 2;

/// Token counts of the packed sequence `[video; audio; text]`. Each modality is one contiguous
/// row range, which is what lets the experts run on slices instead of gathers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModalityRanges {
    pub video: usize,
    pub audio: usize,
    pub text: usize,
}

impl ModalityRanges {
    pub fn total(&self) -> usize {
        self.video + self.audio + self.text
    }

    /// `(start, len)` of each modality, in expert order.
    pub fn spans(&self) -> [(usize, usize); 3] {
        [
            (0, self.video),
            (self.video, self.audio),
            (self.video + self.audio, self.text),
        ]
    }

    /// The `[L]` modality ids.
    pub fn modality_ids(&self) -> Vec<i64> {
        let mut ids = vec![VIDEO as i64; self.video];
        ids.extend(std::iter::repeat_n(AUDIO as i64, self.audio));
        ids.extend(std::iter::repeat_n(TEXT as i64, self.text));
        ids
    }
}

/// One `(q_range, k_range)` pair of the ranged attention: queries `[q.0, q.1)` read keys
/// `[k.0, k.1)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QkRange {
    pub q: (usize, usize),
    pub k: (usize, usize),
}

/// Video geometry needed to undo the patchify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoGrid {
    pub channels: usize,
    /// Latent sizes (T, H, W).
    pub t: usize,
    pub h: usize,
    pub w: usize,
    pub pt: usize,
    pub p: usize,
}

impl VideoGrid {
    /// Token grid (T', H', W').
    pub fn tokens_thw(&self) -> (usize, usize, usize) {
        (self.t / self.pt, self.h / self.p, self.w / self.p)
    }

    pub fn num_tokens(&self) -> usize {
        let (t, h, w) = self.tokens_thw();
        t * h * w
    }

    /// Features per video token (Cv).
    pub fn token_channels(&self) -> usize {
        self.channels * self.pt * self.p * self.p
    }
}

/// The packed input of one forward.
#[derive(Debug, Clone)]
pub struct Packed {
    /// `[L, Cmax]`, zero-padded on the right.
    pub x: Tensor,
    /// `[L, 9]` f32 `(t, h, w, T, H, W, refT, refH, refW)`.
    pub coords: Vec<[f32; 9]>,
    pub ranges: ModalityRanges,
    pub grid: VideoGrid,
    /// Audio features per token (Ca).
    pub audio_channels: usize,
    /// Local-attention `(q_range, k_range)` pairs, when `frame_receptive_field != -1`.
    pub local_ranges: Option<Vec<QkRange>>,
}

impl Packed {
    pub fn coords_tensor(&self, device: &Device) -> Result<Tensor> {
        let flat: Vec<f32> = self.coords.iter().flatten().copied().collect();
        Tensor::from_vec(flat, (self.coords.len(), 9), device)
    }

    pub fn modality_tensor(&self, device: &Device) -> Result<Tensor> {
        let ids = self.ranges.modality_ids();
        Tensor::from_vec(ids, self.ranges.total(), device)
    }
}

/// `UnfoldNd` with kernel = stride = (pT, p, p): `[1, C, T, H, W]` → `[T'H'W', C*pT*p*p]`,
/// tokens `(t, h, w)` row-major, features `(c, kt, kh, kw)`.
pub fn patchify(latent_video: &Tensor, pt: usize, p: usize) -> Result<(Tensor, VideoGrid)> {
    let (b, c, t, h, w) = latent_video.dims5()?;
    if b != 1 || pt == 0 || p == 0 || t % pt != 0 || h % p != 0 || w % p != 0 {
        candle::bail!(
            "magihuman patchify: latent_video {:?} needs batch 1 and T, H, W divisible by ({pt}, {p}, {p})",
            latent_video.dims()
        )
    }
    let grid = VideoGrid {
        channels: c,
        t,
        h,
        w,
        pt,
        p,
    };
    let (tt, hh, ww) = grid.tokens_thw();
    let x = latent_video
        .reshape(vec![c, tt, pt, hh, p, ww, p])?
        .permute(vec![1, 3, 5, 0, 2, 4, 6])?
        .reshape((tt * hh * ww, c * pt * p * p))?;
    Ok((x, grid))
}

/// Inverse of the output layout: `[Nv, pT*p*p*C]` with features `(kt, kh, kw, c)` (not the
/// input's `(c, kt, kh, kw)`: `final_linear_video` was trained for this order) → `[1, C, T, H, W]`.
pub fn depatchify(tokens: &Tensor, grid: &VideoGrid) -> Result<Tensor> {
    let (tt, hh, ww) = grid.tokens_thw();
    let (c, pt, p) = (grid.channels, grid.pt, grid.p);
    let (n, f) = tokens.dims2()?;
    if n != tt * hh * ww || f != grid.token_channels() {
        candle::bail!(
            "magihuman depatchify: tokens {:?} do not match grid {tt}x{hh}x{ww} with {} features",
            tokens.dims(),
            grid.token_channels()
        )
    }
    tokens
        .reshape(vec![tt, hh, ww, pt, p, p, c])?
        .permute(vec![6, 0, 3, 1, 4, 2, 5])?
        .reshape((1, c, grid.t, grid.h, grid.w))
}

/// `get_coords`: one row per `(t, h, w)` of `shape`, row-major, with the sizes and reference sizes.
fn grid_coords(out: &mut Vec<[f32; 9]>, shape: [usize; 3], reference: [usize; 3], offset_t: i64) {
    let [st, sh, sw] = shape;
    let meta = [
        st as f32,
        sh as f32,
        sw as f32,
        reference[0] as f32,
        reference[1] as f32,
        reference[2] as f32,
    ];
    for t in 0..st {
        for h in 0..sh {
            for w in 0..sw {
                let tc = (t as i64 + offset_t) as f32;
                out.push([
                    tc, h as f32, w as f32, meta[0], meta[1], meta[2], meta[3], meta[4], meta[5],
                ]);
            }
        }
    }
}

/// Coordinates of the packed sequence. Video reference sizes equal the sizes because the
/// reference hard-codes `spatial_rope_interpolation = "extra"`.
pub fn coords(
    grid: &VideoGrid,
    num_audio: usize,
    num_text: usize,
    cfg: &DataProxyConfig,
) -> Vec<[f32; 9]> {
    let (tt, hh, ww) = grid.tokens_thw();
    let mut out = Vec::with_capacity(grid.num_tokens() + num_audio + num_text);
    grid_coords(&mut out, [tt, hh, ww], [tt, hh, ww], 0);
    match cfg.coords_style {
        CoordsStyle::V1 => {
            grid_coords(&mut out, [num_audio, 1, 1], [tt, 1, 1], 0);
            grid_coords(&mut out, [num_text, 1, 1], [2, 1, 1], cfg.text_offset);
        }
        CoordsStyle::V2 => {
            // Audio runs 4x the latent frame rate (the reference's constant; Nano's can be
            // 2): this ref size makes rope align the two.
            let per_frame = cfg.audio_per_latent_frame.max(1);
            let audio_ref_t = (num_audio.saturating_sub(1) / per_frame + 1) / grid.pt;
            grid_coords(&mut out, [num_audio, 1, 1], [audio_ref_t, 1, 1], 0);
            grid_coords(&mut out, [num_text, 1, 1], [1, 1, 1], -(num_text as i64));
        }
    }
    out
}

/// `calc_local_qk_range`: `num_frames` is the latent time size T (not T/pT), as in the reference.
pub fn local_qk_ranges(
    num_video: usize,
    num_audio_text: usize,
    num_frames: usize,
    frame_receptive_field: usize,
) -> Vec<QkRange> {
    let total = num_video + num_audio_text;
    let tpf = num_video / num_frames.max(1);
    let f = frame_receptive_field;
    let mut pairs = Vec::with_capacity(num_frames + 2);
    for j in 0..num_frames {
        let k0 = (j.saturating_sub(f) * tpf).min(num_video);
        let k1 = ((j + f + 1) * tpf).min(num_video);
        pairs.push(QkRange {
            q: (j * tpf, (j + 1) * tpf),
            k: (k0, k1),
        });
    }
    pairs.push(QkRange {
        q: (0, num_video),
        k: (num_video, total),
    });
    pairs.push(QkRange {
        q: (num_video, total),
        k: (0, total),
    });
    pairs
}

/// The queries `[q.0, q.1)` of one block of the ranged attention and the key ranges they all
/// read (sorted, disjoint, non-empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttnBlock {
    pub q: (usize, usize),
    pub k: Vec<(usize, usize)>,
}

/// The ranged attention as blocks that tile the query axis `[0, total)` in order: each block's
/// queries read the union of the key ranges of every pair covering them. What the reference's
/// flex attention computes, without the `[L, L]` mask: each block is a dense attention over its
/// own keys, so the cost grows with the receptive field, not with the clip's length.
pub fn attn_blocks(pairs: &[QkRange], total: usize) -> Result<Vec<AttnBlock>> {
    let mut cuts = vec![0, total];
    for p in pairs {
        cuts.extend([p.q.0.min(total), p.q.1.min(total)]);
    }
    cuts.sort_unstable();
    cuts.dedup();
    let mut blocks: Vec<AttnBlock> = Vec::with_capacity(cuts.len());
    for w in cuts.windows(2) {
        let (q0, q1) = (w[0], w[1]);
        let mut k: Vec<(usize, usize)> = pairs
            .iter()
            .filter(|p| p.q.0 <= q0 && q1 <= p.q.1)
            .map(|p| (p.k.0.min(total), p.k.1.min(total)))
            .filter(|(a, b)| a < b)
            .collect();
        k.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(k.len());
        for (a, b) in k {
            match merged.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        if merged.is_empty() {
            candle::bail!("magihuman ranged attention: queries {q0}..{q1} of {total} read no key")
        }
        match blocks.last_mut() {
            // Neighbouring queries that read the same keys are one block.
            Some(last) if last.k == merged => last.q.1 = q1,
            _ => blocks.push(AttnBlock {
                q: (q0, q1),
                k: merged,
            }),
        }
    }
    Ok(blocks)
}

/// `process_input` for batch 1: patchify the video, keep all audio rows and the first
/// `txt_len` text rows, zero-pad every part to `Cmax` columns and concatenate.
pub fn pack(
    latent_video: &Tensor,
    latent_audio: &Tensor,
    txt_feat: &Tensor,
    txt_len: usize,
    cfg: &DataProxyConfig,
) -> Result<Packed> {
    let (video, grid) = patchify(latent_video, cfg.t_patch_size, cfg.patch_size)?;
    let (ba, na, ca) = latent_audio.dims3()?;
    let (bt, nt_pad, ct) = txt_feat.dims3()?;
    if ba != 1 || bt != 1 || txt_len > nt_pad {
        candle::bail!(
            "magihuman pack: latent_audio {:?} and txt_feat {:?} need batch 1 and txt_len {txt_len} <= {nt_pad}",
            latent_audio.dims(),
            txt_feat.dims()
        )
    }
    let audio = latent_audio.i(0)?;
    let text = txt_feat.i(0)?.narrow(0, 0, txt_len)?;
    let cv = grid.token_channels();
    let cmax = cv.max(ca).max(ct);
    let dtype = latent_video.dtype();
    let pad = |t: Tensor, c: usize| -> Result<Tensor> {
        let t = t.to_dtype(dtype)?;
        if c < cmax {
            t.pad_with_zeros(1, 0, cmax - c)
        } else {
            Ok(t)
        }
    };
    let x = Tensor::cat(&[pad(video, cv)?, pad(audio, ca)?, pad(text, ct)?], 0)?;

    let ranges = ModalityRanges {
        video: grid.num_tokens(),
        audio: na,
        text: txt_len,
    };
    let coords = coords(&grid, na, txt_len, cfg);
    let local_ranges = if cfg.frame_receptive_field >= 0 {
        Some(local_qk_ranges(
            ranges.video,
            na + txt_len,
            grid.t,
            cfg.frame_receptive_field as usize,
        ))
    } else {
        None
    };
    Ok(Packed {
        x,
        coords,
        ranges,
        grid,
        audio_channels: ca,
        local_ranges,
    })
}

/// `process_output`: the model output `[L, max(Cv, Ca)]` → (`v_video [1,C,T,H,W]`, `v_audio [1,Na,Ca]`).
pub fn depack(out: &Tensor, packed: &Packed) -> Result<(Tensor, Tensor)> {
    let r = packed.ranges;
    let video = out
        .narrow(0, 0, r.video)?
        .narrow(1, 0, packed.grid.token_channels())?;
    let video = depatchify(&video, &packed.grid)?;
    let audio = out
        .narrow(0, r.video, r.audio)?
        .narrow(1, 0, packed.audio_channels)?
        .unsqueeze(0)?;
    Ok((video, audio))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rope time of each audio row: its index scaled by (reference - 1) / (size - 1).
    fn audio_times(per_frame: usize, num_audio: usize) -> Vec<f32> {
        let grid = VideoGrid {
            channels: 1,
            t: 3,
            h: 1,
            w: 1,
            pt: 1,
            p: 1,
        };
        let cfg = DataProxyConfig {
            audio_per_latent_frame: per_frame,
            ..DataProxyConfig::base()
        };
        coords(&grid, num_audio, 2, &cfg)[3..3 + num_audio]
            .iter()
            .map(|c| c[0] * (c[6] - 1.0) / (c[3] - 1.0))
            .collect()
    }

    #[test]
    fn v2_puts_every_audio_latent_on_the_latent_frame_of_its_pixel_frame() {
        // MagiHuman: 3 latent frames hold 9 pixel frames, one audio latent each.
        assert_eq!(
            audio_times(4, 9),
            [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0]
        );
        // A stride-2 codec: 3 latent frames hold 5.
        assert_eq!(audio_times(2, 5), [0.0, 0.5, 1.0, 1.5, 2.0]);
    }

    #[test]
    fn local_blocks_are_the_frames_windows_plus_audio_and_text() {
        // 4 latent frames of 3 tokens, 2 audio + 1 text, one frame each side.
        let pairs = local_qk_ranges(12, 3, 4, 1);
        let blocks = attn_blocks(&pairs, 15).unwrap();
        let want = |q: (usize, usize), k: &[(usize, usize)]| AttnBlock { q, k: k.to_vec() };
        // Touching key ranges are one: the last frames' windows run into the audio.
        assert_eq!(
            blocks,
            [
                want((0, 3), &[(0, 6), (12, 15)]),
                want((3, 6), &[(0, 9), (12, 15)]),
                want((6, 9), &[(3, 15)]),
                want((9, 12), &[(6, 15)]),
                want((12, 15), &[(0, 15)]),
            ]
        );
        // A field covering every frame: one block, the whole sequence.
        assert_eq!(
            attn_blocks(&local_qk_ranges(12, 3, 4, 9), 15).unwrap(),
            [want((0, 15), &[(0, 15)])]
        );
    }

    #[test]
    fn queries_without_keys_are_refused() {
        let pairs = [QkRange {
            q: (0, 4),
            k: (0, 4),
        }];
        let err = attn_blocks(&pairs, 6).unwrap_err().to_string();
        assert!(err.contains("queries 4..6 of 6 read no key"), "{err}");
    }
}
