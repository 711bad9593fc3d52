//! `generate` and `batch`: specs in, paths (or JSON results) out.

use std::io::{IsTerminal, Read, Write};
use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};

use super::{BatchArgs, CliError, CliResult, GenerateArgs, RunArgs, SpecFlags, EXIT_INTERRUPTED};
use crate::engine::registry::{Registry, WeightSearch};
use crate::jobs::{self, CancelToken, Event, JobError, JobResult, RunOptions};
use crate::spec::{Guidance, JobSpec, OutputSpec, SpecError};

/// One job read from the input: its origin (for messages) and the spec or why it is invalid.
struct Input {
    origin: String,
    spec: Result<JobSpec, SpecError>,
}

impl SpecFlags {
    /// Overrides the spec's fields with the flags that were given.
    fn apply(&self, spec: &mut JobSpec) {
        macro_rules! set {
            ($field:ident, $flag:expr) => {
                if let Some(v) = $flag.clone() {
                    spec.$field = Some(v);
                }
            };
        }
        set!(negative_prompt, self.negative_prompt);
        set!(model, self.model);
        set!(image, self.image);
        set!(audio, self.audio);
        set!(duration_s, self.duration);
        set!(fps, self.fps);
        set!(aspect, self.aspect);
        set!(resolution, self.resolution);
        set!(steps, self.steps);
        set!(seed, self.seed);
        set!(audio_seed, self.audio_seed);
        set!(audio_weight, self.audio_weight);
        set!(background_sound, self.background_sound);
        set!(camera, self.camera);
        set!(variants, self.variants);
        if self.guidance_video.is_some() || self.guidance_audio.is_some() {
            let g = spec.guidance.get_or_insert_with(Guidance::default);
            g.video = self.guidance_video.or(g.video);
            g.audio = self.guidance_audio.or(g.audio);
        }
        if !self.sound_style.is_empty() {
            spec.sound_style = self.sound_style.clone();
        }
        if self.out_dir.is_some()
            || self.name.is_some()
            || self.codec.is_some()
            || self.formats.is_some()
        {
            let o = spec.output.get_or_insert_with(OutputSpec::default);
            o.dir = self.out_dir.clone().or(o.dir.take());
            o.name = self.name.clone().or(o.name.take());
            o.video_codec = self.codec.or(o.video_codec);
            o.formats = self.formats.clone().or(o.formats.take());
        }
    }
}

/// Parses a whole JSON spec, or JSONL (one spec per non-empty line). A bad line becomes an
/// invalid input of its own; the others still run.
fn parse_specs(text: &str, source: &str) -> Vec<Input> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return vec![Input {
            origin: source.to_string(),
            spec: Err(SpecError::field(
                "prompt",
                format!("{source} holds no job spec; give a JSON object such as {{\"prompt\": \"a red ball bouncing\"}}"),
            )),
        }];
    }
    // A pretty-printed single spec spans lines; JSONL has one object per line.
    if let Ok(spec) = serde_json::from_str::<serde_json::Value>(trimmed) {
        if spec.is_object() {
            return vec![Input {
                origin: source.to_string(),
                spec: JobSpec::from_json(trimmed),
            }];
        }
    }
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|(i, l)| Input {
            origin: format!("{source} line {}", i + 1),
            spec: JobSpec::from_json(l),
        })
        .collect()
}

fn read_source(path: &Path) -> Result<(String, String), CliError> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| CliError::bad_input(format!("cannot read the spec from stdin: {e}")))?;
        Ok((text, "stdin".into()))
    } else {
        let text = std::fs::read_to_string(path).map_err(|e| {
            CliError::bad_input(format!("cannot read spec file {}: {e}", path.display()))
        })?;
        Ok((text, path.display().to_string()))
    }
}

pub fn generate(args: GenerateArgs) -> CliResult {
    let inputs = match (&args.prompt, &args.spec) {
        (_, Some(file)) => {
            let (text, source) = read_source(file)?;
            parse_specs(&text, &source)
        }
        (Some(p), None) if p == "-" => {
            let (text, source) = read_source(Path::new("-"))?;
            parse_specs(&text, &source)
        }
        (Some(p), None) => vec![Input {
            origin: "command line".into(),
            spec: Ok(JobSpec {
                prompt: p.clone(),
                ..JobSpec::default()
            }),
        }],
        (None, None) => {
            return Err(CliError::bad_input(
                "no prompt given; usage: happyhorse generate \"a red ball bouncing on a green grass field\" (or --spec FILE, or - to read JSON from stdin)",
            ))
        }
    };
    run_inputs(inputs, &args.flags, &args.run, false)
}

pub fn batch(args: BatchArgs) -> CliResult {
    let (text, source) = read_source(&args.file)?;
    run_inputs(parse_specs(&text, &source), &args.flags, &args.run, true)
}

fn run_inputs(inputs: Vec<Input>, flags: &SpecFlags, run: &RunArgs, summary: bool) -> CliResult {
    let registry = Registry::builtin().map_err(CliError::runtime)?;
    let opts = RunOptions {
        weights: WeightSearch::from_env(run.weights.model_dir.clone()),
        skip_existing: run.skip_existing,
    };
    let cancel = CancelToken::new();
    {
        let cancel = cancel.clone();
        // A second Ctrl-C while a step is finishing exits at once (outputs are atomic, so no
        // truncated file is left under a final name).
        let _ = ctrlc::set_handler(move || {
            if cancel.is_cancelled() {
                std::process::exit(EXIT_INTERRUPTED);
            }
            eprintln!("happyhorse: interrupted; stopping after the current step (Ctrl-C again to quit now)");
            cancel.cancel();
        });
    }

    let total = inputs.len();
    let mut first_failure: Option<i32> = None;
    let (mut ok, mut skipped, mut failed) = (0usize, 0usize, 0usize);
    let stdout = std::io::stdout();
    for (i, input) in inputs.into_iter().enumerate() {
        if cancel.is_cancelled() {
            first_failure.get_or_insert(EXIT_INTERRUPTED);
            break;
        }
        let label = if total > 1 {
            format!("[{}/{}] ", i + 1, total)
        } else {
            String::new()
        };
        let outcome = match input.spec {
            Err(e) => Err((None, JobError::Spec(vec![e]))),
            Ok(mut spec) => {
                flags.apply(&mut spec);
                let id = spec.job_id();
                run_one(&spec, &registry, &opts, &cancel, &label).map_err(|e| (Some(id), e))
            }
        };
        let mut out = stdout.lock();
        match outcome {
            Ok(result) => {
                if result.status == "skipped" {
                    skipped += 1;
                    eprintln!("happyhorse: {label}{} skipped: outputs exist", result.id);
                } else {
                    ok += 1;
                }
                if run.json {
                    let _ = writeln!(
                        out,
                        "{}",
                        serde_json::to_string(&result).unwrap_or_default()
                    );
                } else {
                    for p in result.paths() {
                        let _ = writeln!(out, "{}", p.display());
                    }
                }
            }
            Err((id, e)) => {
                failed += 1;
                first_failure.get_or_insert(e.exit_code());
                eprintln!("happyhorse: {label}{}: {e}", input.origin);
                if run.json {
                    let v = serde_json::json!({
                        "id": id,
                        "status": "failed",
                        "input": input.origin,
                        "error": e.to_string(),
                        "error_kind": e.kind(),
                        "exit_code": e.exit_code(),
                    });
                    let _ = writeln!(out, "{v}");
                }
            }
        }
        let _ = out.flush();
    }
    if summary || total > 1 {
        eprintln!("happyhorse: {total} jobs: {ok} done, {skipped} skipped, {failed} failed");
    }
    match first_failure {
        None => Ok(()),
        Some(code) => Err(CliError {
            code,
            error: anyhow::anyhow!("{failed} of {total} jobs failed"),
            reported: true,
        }),
    }
}

fn run_one(
    spec: &JobSpec,
    registry: &Registry,
    opts: &RunOptions,
    cancel: &CancelToken,
    label: &str,
) -> Result<JobResult, JobError> {
    let tty = std::io::stderr().is_terminal();
    let bar = tty.then(|| {
        let b = ProgressBar::new(0);
        b.set_style(
            ProgressStyle::with_template(
                "{prefix}{msg} [{bar:30}] {pos}/{len} steps, {elapsed} (eta {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        b.set_prefix(label.to_string());
        b
    });
    let mut on_event = |e: Event| match (&bar, e) {
        (
            Some(b),
            Event::Step {
                step,
                total,
                variant,
                ..
            },
        ) => {
            b.set_length(total as u64);
            b.set_position(step as u64);
            b.set_message(format!("variant {variant}"));
        }
        (Some(b), Event::Encoding { variant, .. }) => {
            b.set_message(format!("encoding variant {variant}"))
        }
        (None, Event::Loading { job, model }) => {
            eprintln!("happyhorse: {label}{job}: loading {model}")
        }
        (None, Event::Encoding { job, variant }) => {
            eprintln!("happyhorse: {label}{job}: encoding variant {variant}")
        }
        _ => {}
    };
    let r = jobs::run_job(
        spec,
        registry,
        opts,
        &mut jobs::make_generator,
        cancel,
        &mut on_event,
    );
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_with_a_bad_line_keeps_the_good_ones() {
        let text = "{\"prompt\": \"a\"}\n\n{\"promt\": \"b\"}\n# comment\n{\"prompt\": \"c\", \"fps\": 24}\n";
        let inputs = parse_specs(text, "jobs.jsonl");
        assert_eq!(inputs.len(), 3);
        assert_eq!(inputs[1].origin, "jobs.jsonl line 3");
        let err = inputs[1].spec.as_ref().unwrap_err().to_string();
        assert!(err.starts_with("invalid job spec (line 1, column 8): unknown field `promt`, expected one of `prompt`"), "{err}");
        assert_eq!(inputs[2].spec.as_ref().unwrap().fps, Some(24));
    }

    #[test]
    fn pretty_printed_spec_is_one_job() {
        let text = "{\n  \"prompt\": \"a red ball\",\n  \"seed\": 7\n}\n";
        let inputs = parse_specs(text, "job.json");
        assert_eq!(inputs.len(), 1);
        assert_eq!(inputs[0].spec.as_ref().unwrap().seed, Some(7));
    }

    #[test]
    fn flags_override_spec_fields() {
        let mut spec = JobSpec {
            prompt: "x".into(),
            fps: Some(12),
            ..Default::default()
        };
        let flags = SpecFlags {
            fps: Some(24),
            guidance_audio: Some(3.0),
            out_dir: Some("out".into()),
            ..Default::default()
        };
        flags.apply(&mut spec);
        assert_eq!(spec.fps, Some(24));
        assert_eq!(spec.guidance.unwrap().audio, Some(3.0));
        assert_eq!(spec.output_dir(), std::path::PathBuf::from("out"));
    }
}
