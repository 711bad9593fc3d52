//! The job spec: a table of good and bad specs with the exact messages a user sees.

use happyhorse::spec::{JobSpec, SpecError};

fn errors(json: &str) -> Vec<String> {
    match JobSpec::from_json(json) {
        Err(e) => vec![e.to_string()],
        Ok(spec) => match spec.validate() {
            Ok(()) => vec![],
            Err(errs) => errs.iter().map(SpecError::to_string).collect(),
        },
    }
}

#[test]
fn good_specs_pass() {
    let good = [
        r#"{"prompt": "a red ball bouncing on a green grass field"}"#,
        r#"{"prompt": "x", "fps": 12, "aspect": "9:16", "resolution": "256p", "duration_s": 10}"#,
        r#"{"prompt": "x", "guidance": {"video": 5.0, "audio": 3.5}, "steps": 32, "seed": 1, "audio_seed": 2}"#,
        r#"{"prompt": "x", "audio_weight": 0, "variants": 8, "camera": "pan-left"}"#,
        r#"{"prompt": "x", "dialogue": [{"speaker": "A", "language": "pt-BR", "text": "Olá"}], "sound_style": ["jazz"]}"#,
        r#"{"prompt": "x", "output": {"dir": "out", "name": "{slug}-{seed}-{variant}", "video_codec": "h265", "formats": ["mp4", "wav", "png"]}}"#,
    ];
    for json in good {
        assert_eq!(errors(json), Vec::<String>::new(), "{json}");
    }
    let example = serde_json::to_string(&JobSpec::example()).unwrap();
    assert_eq!(errors(&example), Vec::<String>::new());
}

#[test]
fn bad_specs_name_field_value_and_what_is_allowed() {
    let table: &[(&str, &str)] = &[
        (r#"{"promt": "x"}"#, "invalid job spec (line 1, column 8): unknown field `promt`, expected one of `prompt`, `negative_prompt`, `model`, `image`, `audio`, `duration_s`, `fps`, `aspect`, `resolution`, `steps`, `guidance`, `seed`, `audio_seed`, `audio_weight`, `sound_style`, `background_sound`, `dialogue`, `camera`, `variants`, `output`"),
        (r#"{"fps": 24}"#, "invalid job spec (line 1, column 11): missing field `prompt`"),
        (r#"{"prompt": "x", "fps": "24"}"#, "invalid job spec (line 1, column 27): invalid type: string \"24\", expected u32"),
        (r#"{"prompt": "   "}"#, "spec field `prompt`: must not be empty; describe the clip, e.g. \"a red ball bouncing on a green grass field\""),
        (r#"{"prompt": "x", "fps": 30}"#, "spec field `fps`: 30 is not supported; allowed: 12, 18, 24, 25"),
        (r#"{"prompt": "x", "aspect": "4:3"}"#, "invalid job spec (line 1, column 31): unknown variant `4:3`, expected one of `16:9`, `9:16`, `1:1`"),
        (r#"{"prompt": "x", "resolution": "720"}"#, "spec field `resolution`: \"720\" is not a resolution name; use the form \"256p\" (`happyhorse models info MODEL` lists a model's resolutions)"),
        (r#"{"prompt": "x", "duration_s": -1}"#, "spec field `duration_s`: -1 is out of range; allowed: more than 0 and at most 60 seconds"),
        (r#"{"prompt": "x", "steps": 0}"#, "spec field `steps`: 0 is out of range; allowed: 1 to 1000"),
        (r#"{"prompt": "x", "guidance": {"video": 80}}"#, "spec field `guidance.video`: 80 is out of range; allowed: 0 to 50"),
        (r#"{"prompt": "x", "guidance": {"vidoe": 2}}"#, "invalid job spec (line 1, column 36): unknown field `vidoe`, expected `video` or `audio`"),
        (r#"{"prompt": "x", "audio_weight": 1.5}"#, "spec field `audio_weight`: 1.5 is out of range; allowed: 0.0 (silent) to 1.0"),
        (r#"{"prompt": "x", "variants": 9}"#, "spec field `variants`: 9 is out of range; allowed: 1 to 8"),
        (r#"{"prompt": "x", "camera": "dolly"}"#, "spec field `camera`: \"dolly\" is not a camera move; allowed: static, pan-left, pan-right, tilt-up, tilt-down, zoom-in, zoom-out, orbit, handheld"),
        (r#"{"prompt": "x", "image": "/nonexistent/ref.png"}"#, "spec field `image`: file not found: /nonexistent/ref.png"),
        (r#"{"prompt": "x", "sound_style": [""]}"#, "spec field `sound_style[0]`: must not be empty"),
        (r#"{"prompt": "x", "dialogue": [{"speaker": "A", "language": "en 1", "text": "hi"}]}"#, "spec field `dialogue[0].language`: \"en 1\" is not a language tag; use e.g. \"en\", \"zh\", \"pt-BR\""),
        (r#"{"prompt": "x", "output": {"name": "../x"}}"#, "spec field `output.name`: \"../x\" must be a file name, not a path; put folders in output.dir"),
        (r#"{"prompt": "x", "output": {"name": "{date}"}}"#, "spec field `output.name`: unknown placeholder {date}; allowed: {id}, {slug}, {variant}, {seed}, {model}"),
        (r#"{"prompt": "x", "output": {"video_codec": "vp9"}}"#, "invalid job spec (line 1, column 47): unknown variant `vp9`, expected `h264` or `h265`"),
        (r#"{"prompt": "x", "output": {"formats": []}}"#, "spec field `output.formats`: must name at least one of \"mp4\", \"wav\", \"png\""),
    ];
    for (json, expected) in table {
        assert_eq!(errors(json), vec![expected.to_string()], "{json}");
    }
}

#[test]
fn every_problem_is_reported_at_once() {
    let errs = errors(r#"{"prompt": "", "fps": 7, "variants": 0}"#);
    assert_eq!(errs.len(), 3, "{errs:?}");
    assert!(errs[0].starts_with("spec field `prompt`"));
    assert!(errs[1].starts_with("spec field `fps`"));
    assert!(errs[2].starts_with("spec field `variants`"));
}
