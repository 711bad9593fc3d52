//! Golden-case runner behind `happyhorse debug case DIR`: reads DIR/case.json, runs the named
//! component on CPU in f32 and returns every tensor of DIR/expected.safetensors under its name.

use std::path::Path;

use candle_core::Tensor;

use super::models::{magihuman, sa_audio, t5gemma, turbo_vae, wan22_vae};
use super::{pipelines, samplers};

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
pub fn component(dir: &Path) -> Result<String, CaseError> {
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

pub fn run_case(dir: &Path) -> Result<Vec<(String, Tensor)>, CaseError> {
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
