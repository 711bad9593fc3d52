//! The job spec: what a user asks for, as JSON (CLI `--spec`, JSONL batches) or built from flags.
//!
//! Parsing rejects unknown fields so a typo (`"promt"`) surfaces instead of being ignored.
//! [`JobSpec::validate`] checks everything that does not depend on a model; the model-dependent
//! checks (allowed resolutions, supported controls) happen when the spec is resolved against a
//! manifest in [`crate::engine::registry`].

mod validate;

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use validate::SpecError;

/// Frame rates a clip may be written at.
pub const ALLOWED_FPS: [u32; 4] = [12, 18, 24, 25];
/// Range of `variants`.
pub const MAX_VARIANTS: u32 = 8;
/// Camera moves the spec accepts. Reserved: validated, not yet used by any model.
pub const CAMERA_MOVES: [&str; 9] = [
    "static",
    "pan-left",
    "pan-right",
    "tilt-up",
    "tilt-down",
    "zoom-in",
    "zoom-out",
    "orbit",
    "handheld",
];

/// One generation job. Every field but `prompt` is optional; defaults that depend on the model
/// come from its manifest (`happyhorse models info NAME`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// What the clip shows and sounds like. Required, non-empty.
    pub prompt: String,
    /// What to steer away from (models with classifier-free guidance only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negative_prompt: Option<String>,
    /// Registry name (`happyhorse models list`) or a model directory. Default: the embedded model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Reference image for image-to-video: the first frame follows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<PathBuf>,
    /// Soundtrack for audio-driven video: the audio is kept, the picture follows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio: Option<PathBuf>,
    /// Clip length in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<f32>,
    /// Output frame rate: 12, 18, 24 or 25. Frames are resampled when it differs from the model's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fps: Option<u32>,
    /// Picture shape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aspect: Option<Aspect>,
    /// Resolution name, `"<height>p"` for landscape (e.g. "256p", "540p", "1080p"); the model's
    /// manifest lists the ones it supports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<String>,
    /// Denoising steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<u32>,
    /// Classifier-free guidance scales.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guidance: Option<Guidance>,
    /// Seed of the video noise. Default: random (reported in the job result).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Seed of the audio noise. Default: derived from `seed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_seed: Option<u64>,
    /// Loudness of the generated sound, 0.0 (silent) to 1.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_weight: Option<f32>,
    /// Tags describing the sound (e.g. ["percussive", "lo-fi"]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sound_style: Vec<String>,
    /// Background sound description (e.g. "rain on a window").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background_sound: Option<String>,
    /// Spoken lines, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dialogue: Vec<DialogueLine>,
    /// Camera move. Reserved: validated, but no model uses it yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub camera: Option<String>,
    /// Number of clips to make from this spec (1–8), with consecutive seeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variants: Option<u32>,
    /// Where and how outputs are written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<OutputSpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Aspect {
    #[serde(rename = "16:9")]
    Landscape,
    #[serde(rename = "9:16")]
    Portrait,
    #[serde(rename = "1:1")]
    Square,
}

impl Aspect {
    pub const ALL: [Aspect; 3] = [Aspect::Landscape, Aspect::Portrait, Aspect::Square];

    pub fn as_str(self) -> &'static str {
        match self {
            Aspect::Landscape => "16:9",
            Aspect::Portrait => "9:16",
            Aspect::Square => "1:1",
        }
    }

    pub fn parse(s: &str) -> Option<Aspect> {
        Aspect::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

impl std::fmt::Display for Aspect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Guidance {
    /// Text guidance scale for the picture.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video: Option<f32>,
    /// Text guidance scale for the sound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio: Option<f32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DialogueLine {
    pub speaker: String,
    /// BCP-47-like language tag, e.g. "en", "zh", "ja".
    pub language: String,
    pub text: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum VideoCodec {
    #[default]
    H264,
    H265,
}

impl VideoCodec {
    pub fn as_str(self) -> &'static str {
        match self {
            VideoCodec::H264 => "h264",
            VideoCodec::H265 => "h265",
        }
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Video with its sound (H.264/H.265 + AAC).
    Mp4,
    /// The sound alone, 16-bit PCM.
    Wav,
    /// Every frame as a PNG, in a folder.
    Png,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Mp4 => "mp4",
            Format::Wav => "wav",
            Format::Png => "png",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    /// Output folder. Default: the current directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// File name template without extension. Placeholders: {id} (stable job id), {slug} (from the
    /// prompt), {variant} (1-based), {seed}, {model}. Default: "{slug}-{id}" (+ "-v{variant}"
    /// when variants > 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// "h264" (default) or "h265".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video_codec: Option<VideoCodec>,
    /// Any of "mp4", "wav", "png". Default: ["mp4", "wav"].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub formats: Option<Vec<Format>>,
}

/// Default output formats: the clip and its sound beside it.
pub const DEFAULT_FORMATS: [Format; 2] = [Format::Mp4, Format::Wav];

impl JobSpec {
    /// Parses one JSON job spec. Errors name the line/column and, for typos, the unknown field and
    /// the fields that exist.
    pub fn from_json(text: &str) -> Result<JobSpec, SpecError> {
        let spec: JobSpec = serde_json::from_str(text).map_err(SpecError::from_json)?;
        Ok(spec)
    }

    /// The spec every field of which is shown by `happyhorse spec --example`.
    pub fn example() -> JobSpec {
        JobSpec {
            prompt: "a red ball bouncing on a green grass field".into(),
            negative_prompt: Some("blurry, distorted".into()),
            model: None,
            image: None,
            audio: None,
            duration_s: Some(4.0),
            fps: Some(24),
            aspect: Some(Aspect::Landscape),
            resolution: None,
            steps: None,
            guidance: None,
            seed: Some(42),
            audio_seed: None,
            audio_weight: Some(1.0),
            sound_style: vec!["percussive".into()],
            background_sound: Some("wind".into()),
            dialogue: vec![],
            camera: None,
            variants: Some(1),
            output: Some(OutputSpec {
                dir: Some("clips".into()),
                name: Some("{slug}-{id}".into()),
                video_codec: Some(VideoCodec::H264),
                formats: Some(vec![Format::Mp4, Format::Wav]),
            }),
        }
    }

    /// JSON Schema of the spec (`happyhorse spec --schema`).
    pub fn schema() -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(JobSpec)).unwrap_or_default()
    }

    /// Stable id of what this spec generates: a hash of its canonical JSON, leaving out where the
    /// outputs go (so moving a batch to another folder keeps its names). Reruns of the same spec
    /// map to the same id, which is what `--skip-existing` relies on.
    pub fn job_id(&self) -> String {
        let mut canonical = self.clone();
        canonical.output = self.output.as_ref().map(|o| OutputSpec {
            dir: None,
            name: None,
            ..o.clone()
        });
        // serde_json writes struct fields in declaration order: canonical without sorting.
        let json = serde_json::to_string(&canonical).unwrap_or_default();
        let digest = Sha256::digest(json.as_bytes());
        digest[..6].iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn variants(&self) -> u32 {
        self.variants.unwrap_or(1)
    }

    pub fn formats(&self) -> Vec<Format> {
        let mut f = self
            .output
            .as_ref()
            .and_then(|o| o.formats.clone())
            .unwrap_or_else(|| DEFAULT_FORMATS.to_vec());
        f.sort();
        f.dedup();
        f
    }

    pub fn video_codec(&self) -> VideoCodec {
        self.output
            .as_ref()
            .and_then(|o| o.video_codec)
            .unwrap_or_default()
    }

    pub fn output_dir(&self) -> PathBuf {
        self.output
            .as_ref()
            .and_then(|o| o.dir.clone())
            .unwrap_or_else(|| PathBuf::from("."))
    }

    /// The output file stem for one variant (1-based), from the name template.
    pub fn output_stem(&self, variant: u32, seed: Option<u64>, model: &str) -> String {
        let template = self.output.as_ref().and_then(|o| o.name.clone());
        let template = template.unwrap_or_else(|| {
            if self.variants() > 1 {
                "{slug}-{id}-v{variant}".into()
            } else {
                "{slug}-{id}".into()
            }
        });
        let seed = seed
            .map(|s| s.to_string())
            .unwrap_or_else(|| "random".into());
        let stem = template
            .replace("{id}", &self.job_id())
            .replace("{slug}", &slug(&self.prompt))
            .replace("{variant}", &variant.to_string())
            .replace("{seed}", &seed)
            .replace("{model}", &slug(model));
        // A template without {variant} would make variants overwrite each other.
        if self.variants() > 1 && !template.contains("{variant}") {
            format!("{stem}-v{variant}")
        } else {
            stem
        }
    }
}

/// Lower-case ASCII words of `text` joined by '-', at most 40 characters.
pub fn slug(text: &str) -> String {
    let mut out = String::new();
    for word in text
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        if out.len() + word.len() + 1 > 40 {
            break;
        }
        if !out.is_empty() {
            out.push('-');
        }
        out.push_str(&word.to_ascii_lowercase());
    }
    if out.is_empty() {
        out.push_str("clip");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slug_keeps_words_and_bounds_length() {
        assert_eq!(slug("A red ball, bouncing!"), "a-red-ball-bouncing");
        assert_eq!(slug("日本"), "clip");
        assert!(slug(&"word ".repeat(40)).len() <= 40);
    }

    #[test]
    fn job_id_ignores_output_location_but_not_content() {
        let a = JobSpec::example();
        let mut b = a.clone();
        b.output.as_mut().unwrap().dir = Some("elsewhere".into());
        assert_eq!(a.job_id(), b.job_id());
        b.seed = Some(43);
        assert_ne!(a.job_id(), b.job_id());
        assert_eq!(a.job_id().len(), 12);
    }

    #[test]
    fn variants_get_distinct_stems() {
        let mut s = JobSpec {
            prompt: "x".into(),
            variants: Some(3),
            ..Default::default()
        };
        s.output = Some(OutputSpec {
            name: Some("clip".into()),
            ..Default::default()
        });
        assert_eq!(s.output_stem(1, None, "nano"), "clip-v1");
        assert_eq!(s.output_stem(3, None, "nano"), "clip-v3");
    }
}
