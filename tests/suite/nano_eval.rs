//! The Nano eval end to end on the committed weights, at a tiny size: the report must be
//! well formed. Quality targets are the eval's job to report, not this test's to assert.

use std::path::PathBuf;

use happyhorse::media::{probe, StreamKind};
use happyhorse::nano::eval::{run, EvalConfig, EvalReport, Source, Split};

#[test]
fn eval_on_committed_weights_gives_a_well_formed_report() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/nano");
    let cfg = EvalConfig {
        scenes_per_split: 1,
        width: 48,
        height: 32,
        fps: 8,
        duration_s: 1.5,
        steps: Some(2),
        ..EvalConfig::new(dir)
    };
    let mut seen = 0;
    let report = run(cfg.clone(), &mut |p| {
        seen += 1;
        assert_eq!(p.done, seen);
        assert_eq!(p.total, 2);
    })
    .expect("eval runs on the committed weights");
    assert_eq!(seen, 2);
    assert_eq!(report.clips.len(), 2);
    assert_eq!(report.steps, 2);
    assert_eq!(report.splits.len(), 3);
    for split in [Split::InDistribution, Split::HeldOut] {
        let s = report.split(split).expect("split present");
        assert_eq!(s.clips, 1);
        for pct in [s.color_pct, s.shape_pct, s.motion_pct, s.adherence_pct] {
            assert!((0.0..=100.0).contains(&pct), "{pct}");
        }
        if let (Some(m), Some(p)) = (s.sync_median_ms, s.sync_p90_ms) {
            assert!(0.0 <= m && m <= p);
        }
    }
    assert!(report.clips.iter().all(|c| !c.caption.is_empty()));

    let json = report.to_json().expect("serialises");
    let back: EvalReport = serde_json::from_str(&json).expect("parses back");
    assert_eq!(back.clips.len(), 2);
    let table = report.to_string();
    assert!(table.contains("in-distribution") && table.contains("held-out"));
    assert!(table.contains("adherence"));

    // Deterministic in the seed.
    let again = run(cfg, &mut |_| {}).expect("second run");
    assert_eq!(
        again.clips.iter().map(|c| &c.caption).collect::<Vec<_>>(),
        report.clips.iter().map(|c| &c.caption).collect::<Vec<_>>()
    );
    assert_eq!(again.splits, report.splits);
}

/// `--source world` judges the world's own clips through the whole eval path (the analyzers
/// on 4 s 96x56 clips at 24 fps): the reference must score full marks, in sync to well
/// within a frame, one onset heard per contact. `--dump` writes each judged clip as a playable MP4 with sound.
#[test]
fn the_world_scores_full_marks_and_dumped_clips_play() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/nano");
    let out = tempfile::tempdir().unwrap();
    let cfg = EvalConfig {
        scenes_per_split: 6,
        source: Source::World,
        dump: Some(out.path().to_path_buf()),
        ..EvalConfig::new(dir)
    };
    let frame_ms = cfg.frame_ms();
    let report = run(cfg, &mut |_| {}).expect("eval of the world runs");
    for split in [Split::InDistribution, Split::HeldOut] {
        let s = report.split(split).expect("split present");
        assert_eq!(s.adherence_pct, 100.0, "{split:?}");
        assert_eq!(s.background_pct, 100.0, "{split:?}");
        if let Some(p90) = s.sync_p90_ms {
            assert!(p90 <= frame_ms, "{split:?}: sync p90 {p90} ms");
            // Another clip's hits are no match for this clip's contacts.
            let chance = s.sync_chance_p90_ms.expect("chance beside sync");
            assert!(chance > 4.0 * frame_ms, "{split:?}: chance p90 {chance} ms");
        }
        // Every contact's hit is heard once, and nothing else is heard as a hit.
        if let Some(r) = s.onsets_per_contact {
            assert!(
                (0.95..=1.05).contains(&r),
                "{split:?}: {r} onsets per contact"
            );
        }
    }
    let clip = out.path().join("held-out-05.mp4");
    let info = probe(&clip).expect("dumped clip probes");
    assert!(info.stream(StreamKind::Video).is_some() && info.stream(StreamKind::Audio).is_some());
    let mp4s = std::fs::read_dir(out.path()).unwrap().count();
    assert_eq!(mp4s, 12);
}

/// The codec reference: the world's frames and sound through the codecs come back at the
/// asked size, rate and length, and still look like the scene (mostly the same pixels).
#[test]
fn codec_reconstruction_keeps_size_rate_and_length() {
    use candle_core::Device;
    use happyhorse::engine::pipelines::nano::NanoPipeline;
    use happyhorse::nano::world::{render_audio, render_video, sample_train};

    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/nano");
    let pipe = NanoPipeline::load(&dir, &Device::Cpu).expect("committed weights load");
    let scene = sample_train(7);
    let (w, h, dur) = (48usize, 32usize, 1.5f32);
    let native = pipe.config().native_fps;
    let frames = render_video(&scene, w, h, native as f32, dur);
    let rgb: Vec<u8> = frames.iter().flat_map(|f| f.rgb.clone()).collect();
    let audio = render_audio(&scene, pipe.config().sample_rate, dur);
    let clip = pipe
        .reconstruct(&rgb, w as u32, h as u32, &audio, 24, dur)
        .expect("reconstructs");
    assert_eq!(clip.frames_rgb.len(), 36 * w * h * 3);
    assert_eq!(clip.audio.len(), 24_000);
    // Frame 0 of the output is native frame 0: compare it with the input.
    let first = &clip.frames_rgb[..w * h * 3];
    let mean_err = first
        .iter()
        .zip(&frames[0].rgb)
        .map(|(a, b)| (*a as f32 - *b as f32).abs())
        .sum::<f32>()
        / first.len() as f32;
    assert!(mean_err < 40.0, "mean abs error {mean_err} of 255");
    assert!(pipe.reconstruct(&rgb, 50, 32, &audio, 24, dur).is_err());
}

/// The two-pass sampling orders run `steps` twice (the progress callback says so) and give
/// clips of the asked shape that differ from the joint order's.
#[test]
fn two_pass_sampling_orders_run_both_passes() {
    use candle_core::Device;
    use happyhorse::engine::models::nano::SampleOrder;
    use happyhorse::engine::pipelines::nano::NanoPipeline;
    use std::ops::ControlFlow;

    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/nano");
    let mut pipe = NanoPipeline::load(&dir, &Device::Cpu).expect("committed weights load");
    pipe.sampler.steps = 3;
    pipe.sampler.cfg_steps = Some(1);
    let mut clips = Vec::new();
    for (order, passes) in [
        (SampleOrder::Joint, 1),
        (SampleOrder::VideoFirst, 2),
        (SampleOrder::AudioFirst, 2),
    ] {
        pipe.sampler.order = order;
        let mut seen = Vec::new();
        let clip = pipe
            .generate(
                "a red ball bouncing",
                48,
                32,
                8,
                1.0,
                1,
                2,
                1.0,
                &mut |k, n| {
                    seen.push((k, n));
                    ControlFlow::Continue(())
                },
            )
            .expect("generates");
        let want: Vec<_> = (1..=3 * passes).map(|k| (k, 3 * passes)).collect();
        assert_eq!(seen, want, "{order:?}");
        assert_eq!(clip.frames_rgb.len(), 8 * 48 * 32 * 3);
        assert_eq!(clip.audio.len(), clip.sample_rate as usize);
        clips.push(clip);
    }
    assert_ne!(clips[0].audio, clips[1].audio);
    assert_ne!(clips[0].frames_rgb, clips[2].frames_rgb);
}

/// `--source dub` shows the codecs' picture of the world's clip (judged exactly as
/// `--source codec` judges it) with the model's sound for it, not the world's.
#[test]
fn dub_judges_the_codec_picture_with_the_models_sound() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/nano");
    let cfg = |source| EvalConfig {
        scenes_per_split: 2,
        width: 48,
        height: 32,
        steps: Some(2),
        source,
        ..EvalConfig::new(dir.clone())
    };
    let codec = run(cfg(Source::Codec), &mut |_| {}).expect("codec eval runs");
    let dub = run(cfg(Source::Dub), &mut |_| {}).expect("dub eval runs");
    assert_eq!(dub.clips.len(), 4);
    for (c, d) in codec.clips.iter().zip(&dub.clips) {
        assert_eq!(c.caption, d.caption);
        assert_eq!(c.got_color, d.got_color);
        assert_eq!(c.got_shape, d.got_shape);
        assert_eq!(c.got_motion, d.got_motion);
        assert_eq!(c.visual_contacts_s, d.visual_contacts_s);
    }
    let loudness = |r: &EvalReport| {
        r.clips
            .iter()
            .map(|c| c.got_loudness_dbfs)
            .collect::<Vec<_>>()
    };
    assert_ne!(loudness(&codec), loudness(&dub));
}
