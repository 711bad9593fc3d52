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
//! training clip had and motion adherence fell from 92% at 2 s to 52-65%.)
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
/// Channels on every token with `clock`: a sine and a cosine per period.
pub const CLOCK_CHANNELS: usize = 2 * CLOCK_PERIODS_S.len();

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
/// temporal stride) and noise level `sigma`: `C` is
/// `VIDEO_CHANNELS`, plus `PROGRESS_CHANNELS` with `progress`.
pub fn video(
    (t, h, w): (usize, usize, usize),
    latent_frame_s: f32,
    sigma: f32,
    progress: bool,
    device: &Device,
) -> Result<Tensor> {
    let n = t * h * w;
    let channels = VIDEO_CHANNELS + if progress { PROGRESS_CHANNELS } else { 0 };
    let mut out = vec![0f32; channels * n];
    let frame_s = latent_frame_s;
    let mut i = 0;
    for ti in 0..t {
        let time = clip_time(ti as f32 * frame_s);
        let through = progress_of(ti, t);
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

/// `[1, Na, C]`: audio latent `i` sounds with pixel frame `i`. `C` is `AUDIO_CHANNELS`
/// (`[time, σ]`), plus `PROGRESS_CHANNELS` with `progress`.
pub fn audio(
    na: usize,
    native_fps: u32,
    sigma: f32,
    progress: bool,
    device: &Device,
) -> Result<Tensor> {
    let fps = native_fps.max(1) as f32;
    let channels = AUDIO_CHANNELS + if progress { PROGRESS_CHANNELS } else { 0 };
    let mut out = Vec::with_capacity(na * channels);
    for i in 0..na {
        out.extend([clip_time(i as f32 / fps), sigma]);
        if progress {
            out.push(progress_of(i, na));
        }
    }
    Tensor::from_vec(out, (1, na, channels), device)
}

/// `[sin, cos]` of `2π seconds / P` for each period `P` of [`CLOCK_PERIODS_S`].
fn clock(seconds: f32) -> [f32; CLOCK_CHANNELS] {
    let mut out = [0f32; CLOCK_CHANNELS];
    for (k, p) in CLOCK_PERIODS_S.iter().enumerate() {
        let phase = 2.0 * PI * seconds / p;
        out[2 * k] = phase.sin();
        out[2 * k + 1] = phase.cos();
    }
    out
}

/// `[1, CLOCK_CHANNELS, T, H, W]`: the clock of each latent frame's time (the time channel's,
/// the end of its group of pixel frames), the same on every cell; latent frames span
/// `latent_frame_s` seconds.
pub fn clock_video(
    (t, h, w): (usize, usize, usize),
    latent_frame_s: f32,
    device: &Device,
) -> Result<Tensor> {
    let per_frame: Vec<f32> = (0..t)
        .flat_map(|ti| clock(ti as f32 * latent_frame_s))
        .collect();
    Tensor::from_vec(per_frame, (t, CLOCK_CHANNELS), device)?
        .t()?
        .reshape((1, CLOCK_CHANNELS, t, 1, 1))?
        .broadcast_as((1, CLOCK_CHANNELS, t, h, w))?
        .contiguous()
}

/// `[1, Na, CLOCK_CHANNELS]`: the clock of each audio latent's pixel frame.
pub fn clock_audio(na: usize, native_fps: u32, device: &Device) -> Result<Tensor> {
    let fps = native_fps.max(1) as f32;
    let v: Vec<f32> = (0..na).flat_map(|i| clock(i as f32 / fps)).collect();
    Tensor::from_vec(v, (1, na, CLOCK_CHANNELS), device)
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
        let c = video((3, 2, 4), 0.5, 0.25, false, &Device::Cpu).unwrap();
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
        let a = audio(5, 8, 0.5, false, &Device::Cpu).unwrap();
        assert_eq!(a.dims(), &[1, 5, AUDIO_CHANNELS]);
        let v = a.squeeze(0).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(v[0], [0.0, 0.5]);
        assert!((v[4][0] - (1.0 - (-0.5f32).exp())).abs() < 1e-6);
    }

    #[test]
    fn progress_runs_from_the_first_frame_to_the_last_in_video_and_audio() {
        let dev = &Device::Cpu;
        let c = video((5, 2, 3), 0.5, 0.5, true, dev).unwrap();
        assert_eq!(c.dims(), &[1, VIDEO_CHANNELS + PROGRESS_CHANNELS, 5, 2, 3]);
        let p = c.squeeze(0).unwrap().get(VIDEO_CHANNELS).unwrap();
        let p = p.to_vec3::<f32>().unwrap();
        let per_frame: Vec<f32> = p.iter().map(|f| f[1][2]).collect();
        assert_eq!(per_frame, [0.0, 0.25, 0.5, 0.75, 1.0]);
        assert!(p.iter().all(|f| f.iter().flatten().all(|&v| v == f[0][0])));
        // The channels before it are the ones without progress.
        let without = video((5, 2, 3), 0.5, 0.5, false, dev).unwrap();
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
        let a = audio(17, 8, 0.5, true, dev).unwrap().squeeze(0).unwrap();
        let a = a.to_vec2::<f32>().unwrap();
        assert_eq!(a[0].len(), AUDIO_CHANNELS + PROGRESS_CHANNELS);
        for (ti, want) in per_frame.iter().enumerate() {
            assert_eq!(a[4 * ti][AUDIO_CHANNELS], *want);
        }
        // A single frame is the clip's start.
        let one = video((1, 1, 1), 0.5, 0.5, true, dev).unwrap();
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
            &video((3, 2, 2), 0.5, 1.0, false, &Device::Cpu).unwrap(),
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

    #[test]
    fn the_clock_tells_every_audio_frame_of_two_seconds_apart_and_repeats_after() {
        let dev = &Device::Cpu;
        // 4 s at 8 fps: within any 2 s (16 audio latents) each latent's clock is its own,
        // and a latent 2 s later reads exactly as one within the first 2 s (trained values).
        let a = clock_audio(32, 8, dev).unwrap().squeeze(0).unwrap();
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
        let v = clock_video((5, 2, 3), 0.5, dev).unwrap();
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
