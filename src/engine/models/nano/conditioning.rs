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
//! With `pooled_text` every token also gets the mean of the caption's text features. The DiT
//! still attends to the text tokens; the pooled copy only spares a small model from learning
//! to route each word to each token before it can use it (trained without it, Nano follows
//! the colour, which fills many cells, and ignores shape, motion and "silent").
//!
//! [CoordConv]: https://arxiv.org/abs/1807.03247

use std::f32::consts::PI;

use candle::{Device, Result, Tensor};
use candle_core as candle;

use super::config::VideoCodecConfig;

/// Extra channels appended to each video token.
pub const VIDEO_CHANNELS: usize = 8;
/// Extra channels appended to each audio token.
pub const AUDIO_CHANNELS: usize = 2;

fn clip_time(seconds: f32) -> f32 {
    1.0 - (-seconds).exp()
}

/// Cell centres of `n` cells spanning `[-1, 1]`.
fn centres(n: usize) -> impl Iterator<Item = f32> {
    (0..n).map(move |i| (2.0 * i as f32 + 1.0) / n as f32 - 1.0)
}

/// `[1, VIDEO_CHANNELS, T, H, W]` for a video latent of `T x H x W` cells at `native_fps`
/// pixel frames per second (latent frame `t` ends on pixel frame `4t`) and noise level `sigma`.
pub fn video(
    (t, h, w): (usize, usize, usize),
    native_fps: u32,
    sigma: f32,
    device: &Device,
) -> Result<Tensor> {
    let n = t * h * w;
    let mut out = vec![0f32; VIDEO_CHANNELS * n];
    let frame_s = VideoCodecConfig::TEMPORAL_STRIDE as f32 / native_fps.max(1) as f32;
    let mut i = 0;
    for ti in 0..t {
        let time = clip_time(ti as f32 * frame_s);
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
                i += 1;
            }
        }
    }
    Tensor::from_vec(out, (1, VIDEO_CHANNELS, t, h, w), device)
}

/// `[1, Na, AUDIO_CHANNELS]`: audio latent `i` sounds with pixel frame `i`.
pub fn audio(na: usize, native_fps: u32, sigma: f32, device: &Device) -> Result<Tensor> {
    let fps = native_fps.max(1) as f32;
    let out: Vec<f32> = (0..na)
        .flat_map(|i| [clip_time(i as f32 / fps), sigma])
        .collect();
    Tensor::from_vec(out, (1, na, AUDIO_CHANNELS), device)
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
        let c = video((3, 2, 4), 8, 0.25, &Device::Cpu).unwrap();
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
        let a = audio(5, 8, 0.5, &Device::Cpu).unwrap();
        assert_eq!(a.dims(), &[1, 5, AUDIO_CHANNELS]);
        let v = a.squeeze(0).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(v[0], [0.0, 0.5]);
        assert!((v[4][0] - (1.0 - (-0.5f32).exp())).abs() < 1e-6);
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
        let x = append(&z, &video((3, 2, 2), 8, 1.0, &Device::Cpu).unwrap(), 1).unwrap();
        assert_eq!(x.dims(), &[1, 2 + VIDEO_CHANNELS, 3, 2, 2]);
        let back = latent_part(&x, 2, 1).unwrap();
        assert_eq!(
            back.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            z.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );
    }
}
