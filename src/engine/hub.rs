//! `happyhorse models pull`: fetches a model's files from the Hugging Face hub into the hub cache
//! (`$HF_HOME/hub`), where [`super::registry::WeightSearch`] finds them. Sharded checkpoints are
//! followed through their `model.safetensors.index.json`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use hf_hub::api::sync::{Api, ApiBuilder};

use super::registry::{Component, ModelEntry};

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("HF_HUB_OFFLINE is set, so `{file}` ({repo}) cannot be downloaded; unset it, or copy the file into --model-dir")]
    Offline { repo: String, file: String },
    #[error(
        "model `{model}`: its {role} file `{file}` has no hub repository; copy it into --model-dir"
    )]
    NoRepo {
        model: String,
        role: String,
        file: String,
    },
    #[error("downloading `{file}` from {repo} failed: {message}\n  fix: check the network (and HF_ENDPOINT / HF_TOKEN for gated repositories), then run the command again: finished files are kept")]
    Download {
        repo: String,
        file: String,
        message: String,
    },
    #[error("{path} is not a valid safetensors index: {message}")]
    BadIndex { path: PathBuf, message: String },
}

/// What one pulled file came to.
#[derive(Debug, Clone)]
pub struct Pulled {
    pub repo: String,
    pub file: String,
    pub path: PathBuf,
}

fn offline() -> bool {
    std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Shards an index names, relative to the index's folder in the repository.
fn shards_of(index: &Path, index_in_repo: &str) -> Result<BTreeSet<String>, HubError> {
    let bad = |message: String| HubError::BadIndex {
        path: index.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(index).map_err(|e| bad(e.to_string()))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let map = json["weight_map"]
        .as_object()
        .ok_or_else(|| bad("no `weight_map` object".into()))?;
    let folder = Path::new(index_in_repo)
        .parent()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(map
        .values()
        .filter_map(|v| v.as_str())
        .map(|shard| {
            if folder.is_empty() {
                shard.to_string()
            } else {
                format!("{folder}/{shard}")
            }
        })
        .collect())
}

/// Downloads every component of `entry` needed at `resolution` (all of them when `None`),
/// calling `on_file` before each download. Files already in the cache are not fetched again.
pub fn pull(
    entry: &ModelEntry,
    resolution: Option<&str>,
    on_file: &mut dyn FnMut(&str, &str),
) -> Result<Vec<Pulled>, HubError> {
    let api = ApiBuilder::from_env()
        .with_progress(false)
        .build()
        .map_err(|e| HubError::Download {
            repo: "-".into(),
            file: "-".into(),
            message: e.to_string(),
        })?;
    let components: Vec<&Component> = match resolution {
        Some(r) => entry.manifest.components_for(r).collect(),
        None => entry.manifest.components.iter().collect(),
    };
    let mut out = Vec::new();
    for c in components {
        let repo = c.repo.clone().ok_or_else(|| HubError::NoRepo {
            model: entry.manifest.name.clone(),
            role: c.role.clone(),
            file: c.local.clone(),
        })?;
        let path = fetch(&api, &repo, &c.path, on_file)?;
        if c.path.ends_with(".index.json") {
            for shard in shards_of(&path, &c.path)? {
                let p = fetch(&api, &repo, &shard, on_file)?;
                out.push(Pulled {
                    repo: repo.clone(),
                    file: shard,
                    path: p,
                });
            }
        }
        out.push(Pulled {
            repo,
            file: c.path.clone(),
            path,
        });
    }
    Ok(out)
}

fn fetch(
    api: &Api,
    repo: &str,
    file: &str,
    on_file: &mut dyn FnMut(&str, &str),
) -> Result<PathBuf, HubError> {
    let cached = hf_hub::Cache::from_env().model(repo.to_string()).get(file);
    if let Some(p) = cached {
        return Ok(p);
    }
    if offline() {
        return Err(HubError::Offline {
            repo: repo.to_string(),
            file: file.to_string(),
        });
    }
    on_file(repo, file);
    api.model(repo.to_string())
        .get(file)
        .map_err(|e| HubError::Download {
            repo: repo.to_string(),
            file: file.to_string(),
            message: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_paths_keep_the_index_folder() {
        let dir = tempfile::tempdir().unwrap();
        let index = dir.path().join("model.safetensors.index.json");
        std::fs::write(
            &index,
            r#"{"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors", "c": "model-00001-of-00002.safetensors"}}"#,
        )
        .unwrap();
        let shards = shards_of(&index, "base/model.safetensors.index.json").unwrap();
        assert_eq!(
            shards.into_iter().collect::<Vec<_>>(),
            [
                "base/model-00001-of-00002.safetensors",
                "base/model-00002-of-00002.safetensors"
            ]
        );
        std::fs::write(&index, "{}").unwrap();
        let err = shards_of(&index, "x.json").unwrap_err().to_string();
        assert!(err.contains("no `weight_map` object"), "{err}");
    }
}
