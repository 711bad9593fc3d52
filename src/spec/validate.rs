//! Model-independent validation of a [`JobSpec`]. Every message names the field, the bad value
//! and what is allowed.

use super::{JobSpec, ALLOWED_FPS, CAMERA_MOVES, MAX_VARIANTS};

/// Longest clip any model of the family makes; a model's own limit is checked on resolve.
pub const MAX_DURATION_S: f32 = 60.0;
pub const MAX_STEPS: u32 = 1000;
pub const MAX_GUIDANCE: f32 = 50.0;
const NAME_PLACEHOLDERS: [&str; 5] = ["{id}", "{slug}", "{variant}", "{seed}", "{model}"];

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    /// The text is not a JSON job spec (syntax error, wrong type, unknown or missing field).
    #[error("invalid job spec (line {line}, column {column}): {message}")]
    Json {
        line: usize,
        column: usize,
        message: String,
    },
    /// A field has a value that is not allowed.
    #[error("spec field `{field}`: {message}")]
    Field { field: String, message: String },
}

impl SpecError {
    pub(super) fn from_json(err: serde_json::Error) -> SpecError {
        let full = err.to_string();
        // serde_json appends " at line L column C"; we print the position ourselves.
        let message = match full.rfind(" at line ") {
            Some(i) => full[..i].to_string(),
            None => full,
        };
        SpecError::Json {
            line: err.line(),
            column: err.column(),
            message,
        }
    }

    pub fn field(field: &str, message: impl Into<String>) -> SpecError {
        SpecError::Field {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

fn list<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl JobSpec {
    /// Checks every field that does not depend on the model. Returns all problems found, in field
    /// order, so a user fixes a spec in one pass.
    pub fn validate(&self) -> Result<(), Vec<SpecError>> {
        let mut errs = Vec::new();
        let mut bad = |field: &str, message: String| errs.push(SpecError::field(field, message));

        if self.prompt.trim().is_empty() {
            bad(
                "prompt",
                "must not be empty; describe the clip, e.g. \"a red ball bouncing on a green grass field\"".into(),
            );
        }
        for (field, path) in [("image", &self.image), ("audio", &self.audio)] {
            if let Some(p) = path {
                if !p.is_file() {
                    bad(field, format!("file not found: {}", p.display()));
                }
            }
        }
        if let Some(d) = self.duration_s {
            if !(d.is_finite() && d > 0.0 && d <= MAX_DURATION_S) {
                bad(
                    "duration_s",
                    format!("{d} is out of range; allowed: more than 0 and at most {MAX_DURATION_S} seconds"),
                );
            }
        }
        if let Some(fps) = self.fps {
            if !ALLOWED_FPS.contains(&fps) {
                bad(
                    "fps",
                    format!("{fps} is not supported; allowed: {}", list(&ALLOWED_FPS)),
                );
            }
        }
        if let Some(r) = &self.resolution {
            let digits = r.strip_suffix('p').unwrap_or("");
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                bad(
                    "resolution",
                    format!("\"{r}\" is not a resolution name; use the form \"256p\" (`happyhorse models info MODEL` lists a model's resolutions)"),
                );
            }
        }
        if let Some(s) = self.steps {
            if s == 0 || s > MAX_STEPS {
                bad(
                    "steps",
                    format!("{s} is out of range; allowed: 1 to {MAX_STEPS}"),
                );
            }
        }
        if let Some(g) = &self.guidance {
            for (field, v) in [("guidance.video", g.video), ("guidance.audio", g.audio)] {
                if let Some(v) = v {
                    if !(v.is_finite() && (0.0..=MAX_GUIDANCE).contains(&v)) {
                        bad(
                            field,
                            format!("{v} is out of range; allowed: 0 to {MAX_GUIDANCE}"),
                        );
                    }
                }
            }
        }
        if let Some(w) = self.audio_weight {
            if !(w.is_finite() && (0.0..=1.0).contains(&w)) {
                bad(
                    "audio_weight",
                    format!("{w} is out of range; allowed: 0.0 (silent) to 1.0"),
                );
            }
        }
        for (i, tag) in self.sound_style.iter().enumerate() {
            if tag.trim().is_empty() {
                bad(&format!("sound_style[{i}]"), "must not be empty".into());
            }
        }
        for (i, line) in self.dialogue.iter().enumerate() {
            for (name, value) in [
                ("speaker", &line.speaker),
                ("language", &line.language),
                ("text", &line.text),
            ] {
                if value.trim().is_empty() {
                    bad(&format!("dialogue[{i}].{name}"), "must not be empty".into());
                }
            }
            let lang = &line.language;
            if !lang.is_empty() && !lang.chars().all(|c| c.is_ascii_alphabetic() || c == '-') {
                bad(
                    &format!("dialogue[{i}].language"),
                    format!("\"{lang}\" is not a language tag; use e.g. \"en\", \"zh\", \"pt-BR\""),
                );
            }
        }
        if let Some(c) = &self.camera {
            if !CAMERA_MOVES.contains(&c.as_str()) {
                bad(
                    "camera",
                    format!(
                        "\"{c}\" is not a camera move; allowed: {}",
                        list(&CAMERA_MOVES)
                    ),
                );
            }
        }
        if let Some(v) = self.variants {
            if v == 0 || v > MAX_VARIANTS {
                bad(
                    "variants",
                    format!("{v} is out of range; allowed: 1 to {MAX_VARIANTS}"),
                );
            }
        }
        if let Some(out) = &self.output {
            if let Some(name) = &out.name {
                if name.trim().is_empty() {
                    bad("output.name", "must not be empty".into());
                } else if name.contains('/') || name.contains('\\') || name.contains("..") {
                    bad(
                        "output.name",
                        format!(
                            "\"{name}\" must be a file name, not a path; put folders in output.dir"
                        ),
                    );
                } else if let Some(unknown) = unknown_placeholder(name) {
                    bad(
                        "output.name",
                        format!(
                            "unknown placeholder {unknown}; allowed: {}",
                            list(&NAME_PLACEHOLDERS)
                        ),
                    );
                }
            }
            if let Some(f) = &out.formats {
                if f.is_empty() {
                    bad(
                        "output.formats",
                        "must name at least one of \"mp4\", \"wav\", \"png\"".into(),
                    );
                }
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs)
        }
    }
}

fn unknown_placeholder(template: &str) -> Option<String> {
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let end = rest[start..].find('}').map(|e| start + e + 1)?;
        let token = &rest[start..end];
        if !NAME_PLACEHOLDERS.contains(&token) {
            return Some(token.to_string());
        }
        rest = &rest[end..];
    }
    None
}
