//! Decoding an MP4 back into memory: every video frame as packed RGB (for previews and frame
//! strips) and the first audio stream as interleaved f32 (for playback). Sizes and rates are
//! whatever the file holds; nothing is resampled in time.

use std::path::Path;

use ffmpeg::{format, frame, media, software};
use ffmpeg_next as ffmpeg;

use super::{ffmpeg_init, Audio, Frames, MediaError};

fn ff<'p>(path: &'p Path, op: &'static str) -> impl Fn(ffmpeg::Error) -> MediaError + 'p {
    move |source| MediaError::Ffmpeg {
        path: path.to_path_buf(),
        op,
        source,
    }
}

fn open(path: &Path) -> Result<format::context::Input, MediaError> {
    ffmpeg_init();
    if !path.is_file() {
        return Err(MediaError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "file not found"),
        });
    }
    format::input(path).map_err(ff(path, "open"))
}

/// Decodes every frame of the first video stream as RGB24.
pub fn decode_frames(path: &Path) -> Result<Frames, MediaError> {
    let mut ictx = open(path)?;
    let stream = ictx
        .streams()
        .best(media::Type::Video)
        .ok_or_else(|| MediaError::Invalid {
            path: path.to_path_buf(),
            message: "no video stream".into(),
        })?;
    let index = stream.index();
    let rate = stream.avg_frame_rate();
    // Our clips are 12–25 fps integers; round anything else to the nearest whole rate.
    let fps = if rate.denominator() != 0 {
        f64::from(rate).round().max(1.0) as u32
    } else {
        24
    };
    let ctx = ffmpeg::codec::context::Context::from_parameters(stream.parameters())
        .map_err(ff(path, "read stream"))?;
    let mut decoder = ctx
        .decoder()
        .video()
        .map_err(ff(path, "open video decoder"))?;
    let (width, height) = (decoder.width(), decoder.height());
    let mut scaler = software::scaling::Context::get(
        decoder.format(),
        width,
        height,
        format::Pixel::RGB24,
        width,
        height,
        software::scaling::Flags::BILINEAR,
    )
    .map_err(ff(path, "create scaler"))?;

    let mut data = Vec::new();
    let mut decoded = frame::Video::empty();
    let mut rgb = frame::Video::empty();
    let mut receive = |decoder: &mut ffmpeg::decoder::Video| -> Result<(), MediaError> {
        while decoder.receive_frame(&mut decoded).is_ok() {
            scaler
                .run(&decoded, &mut rgb)
                .map_err(ff(path, "convert"))?;
            // Rows may be padded (stride > width * 3): copy only the pixels.
            let stride = rgb.stride(0);
            let row = width as usize * 3;
            let plane = rgb.data(0);
            for y in 0..height as usize {
                data.extend_from_slice(&plane[y * stride..y * stride + row]);
            }
        }
        Ok(())
    };
    for (st, packet) in ictx.packets() {
        if st.index() == index {
            decoder.send_packet(&packet).map_err(ff(path, "decode"))?;
            receive(&mut decoder)?;
        }
    }
    decoder.send_eof().map_err(ff(path, "flush decoder"))?;
    receive(&mut decoder)?;
    Ok(Frames {
        width,
        height,
        fps,
        data,
    })
}

/// Decodes the first audio stream as interleaved f32 at its own rate; `Ok(None)` when the file
/// has no audio.
pub fn decode_audio(path: &Path) -> Result<Option<Audio>, MediaError> {
    let mut ictx = open(path)?;
    let Some(stream) = ictx.streams().best(media::Type::Audio) else {
        return Ok(None);
    };
    let index = stream.index();
    let ctx = ffmpeg::codec::context::Context::from_parameters(stream.parameters())
        .map_err(ff(path, "read stream"))?;
    let mut decoder = ctx
        .decoder()
        .audio()
        .map_err(ff(path, "open audio decoder"))?;
    let (rate, channels) = (decoder.rate(), decoder.channels());
    let mut resampler = software::resampling::Context::get(
        decoder.format(),
        decoder.channel_layout(),
        rate,
        format::Sample::F32(format::sample::Type::Packed),
        decoder.channel_layout(),
        rate,
    )
    .map_err(ff(path, "create resampler"))?;

    let mut samples = Vec::new();
    let mut decoded = frame::Audio::empty();
    let mut packed = frame::Audio::empty();
    let mut receive = |decoder: &mut ffmpeg::decoder::Audio| -> Result<(), MediaError> {
        while decoder.receive_frame(&mut decoded).is_ok() {
            resampler
                .run(&decoded, &mut packed)
                .map_err(ff(path, "convert audio"))?;
            let n = packed.samples() * channels as usize;
            // Packed f32: plane 0 holds every channel interleaved.
            let bytes = &packed.data(0)[..n * 4];
            samples.extend(
                bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]])),
            );
        }
        Ok(())
    };
    for (st, packet) in ictx.packets() {
        if st.index() == index {
            decoder.send_packet(&packet).map_err(ff(path, "decode"))?;
            receive(&mut decoder)?;
        }
    }
    decoder.send_eof().map_err(ff(path, "flush decoder"))?;
    receive(&mut decoder)?;
    Ok(Some(Audio {
        sample_rate: rate,
        channels,
        samples,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{encode_mp4, VideoOptions};

    #[test]
    fn decodes_what_we_encode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clip.mp4");
        let (w, h, n) = (32u32, 16u32, 12usize);
        let mut data = Vec::new();
        for i in 0..n {
            // Left half red, right half getting brighter: colour and order both survive.
            for _y in 0..h {
                for x in 0..w {
                    if x < w / 2 {
                        data.extend_from_slice(&[220, 20, 20]);
                    } else {
                        let v = (i * 20) as u8;
                        data.extend_from_slice(&[v, v, v]);
                    }
                }
            }
        }
        let frames = Frames {
            width: w,
            height: h,
            fps: 12,
            data,
        };
        let audio = Audio {
            sample_rate: 44_100,
            channels: 2,
            samples: (0..44_100 * 2)
                .map(|i| ((i / 2) as f32 * 0.05).sin() * 0.5)
                .collect(),
        };
        encode_mp4(&path, &frames, Some(&audio), VideoOptions::default()).unwrap();

        let got = decode_frames(&path).unwrap();
        assert_eq!((got.width, got.height, got.fps), (w, h, 12));
        assert_eq!(got.count(), n);
        let px = |f: &Frames, i: usize, x: usize, y: usize| {
            let o = (y * f.width as usize + x) * 3;
            f.frame(i)[o..o + 3].to_vec()
        };
        let red = px(&got, 5, 4, 8);
        assert!(red[0] > 180 && red[1] < 70 && red[2] < 70, "{red:?}");
        assert!(px(&got, 11, 28, 8)[0] > px(&got, 1, 28, 8)[0] + 100);

        let sound = decode_audio(&path).unwrap().unwrap();
        assert_eq!((sound.sample_rate, sound.channels), (44_100, 2));
        assert!(
            (sound.duration_s() - 1.0).abs() < 0.1,
            "{}",
            sound.duration_s()
        );
        assert!(sound.samples.iter().any(|s| s.abs() > 0.3));
    }

    #[test]
    fn missing_file_is_an_io_error() {
        let err = decode_frames(Path::new("/nonexistent/clip.mp4")).unwrap_err();
        assert!(matches!(err, MediaError::Io { .. }), "{err}");
    }
}
