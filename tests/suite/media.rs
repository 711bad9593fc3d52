//! Media written by happyhorse, read back with the real ffmpeg decoders.

use happyhorse::media::{self, Audio, Frames, StreamKind, VideoOptions};
use happyhorse::spec::VideoCodec;

/// A moving square over a gradient, so the encoder has real content.
fn frames(width: u32, height: u32, fps: u32, n: usize) -> Frames {
    let mut data = Vec::with_capacity(n * (width * height * 3) as usize);
    for i in 0..n {
        for y in 0..height {
            for x in 0..width {
                let inside =
                    (x as usize).abs_diff(i * 2 % width as usize) < 6 && y.abs_diff(height / 2) < 6;
                if inside {
                    data.extend_from_slice(&[230, 30, 30]);
                } else {
                    data.extend_from_slice(&[
                        (x * 255 / width) as u8,
                        (y * 255 / height) as u8,
                        90,
                    ]);
                }
            }
        }
    }
    Frames {
        width,
        height,
        fps,
        data,
    }
}

fn tone(sample_rate: u32, channels: u16, seconds: f64) -> Audio {
    let n = (sample_rate as f64 * seconds) as usize;
    let samples = (0..n)
        .flat_map(|i| {
            let s = (i as f32 * 440.0 * std::f32::consts::TAU / sample_rate as f32).sin() * 0.5;
            std::iter::repeat_n(s, channels as usize)
        })
        .collect();
    Audio {
        sample_rate,
        channels,
        samples,
    }
}

fn check_mp4(codec: VideoCodec, expected_codec: &str, fps: u32, sample_rate: u32, channels: u16) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clip.mp4");
    let (w, h, n) = (96, 54, 2 * fps as usize);
    let video = frames(w, h, fps, n);
    let audio = tone(sample_rate, channels, 2.0);
    let opts = VideoOptions {
        codec,
        ..VideoOptions::default()
    };
    media::encode_mp4(&path, &video, Some(&audio), opts).unwrap();

    let info = media::probe(&path).unwrap();
    assert_eq!(info.streams.len(), 2, "{info:?}");
    let v = info.stream(StreamKind::Video).unwrap();
    assert_eq!(v.codec, expected_codec);
    assert_eq!((v.width, v.height), (Some(w), Some(h)));
    assert!((v.fps.unwrap() - fps as f64).abs() < 1e-6, "{v:?}");
    assert_eq!(v.decoded, n as u64, "every frame decodes");
    let a = info.stream(StreamKind::Audio).unwrap();
    assert_eq!(a.codec, "aac");
    assert_eq!(a.sample_rate, Some(sample_rate));
    assert_eq!(a.channels, Some(channels.max(1)));
    let frame = 1.0 / fps as f64;
    // AAC codes whole 1024-sample frames: the decoded sound may run up to one AAC frame past
    // the clip, never short of it.
    let aac_frame = 1024.0 / sample_rate as f64;
    assert!(
        a.duration_s >= 2.0 - 1e-9 && a.duration_s <= 2.0 + aac_frame,
        "audio {} s",
        a.duration_s
    );
    assert!(
        (info.duration_s - 2.0).abs() <= frame,
        "container {} s",
        info.duration_s
    );
    // Nothing but the final file is left in the folder.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("clip.mp4")]);
}

#[test]
fn mp4_h264_aac_stereo_decodes_back() {
    check_mp4(VideoCodec::H264, "h264", 24, 44100, 2);
}

#[test]
fn mp4_h265_aac_mono_decodes_back() {
    check_mp4(VideoCodec::H265, "hevc", 25, 16000, 1);
}

#[test]
fn wav_round_trips_through_the_decoder() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clip.wav");
    let audio = tone(44100, 2, 1.5);
    media::write_wav(&path, &audio).unwrap();
    let info = media::probe(&path).unwrap();
    let a = info.stream(StreamKind::Audio).unwrap();
    assert_eq!(a.codec, "pcm_s16le");
    assert_eq!((a.sample_rate, a.channels), (Some(44100), Some(2)));
    assert_eq!(a.decoded, audio.len() as u64);
    let back = media::read_wav(&path).unwrap();
    assert_eq!(back.samples.len(), audio.samples.len());
    let max_err = back
        .samples
        .iter()
        .zip(&audio.samples)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(max_err < 1e-4, "16-bit quantisation error {max_err}");
}

#[test]
fn png_frames_are_written_as_a_folder() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("clip-frames");
    let video = frames(32, 18, 12, 3);
    media::write_png_frames(&out, &video).unwrap();
    let mut names: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["frame_00001.png", "frame_00002.png", "frame_00003.png"]
    );
    let img = image::open(out.join("frame_00002.png")).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (32, 18));
    assert_eq!(img.as_raw().as_slice(), video.frame(1));
}

#[test]
fn failed_encode_never_leaves_a_file_under_the_final_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clip.mp4");
    std::fs::write(&path, b"previous clip").unwrap();
    // Odd width: the encoder refuses, as it would on any mid-write failure.
    let bad = frames(95, 54, 24, 4);
    let err = media::encode_mp4(&path, &bad, None, VideoOptions::default()).unwrap_err();
    assert!(err.to_string().contains("even sizes"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), b"previous clip");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn retimed_clip_keeps_its_duration() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clip.mp4");
    let video = media::retime_frames(&frames(64, 36, 25, 50), 12);
    assert_eq!(video.count(), 24);
    media::encode_mp4(
        &path,
        &video,
        Some(&tone(44100, 1, 2.0)),
        VideoOptions::default(),
    )
    .unwrap();
    let info = media::probe(&path).unwrap();
    let v = info.stream(StreamKind::Video).unwrap();
    assert_eq!(v.fps, Some(12.0));
    assert!((v.duration_s - 2.0).abs() < 1.0 / 12.0);
}
