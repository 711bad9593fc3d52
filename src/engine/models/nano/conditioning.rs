//! What Nano tells its DiT beyond the latents: where each token sits and how noisy the latent
//! is, as extra input channels next to the latent channels.
//!
//! MagiHuman's DiT has no absolute position embedding (rope is relative) and no timestep input:
//! a 15B model infers both from its context (frame edges, the statistics of the latent). At
//! Nano's size and training budget it does not: trained without these channels, it draws the
//! caption's palette as texture all over the frame, with no horizon and no object, and it
//! cannot tell a noisy latent from a clean one, since both have unit variance. So Nano appends
//! them ([CoordConv]-style), the DiT reads them through its ordinary input embedders and its
//! velocity for them is dropped: the DiT code path, packing, rope and sampler are unchanged.
//!
//! Video tokens get `[y, x, sin πy, sin πx, cos πy, cos πx, time, σ]` with `y, x` the cell
//! centre in `[-1, 1]` (the same for every aspect ratio: -1 is the top and left edge); audio
//! tokens get `[time, σ]`. Time is `1 - exp(-seconds)`: it marks the start of the clip (where a
//! fall is released) and saturates, so clips longer than any trained on read as "later".
//!
//! With `progress` every token also gets how far through the clip it is, `0` on the first
//! frame and `1` on the last. Slides and pans cover their span over the whole clip, so where
//! the object is depends on that fraction, which the saturating time cannot tell apart past
//! the first second and rope, being relative, gives no token directly (trained without it,
//! Nano draws a slide as a streak over its whole path in every frame).
//!
//! With `clock` every token also gets its time in the clip as the sines and cosines of three
//! periods, 0.5, 1 and 2 s ([`CLOCK_PERIODS_S`]): the saturating time above tells 0.375 s
//! from 0.5 s but 2.0 s from 2.125 s only by 0.015, and progress depends on the clip's
//! length, so without it no token knows to within an audio frame when it is, which is
//! what placing a hit at a contact takes. The clock is periodic and its longest period is
//! shorter than the DiT's training clips (up to 2.6 s), so a clip of any length reads only
//! values trained on; time modulo 2 s plus the saturating time still tell the first seconds'
//! frames apart. (Periods up to 16 s, which tell a 10 s clip's frames apart without the
//! time channel, were measured and dropped: at 4 s clips their slow channels took values no
//! training clip had and motion adherence fell from 92% at 2 s to 52-65%.) A config may
//! name other periods (`clock_periods_s`): periods up to 16 s never repeat within a 10 s
//! clip, and every value such a clip reads is trained on when the DiT's short training
//! clips are cut from anywhere in clips up to 10 s long ([`Span`]).
//!
//! A [`Span`] says where a training clip was cut from: its tokens read the time, progress and
//! clock of their place in the whole clip, so a 2 s cut from the middle of a 10 s clip teaches
//! the DiT what the middle of a 10 s clip looks and sounds like at a 2 s clip's cost.
//!
//! With `pooled_text` every token also gets the mean of the caption's text features. The DiT
//! still attends to the text tokens; the pooled copy only spares a small model from learning
//! to route each word to each token before it can use it (trained without it, Nano follows
//! the colour, which fills many cells, and ignores shape, motion and "silent").
//!
//! [CoordConv]: https://arxiv.org/abs/1807.03247

use std::f32::consts::PI;

use candle::{Device, Result, Tensor};
use candle_core as candle;

/// Extra channels appended to each video token.
pub const VIDEO_CHANNELS: usize = 8;
/// Extra channels appended to each audio token.
pub const AUDIO_CHANNELS: usize = 2;
/// One more channel on every token with `progress`: the fraction of the clip behind it.
pub const PROGRESS_CHANNELS: usize = 1;
/// Periods of the `clock` channels, seconds: together they tell any two audio frames of a
/// 2 s window apart; the shortest turns a quarter of its period per audio frame. All are
/// shorter than the training clips, so every value a clip of any length reads was trained.
pub const CLOCK_PERIODS_S: [f32; 3] = [0.5, 1.0, 2.0];
/// Channels on every token with the default clock: a sine and a cosine per period.
pub const CLOCK_CHANNELS: usize = 2 * CLOCK_PERIODS_S.len();

/// Where a clip's frames sit in the clip they were cut from: frames `start..start + n` of
/// `total`. Video spans count latent frames, audio spans pixel frames (one audio latent
/// each). A whole clip is `start 0, total n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub total: usize,
}

impl Span {
    /// A whole clip of `n` frames.
    pub fn whole(n: usize) -> Self {
        Self { start: 0, total: n }
    }
}

fn clip_time(seconds: f32) -> f32 {
    1.0 - (-seconds).exp()
}

/// Position `i` of `n` as a fraction of the clip: 0 on the first, 1 on the last.
fn progress_of(i: usize, n: usize) -> f32 {
    if n > 1 {
        i as f32 / (n - 1) as f32
    } else {
        0.0
    }
}

/// Cell centres of `n` cells spanning `[-1, 1]`.
fn centres(n: usize) -> impl Iterator<Item = f32> {
    (0..n).map(move |i| (2.0 * i as f32 + 1.0) / n as f32 - 1.0)
}

/// `[1, C, T, H, W]` for a video latent of `T x H x W` cells whose latent frames span
/// `latent_frame_s` seconds each (latent frame `t` ends on pixel frame `st`, s the codec's
/// temporal stride), cut at `span` (latent frames), and noise level `sigma`: `C` is
/// `VIDEO_CHANNELS`, plus `PROGRESS_CHANNELS` with `progress`.
pub fn video(
    (t, h, w): (usize, usize, usize),
    latent_frame_s: f32,
    sigma: f32,
    progress: bool,
    span: Span,
    device: &Device,
) -> Result<Tensor> {
    let n = t * h * w;
    let channels = VIDEO_CHANNELS + if progress { PROGRESS_CHANNELS } else { 0 };
    let mut out = vec![0f32; channels * n];
    let frame_s = latent_frame_s;
    let mut i = 0;
    for ti in span.start..span.start + t {
        let time = clip_time(ti as f32 * frame_s);
        let through = progress_of(ti, span.total);
        for y in centres(h) {
            for x in centres(w) {
                let feats = [
                    y,
                    x,
                    (PI * y).sin(),
                    (PI * x).sin(),
                    (PI * y).cos(),
                    (PI * x).cos(),
                    time,
                    sigma,
                ];
                for (c, v) in feats.into_iter().enumerate() {
                    out[c * n + i] = v;
                }
                if progress {
                    out[VIDEO_CHANNELS * n + i] = through;
                }
                i += 1;
            }
        }
    }
    Tensor::from_vec(out, (1, channels, t, h, w), device)
}

/// `[1, Na, C]`: audio latent `i` sounds with pixel frame `i` (of the clip cut at `span`,
/// pixel frames). `C` is `AUDIO_CHANNELS` (`[time, σ]`), plus `PROGRESS_CHANNELS` with
/// `progress`.
pub fn audio(
    na: usize,
    native_fps: u32,
    sigma: f32,
    progress: bool,
    span: Span,
    device: &Device,
) -> Result<Tensor> {
    let fps = native_fps.max(1) as f32;
    let channels = AUDIO_CHANNELS + if progress { PROGRESS_CHANNELS } else { 0 };
    let mut out = Vec::with_capacity(na * channels);
    for i in span.start..span.start + na {
        out.extend([clip_time(i as f32 / fps), sigma]);
        if progress {
            out.push(progress_of(i, span.total));
        }
    }
    Tensor::from_vec(out, (1, na, channels), device)
}

/// `[sin, cos]` of `2π seconds / P` for each period `P` of `periods`.
fn clock(seconds: f32, periods: &[f32]) -> impl Iterator<Item = f32> + '_ {
    periods.iter().flat_map(move |p| {
        let phase = 2.0 * PI * seconds / p;
        [phase.sin(), phase.cos()]
    })
}

/// `[1, 2P, T, H, W]` for `P` clock `periods`: the clock of each latent frame's time (the
/// time channel's, the end of its group of pixel frames), the same on every cell; latent
/// frames span `latent_frame_s` seconds and the first is latent frame `start` of its clip.
pub fn clock_video(
    (t, h, w): (usize, usize, usize),
    latent_frame_s: f32,
    periods: &[f32],
    start: usize,
    device: &Device,
) -> Result<Tensor> {
    let c = 2 * periods.len();
    let per_frame: Vec<f32> = (start..start + t)
        .flat_map(|ti| clock(ti as f32 * latent_frame_s, periods))
        .collect();
    Tensor::from_vec(per_frame, (t, c), device)?
        .t()?
        .reshape((1, c, t, 1, 1))?
        .broadcast_as((1, c, t, h, w))?
        .contiguous()
}

/// `[1, Na, 2P]`: the clock of each audio latent's pixel frame, the first being pixel frame
/// `start` of its clip.
pub fn clock_audio(
    na: usize,
    native_fps: u32,
    periods: &[f32],
    start: usize,
    device: &Device,
) -> Result<Tensor> {
    let fps = native_fps.max(1) as f32;
    let v: Vec<f32> = (start..start + na)
        .flat_map(|i| clock(i as f32 / fps, periods))
        .collect();
    Tensor::from_vec(v, (1, na, 2 * periods.len()), device)
}

/// `[1, C]`: the mean of the first `txt_len` text features of `txt` `[1, L, C]`.
pub fn pooled_text(txt: &Tensor, txt_len: usize) -> Result<Tensor> {
    let l = txt_len.clamp(1, txt.dim(1)?);
    txt.narrow(1, 0, l)?.mean(1)
}

/// `pooled` `[1, C]` as `[1, C, T, H, W]` channels for a video latent of `T x H x W` cells.
pub fn pooled_video(pooled: &Tensor, (t, h, w): (usize, usize, usize)) -> Result<Tensor> {
    let c = pooled.dim(1)?;
    pooled
        .reshape((1, c, 1, 1, 1))?
        .broadcast_as((1, c, t, h, w))?
        .contiguous()
}

/// `pooled` `[1, C]` as `[1, Na, C]` channels for `na` audio latents.
pub fn pooled_audio(pooled: &Tensor, na: usize) -> Result<Tensor> {
    let c = pooled.dim(1)?;
    pooled
        .reshape((1, 1, c))?
        .broadcast_as((1, na, c))?
        .contiguous()
}

/// `latent` with `extra` appended on `channel_dim` (in the latent's dtype).
pub fn append(latent: &Tensor, extra: &Tensor, channel_dim: usize) -> Result<Tensor> {
    Tensor::cat(&[latent, &extra.to_dtype(latent.dtype())?], channel_dim)
}

/// The first `channels` of `x` on `channel_dim`: the DiT's velocity for the latent channels.
pub fn latent_part(x: &Tensor, channels: usize, channel_dim: usize) -> Result<Tensor> {
    x.narrow(channel_dim, 0, channels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn video_channels_mark_edges_time_and_sigma() {
        let c = video((3, 2, 4), 0.5, 0.25, false, Span::whole(3), &Device::Cpu).unwrap();
        assert_eq!(c.dims(), &[1, VIDEO_CHANNELS, 3, 2, 4]);
        let c = c.squeeze(0).unwrap();
        let v: Vec<Vec<Vec<Vec<f32>>>> = (0..VIDEO_CHANNELS)
            .map(|ch| c.get(ch).unwrap().to_vec3::<f32>().unwrap())
            .collect();
        // y: top row -0.5, bottom row 0.5 for two rows; x: -0.75 .. 0.75 for four columns.
        assert_eq!(v[0][0][0][0], -0.5);
        assert_eq!(v[0][0][1][0], 0.5);
        assert_eq!(v[1][2][1][0], -0.75);
        assert_eq!(v[1][2][1][3], 0.75);
        // Time starts at 0 and grows with the latent frame (0.5 s per latent frame at 8 fps).
        assert_eq!(v[6][0][0][0], 0.0);
        assert!((v[6][1][0][0] - (1.0 - (-0.5f32).exp())).abs() < 1e-6);
        assert!(v[6][2][1][3] > v[6][1][1][3]);
        assert!(v[7].iter().flatten().flatten().all(|&s| s == 0.25));
    }

    #[test]
    fn audio_channels_follow_pixel_frames() {
        let a = audio(5, 8, 0.5, false, Span::whole(5), &Device::Cpu).unwrap();
        assert_eq!(a.dims(), &[1, 5, AUDIO_CHANNELS]);
        let v = a.squeeze(0).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(v[0], [0.0, 0.5]);
        assert!((v[4][0] - (1.0 - (-0.5f32).exp())).abs() < 1e-6);
    }

    #[test]
    fn progress_runs_from_the_first_frame_to_the_last_in_video_and_audio() {
        let dev = &Device::Cpu;
        let c = video((5, 2, 3), 0.5, 0.5, true, Span::whole(5), dev).unwrap();
        assert_eq!(c.dims(), &[1, VIDEO_CHANNELS + PROGRESS_CHANNELS, 5, 2, 3]);
        let p = c.squeeze(0).unwrap().get(VIDEO_CHANNELS).unwrap();
        let p = p.to_vec3::<f32>().unwrap();
        let per_frame: Vec<f32> = p.iter().map(|f| f[1][2]).collect();
        assert_eq!(per_frame, [0.0, 0.25, 0.5, 0.75, 1.0]);
        assert!(p.iter().all(|f| f.iter().flatten().all(|&v| v == f[0][0])));
        // The channels before it are the ones without progress.
        let without = video((5, 2, 3), 0.5, 0.5, false, Span::whole(5), dev).unwrap();
        let head = c.narrow(1, 0, VIDEO_CHANNELS).unwrap();
        assert_eq!(
            (head - without)
                .unwrap()
                .abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap(),
            0.0
        );
        // Audio: 17 latents for the same 5 latent frames (4(5-1)+1 pixel frames); latent 4i
        // sounds with the end of latent frame i, so their progress agrees.
        let a = audio(17, 8, 0.5, true, Span::whole(17), dev)
            .unwrap()
            .squeeze(0)
            .unwrap();
        let a = a.to_vec2::<f32>().unwrap();
        assert_eq!(a[0].len(), AUDIO_CHANNELS + PROGRESS_CHANNELS);
        for (ti, want) in per_frame.iter().enumerate() {
            assert_eq!(a[4 * ti][AUDIO_CHANNELS], *want);
        }
        // A single frame is the clip's start.
        let one = video((1, 1, 1), 0.5, 0.5, true, Span::whole(1), dev).unwrap();
        let one = one.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(one[VIDEO_CHANNELS], 0.0);
    }

    #[test]
    fn pooled_text_is_the_mean_of_the_real_tokens_on_every_cell() {
        let dev = &Device::Cpu;
        // Two real tokens and one padding row that must not count.
        let txt = Tensor::new(&[[[1f32, 2.0], [3.0, 6.0], [100.0, 100.0]]], dev).unwrap();
        let p = pooled_text(&txt, 2).unwrap();
        assert_eq!(p.to_vec2::<f32>().unwrap(), [[2.0, 4.0]]);
        let v = pooled_video(&p, (2, 1, 3)).unwrap();
        assert_eq!(v.dims(), &[1, 2, 2, 1, 3]);
        let v = v.squeeze(0).unwrap().flatten_from(1).unwrap();
        assert_eq!(v.to_vec2::<f32>().unwrap(), [[2.0; 6], [4.0; 6]]);
        let a = pooled_audio(&p, 3).unwrap();
        assert_eq!(
            a.squeeze(0).unwrap().to_vec2::<f32>().unwrap(),
            [[2.0, 4.0]; 3]
        );
    }

    #[test]
    fn append_and_latent_part_round_trip() {
        let z = Tensor::arange(0f32, 24.0, &Device::Cpu)
            .unwrap()
            .reshape((1, 2, 3, 2, 2))
            .unwrap();
        let x = append(
            &z,
            &video((3, 2, 2), 0.5, 1.0, false, Span::whole(3), &Device::Cpu).unwrap(),
            1,
        )
        .unwrap();
        assert_eq!(x.dims(), &[1, 2 + VIDEO_CHANNELS, 3, 2, 2]);
        let back = latent_part(&x, 2, 1).unwrap();
        assert_eq!(
            back.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            z.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );
    }

    /// Channel `c` of every latent frame (cell 0, 0) of a `[1, C, T, H, W]` tensor.
    fn per_frame(x: &Tensor, c: usize) -> Vec<f32> {
        let x = x
            .squeeze(0)
            .unwrap()
            .get(c)
            .unwrap()
            .to_vec3::<f32>()
            .unwrap();
        x.iter().map(|f| f[0][0]).collect()
    }

    #[test]
    fn a_cut_reads_the_channels_of_its_place_in_the_whole_clip() {
        let dev = &Device::Cpu;
        let periods = [0.5, 1.0, 2.0, 4.0, 8.0, 16.0];
        // Latent frames 7..11 of a 21-frame clip (10 s at 8 fps, stride 4), and its audio:
        // pixel frames 28..45 of 81.
        let (start, t, total) = (7, 5, 21);
        let cut = Span { start, total };
        let whole_v = video((total, 2, 3), 0.5, 0.3, true, Span::whole(total), dev).unwrap();
        let cut_v = video((t, 2, 3), 0.5, 0.3, true, cut, dev).unwrap();
        for c in 0..VIDEO_CHANNELS + PROGRESS_CHANNELS {
            assert_eq!(
                per_frame(&cut_v, c),
                per_frame(&whole_v, c)[start..start + t]
            );
        }
        let whole_a = audio(81, 8, 0.3, true, Span::whole(81), dev).unwrap();
        let cut_a = audio(
            17,
            8,
            0.3,
            true,
            Span {
                start: 28,
                total: 81,
            },
            dev,
        )
        .unwrap();
        let whole_a = whole_a.squeeze(0).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(
            cut_a.squeeze(0).unwrap().to_vec2::<f32>().unwrap(),
            whole_a[28..45]
        );
        let whole_c = clock_video((total, 1, 1), 0.5, &periods, 0, dev).unwrap();
        let cut_c = clock_video((t, 1, 1), 0.5, &periods, start, dev).unwrap();
        for c in 0..12 {
            assert_eq!(
                per_frame(&cut_c, c),
                per_frame(&whole_c, c)[start..start + t]
            );
        }
        let whole_ca = clock_audio(81, 8, &periods, 0, dev)
            .unwrap()
            .squeeze(0)
            .unwrap();
        let cut_ca = clock_audio(17, 8, &periods, 28, dev)
            .unwrap()
            .squeeze(0)
            .unwrap();
        assert_eq!(
            cut_ca.to_vec2::<f32>().unwrap(),
            whole_ca.to_vec2::<f32>().unwrap()[28..45]
        );
        // The cut's first frame is not the clip's start: time and progress say so.
        assert!(per_frame(&cut_v, 6)[0] > 0.9 && per_frame(&cut_v, 8)[0] == 7.0 / 20.0);
        // With a 16 s period no two audio frames of 10 s read alike.
        let a = whole_ca.to_vec2::<f32>().unwrap();
        for i in 0..81 {
            for j in 0..i {
                let d: f32 = a[i].iter().zip(&a[j]).map(|(x, y)| (x - y).abs()).sum();
                assert!(d > 1e-3, "frames {j} and {i} read alike ({d})");
            }
        }
    }

    #[test]
    fn the_clock_tells_every_audio_frame_of_two_seconds_apart_and_repeats_after() {
        let dev = &Device::Cpu;
        // 4 s at 8 fps: within any 2 s (16 audio latents) each latent's clock is its own,
        // and a latent 2 s later reads exactly as one within the first 2 s (trained values).
        let a = clock_audio(32, 8, &CLOCK_PERIODS_S, 0, dev)
            .unwrap()
            .squeeze(0)
            .unwrap();
        let a = a.to_vec2::<f32>().unwrap();
        for i in 0..16 {
            for j in 0..i {
                let d: f32 = a[i].iter().zip(&a[j]).map(|(x, y)| (x - y).abs()).sum();
                assert!(d > 0.1, "frames {j} and {i} read alike ({d})");
            }
            let d: f32 = a[i]
                .iter()
                .zip(&a[i + 16])
                .map(|(x, y)| (x - y).abs())
                .sum();
            assert!(d < 1e-4, "frame {} does not repeat frame {i} ({d})", i + 16);
        }
        // Latent frame 3 ends on pixel frame 12: its clock is audio latent 12's.
        let v = clock_video((5, 2, 3), 0.5, &CLOCK_PERIODS_S, 0, dev).unwrap();
        assert_eq!(v.dims(), &[1, CLOCK_CHANNELS, 5, 2, 3]);
        let cell: Vec<f32> = (0..CLOCK_CHANNELS)
            .map(|c| {
                v.squeeze(0)
                    .unwrap()
                    .get(c)
                    .unwrap()
                    .to_vec3::<f32>()
                    .unwrap()[3][1][2]
            })
            .collect();
        for (x, y) in cell.iter().zip(&a[12]) {
            assert!((x - y).abs() < 1e-6, "{cell:?} vs {:?}", a[12]);
        }
    }
}
