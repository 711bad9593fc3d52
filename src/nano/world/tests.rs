use super::*;

fn train(n: u64) -> impl Iterator<Item = Scene> {
    (0..n).map(|i| sample_train(0xC0FF_EE00 + i))
}

#[test]
fn same_seed_same_clip() {
    let a = sample_train(42);
    assert_eq!(a, sample_train(42));
    assert_ne!(a, sample_train(43));
    assert_eq!(
        render_video(&a, 32, 18, 8.0, 1.0),
        render_video(&a, 32, 18, 8.0, 1.0)
    );
    assert_eq!(render_audio(&a, 8000, 1.0), render_audio(&a, 8000, 1.0));
    assert_eq!(caption(&a, 3), caption(&a, 3));
}

#[test]
fn frames_and_samples_have_the_requested_shape() {
    let scene = sample_train(7);
    for (w, h) in [(64, 36), (36, 64), (48, 48), (128, 72)] {
        let frames = render_video(&scene, w, h, 24.0, 0.5);
        assert_eq!(frames.len(), 12);
        assert!(frames
            .iter()
            .all(|f| f.width == w && f.height == h && f.rgb.len() == w * h * 3));
    }
    assert_eq!(render_audio(&scene, 16_000, 2.5).len(), 40_000);
    assert!(render_video(&scene, 0, 0, 24.0, 1.0)
        .iter()
        .all(|f| f.rgb.is_empty()));
}

#[test]
fn objects_stay_in_frame() {
    for scene in train(300) {
        for (w, h) in [(96, 54), (54, 96), (64, 64)] {
            for duration in [2.0, 10.0] {
                let truth = ground_truth(&scene, w, h, 4.0, duration);
                for f in &truth.frames {
                    for o in &f.objects {
                        let [x, y] = o.center;
                        let half = (o.bbox.x1 - o.bbox.x0) / 2.0;
                        assert!(
                            x - half >= -0.5 && x + half <= w as f32 + 0.5,
                            "{scene:?} {w}x{h} t={}",
                            f.time_s
                        );
                        assert!(y - half >= -0.5 && y + half <= h as f32 + 0.5, "{scene:?}");
                    }
                }
            }
        }
    }
}

#[test]
fn bounces_make_several_impacts_and_falls_one() {
    for i in 0..100 {
        let motion = [Motion::Bounce, Motion::Fall][i % 2];
        let request = SceneRequest {
            motion: Some(motion),
            ..SceneRequest::default()
        };
        let scene = Scene::sample(i as u64, &request);
        let impacts = Trajectory::new(&scene, 10.0).impacts().to_vec();
        let in_2s = impacts.iter().filter(|c| c.time_s <= 2.0).count();
        match motion {
            Motion::Bounce => assert!(in_2s >= 2 && impacts.len() >= 4, "{impacts:?}"),
            _ => assert_eq!(impacts.len(), 1),
        }
        // Time order, and at least a few frames apart so each is seen and heard apart.
        assert!(impacts.windows(2).all(|p| p[1].time_s - p[0].time_s > 0.25));
    }
    let still = Scene::sample(
        1,
        &SceneRequest {
            motion: Some(Motion::Still),
            ..SceneRequest::default()
        },
    );
    assert!(Trajectory::new(&still, 5.0).impacts().is_empty());
}

#[test]
fn squeezed_physics_fixes_the_trajectory_of_a_motion_and_size() {
    let request = |motion, size| SceneRequest {
        motion: Some(motion),
        object: ObjectRequest {
            size: Some(size),
            ..ObjectRequest::default()
        },
        camera: Some(Camera::Static),
        ..SceneRequest::default()
    };
    for motion in Motion::ALL.iter().copied() {
        for size in Size::ALL.iter().copied() {
            let scenes: Vec<Scene> = (0..12)
                .map(|i| Scene::sample(i, &request(motion, size)))
                .collect();
            // The world's own spread: the sampled drop heights lie in the range the squeeze
            // centres on, and spread 1 changes nothing.
            let (lo, hi) = scene::drop_range(motion, size);
            for s in &scenes {
                assert!((lo..=hi).contains(&s.physics.drop_height), "{s:?}");
                let mut same = *s;
                same.squeeze_physics(1.0);
                assert_eq!(&same, s);
            }
            let path = |s: &Scene| {
                let traj = Trajectory::new(s, 4.0);
                let centres: Vec<(f32, f32)> = (0..32)
                    .filter_map(|f| traj.center(0, f as f32 / 8.0, 16.0 / 9.0))
                    .collect();
                (centres, traj.impacts().to_vec())
            };
            let squeezed: Vec<_> = scenes
                .iter()
                .map(|s| {
                    let mut s = *s;
                    s.squeeze_placement(0.0);
                    s.squeeze_physics(0.0);
                    path(&s)
                })
                .collect();
            // At 0 every scene of this motion and size moves alike, to the bit: one
            // trajectory, one list of contact times.
            assert!(
                squeezed.windows(2).all(|p| p[0] == p[1]),
                "{motion:?} {size:?}"
            );
            // The world's own draws do not (a still object aside, whose place the
            // placement squeeze fixes).
            if motion != Motion::Still {
                let world: Vec<_> = scenes
                    .iter()
                    .map(|s| {
                        let mut s = *s;
                        s.squeeze_placement(0.0);
                        path(&s)
                    })
                    .collect();
                assert!(
                    world.windows(2).any(|p| p[0] != p[1]),
                    "{motion:?} {size:?}"
                );
            }
        }
    }
}

#[test]
fn the_same_scene_sounds_alike_at_any_frame_size() {
    let scene = Scene::sample(
        5,
        &SceneRequest {
            motion: Some(Motion::Bounce),
            ..SceneRequest::default()
        },
    );
    let wide = ground_truth(&scene, 96, 54, 24.0, 3.0).impacts;
    assert_eq!(wide, ground_truth(&scene, 54, 96, 24.0, 3.0).impacts);
}

#[test]
fn audio_is_bounded_and_silent_scenes_are_silent() {
    for scene in train(40) {
        let audio = render_audio(&scene, 16_000, 2.0);
        assert!(audio.iter().all(|s| s.is_finite() && s.abs() <= 1.0));
        if scene.silent {
            assert!(audio.iter().all(|&s| s == 0.0));
        }
    }
    // Low sample rates must not alias partials above Nyquist into nonsense or panic.
    let scene = Scene::sample(
        3,
        &SceneRequest {
            ambience: Some(Ambience::Music),
            ..Default::default()
        },
    );
    assert_eq!(render_audio(&scene, 2000, 1.0).len(), 2000);
}

/// The sound for a picture whose contacts come elsewhere: the scene's own sound with the
/// hits moved, heard where they were put.
#[test]
fn a_scenes_sound_can_put_its_hits_at_other_times() {
    use crate::nano::analyze::detect_onsets;
    let sr = 16_000;
    let mut checked = 0;
    for i in 0..12 {
        let scene = Scene::sample(
            100 + i,
            &SceneRequest {
                motion: Some([Motion::Bounce, Motion::Fall][i as usize % 2]),
                silent: Some(false),
                // Wind swells and rain starts: onsets of their own at the start of a clip.
                ambience: Some(Ambience::None),
                ..SceneRequest::default()
            },
        );
        let own: Vec<f32> = ground_truth(&scene, 64, 36, 8.0, 3.0)
            .impacts
            .iter()
            .map(|c| c.time_s)
            .collect();
        // Its own contacts: the world's sound, sample for sample.
        let world = render_audio(&scene, sr, 3.0);
        assert_eq!(render_audio_with_contacts(&scene, sr, 3.0, &own), world);
        if own.is_empty() {
            continue;
        }
        // Moved: one onset per hit, each within 20 ms of where it was put.
        let moved = [0.4, 1.3, 2.2];
        let audio = render_audio_with_contacts(&scene, sr, 3.0, &moved);
        assert_ne!(audio, world);
        let onsets = detect_onsets(&audio, sr);
        assert_eq!(onsets.len(), moved.len(), "scene {i}: {onsets:?}");
        for (o, m) in onsets.iter().zip(moved) {
            assert!(
                (o - m).abs() < 0.02,
                "scene {i}: onset {o} for a hit at {m}"
            );
        }
        checked += 1;
    }
    assert!(checked >= 8, "{checked} scenes had contacts");
    // A slide takes no hits; a silent scene stays silent.
    let slide = Scene::sample(
        3,
        &SceneRequest {
            motion: Some(Motion::SlideLeft),
            silent: Some(false),
            ..SceneRequest::default()
        },
    );
    assert_eq!(
        render_audio_with_contacts(&slide, sr, 2.0, &[0.5]),
        render_audio(&slide, sr, 2.0)
    );
    let silent = Scene::sample(
        4,
        &SceneRequest {
            motion: Some(Motion::Bounce),
            silent: Some(true),
            ..SceneRequest::default()
        },
    );
    assert!(render_audio_with_contacts(&silent, sr, 2.0, &[0.5])
        .iter()
        .all(|&s| s == 0.0));
}

#[test]
fn held_out_split() {
    assert_eq!(
        HELD_OUT.len() * 100 / (Color::ALL.len() * Shape::ALL.len() * Background::ALL.len()),
        9
    );
    for c in Color::ALL {
        assert!(HELD_OUT.iter().any(|h| h.0 == *c), "{c} never held out");
    }
    for i in 0..2000 {
        assert!(!is_held_out(&sample_train(i)));
    }
    for i in 0..200 {
        let s = sample_heldout(i);
        assert!(is_held_out(&s));
        assert!(HELD_OUT.contains(&(s.object.color, s.object.shape, s.background)));
    }
    // The training distribution still covers every colour, shape and background.
    let scenes: Vec<Scene> = (0..500).map(sample_train).collect();
    assert!(Color::ALL
        .iter()
        .all(|c| scenes.iter().any(|s| s.object.color == *c)));
    assert!(Motion::ALL
        .iter()
        .all(|m| scenes.iter().any(|s| s.motion == *m)));
}

#[test]
fn requests_constrain_the_sampler() {
    let request = SceneRequest {
        object: ObjectRequest {
            color: Some(Color::Purple),
            shape: Some(Shape::Triangle),
            size: None,
        },
        background: Some(Background::Desert),
        motion: Some(Motion::Orbit),
        ambience: Some(Ambience::Wind),
        silent: Some(false),
        ..SceneRequest::default()
    };
    for seed in 0..50 {
        let scene = Scene::sample(seed, &request);
        assert!(request.matches(&scene), "{scene:?}");
        if let Some(second) = scene.second {
            assert_ne!(second.color, scene.object.color);
        }
    }
}

#[test]
fn the_reference_prompt_parses() {
    let r = parse_prompt("a red ball bouncing on a green grass field");
    assert_eq!(r.object.color, Some(Color::Red));
    assert_eq!(r.object.shape, Some(Shape::Ball));
    assert_eq!(r.motion, Some(Motion::Bounce));
    assert_eq!(r.background, Some(Background::Grass));
    assert_eq!(
        (r.ambience, r.silent, r.camera, r.second),
        (None, None, None, None)
    );
}

#[test]
fn hand_written_prompts_parse() {
    let r =
        parse_prompt("On the desert sand, a small blue square slides to the left while wind blows");
    assert_eq!(
        (r.object.size, r.object.color, r.object.shape),
        (Some(Size::Small), Some(Color::Blue), Some(Shape::Square))
    );
    assert_eq!(
        (r.background, r.motion, r.ambience),
        (
            Some(Background::Desert),
            Some(Motion::SlideLeft),
            Some(Ambience::Wind)
        )
    );

    let r = parse_prompt("silent: a yellow triangle orbits in the night sky");
    assert_eq!(
        (r.silent, r.motion, r.background),
        (Some(true), Some(Motion::Orbit), Some(Background::NightSky))
    );

    // Weather verbs are not the object's motion; the camera's direction is not the object's.
    let r =
        parse_prompt("a white cube sits still in a studio while rain falls, the camera pans right");
    assert_eq!(
        (r.motion, r.ambience, r.camera),
        (
            Some(Motion::Still),
            Some(Ambience::Rain),
            Some(Camera::PanRight)
        )
    );
    let r = parse_prompt("The camera pans left as a big orange ball rolls from left to right");
    assert_eq!(
        (r.camera, r.motion, r.object.size),
        (
            Some(Camera::PanLeft),
            Some(Motion::SlideRight),
            Some(Size::Large)
        )
    );

    let r = parse_prompt("a green sphere next to a small purple pyramid, falling, no sound");
    assert_eq!(r.object.color, Some(Color::Green));
    assert_eq!(
        r.second,
        Some(ObjectRequest {
            color: Some(Color::Purple),
            shape: Some(Shape::Triangle),
            size: Some(Size::Small)
        })
    );
    assert_eq!((r.motion, r.silent), (Some(Motion::Fall), Some(true)));

    assert_eq!(
        parse_prompt("something red hops on a green lawn")
            .object
            .color,
        Some(Color::Red)
    );
    assert_eq!(
        parse_prompt("the ball is blue").object.color,
        Some(Color::Blue)
    );
    assert_eq!(parse_prompt(""), SceneRequest::default());
}

/// Every caption the world writes reads back as exactly the scene's named attributes.
#[test]
fn captions_round_trip() {
    for scene in train(400) {
        for variant in 0..3 {
            let text = caption(&scene, variant);
            let r = parse_prompt(&text);
            let ok = r.object.color == Some(scene.object.color)
                && r.object.shape == Some(scene.object.shape)
                && r.object.size.is_none_or(|s| s == scene.object.size)
                && r.background == Some(scene.background)
                && r.motion == Some(scene.motion)
                && r.camera == (scene.camera != Camera::Static).then_some(scene.camera)
                && r.ambience
                    == (!scene.silent && scene.ambience != Ambience::None)
                        .then_some(scene.ambience)
                && r.silent == scene.silent.then_some(true)
                && r.second.map(|o| (o.color, o.shape))
                    == scene.second.map(|o| (Some(o.color), Some(o.shape)))
                && r.matches(&scene);
            assert!(ok, "{text:?}\n  parsed {r:?}\n  scene {scene:?}");
        }
    }
}

#[test]
fn captions_vary() {
    let scene = sample_train(11);
    let texts: std::collections::HashSet<String> = (0..20).map(|v| caption(&scene, v)).collect();
    assert!(texts.len() >= 8, "{texts:?}");
}
