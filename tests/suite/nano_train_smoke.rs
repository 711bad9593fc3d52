//! CI smoke test of the Nano recipe: a few steps of the tiny model on one repeated batch; every
//! stage must lower its loss, and the exported model must load and generate.

use std::ops::ControlFlow;

use candle_core::Device;
use happyhorse::engine::pipelines::nano::{NanoClip, NanoPipeline};
use happyhorse::nano::train::{run, Stage, TrainConfig};

type Weights = std::collections::HashMap<String, candle_core::Tensor>;

/// The exported `model.safetensors` of a model folder.
fn weights(model_dir: &std::path::Path) -> Weights {
    candle_core::safetensors::load(model_dir.join("model.safetensors"), &Device::Cpu)
        .expect("the exported weights load")
}

fn max_abs_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
    (a - b)
        .and_then(|d| d.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>())
        .expect("same shapes")
}

/// A model folder's `config.json`.
fn model_config(model_dir: &std::path::Path) -> serde_json::Value {
    let text = std::fs::read_to_string(model_dir.join("config.json")).expect("config");
    serde_json::from_str(&text).expect("config JSON")
}

/// A 1 s, 32x24 clip at 8 fps of "a red ball bouncing" from the exported model in `model_dir`.
fn red_ball_clip(model_dir: &std::path::Path) -> NanoClip {
    let pipe = NanoPipeline::load(model_dir, &Device::Cpu).expect("exported model loads");
    pipe.generate(
        "a red ball bouncing",
        32,
        24,
        8,
        1.0,
        1,
        2,
        1.0,
        &mut |_, _| ControlFlow::Continue(()),
    )
    .expect("generates")
}

/// Every tensor of `before` is the same in `after` except those under `prefix`, which moved.
fn only_changed_under(before: &Weights, after: &Weights, prefix: &str) {
    for (name, t) in before {
        let d = max_abs_diff(t, &after[name]);
        assert_eq!(d > 0.0, name.starts_with(prefix), "{name} changed by {d}");
    }
}

/// Each of `names`, trained from zero, is no longer zero.
fn trained_from_zero<'a>(w: &Weights, names: impl IntoIterator<Item = &'a String>) {
    for name in names {
        let zero = w[name].zeros_like().expect("zeros");
        assert!(max_abs_diff(&w[name], &zero) > 0.0, "{name} did not train");
    }
}

#[test]
fn smoke_training_lowers_the_loss_and_exports_a_loadable_model() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = TrainConfig::smoke(dir.path().to_path_buf());
    let mut losses: Vec<(Stage, f32)> = Vec::new();
    let summary =
        run(cfg, &Device::Cpu, &mut |p| losses.push((p.stage, p.loss))).expect("training runs");
    for stage in [
        Stage::Codec,
        Stage::Dit,
        Stage::AudioDecoder,
        Stage::VideoDecoder,
    ] {
        let l: Vec<f32> = losses
            .iter()
            .filter(|(s, _)| *s == stage)
            .map(|(_, l)| *l)
            .collect();
        assert!(l.len() >= 4, "{stage:?}: {l:?}");
        let first = l[0];
        let last = l[l.len() - 1];
        assert!(last < first, "{stage:?} loss did not go down: {l:?}");
    }

    let pipe = NanoPipeline::load(&summary.model_dir, &Device::Cpu).expect("exported model loads");
    let mut steps = 0;
    let clip = pipe
        .generate(
            "a red ball bouncing on a green grass field",
            32,
            24,
            8,
            1.0,
            1,
            2,
            1.0,
            &mut |_, _| {
                steps += 1;
                ControlFlow::Continue(())
            },
        )
        .expect("generates");
    assert_eq!(steps, pipe.sampler.steps);
    assert_eq!(clip.frames_rgb.len(), 8 * 24 * 32 * 3);
    assert_eq!(clip.audio.len(), clip.sample_rate as usize);

    // The exported folder is a model of its own: `generate -m FOLDER` uses its weights
    // (the run's sampler defaults, one output path on stdout per file)...
    let out = tempfile::tempdir().expect("tempdir");
    let generate = |model: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_happyhorse"))
            .args([
                "generate",
                "a red ball bouncing",
                "-d",
                "2",
                "--steps",
                "2",
                "-m",
            ])
            .arg(model)
            .arg("-o")
            .arg(out.path())
            .env_remove("HAPPYHORSE_MODEL_DIR")
            .output()
            .expect("the binary runs")
    };
    let ok = generate(&summary.model_dir);
    let stderr = String::from_utf8_lossy(&ok.stderr);
    assert!(ok.status.success(), "{stderr}");
    let paths = String::from_utf8_lossy(&ok.stdout);
    assert!(
        paths.lines().any(|l| l.ends_with(".mp4")) && paths.lines().all(|l| !l.is_empty()),
        "{paths}"
    );
    // `bench nano --model-dir` times the folder's own jobs.
    let bench = std::process::Command::new(env!("CARGO_BIN_EXE_happyhorse"))
        .args([
            "bench",
            "nano",
            "--duration",
            "2",
            "--repeats",
            "1",
            "--model-dir",
        ])
        .arg(&summary.model_dir)
        .output()
        .expect("the binary runs");
    let report = String::from_utf8_lossy(&bench.stdout);
    assert!(
        bench.status.success(),
        "{}",
        String::from_utf8_lossy(&bench.stderr)
    );
    assert!(report.contains("x clip duration"), "{report}");
    // A config whose DiT reads other input channels than this version feeds it (a folder
    // trained by another version) is refused before any weight is read: exit code 3, naming
    // the file and the fix.
    let config_path = summary.model_dir.join("config.json");
    let config = std::fs::read_to_string(&config_path).expect("config.json");
    let mut json: serde_json::Value = serde_json::from_str(&config).expect("json");
    let widened = json["dit"]["video_in_channels"].as_u64().expect("width") + 6;
    json["dit"]["video_in_channels"] = widened.into();
    std::fs::write(&config_path, json.to_string()).expect("write");
    let mismatched = generate(&summary.model_dir);
    let stderr = String::from_utf8_lossy(&mismatched.stderr);
    assert_eq!(mismatched.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("config.json") && stderr.contains("happyhorse train nano"),
        "{stderr}"
    );
    std::fs::write(&config_path, config).expect("restore");
    // ...and never the binary's built-in copy in their place: a missing file is exit code 3,
    // naming it.
    std::fs::remove_file(summary.model_dir.join("model.safetensors")).expect("remove");
    let missing = generate(&summary.model_dir);
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(missing.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("model.safetensors"), "{stderr}");
}

#[test]
fn a_stride_2_video_codec_trains_exports_and_generates_its_frame_count() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = TrainConfig {
        video_temporal_stride: 2,
        latent_frames: (3, 3),
        codec_latent_frames: (3, 3),
        audio_decoder_steps: 0,
        video_decoder_steps: 0,
        ..TrainConfig::smoke(dir.path().to_path_buf())
    };
    let mut losses: Vec<(Stage, f32)> = Vec::new();
    let summary =
        run(cfg, &Device::Cpu, &mut |p| losses.push((p.stage, p.loss))).expect("training runs");
    let config = model_config(&summary.model_dir);
    assert_eq!(config["video"]["temporal_stride"], 2);
    assert_eq!(config["data_proxy"]["audio_per_latent_frame"], 2);
    for stage in [Stage::Codec, Stage::Dit] {
        let l: Vec<f32> = losses
            .iter()
            .filter(|(s, _)| *s == stage)
            .map(|(_, l)| *l)
            .collect();
        assert!(
            l[l.len() - 1] < l[0],
            "{stage:?} loss did not go down: {l:?}"
        );
    }
    // 1 s at 8 fps: 8 frames, from 2(T-1)+1 = 9 native frames in 5 latent frames.
    let clip = red_ball_clip(&summary.model_dir);
    assert_eq!(clip.frames_rgb.len(), 8 * 24 * 32 * 3);
    assert_eq!(clip.audio.len(), clip.sample_rate as usize);
}

#[test]
fn resuming_continues_the_same_run() {
    let a = tempfile::tempdir().expect("tempdir");
    let b = tempfile::tempdir().expect("tempdir");
    let mut full = TrainConfig::smoke(a.path().to_path_buf());
    full.codec_steps = 3;
    full.dit_steps = 3;
    full.checkpoint_every = 100;
    full.data_cycle = None;
    let mut l_full = Vec::new();
    run(full.clone(), &Device::Cpu, &mut |p| l_full.push(p.loss)).expect("full run");

    // Interrupted after one DiT step, then resumed from its checkpoint.
    let mut part = full.clone();
    part.out_dir = b.path().to_path_buf();
    part.stop_after = Some(4);
    let mut l_resumed = Vec::new();
    run(part.clone(), &Device::Cpu, &mut |p| l_resumed.push(p.loss)).expect("first session");
    part.stop_after = None;
    // A session that asks for other settings is refused by name, and changes nothing.
    let mut other = part.clone();
    other.sigma_shift = part.sigma_shift + 1.0;
    other.workers = part.workers + 1; // how the run is computed, not what: allowed
    let err = run(other, &Device::Cpu, &mut |p| l_resumed.push(p.loss))
        .expect_err("other settings refused")
        .to_string();
    assert!(
        err.contains("sigma_shift: checkpoint") && !err.contains("workers"),
        "{err}"
    );
    run(part, &Device::Cpu, &mut |p| l_resumed.push(p.loss)).expect("second session");
    assert_eq!(l_full.len(), l_resumed.len(), "{l_full:?} vs {l_resumed:?}");
    for (x, y) in l_full.iter().zip(&l_resumed) {
        assert!(
            (x - y).abs() <= 1e-4 * x.abs().max(1.0),
            "{l_full:?} vs {l_resumed:?}"
        );
    }
}

#[test]
fn a_dit_with_the_clock_trains_exports_and_generates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = TrainConfig::smoke(dir.path().to_path_buf());
    cfg.codec_steps = 2;
    cfg.audio_codec_steps = 2;
    cfg.dit_steps = 3;
    cfg.audio_decoder_steps = 0;
    cfg.video_decoder_steps = 0;
    cfg.dit_clock = true;
    let done = run(cfg, &Device::Cpu, &mut |_| {}).expect("training runs");
    assert_eq!(model_config(&done.model_dir)["clock"], true);
    let clip = red_ball_clip(&done.model_dir);
    assert_eq!(clip.frames_rgb.len(), 8 * 24 * 32 * 3);
}

#[test]
fn a_dit_only_run_starts_from_the_given_codecs() {
    let a = tempfile::tempdir().expect("tempdir");
    let b = tempfile::tempdir().expect("tempdir");
    let mut first = TrainConfig::smoke(a.path().to_path_buf());
    first.codec_steps = 3;
    first.dit_steps = 2;
    // The DiT stage alone: the decoder stages would change the codecs after it.
    first.audio_decoder_steps = 0;
    first.video_decoder_steps = 0;
    let done = run(first.clone(), &Device::Cpu, &mut |_| {}).expect("first run");

    let mut dit_only = first;
    dit_only.out_dir = b.path().to_path_buf();
    dit_only.codecs_from = Some(done.model_dir.clone());
    let mut stages = Vec::new();
    let again = run(dit_only, &Device::Cpu, &mut |p| stages.push(p.stage)).expect("dit-only run");
    assert!(
        !stages.is_empty() && stages.iter().all(|s| *s == Stage::Dit),
        "{stages:?}"
    );

    let (w1, w2) = (weights(&done.model_dir), weights(&again.model_dir));
    let codec = |n: &String| n.starts_with("video_") || n.starts_with("audio_");
    let same = |n: &str| max_abs_diff(&w1[n], &w2[n]) == 0.0;
    assert!(w1.keys().any(codec));
    // Same seed and the same codecs: the DiT stage is the first run's, step for step, so
    // every tensor matches (a fresh DiT was built, the codecs were copied).
    assert_eq!(w1.len(), w2.len());
    let differ: Vec<&String> = w1.keys().filter(|n| !same(n)).collect();
    assert!(differ.is_empty(), "differ: {differ:?}");
    assert_eq!(
        model_config(&done.model_dir)["latent"],
        model_config(&again.model_dir)["latent"]
    );
}

#[test]
fn the_worker_count_does_not_change_the_weights() {
    let trained = |workers: usize| {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = TrainConfig::smoke(dir.path().to_path_buf());
        cfg.batch = 2;
        cfg.codec_steps = 2;
        cfg.dit_steps = 2;
        cfg.workers = workers;
        let done = run(cfg, &Device::Cpu, &mut |_| {}).expect("training runs");
        weights(&done.model_dir)
    };
    let (one, two) = (trained(1), trained(2));
    assert_eq!(one.len(), two.len());
    for (name, a) in &one {
        let d = max_abs_diff(a, &two[name]);
        assert_eq!(d, 0.0, "{name} differs by {d}");
    }
}

#[test]
fn decoupled_noise_levels_change_the_dit_and_nothing_before_it() {
    let trained = |decoupled: f32| {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = TrainConfig::smoke(dir.path().to_path_buf());
        cfg.codec_steps = 2;
        cfg.audio_codec_steps = 2;
        cfg.dit_steps = 3;
        cfg.audio_decoder_steps = 0;
        cfg.video_decoder_steps = 0;
        cfg.dit_decoupled_noise = decoupled;
        let mut losses = Vec::new();
        let done = run(cfg, &Device::Cpu, &mut |p| losses.push(p.loss)).expect("training runs");
        assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
        weights(&done.model_dir)
    };
    let (shared, apart) = (trained(0.0), trained(1.0));
    for (name, a) in &shared {
        let d = max_abs_diff(a, &apart[name]);
        let dit = (name.starts_with("dit.") && !name.ends_with("rope.bands"))
            || name.starts_with("text_encoder.");
        assert_eq!(d > 0.0, dit, "{name} changed by {d}");
    }
}

/// Trains a short run without the decoder stages, reruns it with `stage` set to 6 steps, and
/// checks that only `stage` ran and only the tensors under `prefix` changed.
/// `temporal_mix`: the extension also turns on the video decoder's mixing layers, which the
/// first run's checkpoint does not hold.
fn a_decoder_stage_extends_a_finished_run(stage: Stage, prefix: &str, temporal_mix: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = TrainConfig::smoke(dir.path().to_path_buf());
    cfg.codec_steps = 2;
    cfg.dit_steps = 3;
    cfg.audio_decoder_steps = 0;
    cfg.video_decoder_steps = 0;
    cfg.video_decoder_temporal_mix = false;
    let done = run(cfg.clone(), &Device::Cpu, &mut |_| {}).expect("first run");
    let before = weights(&done.model_dir);

    // The same run, rerun with the stage: it resumes at the end of the DiT and runs only it.
    match stage {
        Stage::AudioDecoder => cfg.audio_decoder_steps = 6,
        Stage::VideoDecoder => cfg.video_decoder_steps = 6,
        other => panic!("{other:?} is not a decoder stage"),
    }
    cfg.video_decoder_temporal_mix = temporal_mix;
    let mut stages = Vec::new();
    let after = run(cfg, &Device::Cpu, &mut |p| stages.push(p.stage)).expect("extended run");
    assert_eq!(stages, vec![stage; 6]);
    assert_eq!(
        model_config(&after.model_dir)["video"]["temporal_mix"],
        temporal_mix
    );
    let after = weights(&after.model_dir);
    // The mixing layers are new (trained from zero), everything else was there before.
    let mix: Vec<&String> = after.keys().filter(|n| n.contains(".mix_")).collect();
    assert_eq!(mix.len(), if temporal_mix { 4 } else { 0 }, "{mix:?}");
    trained_from_zero(&after, mix);
    assert_eq!(before.len() + if temporal_mix { 4 } else { 0 }, after.len());
    // Everything else, the DiT's exported average included, is the first run's.
    only_changed_under(&before, &after, prefix);
}

#[test]
fn the_audio_decoder_stage_extends_a_finished_run_and_changes_only_the_audio_decoder() {
    a_decoder_stage_extends_a_finished_run(Stage::AudioDecoder, "audio_decoder.", false);
}

#[test]
fn the_video_decoder_stage_extends_a_finished_run_and_changes_only_the_video_decoder() {
    a_decoder_stage_extends_a_finished_run(Stage::VideoDecoder, "video_decoder.", false);
}

#[test]
fn the_video_decoders_temporal_mix_extends_a_finished_run_from_the_identity() {
    a_decoder_stage_extends_a_finished_run(Stage::VideoDecoder, "video_decoder.", true);
}

#[test]
fn a_video_decoder_run_from_a_finished_model_is_the_stage_that_run_would_end_with() {
    let (a, b, kept) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let mut cfg = TrainConfig::smoke(a.path().to_path_buf());
    cfg.codec_steps = 2;
    cfg.dit_steps = 3;
    cfg.audio_decoder_steps = 2;
    cfg.video_decoder_steps = 0;
    let done = run(cfg.clone(), &Device::Cpu, &mut |_| {}).expect("first run");
    // The finished model, as it would be committed (the extension below rewrites it).
    for f in std::fs::read_dir(&done.model_dir).expect("model dir") {
        let f = f.expect("entry").path();
        std::fs::copy(&f, kept.path().join(f.file_name().expect("name"))).expect("copy");
    }

    // The run extended with a video-decoder stage that mixes neighbouring latent frames and
    // decodes the DiT's walks from noise levels up to 1, as the recipe's…
    cfg.video_decoder_steps = 4;
    cfg.video_decoder_temporal_mix = true;
    cfg.video_decoder_dit_sigma = 1.0;
    cfg.video_decoder_dit_walk = true;
    let extended = run(cfg.clone(), &Device::Cpu, &mut |_| {}).expect("extended run");
    // …and the same stage started in a new folder from the model alone.
    cfg.out_dir = b.path().to_path_buf();
    cfg.video_decoder_from = Some(kept.path().to_path_buf());
    let mut stages = Vec::new();
    let alone = run(cfg.clone(), &Device::Cpu, &mut |p| stages.push(p.stage)).expect("from model");
    assert_eq!(stages, vec![Stage::VideoDecoder; 4]);

    let (w1, w2, w0) = (
        weights(&extended.model_dir),
        weights(&alone.model_dir),
        weights(kept.path()),
    );
    assert_eq!(w1.len(), w2.len());
    for (name, t) in &w1 {
        assert_eq!(max_abs_diff(t, &w2[name]), 0.0, "{name} differs");
    }
    // Nothing but the decoder moved (its mixing layers new, as in a run that ends with them).
    only_changed_under(&w0, &w2, "video_decoder.");
    assert_eq!(
        model_config(&alone.model_dir)["video"]["temporal_mix"],
        true
    );

    // A model whose decoder has these layers, continued by a run without them, is refused
    // by name rather than losing them.
    let c = tempfile::tempdir().expect("tempdir");
    cfg.out_dir = c.path().to_path_buf();
    cfg.video_decoder_from = Some(alone.model_dir.clone());
    cfg.video_decoder_temporal_mix = false;
    let err = run(cfg, &Device::Cpu, &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("--video-decoder-temporal-mix true"), "{err}");
}

#[test]
fn an_audio_decoder_that_hears_the_picture_trains_from_a_finished_model_and_generates() {
    let (a, b, c) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let mut cfg = TrainConfig::smoke(a.path().to_path_buf());
    cfg.codec_steps = 2;
    cfg.dit_steps = 3;
    cfg.audio_decoder_steps = 0;
    cfg.video_decoder_steps = 0;
    let done = run(cfg.clone(), &Device::Cpu, &mut |_| {}).expect("first run");

    // The cue without the audio-decoder stage to train it, and the roll without the cue,
    // are refused by name.
    let mut cued = cfg.clone();
    cued.out_dir = b.path().to_path_buf();
    cued.audio_decoder_from = Some(done.model_dir.clone());
    let err = run(cued.clone(), &Device::Cpu, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("set audio_decoder_steps"), "{err}");
    cued.audio_decoder_steps = 6;
    cued.audio_decoder_cue_shift = 0.5;
    let err = run(cued.clone(), &Device::Cpu, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("set audio_decoder_video_cue"), "{err}");

    cued.audio_decoder_video_cue = true;
    let mut stages = Vec::new();
    let heard = run(cued.clone(), &Device::Cpu, &mut |p| {
        assert!(p.loss.is_finite(), "{}", p.loss);
        stages.push(p.stage)
    })
    .expect("audio-decoder stage from the model");
    assert_eq!(stages, vec![Stage::AudioDecoder; 6]);

    let (w0, w1) = (weights(&done.model_dir), weights(&heard.model_dir));
    // The cue is new (12 tensors), trained from zero; nothing but the audio decoder moved.
    let cue: Vec<&String> = w1
        .keys()
        .filter(|n| n.starts_with("audio_decoder.cue."))
        .collect();
    assert_eq!(cue.len(), 12, "{cue:?}");
    assert_eq!(w0.len() + 12, w1.len());
    trained_from_zero(
        &w1,
        cue.into_iter()
            .filter(|n| n.contains(".out.") || n.contains(".context.")),
    );
    only_changed_under(&w0, &w1, "audio_decoder.");
    assert_eq!(model_config(&heard.model_dir)["audio"]["video_cue"], true);

    // The exported model generates with it: the decoder reads the sampled picture.
    let clip = red_ball_clip(&heard.model_dir);
    assert_eq!(clip.frames_rgb.len(), 8 * 24 * 32 * 3);
    assert!(!clip.audio.is_empty() && clip.audio.iter().all(|x| x.is_finite()));

    // A run from that model without the cue is refused rather than dropping it.
    cued.out_dir = c.path().to_path_buf();
    cued.audio_decoder_from = Some(heard.model_dir.clone());
    cued.audio_decoder_video_cue = false;
    cued.audio_decoder_cue_shift = 0.0;
    let err = run(cued, &Device::Cpu, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("--audio-decoder-video-cue true"), "{err}");
}

/// The video-decoder stage's first loss of a short run whose stage decodes the DiT's estimates
/// from noise levels up to `dit_sigma` (0: the encoder's latents, noise 0), `edit` applied.
fn first_video_decoder_loss_with(dit_sigma: f32, edit: impl FnOnce(&mut TrainConfig)) -> f32 {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = TrainConfig::smoke(dir.path().to_path_buf());
    cfg.dit_steps = 6;
    cfg.audio_decoder_steps = 0;
    cfg.video_decoder_steps = 1;
    cfg.video_decoder_noise = 0.0;
    cfg.video_decoder_dit_sigma = dit_sigma;
    cfg.video_decoder_dit_walk = false;
    edit(&mut cfg);
    let mut losses = Vec::new();
    run(cfg, &Device::Cpu, &mut |p| {
        if p.stage == Stage::VideoDecoder {
            losses.push(p.loss)
        }
    })
    .expect("training runs");
    assert_eq!(losses.len(), 1, "{losses:?}");
    losses[0]
}

#[test]
fn the_video_decoder_stage_decodes_the_dits_estimates_when_asked() {
    // Without a shape code, whose channels the DiT gets right and so blurs less.
    let loss = |sigma| first_video_decoder_loss_with(sigma, |cfg| cfg.codec_shape_weight = 0.0);
    let encoder = loss(0.0);
    // From a noise level near 0 the DiT's one-step estimate is the clip's own latent, back at
    // the encoder's scale: the same loss.
    let near_clean = loss(1e-6);
    assert!(
        (encoder - near_clean).abs() <= 1e-4 * encoder,
        "{encoder} vs {near_clean}"
    );
    // From higher levels it is the DiT's guess, which the codec-trained decoder draws worse.
    let guessed = loss(1.0);
    assert!(guessed > 1.05 * encoder, "{encoder} vs {guessed}");
}

#[test]
fn the_video_decoder_stage_can_decode_the_dits_walk_from_a_level() {
    let walk = |sigma| {
        first_video_decoder_loss_with(sigma, |cfg| {
            cfg.codec_shape_weight = 0.0;
            cfg.video_decoder_dit_walk = true;
        })
    };
    // From a level near 0 the walk is one step of almost nothing: the clip's own latent.
    let near_clean = walk(1e-6);
    // From pure noise it is the (barely trained) DiT's sample: another latent, another loss
    // (which side of the first depends on how far the tiny codec and DiT have come).
    let sampled = walk(1.0);
    assert!(near_clean.is_finite() && sampled.is_finite());
    assert!(
        (sampled - near_clean).abs() > 0.02 * near_clean,
        "{near_clean} vs {sampled}"
    );
    // The walk is from video_decoder_dit_sigma: refused without it, by name.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = TrainConfig::smoke(dir.path().to_path_buf());
    cfg.video_decoder_dit_sigma = 0.0;
    cfg.video_decoder_dit_walk = true;
    let err = run(cfg, &Device::Cpu, &mut |_| {}).expect_err("refused");
    assert!(err.to_string().contains("video_decoder_dit_sigma"), "{err}");
}

#[test]
fn the_text_probe_learns_the_captions_and_stays_out_of_the_export() {
    let a = tempfile::tempdir().expect("tempdir");
    let b = tempfile::tempdir().expect("tempdir");
    let mut plain = TrainConfig::smoke(a.path().to_path_buf());
    plain.audio_decoder_steps = 0;
    plain.video_decoder_steps = 0;
    plain.text_probe_weight = 0.0;
    let mut probed = plain.clone();
    probed.out_dir = b.path().to_path_buf();
    probed.text_probe_weight = 1.0;

    let without = run(plain, &Device::Cpu, &mut |_| {}).expect("run without the probe");
    let mut probe_losses = Vec::new();
    let with = run(probed, &Device::Cpu, &mut |p| {
        if p.stage == Stage::Dit {
            probe_losses.push(p.loss_probe);
        }
    })
    .expect("run with the probe");

    // The probe reads the repeated batch's attributes off its captions.
    let (first, last) = (probe_losses[0], probe_losses[probe_losses.len() - 1]);
    assert!(first > 0.0 && last < 0.5 * first, "{probe_losses:?}");
    // Its heads are training only: the export holds the same tensors as a run without it,
    // the codecs unchanged and the text encoder moved by the probe's gradients.
    let (w1, w2) = (weights(&without.model_dir), weights(&with.model_dir));
    let mut names1: Vec<&String> = w1.keys().collect();
    let mut names2: Vec<&String> = w2.keys().collect();
    names1.sort();
    names2.sort();
    assert_eq!(names1, names2);
    assert!(w2.keys().all(|n| !n.contains("probe")));
    for (name, t) in &w1 {
        let d = max_abs_diff(t, &w2[name]);
        if name.starts_with("video_") || name.starts_with("audio_") {
            assert_eq!(d, 0.0, "{name} differs by {d}");
        }
    }
    assert!(w1
        .keys()
        .filter(|n| n.starts_with("text_encoder."))
        .any(|n| max_abs_diff(&w1[n], &w2[n]) > 0.0));
}

#[test]
fn a_restart_phase_adds_the_sync_probe_to_a_finished_run_and_it_stays_out_of_the_export() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = TrainConfig::smoke(dir.path().to_path_buf());
    cfg.codec_steps = 2;
    cfg.dit_steps = 3;
    cfg.audio_decoder_steps = 0;
    cfg.video_decoder_steps = 0;
    let mut first_sync = Vec::new();
    let done = run(cfg.clone(), &Device::Cpu, &mut |p| {
        first_sync.push(p.loss_sync_probe)
    })
    .expect("first run");
    assert!(first_sync.iter().all(|&l| l == 0.0), "{first_sync:?}");
    let before = weights(&done.model_dir);

    // Extended by a restart phase with the probe: the checkpoint holds neither its head nor
    // its optimizer moments, and both start fresh.
    cfg.dit_restart_steps = 4;
    cfg.dit_restart_lr = 1e-3;
    cfg.dit_restart_sync_probe_weight = Some(1.0);
    let mut steps = Vec::new();
    let after = run(cfg, &Device::Cpu, &mut |p| {
        steps.push((p.stage, p.step, p.loss_sync_probe))
    })
    .expect("extended run");
    assert_eq!(
        steps.iter().map(|s| (s.0, s.1)).collect::<Vec<_>>(),
        (4..=7).map(|k| (Stage::Dit, k)).collect::<Vec<_>>()
    );
    assert!(
        steps.iter().all(|s| s.2 > 0.0 && s.2.is_finite()),
        "{steps:?}"
    );
    let after = weights(&after.model_dir);
    let mut names: (Vec<&String>, Vec<&String>) = (before.keys().collect(), after.keys().collect());
    names.0.sort();
    names.1.sort();
    assert_eq!(names.0, names.1);
    assert!(after.keys().all(|n| !n.contains("probe")));
    assert!(after
        .keys()
        .filter(|n| n.starts_with("dit.") && !n.ends_with("rope.bands"))
        .all(|n| max_abs_diff(&before[n], &after[n]) > 0.0));
}

/// The first audio-decoder loss (sound, cue probe) of a short run whose stage has the video
/// cue and decodes the DiT's walk from levels up to `dit_sigma` (0: the encoder's latents).
fn first_cue_losses(dit_sigma: f32) -> (f32, f32) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = TrainConfig::smoke(dir.path().to_path_buf());
    cfg.dit_steps = 6;
    cfg.audio_decoder_steps = 1;
    cfg.video_decoder_steps = 0;
    cfg.audio_decoder_noise = 0.0;
    cfg.audio_decoder_video_cue = true;
    cfg.audio_decoder_dit_sigma = dit_sigma;
    let mut losses = Vec::new();
    run(cfg, &Device::Cpu, &mut |p| {
        if p.stage == Stage::AudioDecoder {
            losses.push((p.loss, p.loss_sync_probe))
        }
    })
    .expect("training runs");
    assert_eq!(losses.len(), 1, "{losses:?}");
    losses[0]
}

#[test]
fn the_cue_stage_can_decode_the_dits_own_sound_and_picture() {
    let (sound, probe) = first_cue_losses(0.0);
    // From a level near 0 the DiT's walk is the clip's own latents: the same losses.
    let (near_sound, near_probe) = first_cue_losses(1e-6);
    assert!(
        (sound - near_sound).abs() <= 1e-3 * sound,
        "{sound} vs {near_sound}"
    );
    assert!(
        (probe - near_probe).abs() <= 1e-3 * probe,
        "{probe} vs {near_probe}"
    );
    // From pure noise it is the (barely trained) DiT's clip: another sound to decode. (The
    // smoke run's decoder barely reads its latent yet: 1.2% apart, measured; a stage that
    // ignored the setting would decode the same latent, noise 0, to the same loss.)
    let (walked, _) = first_cue_losses(1.0);
    assert!(
        (walked - sound).abs() > 0.005 * sound,
        "{sound} vs {walked}"
    );
    // Refused without the cue, by name.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = TrainConfig::smoke(dir.path().to_path_buf());
    cfg.audio_decoder_dit_sigma = 0.5;
    let err = run(cfg.clone(), &Device::Cpu, &mut |_| {}).expect_err("refused");
    assert!(err.to_string().contains("audio_decoder_video_cue"), "{err}");
    cfg.audio_decoder_dit_sigma = 0.0;
    cfg.audio_decoder_picture_hits = true;
    let err = run(cfg, &Device::Cpu, &mut |_| {}).expect_err("refused");
    let msg = err.to_string();
    assert!(
        msg.contains("audio_decoder_picture_hits") && msg.contains("audio_decoder_video_cue"),
        "{msg}"
    );
}

/// The (stage, step, loss) of every step of a smoke run with a 3-step restart phase whose
/// clips are shape-corrected with probability `swap`.
fn restart_losses(swap: f32) -> Vec<(Stage, usize, f32)> {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = TrainConfig::smoke(dir.path().to_path_buf());
    cfg.codec_steps = 2;
    cfg.dit_steps = 3;
    cfg.dit_restart_steps = 3;
    cfg.dit_restart_lr = 1e-3;
    cfg.dit_restart_shape_swap = swap;
    cfg.audio_decoder_steps = 0;
    cfg.video_decoder_steps = 0;
    let mut steps = Vec::new();
    run(cfg, &Device::Cpu, &mut |p| {
        steps.push((p.stage, p.step, p.loss))
    })
    .expect("training runs");
    steps.into_iter().filter(|s| s.0 == Stage::Dit).collect()
}

#[test]
fn the_recipes_shape_swap_restart_trains_and_changes_only_the_restart_phase() {
    let recipe = TrainConfig::nano("run".into());
    assert_eq!(
        (recipe.dit_restart_steps, recipe.dit_restart_shape_swap),
        (2000, 0.5)
    );

    let swapped = restart_losses(1.0);
    let plain = restart_losses(0.0);
    assert_eq!(
        swapped.iter().map(|s| s.1).collect::<Vec<_>>(),
        (1..=6).collect::<Vec<_>>()
    );
    assert!(swapped.iter().all(|s| s.2.is_finite()), "{swapped:?}");
    // The first phase never sees a twin; every step of the restart trains on one.
    assert_eq!(&swapped[..3], &plain[..3]);
    for (a, b) in swapped[3..].iter().zip(&plain[3..]) {
        assert_ne!(a.2, b.2, "step {}: the swap did not change the clip", a.1);
    }
}
