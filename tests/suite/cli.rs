//! The real binary, driven as a script would: stdout carries only paths or JSON, exit codes
//! follow the contract (0 ok, 2 bad input, 3 model missing, 4 runtime, 130 interrupted).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn happyhorse(args: &[&str], stdin: Option<&str>, cwd: &Path) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_happyhorse"));
    cmd.args(args)
        .current_dir(cwd)
        // Never find real weights on the test machine.
        .env("HF_HOME", cwd.join("hf"))
        .env_remove("HAPPYHORSE_MODEL_DIR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut pipe = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        pipe.write_all(text.as_bytes()).unwrap();
    }
    drop(pipe);
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn spec_example_and_schema() {
    let dir = tempfile::tempdir().unwrap();
    let out = happyhorse(&["spec", "--example"], None, dir.path());
    assert_eq!(out.status.code(), Some(0));
    let spec = happyhorse::spec::JobSpec::from_json(&text(&out.stdout)).unwrap();
    spec.validate().unwrap();
    let out = happyhorse(&["spec", "--schema"], None, dir.path());
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(schema["required"], serde_json::json!(["prompt"]));
    assert!(schema["properties"]["fps"].is_object());
}

#[test]
fn missing_weights_exit_3_naming_the_file_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let out = happyhorse(
        &["generate", "a red ball bouncing", "-m", "magihuman-distill"],
        None,
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(3));
    assert!(
        out.stdout.is_empty(),
        "stdout must carry only paths: {}",
        text(&out.stdout)
    );
    let err = text(&out.stderr);
    assert!(err.contains("model `magihuman-distill` is missing its transformer file `distill/model.safetensors.index.json`"), "{err}");
    assert!(
        err.contains("happyhorse models pull magihuman-distill"),
        "{err}"
    );
    let out = happyhorse(&["models", "path", "magihuman-base"], None, dir.path());
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn a_model_dir_with_part_of_nano_is_an_error_not_the_built_in_weights() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("weights");
    std::fs::create_dir_all(models.join("nano")).unwrap();
    std::fs::write(models.join("nano/config.json"), "{}").unwrap();
    let args = [
        "generate",
        "a red ball bouncing",
        "-d",
        "2",
        "--steps",
        "1",
        "--model-dir",
        models.to_str().unwrap(),
    ];
    let out = happyhorse(&args, None, dir.path());
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    assert!(
        err.contains("is missing its tokenizer file `nano/tokenizer.json`"),
        "{err}"
    );

    // With none of its files there, the built-in copy is used.
    std::fs::remove_file(models.join("nano/config.json")).unwrap();
    let out = happyhorse(&args, None, dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn bad_spec_exits_2_with_nothing_on_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let out = happyhorse(
        &["generate", "-"],
        Some(r#"{"prompt": "x", "fps": 30}"#),
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(text(&out.stderr)
        .contains("spec field `fps`: 30 is not supported; allowed: 12, 18, 24, 25"));
    let out = happyhorse(
        &["generate", "x", "--model", "no-such-model"],
        None,
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains(
        "unknown model `no-such-model`; known models: nano, magihuman-base, magihuman-distill"
    ));
    let out = happyhorse(&["generate"], None, dir.path());
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn batch_reports_every_job_and_goes_on_after_a_bad_line() {
    let dir = tempfile::tempdir().unwrap();
    let jobs = "{\"prompt\": \"one\", \"model\": \"magihuman-distill\"}\n{\"prompt\": \"two\", \"fsp\": 24}\n{\"prompt\": \"three\", \"model\": \"magihuman-distill\"}\n";
    std::fs::write(dir.path().join("jobs.jsonl"), jobs).unwrap();
    let out = happyhorse(&["batch", "jobs.jsonl", "--json"], None, dir.path());
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "one JSON object per job");
    let kinds: Vec<_> = lines
        .iter()
        .map(|l| l["error_kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["model_missing", "bad_input", "model_missing"]);
    assert_eq!(lines[1]["input"], "jobs.jsonl line 2");
    assert!(lines[0]["id"].as_str().unwrap().len() == 12);
    assert_eq!(out.status.code(), Some(3), "exit code of the first failure");
    assert!(text(&out.stderr).contains("3 jobs: 0 done, 0 skipped, 3 failed"));
}

#[test]
fn probe_reports_streams_and_rejects_missing_files() {
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("tone.wav");
    let audio = happyhorse::media::Audio {
        sample_rate: 22050,
        channels: 1,
        samples: vec![0.25; 22050],
    };
    happyhorse::media::write_wav(&wav, &audio).unwrap();
    let out = happyhorse(&["probe", "tone.wav", "--json"], None, dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["streams"][0]["sample_rate"], 22050);
    assert_eq!(info["streams"][0]["decoded"], 22050);
    let out = happyhorse(&["probe", "nothing.mp4"], None, dir.path());
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn models_list_and_info() {
    let dir = tempfile::tempdir().unwrap();
    let out = happyhorse(&["models", "list"], None, dir.path());
    assert_eq!(out.status.code(), Some(0));
    let list = text(&out.stdout);
    assert!(list.starts_with("nano (default)\t"), "{list}");
    assert!(list.contains("\nmagihuman-base\t"), "{list}");
    let out = happyhorse(
        &["models", "info", "magihuman-base", "--json"],
        None,
        dir.path(),
    );
    let m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(m["defaults"]["steps"], 32);
    assert_eq!(
        m["resolutions"][0]["sizes"]["16:9"],
        serde_json::json!([448, 256])
    );
}

#[test]
fn pull_offline_or_unreachable_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let run = |envs: &[(&str, &str)]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_happyhorse"));
        cmd.args(["models", "pull", "magihuman-distill"])
            .current_dir(dir.path())
            .env("HF_HOME", dir.path().join("hf"))
            .env_remove("HF_HUB_OFFLINE");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    let out = run(&[("HF_HUB_OFFLINE", "1")]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("HF_HUB_OFFLINE is set, so `distill/model.safetensors.index.json` (GAIR/daVinci-MagiHuman) cannot be downloaded"), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty());
    // A closed port on loopback: the download fails fast and says how to retry.
    let out = run(&[("HF_ENDPOINT", "http://127.0.0.1:9")]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(
            "downloading `distill/model.safetensors.index.json` from GAIR/daVinci-MagiHuman failed"
        ),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn default_model_writes_a_real_clip_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "generate",
        "a red ball bouncing on a green grass field",
        "--seed",
        "3",
        "--duration",
        "2",
        "--fps",
        "12",
        "-o",
        "clips",
    ];
    let out = happyhorse(&args, None, dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let paths: Vec<String> = text(&out.stdout).lines().map(str::to_string).collect();
    assert_eq!(
        paths.len(),
        2,
        "stdout carries exactly the output paths: {paths:?}"
    );
    assert!(
        paths[0].ends_with(".mp4") && paths[1].ends_with(".wav"),
        "{paths:?}"
    );
    let mp4 = dir.path().join(&paths[0]);
    let info = happyhorse::media::probe(&mp4).unwrap();
    let v = info.stream(happyhorse::media::StreamKind::Video).unwrap();
    assert_eq!(
        (v.codec.as_str(), v.width, v.height, v.fps),
        ("h264", Some(96), Some(56), Some(12.0))
    );
    assert_eq!(v.decoded, 24);
    let a = info.stream(happyhorse::media::StreamKind::Audio).unwrap();
    assert_eq!(
        (a.codec.as_str(), a.sample_rate, a.channels),
        ("aac", Some(16000), Some(1))
    );
    let wav = happyhorse::media::read_wav(&dir.path().join(&paths[1])).unwrap();
    assert_eq!(
        (wav.sample_rate, wav.channels, wav.len()),
        (16000, 1, 32000)
    );

    // Same spec again with --skip-existing: nothing is regenerated, the same paths come back.
    let before = std::fs::metadata(&mp4).unwrap().modified().unwrap();
    let mut again = args.to_vec();
    again.extend(["--skip-existing", "--json"]);
    let out = happyhorse(&again, None, dir.path());
    assert_eq!(out.status.code(), Some(0));
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["status"], "skipped");
    assert_eq!(result["outputs"]["mp4"][0], paths[0].as_str());
    assert_eq!(result["seeds"][0]["video"], 3);
    assert_eq!(std::fs::metadata(&mp4).unwrap().modified().unwrap(), before);

    // A control Nano cannot use is refused, not ignored.
    let out = happyhorse(
        &["generate", "x", "--negative-prompt", "blur"],
        None,
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("model `nano` cannot use a negative prompt"));
}

#[test]
fn gpu_flags_on_a_cpu_build_say_how_to_get_one() {
    if cfg!(feature = "cuda") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("run");
    let out = happyhorse(
        &[
            "train",
            "nano",
            "--smoke",
            "--gpu",
            "--out",
            out_dir.to_str().unwrap(),
        ],
        None,
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty());
    assert!(
        text(&out.stderr).contains("--features cuda"),
        "{}",
        text(&out.stderr)
    );
    assert!(!out_dir.exists(), "nothing trained, nothing written");
}

#[test]
fn train_resume_with_other_settings_exits_2_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("run");
    let out_arg = out_dir.to_str().unwrap();
    let train = |extra: &[&str]| {
        let mut args = vec!["train", "nano", "--smoke", "--out", out_arg];
        args.extend_from_slice(extra);
        happyhorse(&args, None, dir.path())
    };
    let first = train(&["--stop-after", "1"]);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));

    let other = train(&["--sigma-shift", "1.5"]);
    assert_eq!(other.status.code(), Some(2), "{}", text(&other.stderr));
    assert!(other.stdout.is_empty());
    let err = text(&other.stderr);
    assert!(
        err.contains("sigma_shift: checkpoint 3.0, now 1.5") && err.contains("--out"),
        "{err}"
    );

    let bad = train(&["--sigma-shift", "0"]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad.stderr));
    assert!(text(&bad.stderr).contains("sigma_shift must be a positive number"));
}

#[test]
fn bench_of_a_folder_without_a_model_exits_3_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().to_str().unwrap();
    let args = ["bench", "nano", "--repeats", "1", "--model-dir", folder];
    let out = happyhorse(&args, None, dir.path());
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    assert!(err.contains("happyhorse.toml is missing"), "{err}");
}

#[test]
fn bench_dit_refuses_shapes_it_cannot_build_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    for (args, flag) in [
        (&["bench", "dit", "--hidden", "512"][..], "--hidden 512"),
        (
            &["bench", "dit", "--frames", "5", "--local-field", "2"][..],
            "--frames 5",
        ),
    ] {
        let out = happyhorse(args, None, dir.path());
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
        assert!(err.contains(flag), "{args:?}: {err}");
    }
}
