//! Reading media back: container duration, streams, and counts obtained by decoding every packet
//! with the real decoders (so tests and `happyhorse probe` see what a player would).

use std::path::Path;

use ffmpeg::{codec, format, frame, media};
use ffmpeg_next as ffmpeg;
use serde::Serialize;

use super::{ffmpeg_init, MediaError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamKind {
    Video,
    Audio,
    Other,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreamInfo {
    pub index: usize,
    pub kind: StreamKind,
    /// Codec short name as ffmpeg reports it ("h264", "hevc", "aac", "pcm_s16le").
    pub codec: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fps: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_rate: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channels: Option<u16>,
    /// Decoded frames (video) or samples per channel (audio).
    pub decoded: u64,
    /// Decoded length in seconds.
    pub duration_s: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MediaInfo {
    pub format: String,
    /// Container duration in seconds.
    pub duration_s: f64,
    pub streams: Vec<StreamInfo>,
}

impl MediaInfo {
    pub fn stream(&self, kind: StreamKind) -> Option<&StreamInfo> {
        self.streams.iter().find(|s| s.kind == kind)
    }
}

/// Opens `path`, decodes every audio and video packet and reports what it found.
pub fn probe(path: &Path) -> Result<MediaInfo, MediaError> {
    ffmpeg_init();
    let err = |op: &'static str| {
        move |source| MediaError::Ffmpeg {
            path: path.to_path_buf(),
            op,
            source,
        }
    };
    if !path.is_file() {
        return Err(MediaError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "file not found"),
        });
    }
    let mut ictx = format::input(path).map_err(err("open"))?;
    enum Dec {
        Video(ffmpeg::decoder::Video),
        Audio(ffmpeg::decoder::Audio),
        None,
    }
    let mut streams = Vec::new();
    let mut decoders = Vec::new();
    for st in ictx.streams() {
        let params = st.parameters();
        let ctx =
            codec::context::Context::from_parameters(params.clone()).map_err(err("read stream"))?;
        let codec_name = params.id().name().to_string();
        let mut info = StreamInfo {
            index: st.index(),
            kind: StreamKind::Other,
            codec: codec_name,
            width: None,
            height: None,
            fps: None,
            sample_rate: None,
            channels: None,
            decoded: 0,
            duration_s: 0.0,
        };
        let dec = match params.medium() {
            media::Type::Video => {
                let d = ctx.decoder().video().map_err(err("open video decoder"))?;
                info.kind = StreamKind::Video;
                info.width = Some(d.width());
                info.height = Some(d.height());
                let r = st.avg_frame_rate();
                if r.denominator() != 0 {
                    info.fps = Some(f64::from(r));
                }
                Dec::Video(d)
            }
            media::Type::Audio => {
                let d = ctx.decoder().audio().map_err(err("open audio decoder"))?;
                info.kind = StreamKind::Audio;
                info.sample_rate = Some(d.rate());
                info.channels = Some(d.channels());
                Dec::Audio(d)
            }
            _ => Dec::None,
        };
        streams.push(info);
        decoders.push(dec);
    }

    let mut vframe = frame::Video::empty();
    let mut aframe = frame::Audio::empty();
    let mut drain = |dec: &mut Dec, info: &mut StreamInfo| match dec {
        Dec::Video(d) => {
            while d.receive_frame(&mut vframe).is_ok() {
                info.decoded += 1;
            }
        }
        Dec::Audio(d) => {
            while d.receive_frame(&mut aframe).is_ok() {
                info.decoded += aframe.samples() as u64;
            }
        }
        Dec::None => {}
    };
    for (st, packet) in ictx.packets() {
        let i = st.index();
        let sent = match &mut decoders[i] {
            Dec::Video(d) => d.send_packet(&packet),
            Dec::Audio(d) => d.send_packet(&packet),
            Dec::None => Ok(()),
        };
        sent.map_err(err("decode"))?;
        drain(&mut decoders[i], &mut streams[i]);
    }
    for (dec, info) in decoders.iter_mut().zip(streams.iter_mut()) {
        let flushed = match dec {
            Dec::Video(d) => d.send_eof(),
            Dec::Audio(d) => d.send_eof(),
            Dec::None => Ok(()),
        };
        flushed.map_err(err("flush decoder"))?;
        drain(dec, info);
        info.duration_s = match info.kind {
            StreamKind::Video => info.fps.map(|f| info.decoded as f64 / f).unwrap_or(0.0),
            StreamKind::Audio => info
                .sample_rate
                .map(|r| info.decoded as f64 / r as f64)
                .unwrap_or(0.0),
            StreamKind::Other => 0.0,
        };
    }
    let duration_s = if ictx.duration() > 0 {
        ictx.duration() as f64 / f64::from(ffmpeg::ffi::AV_TIME_BASE)
    } else {
        0.0
    };
    Ok(MediaInfo {
        format: ictx.format().name().to_string(),
        duration_s,
        streams,
    })
}
