//! The model registry: manifests (`models/*.toml`, built into the binary) describing each model's
//! files and defaults, and the lookup of those files on disk.
//!
//! Files are searched, in order, under the model directory (`--model-dir` or
//! `HAPPYHORSE_MODEL_DIR`) at the component's `local` path, then in the Hugging Face hub cache
//! (`$HF_HOME/hub`, the layout `huggingface-cli download` writes) at `repo`/`path`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::spec::{Aspect, JobSpec, SpecError};

/// Manifests shipped in the binary, so `happyhorse models list` works from any folder.
const BUILTIN: [(&str, &str); 3] = [
    ("nano.toml", include_str!("../../models/nano.toml")),
    (
        "magihuman-base.toml",
        include_str!("../../models/magihuman-base.toml"),
    ),
    (
        "magihuman-distill.toml",
        include_str!("../../models/magihuman-distill.toml"),
    ),
];

/// The model a spec without `model` uses.
pub const DEFAULT_MODEL: &str = "nano";
/// File a model directory may carry to describe itself (same format as models/*.toml).
pub const MANIFEST_FILE: &str = "happyhorse.toml";

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("manifest {file} is invalid: {message}")]
    BadManifest { file: String, message: String },
    #[error("unknown model `{name}`; known models: {known}. A model directory must contain {MANIFEST_FILE}")]
    UnknownModel { name: String, known: String },
    #[error(
        "model `{model}` is missing its {role} file `{file}`{repo}.\n  looked in:\n{searched}\n  fix: run `happyhorse models pull {model}`, or pass --model-dir (or set HAPPYHORSE_MODEL_DIR) to a folder holding `{file}`"
    )]
    WeightsMissing {
        model: String,
        role: String,
        file: String,
        repo: String,
        searched: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    pub architecture: String,
    pub description: String,
    #[serde(default)]
    pub license: Option<String>,
    /// Frame rate the model generates at; other fps are resampled.
    pub native_fps: u32,
    pub audio_sample_rate: u32,
    pub min_duration_s: f32,
    pub max_duration_s: f32,
    /// Spec controls this model honours beyond prompt/duration/fps/aspect/resolution/steps.
    /// Any other control set in a spec is refused, never silently ignored.
    #[serde(default)]
    pub supports: Vec<String>,
    pub defaults: Defaults,
    pub resolutions: Vec<Resolution>,
    #[serde(default)]
    pub components: Vec<Component>,
    /// The files are built into the binary (the default model); a model directory holding
    /// them still takes precedence, so retrained weights can be tried without rebuilding.
    #[serde(default)]
    pub embedded: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    pub steps: u32,
    pub guidance_video: f32,
    pub guidance_audio: f32,
    pub duration_s: f32,
    pub aspect: String,
    pub resolution: String,
    /// Output frame rate when the spec sets none; the native rate if absent.
    #[serde(default)]
    pub fps: Option<u32>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Resolution {
    pub name: String,
    /// Aspect ("16:9", "9:16", "1:1") → [width, height].
    pub sizes: BTreeMap<String, [u32; 2]>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Component {
    pub role: String,
    /// Hub repository, e.g. "GAIR/daVinci-MagiHuman".
    #[serde(default)]
    pub repo: Option<String>,
    /// Path inside the hub repository.
    pub path: String,
    /// Path under the model directory.
    pub local: String,
    #[serde(default)]
    pub size: Option<u64>,
    #[serde(default)]
    pub sha256: Option<String>,
    /// Only needed for these resolutions (e.g. a super-resolution stage).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub only_for: Vec<String>,
}

impl Manifest {
    pub fn parse(file: &str, text: &str) -> Result<Manifest, RegistryError> {
        let m: Manifest = toml::from_str(text).map_err(|e| RegistryError::BadManifest {
            file: file.to_string(),
            message: e.to_string(),
        })?;
        let bad = |message: String| RegistryError::BadManifest {
            file: file.to_string(),
            message,
        };
        if !m
            .resolutions
            .iter()
            .any(|r| r.name == m.defaults.resolution)
        {
            return Err(bad(format!(
                "defaults.resolution \"{}\" is not one of its [[resolutions]]",
                m.defaults.resolution
            )));
        }
        for r in &m.resolutions {
            for (aspect, [w, h]) in &r.sizes {
                if Aspect::parse(aspect).is_none() {
                    return Err(bad(format!(
                        "resolution {}: unknown aspect \"{aspect}\"",
                        r.name
                    )));
                }
                if w % 2 != 0 || h % 2 != 0 || *w == 0 || *h == 0 {
                    return Err(bad(format!(
                        "resolution {} {aspect}: {w}x{h} must be even and non-zero (H.264 needs even sizes)",
                        r.name
                    )));
                }
            }
        }
        Ok(m)
    }

    pub fn supports(&self, control: &str) -> bool {
        self.supports.iter().any(|s| s == control)
    }

    pub fn resolution(&self, name: &str) -> Option<&Resolution> {
        self.resolutions.iter().find(|r| r.name == name)
    }

    /// Components needed to generate at `resolution`.
    pub fn components_for<'a>(
        &'a self,
        resolution: &'a str,
    ) -> impl Iterator<Item = &'a Component> {
        self.components
            .iter()
            .filter(move |c| c.only_for.is_empty() || c.only_for.iter().any(|r| r == resolution))
    }
}

/// Where a model lives: built-in (weights found by lookup) or a directory of its own.
#[derive(Debug, Clone)]
pub struct ModelEntry {
    pub manifest: Manifest,
    /// Set for a model given as a directory: its files are relative to it.
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct Registry {
    pub models: Vec<Manifest>,
}

impl Registry {
    /// The manifests built into the binary.
    pub fn builtin() -> Result<Registry, RegistryError> {
        let models = BUILTIN
            .iter()
            .map(|(file, text)| Manifest::parse(file, text))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Registry { models })
    }

    pub fn names(&self) -> Vec<&str> {
        self.models.iter().map(|m| m.name.as_str()).collect()
    }

    /// Finds a model by registry name, or loads a model directory's own manifest.
    pub fn find(&self, name_or_dir: &str) -> Result<ModelEntry, RegistryError> {
        if let Some(m) = self.models.iter().find(|m| m.name == name_or_dir) {
            return Ok(ModelEntry {
                manifest: m.clone(),
                dir: None,
            });
        }
        let dir = Path::new(name_or_dir);
        let manifest_path = dir.join(MANIFEST_FILE);
        if dir.is_dir() && manifest_path.is_file() {
            let text =
                std::fs::read_to_string(&manifest_path).map_err(|source| RegistryError::Io {
                    path: manifest_path.clone(),
                    source,
                })?;
            let manifest = Manifest::parse(&manifest_path.display().to_string(), &text)?;
            return Ok(ModelEntry {
                manifest,
                dir: Some(dir.to_path_buf()),
            });
        }
        Err(RegistryError::UnknownModel {
            name: name_or_dir.to_string(),
            known: self.names().join(", "),
        })
    }
}

/// Where to look for weight files.
#[derive(Debug, Clone, Default)]
pub struct WeightSearch {
    /// `--model-dir` or `HAPPYHORSE_MODEL_DIR`.
    pub model_dir: Option<PathBuf>,
    /// Root of the hub cache (`$HF_HOME/hub`); `None` = the environment's default.
    pub hub_cache: Option<PathBuf>,
}

impl WeightSearch {
    pub fn from_env(model_dir: Option<PathBuf>) -> WeightSearch {
        let model_dir =
            model_dir.or_else(|| std::env::var_os("HAPPYHORSE_MODEL_DIR").map(PathBuf::from));
        WeightSearch {
            model_dir,
            hub_cache: None,
        }
    }

    fn hub_cache(&self) -> hf_hub::Cache {
        match &self.hub_cache {
            Some(p) => hf_hub::Cache::new(p.clone()),
            None => hf_hub::Cache::from_env(),
        }
    }

    /// Candidate paths for one component, in search order.
    fn candidates(&self, entry: &ModelEntry, c: &Component) -> Vec<PathBuf> {
        let mut out = Vec::new();
        if let Some(dir) = &entry.dir {
            out.push(dir.join(&c.local));
        }
        if let Some(dir) = &self.model_dir {
            out.push(dir.join(&c.local));
        }
        out
    }

    /// Resolves one component to a file on disk, or says where it looked.
    pub fn locate(&self, entry: &ModelEntry, c: &Component) -> Result<PathBuf, RegistryError> {
        let mut searched = Vec::new();
        for p in self.candidates(entry, c) {
            if p.is_file() {
                return Ok(p);
            }
            searched.push(p.display().to_string());
        }
        if let Some(repo) = &c.repo {
            let cache = self.hub_cache();
            if let Some(p) = cache.model(repo.clone()).get(&c.path) {
                return Ok(p);
            }
            searched.push(format!(
                "hub cache {} ({repo}: {})",
                cache.path().display(),
                c.path
            ));
        }
        Err(RegistryError::WeightsMissing {
            model: entry.manifest.name.clone(),
            role: c.role.clone(),
            file: c.local.clone(),
            repo: c
                .repo
                .as_ref()
                .map(|r| format!(" (hub: {r})"))
                .unwrap_or_default(),
            searched: searched
                .iter()
                .map(|s| format!("    {s}"))
                .collect::<Vec<_>>()
                .join("\n"),
        })
    }

    /// Resolves every component needed at `resolution`, by role.
    pub fn locate_all(
        &self,
        entry: &ModelEntry,
        resolution: &str,
    ) -> Result<Vec<(String, PathBuf)>, RegistryError> {
        entry
            .manifest
            .components_for(resolution)
            .map(|c| Ok((c.role.clone(), self.locate(entry, c)?)))
            .collect()
    }
}

/// A spec with every default filled in from the model's manifest: what the engine runs.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedJob {
    pub model: String,
    pub architecture: String,
    pub width: u32,
    pub height: u32,
    pub aspect: Aspect,
    pub resolution: String,
    /// Frame rate the model generates at.
    pub native_fps: u32,
    /// Frame rate written to the outputs.
    pub fps: u32,
    pub duration_s: f32,
    pub steps: u32,
    pub guidance_video: f32,
    pub guidance_audio: f32,
    pub audio_weight: f32,
    pub audio_sample_rate: u32,
}

impl ResolvedJob {
    /// Frames written at the output fps.
    pub fn output_frames(&self) -> usize {
        (self.duration_s * self.fps as f32).round().max(1.0) as usize
    }
}

/// Fills a validated spec's model-dependent defaults and refuses what the model cannot do.
pub fn resolve(spec: &JobSpec, manifest: &Manifest) -> Result<ResolvedJob, Vec<SpecError>> {
    let mut errs = Vec::new();
    let name = &manifest.name;
    let refuse = |errs: &mut Vec<SpecError>, field: &str, control: &str| {
        errs.push(SpecError::field(
            field,
            format!("model `{name}` cannot use {control}; remove the field or choose another model (`happyhorse models list`)"),
        ))
    };
    let set: [(&str, bool, &str); 9] = [
        (
            "negative_prompt",
            spec.negative_prompt.is_some(),
            "a negative prompt",
        ),
        ("image", spec.image.is_some(), "a reference image"),
        ("audio", spec.audio.is_some(), "a given soundtrack"),
        ("guidance", spec.guidance.is_some(), "guidance scales"),
        (
            "audio_seed",
            spec.audio_seed.is_some(),
            "a separate audio seed",
        ),
        (
            "sound_style",
            !spec.sound_style.is_empty(),
            "sound style tags",
        ),
        (
            "background_sound",
            spec.background_sound.is_some(),
            "a background sound",
        ),
        ("dialogue", !spec.dialogue.is_empty(), "dialogue"),
        ("camera", spec.camera.is_some(), "camera moves"),
    ];
    for (field, present, what) in set {
        if present && !manifest.supports(field) {
            refuse(&mut errs, field, what);
        }
    }
    if spec.audio_weight.is_some_and(|w| w != 1.0) && !manifest.supports("audio_weight") {
        refuse(&mut errs, "audio_weight", "an audio weight");
    }
    if spec.variants() > 1 && !manifest.supports("variants") {
        refuse(&mut errs, "variants", "variants");
    }

    let aspect = match spec.aspect {
        Some(a) => a,
        None => Aspect::parse(&manifest.defaults.aspect).unwrap_or(Aspect::Landscape),
    };
    let resolution = spec
        .resolution
        .clone()
        .unwrap_or_else(|| manifest.defaults.resolution.clone());
    let size = match manifest.resolution(&resolution) {
        None => {
            let names: Vec<_> = manifest
                .resolutions
                .iter()
                .map(|r| r.name.as_str())
                .collect();
            errs.push(SpecError::field(
                "resolution",
                format!(
                    "model `{name}` has no \"{resolution}\"; allowed: {}",
                    names.join(", ")
                ),
            ));
            None
        }
        Some(r) => match r.sizes.get(aspect.as_str()) {
            None => {
                errs.push(SpecError::field(
                    "aspect",
                    format!("model `{name}` has no {aspect} size at {resolution}"),
                ));
                None
            }
            Some(s) => Some(*s),
        },
    };
    let duration_s = spec.duration_s.unwrap_or(manifest.defaults.duration_s);
    if !(manifest.min_duration_s..=manifest.max_duration_s).contains(&duration_s) {
        errs.push(SpecError::field(
            "duration_s",
            format!(
                "{duration_s} is out of range for model `{name}`; allowed: {} to {} seconds",
                manifest.min_duration_s, manifest.max_duration_s
            ),
        ));
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    let [width, height] = size.unwrap_or([0, 0]);
    let guidance = spec.guidance.unwrap_or_default();
    Ok(ResolvedJob {
        model: manifest.name.clone(),
        architecture: manifest.architecture.clone(),
        width,
        height,
        aspect,
        resolution,
        native_fps: manifest.native_fps,
        fps: spec
            .fps
            .or(manifest.defaults.fps)
            .unwrap_or(manifest.native_fps),
        duration_s,
        steps: spec.steps.unwrap_or(manifest.defaults.steps),
        guidance_video: guidance.video.unwrap_or(manifest.defaults.guidance_video),
        guidance_audio: guidance.audio.unwrap_or(manifest.defaults.guidance_audio),
        audio_weight: spec.audio_weight.unwrap_or(1.0),
        audio_sample_rate: manifest.audio_sample_rate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_manifests_parse_and_default_exists() {
        let r = Registry::builtin().unwrap();
        assert!(r.names().contains(&DEFAULT_MODEL));
        let base = r.find("magihuman-base").unwrap().manifest;
        assert_eq!(base.resolution("256p").unwrap().sizes["16:9"], [448, 256]);
        // The SR transformer is only needed above 256p.
        assert_eq!(
            base.components_for("256p")
                .filter(|c| c.role == "sr-transformer")
                .count(),
            0
        );
        assert_eq!(
            base.components_for("540p")
                .filter(|c| c.role == "sr-transformer")
                .count(),
            1
        );
    }

    #[test]
    fn nano_manifest_defaults_match_its_embedded_sampler() {
        let r = Registry::builtin().unwrap();
        let nano = r.find("nano").unwrap().manifest;
        let cfg: serde_json::Value =
            serde_json::from_str(crate::engine::models::nano::embedded::CONFIG).unwrap();
        let s = &cfg["sampler"];
        assert_eq!(nano.defaults.steps as u64, s["steps"].as_u64().unwrap());
        assert_eq!(
            nano.defaults.guidance_video as f64,
            s["guidance_video"].as_f64().unwrap()
        );
        assert_eq!(
            nano.defaults.guidance_audio as f64,
            s["guidance_audio"].as_f64().unwrap()
        );
        assert!(nano.embedded);
        assert_eq!(nano.defaults.fps, Some(24));
    }

    #[test]
    fn resolve_fills_defaults_and_refuses_unsupported_controls() {
        let r = Registry::builtin().unwrap();
        let distill = r.find("magihuman-distill").unwrap().manifest;
        let spec = JobSpec {
            prompt: "x".into(),
            aspect: Some(Aspect::Portrait),
            ..Default::default()
        };
        let job = resolve(&spec, &distill).unwrap();
        assert_eq!(
            (job.width, job.height, job.steps, job.fps),
            (256, 448, 8, 25)
        );
        let spec = JobSpec {
            prompt: "x".into(),
            negative_prompt: Some("blur".into()),
            resolution: Some("1080p".into()),
            ..Default::default()
        };
        let errs = resolve(&spec, &distill).unwrap_err();
        let msgs: Vec<_> = errs.iter().map(|e| e.to_string()).collect();
        assert_eq!(msgs, [
            "spec field `negative_prompt`: model `magihuman-distill` cannot use a negative prompt; remove the field or choose another model (`happyhorse models list`)",
            "spec field `resolution`: model `magihuman-distill` has no \"1080p\"; allowed: 256p",
        ]);
    }

    #[test]
    fn missing_weights_name_the_file_and_the_fix() {
        let r = Registry::builtin().unwrap();
        let entry = r.find("magihuman-base").unwrap();
        let empty = std::env::temp_dir().join("happyhorse-empty-model-dir");
        let search = WeightSearch {
            model_dir: Some(empty.clone()),
            hub_cache: Some(empty.join("hub")),
        };
        let err = search.locate_all(&entry, "256p").unwrap_err().to_string();
        assert!(err.contains("model `magihuman-base` is missing its transformer file `base/model.safetensors.index.json` (hub: GAIR/daVinci-MagiHuman)"), "{err}");
        assert!(
            err.contains("happyhorse models pull magihuman-base"),
            "{err}"
        );
        assert!(
            err.contains(
                &empty
                    .join("base/model.safetensors.index.json")
                    .display()
                    .to_string()
            ),
            "{err}"
        );
    }

    #[test]
    fn weights_found_in_model_dir_and_hub_cache() {
        let tmp = tempfile::tempdir().unwrap();
        let r = Registry::builtin().unwrap();
        let entry = r.find("magihuman-base").unwrap();
        let c = &entry.manifest.components[0];
        let search = WeightSearch {
            model_dir: Some(tmp.path().join("models")),
            hub_cache: Some(tmp.path().join("hub")),
        };
        // Hub cache layout: models--org--name/{refs/main, snapshots/<rev>/<path>}.
        let repo_dir = tmp.path().join("hub/models--GAIR--daVinci-MagiHuman");
        std::fs::create_dir_all(repo_dir.join("refs")).unwrap();
        std::fs::write(repo_dir.join("refs/main"), "abc123").unwrap();
        let snap = repo_dir.join("snapshots/abc123/base");
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::write(snap.join("model.safetensors.index.json"), "{}").unwrap();
        assert_eq!(
            search.locate(&entry, c).unwrap(),
            snap.join("model.safetensors.index.json")
        );
        // The model dir wins over the cache.
        let local = tmp.path().join("models/base/model.safetensors.index.json");
        std::fs::create_dir_all(local.parent().unwrap()).unwrap();
        std::fs::write(&local, "{}").unwrap();
        assert_eq!(search.locate(&entry, c).unwrap(), local);
    }
}
