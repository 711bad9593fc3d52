//! MP4 writing: H.264 (libx264) or H.265 (libx265) video plus AAC audio, interleaved by time.

use std::path::Path;

use ffmpeg::{codec, encoder, format, frame, software, Dictionary, Packet, Rational};
use ffmpeg_next as ffmpeg;

use super::{ffmpeg_init, write_atomic, Audio, Frames, MediaError};
use crate::spec::VideoCodec;

#[derive(Debug, Clone, Copy)]
pub struct VideoOptions {
    pub codec: VideoCodec,
    /// Constant rate factor: lower is better quality. 18 is visually lossless for x264.
    pub crf: u8,
    pub audio_bitrate: usize,
}

impl Default for VideoOptions {
    fn default() -> Self {
        VideoOptions {
            codec: VideoCodec::H264,
            crf: 18,
            audio_bitrate: 192_000,
        }
    }
}

/// Encodes `frames` (and `audio`, when given and non-empty) into an MP4 at `path`, atomically.
pub fn encode_mp4(
    path: &Path,
    frames: &Frames,
    audio: Option<&Audio>,
    opts: VideoOptions,
) -> Result<(), MediaError> {
    if frames.count() == 0 || frames.width % 2 != 0 || frames.height % 2 != 0 {
        return Err(MediaError::Invalid {
            path: path.to_path_buf(),
            message: format!(
                "cannot encode {} frames of {}x{}: need at least one frame and even sizes",
                frames.count(),
                frames.width,
                frames.height
            ),
        });
    }
    ffmpeg_init();
    write_atomic(path, |tmp| {
        Muxer::encode(tmp, frames, audio.filter(|a| !a.is_empty()), opts)
    })
}

struct Muxer<'a> {
    path: &'a Path,
    octx: format::context::Output,
}

fn ff<'p>(path: &'p Path, op: &'static str) -> impl Fn(ffmpeg::Error) -> MediaError + 'p {
    move |source| MediaError::Ffmpeg {
        path: path.to_path_buf(),
        op,
        source,
    }
}

impl<'a> Muxer<'a> {
    fn encode(
        path: &'a Path,
        frames: &Frames,
        audio: Option<&Audio>,
        opts: VideoOptions,
    ) -> Result<(), MediaError> {
        // The temporary name has no .mp4 extension, so name the container explicitly.
        let octx = format::output_as(path, "mp4").map_err(|source| MediaError::Ffmpeg {
            path: path.to_path_buf(),
            op: "open output",
            source,
        })?;
        let mut m = Muxer { path, octx };
        let global_header = m
            .octx
            .format()
            .flags()
            .contains(format::Flags::GLOBAL_HEADER);

        let (codec_name, lib) = match opts.codec {
            VideoCodec::H264 => ("libx264", "libx264"),
            VideoCodec::H265 => ("libx265", "libx265"),
        };
        let vcodec = encoder::find_by_name(codec_name).ok_or(MediaError::MissingEncoder {
            codec: opts.codec.as_str(),
            lib,
        })?;
        let video_tb = Rational(1, frames.fps as i32);
        let mut venc = codec::context::Context::new_with_codec(vcodec)
            .encoder()
            .video()
            .map_err(ff(path, "create video encoder"))?;
        venc.set_width(frames.width);
        venc.set_height(frames.height);
        venc.set_format(format::Pixel::YUV420P);
        venc.set_time_base(video_tb);
        venc.set_frame_rate(Some(Rational(frames.fps as i32, 1)));
        if global_header {
            venc.set_flags(codec::Flags::GLOBAL_HEADER);
        }
        let mut vopts = Dictionary::new();
        vopts.set("preset", "medium");
        vopts.set("crf", &opts.crf.to_string());
        if opts.codec == VideoCodec::H265 {
            vopts.set("x265-params", "log-level=error");
        }
        let mut venc = venc
            .open_with(vopts)
            .map_err(ff(path, "open video encoder"))?;
        let vindex = {
            let mut st = m
                .octx
                .add_stream(vcodec)
                .map_err(ff(path, "add video stream"))?;
            st.set_parameters(&venc);
            st.set_time_base(video_tb);
            if opts.codec == VideoCodec::H265 {
                // 'hvc1' lets Apple players open H.265 MP4s.
                // SAFETY: the parameters pointer is valid while the stream exists.
                unsafe {
                    (*st.parameters().as_mut_ptr()).codec_tag = u32::from_le_bytes(*b"hvc1");
                }
            }
            st.index()
        };

        let mut aenc_state = match audio {
            None => None,
            Some(a) => {
                let acodec = encoder::find(codec::Id::AAC).ok_or(MediaError::MissingEncoder {
                    codec: "aac",
                    lib: "the native AAC encoder",
                })?;
                let layout = if a.channels == 1 {
                    ffmpeg::ChannelLayout::MONO
                } else {
                    ffmpeg::ChannelLayout::STEREO
                };
                let mut aenc = codec::context::Context::new_with_codec(acodec)
                    .encoder()
                    .audio()
                    .map_err(ff(path, "create audio encoder"))?;
                aenc.set_rate(a.sample_rate as i32);
                aenc.set_channel_layout(layout);
                aenc.set_format(format::Sample::F32(format::sample::Type::Planar));
                aenc.set_bit_rate(opts.audio_bitrate);
                aenc.set_time_base(Rational(1, a.sample_rate as i32));
                if global_header {
                    aenc.set_flags(codec::Flags::GLOBAL_HEADER);
                }
                let aenc = aenc
                    .open_as(acodec)
                    .map_err(ff(path, "open audio encoder"))?;
                let aindex = {
                    let mut st = m
                        .octx
                        .add_stream(acodec)
                        .map_err(ff(path, "add audio stream"))?;
                    st.set_parameters(&aenc);
                    st.set_time_base(Rational(1, a.sample_rate as i32));
                    st.index()
                };
                Some((aenc, aindex, layout, a))
            }
        };

        m.octx.write_header().map_err(ff(path, "write header"))?;

        let mut scaler = software::scaling::Context::get(
            format::Pixel::RGB24,
            frames.width,
            frames.height,
            format::Pixel::YUV420P,
            frames.width,
            frames.height,
            software::scaling::Flags::BILINEAR,
        )
        .map_err(ff(path, "create scaler"))?;
        let mut rgb = frame::Video::new(format::Pixel::RGB24, frames.width, frames.height);
        let mut yuv = frame::Video::empty();
        let row = frames.width as usize * 3;
        let mut audio_pos = 0usize; // samples per channel already sent

        for i in 0..frames.count() {
            let stride = rgb.stride(0);
            let src = frames.frame(i);
            let dst = rgb.data_mut(0);
            for y in 0..frames.height as usize {
                dst[y * stride..y * stride + row].copy_from_slice(&src[y * row..(y + 1) * row]);
            }
            scaler
                .run(&rgb, &mut yuv)
                .map_err(ff(path, "convert RGB to YUV"))?;
            yuv.set_pts(Some(i as i64));
            venc.send_frame(&yuv).map_err(ff(path, "encode video"))?;
            m.drain(&mut venc, vindex, video_tb, 1)?;

            // Keep audio up to the end of this video frame, so the muxer interleaves cheaply.
            if let Some((aenc, aindex, layout, a)) = aenc_state.as_mut() {
                let until = ((i + 1) as u64 * a.sample_rate as u64 / frames.fps as u64) as usize;
                audio_pos = m.send_audio(aenc, *aindex, *layout, a, audio_pos, until)?;
            }
        }
        venc.send_eof().map_err(ff(path, "flush video"))?;
        m.drain(&mut venc, vindex, video_tb, 1)?;
        if let Some((mut aenc, aindex, layout, a)) = aenc_state.take() {
            m.send_audio(&mut aenc, aindex, layout, a, audio_pos, a.len())?;
            aenc.send_eof().map_err(ff(path, "flush audio"))?;
            let frame_size = aenc.frame_size() as i64;
            m.drain(
                &mut aenc,
                aindex,
                Rational(1, a.sample_rate as i32),
                frame_size,
            )?;
        }
        m.octx.write_trailer().map_err(ff(path, "write trailer"))?;
        Ok(())
    }

    /// Sends audio samples [from, until) in encoder-sized frames; returns the new position.
    /// Only the final frame of the clip may be short (AAC allows a small last frame).
    fn send_audio(
        &mut self,
        aenc: &mut encoder::audio::Encoder,
        index: usize,
        layout: ffmpeg::ChannelLayout,
        a: &Audio,
        mut from: usize,
        until: usize,
    ) -> Result<usize, MediaError> {
        let frame_size = (aenc.frame_size() as usize).max(1);
        let channels = a.channels as usize;
        let until = until.min(a.len());
        while from < until {
            let n = frame_size.min(a.len() - from);
            // A full frame that crosses `until` waits for the next call; only the clip's
            // last frame is short, and it ends exactly at `until == a.len()`.
            if from + n > until {
                break;
            }
            let mut f =
                frame::Audio::new(format::Sample::F32(format::sample::Type::Planar), n, layout);
            f.set_rate(a.sample_rate);
            let out_channels = if channels == 1 { 1 } else { 2 };
            for ch in 0..out_channels {
                let src_ch = ch.min(channels - 1);
                let plane = f.plane_mut::<f32>(ch);
                for (k, s) in plane.iter_mut().enumerate().take(n) {
                    *s = a.samples[(from + k) * channels + src_ch];
                }
            }
            f.set_pts(Some(from as i64));
            aenc.send_frame(&f).map_err(ff(self.path, "encode audio"))?;
            self.drain(aenc, index, Rational(1, a.sample_rate as i32), n as i64)?;
            from += n;
        }
        Ok(from)
    }

    fn drain(
        &mut self,
        enc: &mut encoder::encoder::Encoder,
        index: usize,
        enc_tb: Rational,
        packet_duration: i64,
    ) -> Result<(), MediaError> {
        let stream_tb = self
            .octx
            .stream(index)
            .map(|s| s.time_base())
            .unwrap_or(enc_tb);
        let mut packet = Packet::empty();
        while enc.receive_packet(&mut packet).is_ok() {
            packet.set_stream(index);
            // Without a duration the muxer cannot tell how long the last frame lasts, and the
            // stream reads as one frame short (and its average fps as off).
            if packet.duration() == 0 {
                packet.set_duration(packet_duration);
            }
            packet.rescale_ts(enc_tb, stream_tb);
            packet
                .write_interleaved(&mut self.octx)
                .map_err(ff(self.path, "write packet"))?;
        }
        Ok(())
    }
}
