//! Golden parity cases: the folder format every parity runner reads (`case.json` with component,
//! config and params; `weights.safetensors`, `inputs.safetensors`, `expected.safetensors` and, for
//! some cases, `debug.safetensors`), and the dispatch behind `happyhorse debug case DIR`, which
//! runs the named component on CPU in f32. Each model's `case.rs` only maps inputs to outputs; the
//! files are read here.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{bail, DType, Device, Error, Result, Tensor};
use candle_nn::VarBuilder;
use serde::de::DeserializeOwned;

use super::models::{magihuman, sa_audio, t5gemma, turbo_vae, wan22_vae};
use super::{pipelines, samplers};

/// One opened case folder.
pub struct GoldenCase {
    pub dir: PathBuf,
    pub json: serde_json::Value,
}

/// The tensors of one of the case's safetensors files, with errors naming the file.
pub struct CaseTensors {
    file: PathBuf,
    map: HashMap<String, Tensor>,
}

impl GoldenCase {
    /// Reads DIR/case.json and checks its component is one of `components`.
    pub fn open(dir: &Path, components: &[&str]) -> Result<GoldenCase> {
        let path = dir.join("case.json");
        let text = std::fs::read_to_string(&path).map_err(|e| {
            Error::Msg(format!(
                "cannot read {}: {e}; pass a golden case folder that holds case.json",
                path.display()
            ))
        })?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::Msg(format!("{} is not valid JSON: {e}", path.display())))?;
        let component = json["component"].as_str().unwrap_or_default();
        if !components.contains(&component) {
            bail!(
                "{}: component is `{component}`, expected one of {components:?}",
                path.display()
            )
        }
        Ok(GoldenCase {
            dir: dir.to_path_buf(),
            json,
        })
    }

    pub fn component(&self) -> &str {
        self.json["component"].as_str().unwrap_or_default()
    }

    /// Deserialises the case.json value at `pointer` (e.g. "/config/model").
    pub fn config<T: DeserializeOwned>(&self, pointer: &str) -> Result<T> {
        let value = self.json.pointer(pointer).ok_or_else(|| {
            Error::Msg(format!(
                "{}: `{pointer}` is missing",
                self.dir.join("case.json").display()
            ))
        })?;
        serde_json::from_value(value.clone()).map_err(|e| {
            Error::Msg(format!(
                "{}: `{pointer}` does not match this port's config: {e}",
                self.dir.join("case.json").display()
            ))
        })
    }

    /// Loads one of the case's safetensors files on the CPU.
    pub fn tensors(&self, file: &str) -> Result<CaseTensors> {
        let path = self.dir.join(file);
        let map = candle_core::safetensors::load(&path, &Device::Cpu).map_err(|e| {
            Error::Msg(format!(
                "cannot load {}: {e}; the golden case folder is incomplete",
                path.display()
            ))
        })?;
        Ok(CaseTensors { file: path, map })
    }

    /// `weights.safetensors` as an f32 CPU VarBuilder.
    pub fn var_builder(&self) -> Result<VarBuilder<'static>> {
        let weights = self.tensors("weights.safetensors")?;
        Ok(VarBuilder::from_tensors(
            weights.map,
            DType::F32,
            &Device::Cpu,
        ))
    }

    /// Keeps the produced tensors that `reference` ("expected.safetensors" or
    /// "debug.safetensors") names, in its dtypes, sorted by name; a missing one is an error.
    pub fn select(
        &self,
        mut produced: HashMap<String, Tensor>,
        reference: &str,
    ) -> Result<Vec<(String, Tensor)>> {
        let wanted = self.tensors(reference)?;
        let mut names: Vec<_> = wanted.map.keys().cloned().collect();
        names.sort();
        names
            .into_iter()
            .map(|name| match produced.remove(&name) {
                Some(t) => Ok((name.clone(), t.to_dtype(wanted.map[&name].dtype())?)),
                None => bail!(
                    "{}: {reference} asks for `{name}`, which the {} runner does not produce",
                    self.dir.display(),
                    self.component()
                ),
            })
            .collect()
    }
}

impl CaseTensors {
    pub fn get(&self, name: &str) -> Result<&Tensor> {
        self.map.get(name).ok_or_else(|| {
            Error::Msg(format!(
                "tensor `{name}` is missing from {}; the golden case does not match this port",
                self.file.display()
            ))
        })
    }

    pub fn maybe(&self, name: &str) -> Option<&Tensor> {
        self.map.get(name)
    }

    /// A one-element integer tensor (e.g. `txt_len`) as a usize.
    pub fn usize(&self, name: &str) -> Result<usize> {
        let v = self
            .get(name)?
            .flatten_all()?
            .to_dtype(DType::I64)?
            .to_vec1::<i64>()?;
        match v.as_slice() {
            [n] if *n >= 0 => Ok(*n as usize),
            other => bail!(
                "{}: `{name}` must be one non-negative integer, got {other:?}",
                self.file.display()
            ),
        }
    }
}

/// Components `debug case` knows.
pub const COMPONENTS: [&str; 10] = [
    "magihuman_dit",
    "magihuman_sampler",
    "flow_unipc",
    "sa_audio_vae_decode",
    "sa_audio_vae_encode",
    "audio_resample",
    "t5gemma_encoder",
    "turbo_vae_decode",
    "wan22_vae_decode",
    "wan22_vae_encode",
];

#[derive(Debug, thiserror::Error)]
pub enum CaseError {
    #[error("{path}: {message}")]
    Malformed { path: String, message: String },
    #[error("{path}: unknown component `{component}`; known: {}", COMPONENTS.join(", "))]
    UnknownComponent { path: String, component: String },
    #[error("case {dir}: {source}")]
    Run {
        dir: String,
        source: candle_core::Error,
    },
}

/// The component named in DIR/case.json.
pub fn component(dir: &Path) -> std::result::Result<String, CaseError> {
    let path = dir.join("case.json");
    let malformed = |message: String| CaseError::Malformed {
        path: path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| malformed(format!("{e}; pass a golden case folder holding case.json")))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| malformed(format!("not valid JSON: {e}")))?;
    json["component"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| malformed("has no string field `component`".into()))
}

pub fn run_case(dir: &Path) -> std::result::Result<Vec<(String, Tensor)>, CaseError> {
    let component = component(dir)?;
    let run = |r: candle_core::Result<Vec<(String, Tensor)>>| {
        r.map_err(|source| CaseError::Run {
            dir: dir.display().to_string(),
            source,
        })
    };
    match component.as_str() {
        "magihuman_dit" => run(magihuman::run_golden_case(dir)),
        "magihuman_sampler" => run(pipelines::run_sampler_golden_case(dir)),
        "flow_unipc" => run(samplers::run_golden_case(dir)),
        "sa_audio_vae_decode" | "sa_audio_vae_encode" | "audio_resample" => {
            run(sa_audio::case::run_golden_case(dir))
        }
        "t5gemma_encoder" => run(t5gemma::run_golden_case(dir)),
        "turbo_vae_decode" => run(turbo_vae::run_golden_case(dir)),
        "wan22_vae_decode" | "wan22_vae_encode" => run(wan22_vae::run_golden_case(dir)),
        _ => Err(CaseError::UnknownComponent {
            path: dir.join("case.json").display().to_string(),
            component,
        }),
    }
}
