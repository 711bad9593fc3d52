//! The analyzers measured on the world's own renders, where the answer is known. These also
//! test the world: a renderer that drew the wrong thing, or a soundtrack out of step with
//! the picture, fails here.

use super::*;
use crate::nano::world::{
    ground_truth, render_audio, render_video, sample_train, Ambience, Motion, Scene, SceneRequest,
};

/// Frame sizes in rotation: 16:9, 9:16 and 1:1, all small.
const SIZES: [(usize, usize); 3] = [(96, 54), (54, 96), (64, 64)];
const SR: u32 = 16_000;
/// One frame at 24 fps: the tolerance for contact timing.
const FRAME_MS: f32 = 1000.0 / 24.0;

fn scenes(n: u64) -> impl Iterator<Item = (usize, Scene)> {
    (0..n).map(|i| (i as usize, sample_train(0x5EED_0000 + i)))
}

/// Scenes with contacts, spread over every ambience, so onsets are tested against rain,
/// wind, hum and music.
fn contact_scenes(n: u64) -> impl Iterator<Item = (usize, Scene)> {
    (0..n).map(|i| {
        let request = SceneRequest {
            motion: Some(if i % 3 == 0 {
                Motion::Fall
            } else {
                Motion::Bounce
            }),
            ambience: Some(Ambience::ALL[i as usize % Ambience::ALL.len()]),
            silent: Some(false),
            ..SceneRequest::default()
        };
        (i as usize, Scene::sample(0xB0B0_0000 + i, &request))
    })
}

fn percent(hits: usize, n: usize) -> f32 {
    100.0 * hits as f32 / n.max(1) as f32
}

#[test]
fn colour_shape_and_motion_are_recognised() {
    let n = 60;
    let (mut color, mut shape, mut motion, mut bg) = (0, 0, 0, 0);
    for (i, scene) in scenes(n) {
        let (w, h) = SIZES[i % 3];
        let frames = render_video(&scene, w, h, 12.0, 2.5);
        let a = analyze_video(&frames, 12.0, None).unwrap();
        bg += (a.background == scene.background) as usize;
        color += (a.color == Some(scene.object.color)) as usize;
        shape += (a.shape == Some(scene.object.shape)) as usize;
        motion += (a.motion == Some(scene.motion)) as usize;
    }
    let n = n as usize;
    let report = format!(
        "background {:.0}%, colour {:.0}%, shape {:.0}%, motion {:.0}% over {n} scenes",
        percent(bg, n),
        percent(color, n),
        percent(shape, n),
        percent(motion, n)
    );
    eprintln!("{report}");
    for hits in [bg, color, shape, motion] {
        assert!(percent(hits, n) >= 95.0, "{report}");
    }
}

#[test]
fn audio_onsets_land_on_contacts() {
    let (mut found, mut total, mut extra, mut worst) = (0, 0, 0, 0f32);
    for (_, scene) in contact_scenes(24) {
        let audio = render_audio(&scene, SR, 4.0);
        let truth = ground_truth(&scene, 64, 36, 24.0, 4.0);
        let onsets = detect_onsets(&audio, SR);
        for c in &truth.impacts {
            total += 1;
            let err = onsets
                .iter()
                .map(|o| (o - c.time_s).abs() * 1000.0)
                .fold(f32::MAX, f32::min);
            if err <= FRAME_MS {
                found += 1;
                worst = worst.max(err);
            }
        }
        // Music is allowed its own onsets; nothing else may make one.
        if scene.ambience != Ambience::Music {
            extra += onsets.len().saturating_sub(truth.impacts.len());
        }
    }
    eprintln!(
        "onsets: {found}/{total} contacts within one frame (worst {worst:.1} ms), {extra} spurious"
    );
    assert!(total > 50, "too few contacts to judge: {total}");
    assert_eq!(found, total);
    assert_eq!(extra, 0);
}

#[test]
fn av_sync_of_rendered_clips_is_within_a_frame() {
    let (mut errors, mut contacts, mut seen) = (Vec::new(), 0, 0);
    for (i, scene) in contact_scenes(18) {
        let (w, h) = SIZES[i % 3];
        let frames = render_video(&scene, w, h, 24.0, 3.0);
        let audio = render_audio(&scene, SR, 3.0);
        let truth = ground_truth(&scene, w, h, 24.0, 3.0);
        let a = analyze_clip(&frames, 24.0, &audio, SR, Some(scene.background)).unwrap();
        contacts += truth.impacts.len();
        // Every visual contact is a true one, to within a frame.
        for v in &a.video.impacts_s {
            let err = truth
                .impacts
                .iter()
                .map(|c| (c.time_s - v).abs())
                .fold(f32::MAX, f32::min);
            assert!(
                err * 1000.0 <= FRAME_MS,
                "scene {i}: visual contact {v} s off by {err} s"
            );
            seen += 1;
        }
        assert_eq!(a.sync.unmatched, 0);
        errors.extend(a.sync.errors_ms.iter().map(|e| e.abs()));
    }
    let mean = errors.iter().sum::<f32>() / errors.len().max(1) as f32;
    let max = errors.iter().copied().fold(0.0, f32::max);
    eprintln!(
        "av sync: {seen}/{contacts} contacts seen, |error| mean {mean:.1} ms, max {max:.1} ms"
    );
    assert!(
        seen * 100 >= contacts * 90,
        "{seen}/{contacts} visual contacts found"
    );
    assert!(max <= FRAME_MS);
}

#[test]
fn silence_is_detected() {
    for (i, scene) in scenes(40) {
        let audio = render_audio(&scene, SR, 2.0);
        let quiet =
            scene.silent || (scene.ambience == Ambience::None && scene.motion == Motion::Still);
        assert_eq!(is_silent(&audio), quiet, "scene {i}: {scene:?}");
    }
}

#[test]
fn sync_report_signs_and_unmatched() {
    let r = av_sync(&[1.0, 2.0], &[1.01, 1.95]);
    assert_eq!(r.unmatched, 0);
    assert!((r.errors_ms[0] - 10.0).abs() < 0.01 && (r.errors_ms[1] + 50.0).abs() < 0.01);
    assert!((r.max_abs_ms.unwrap() - 50.0).abs() < 0.01);
    let none = av_sync(&[1.0], &[]);
    assert_eq!((none.unmatched, none.mean_abs_ms), (1, None));
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    assert!(matches!(
        analyze_video(&[], 24.0, None),
        Err(AnalyzeError::NoFrames)
    ));
    let short = Frame {
        width: 4,
        height: 4,
        rgb: vec![0; 10],
    };
    assert!(matches!(
        analyze_video(&[short], 24.0, None),
        Err(AnalyzeError::FrameSize { .. })
    ));
    let ok = Frame {
        width: 4,
        height: 4,
        rgb: vec![0; 48],
    };
    assert!(matches!(
        analyze_video(&[ok], 0.0, None),
        Err(AnalyzeError::Rate(_))
    ));
    assert!(detect_onsets(&[0.5; 10], SR).is_empty());
}

/// Pixels of an object colour scattered over the frame (3% of it, never two side by side) are
/// not an object: no colour, however many there are. The same pixels gathered into one square
/// are.
#[test]
fn scattered_colour_is_not_an_object() {
    use crate::nano::world::{Background, Color, Frame};
    let (w, h) = (96usize, 56usize);
    let bg = Background::Studio.palette()[0];
    let red = Color::Red.rgb();
    let frame = |paint: &dyn Fn(usize, usize) -> bool| Frame {
        width: w,
        height: h,
        rgb: (0..w * h)
            .flat_map(|i| if paint(i % w, i / w) { red } else { bg })
            .collect(),
    };
    let scattered = frame(&|x, y| x % 6 == 0 && y % 6 == 0);
    let frames = vec![scattered; 24];
    let a = analyze_video(&frames, 24.0, Some(Background::Studio)).unwrap();
    assert_eq!(a.color, None);
    let square = frame(&|x, y| (40..52).contains(&x) && (30..42).contains(&y));
    let frames = vec![square; 24];
    let a = analyze_video(&frames, 24.0, Some(Background::Studio)).unwrap();
    assert_eq!(a.color, Some(Color::Red));
    // A 12x12 square fills its box and does not taper; the reading reports what it saw.
    assert_eq!(a.shape, Some(crate::nano::world::Shape::Square));
    let m = a.shape_measures.expect("a whole object has measures");
    assert_eq!((m.fill, m.taper), (1.0, 1.0));
    // A disc of radius 6 fills about pi/4 of its box: a ball.
    let disc = frame(&|x, y| (x as f32 - 45.5).powi(2) + (y as f32 - 35.5).powi(2) < 36.0);
    let a = analyze_video(&vec![disc; 24], 24.0, Some(Background::Studio)).unwrap();
    let m = a.shape_measures.expect("a whole object has measures");
    assert!((m.fill - 0.785).abs() < 0.06, "{m:?}");
    assert_eq!(a.shape, Some(crate::nano::world::Shape::Ball));
}

/// Nano makes 8 fps and is shown at 24 by holding the nearest picture: contacts are timed on
/// the pictures made, within a frame of the shown rate.
#[test]
fn contacts_of_a_clip_held_from_8_to_24_fps_are_timed_on_its_pictures() {
    let (mut errors, mut contacts) = (Vec::new(), 0);
    for (i, scene) in contact_scenes(18) {
        let (w, h) = SIZES[i % 3];
        let made = render_video(&scene, w, h, 8.0, 3.0);
        let shown: Vec<_> = (0..72)
            .map(|j| made[((j as f32 / 3.0).round() as usize).min(made.len() - 1)].clone())
            .collect();
        assert_eq!(video::held(&shown), (3, 0), "scene {i}");
        let truth = ground_truth(&scene, w, h, 8.0, 3.0);
        contacts += truth.impacts.len();
        let a = analyze_video(&shown, 24.0, Some(scene.background)).unwrap();
        for v in &a.impacts_s {
            let err = truth
                .impacts
                .iter()
                .map(|c| (c.time_s - v).abs())
                .fold(f32::MAX, f32::min);
            errors.push(err * 1000.0);
        }
    }
    errors.sort_by(f32::total_cmp);
    let p90 = errors[(errors.len() * 9 / 10).min(errors.len() - 1)];
    eprintln!(
        "held 8 -> 24 fps: {}/{contacts} contacts seen, p90 |error| {p90:.1} ms",
        errors.len()
    );
    assert!(
        errors.len() * 100 >= contacts * 80,
        "{}/{contacts}",
        errors.len()
    );
    assert!(p90 <= FRAME_MS, "p90 {p90} ms");
}

#[test]
fn a_clip_made_at_its_shown_rate_holds_nothing() {
    let (_, scene) = contact_scenes(1).next().unwrap();
    let frames = render_video(&scene, 64, 64, 24.0, 2.0);
    assert_eq!(video::held(&frames), (1, 0));
}

/// A decoded object at rest can twitch by a pixel once per latent frame (Nano's video decoder
/// draws each latent frame's four pictures together): that is not a contact. The fall before
/// it is, once.
#[test]
fn a_resting_object_that_twitches_by_a_pixel_makes_no_contacts() {
    use crate::nano::world::{Background, Color, Frame};
    let (w, h, fps) = (96usize, 64usize, 8.0f32);
    let bg = Background::Studio.palette()[0];
    let red = Color::Red.rgb();
    let disc = |cy: f32| Frame {
        width: w,
        height: h,
        rgb: (0..w * h)
            .flat_map(|i| {
                let (x, y) = ((i % w) as f32 + 0.5, (i / w) as f32 + 0.5);
                if (x - 48.0).powi(2) + (y - cy).powi(2) < 49.0 {
                    red
                } else {
                    bg
                }
            })
            .collect(),
    };
    // Dropped from y 12, landing at y 44 at 0.6 s, then at rest, one pixel lower in the first
    // picture of every latent frame (pictures 1, 5, 9, ... as the decoder groups them).
    let (land_s, top, ground) = (0.6f32, 12.0f32, 44.0f32);
    let g = 2.0 * (ground - top) / land_s.powi(2);
    let frames: Vec<Frame> = (0..32)
        .map(|k| {
            let t = k as f32 / fps;
            if t < land_s {
                disc(top + 0.5 * g * t * t)
            } else if k % 4 == 1 {
                disc(ground + 1.0)
            } else {
                disc(ground)
            }
        })
        .collect();
    let a = analyze_video(&frames, fps, Some(Background::Studio)).unwrap();
    assert_eq!(a.motion, Some(Motion::Fall));
    assert_eq!(a.impacts_s.len(), 1, "{:?}", a.impacts_s);
    assert!(
        (a.impacts_s[0] - land_s).abs() < 1.0 / fps,
        "{:?}",
        a.impacts_s
    );
    // The twitch is over the old threshold of a fall in (0.008 short sides): it would have
    // counted a contact every half second.
    let y: Vec<f32> = a.track.iter().map(|d| d.unwrap().center[1]).collect();
    assert!(y[9] - y[7] > 0.008 * h as f32, "{} -> {}", y[7], y[9]);
}
