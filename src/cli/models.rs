//! `models list | info | path`.

use super::{CliError, CliResult, ModelsCommand, EXIT_BAD_INPUT, EXIT_MODEL_MISSING, EXIT_RUNTIME};
use crate::engine::hub::{self, HubError};
use crate::engine::registry::{Manifest, Registry, RegistryError, WeightSearch, DEFAULT_MODEL};

fn registry_error(e: RegistryError) -> CliError {
    let code = match e {
        RegistryError::UnknownModel { .. } => EXIT_BAD_INPUT,
        _ => EXIT_MODEL_MISSING,
    };
    CliError::new(code, e)
}

fn manifest_json(m: &Manifest) -> serde_json::Value {
    serde_json::json!({
        "name": m.name,
        "architecture": m.architecture,
        "description": m.description,
        "license": m.license,
        "native_fps": m.native_fps,
        "audio_sample_rate": m.audio_sample_rate,
        "duration_s": [m.min_duration_s, m.max_duration_s],
        "supports": m.supports,
        "defaults": {
            "steps": m.defaults.steps,
            "guidance": {"video": m.defaults.guidance_video, "audio": m.defaults.guidance_audio},
            "duration_s": m.defaults.duration_s,
            "aspect": m.defaults.aspect,
            "resolution": m.defaults.resolution,
        },
        "resolutions": m.resolutions.iter().map(|r| serde_json::json!({"name": r.name, "sizes": r.sizes})).collect::<Vec<_>>(),
        "components": m.components.iter().map(|c| serde_json::json!({
            "role": c.role, "repo": c.repo, "path": c.path, "local": c.local,
            "size": c.size, "sha256": c.sha256, "only_for": c.only_for,
        })).collect::<Vec<_>>(),
    })
}

pub fn run(command: ModelsCommand) -> CliResult {
    let registry = Registry::builtin().map_err(registry_error)?;
    match command {
        ModelsCommand::List { json } => {
            for m in &registry.models {
                if json {
                    println!("{}", manifest_json(m));
                } else {
                    let default = if m.name == DEFAULT_MODEL {
                        " (default)"
                    } else {
                        ""
                    };
                    println!("{}{default}\t{}", m.name, m.description);
                }
            }
            Ok(())
        }
        ModelsCommand::Info {
            name,
            json,
            weights,
        } => {
            let entry = registry.find(&name).map_err(registry_error)?;
            let m = &entry.manifest;
            if json {
                println!("{}", manifest_json(m));
                return Ok(());
            }
            println!("{}: {}", m.name, m.description);
            println!("architecture: {}", m.architecture);
            if let Some(l) = &m.license {
                println!("license: {l}");
            }
            println!(
                "defaults: {} steps, guidance video {} / audio {}, {} s, {} {}, native {} fps",
                m.defaults.steps,
                m.defaults.guidance_video,
                m.defaults.guidance_audio,
                m.defaults.duration_s,
                m.defaults.aspect,
                m.defaults.resolution,
                m.native_fps
            );
            println!("duration: {} to {} s", m.min_duration_s, m.max_duration_s);
            for r in &m.resolutions {
                let sizes: Vec<_> = r
                    .sizes
                    .iter()
                    .map(|(a, [w, h])| format!("{a} {w}x{h}"))
                    .collect();
                println!("resolution {}: {}", r.name, sizes.join(", "));
            }
            println!("controls: {}", m.supports.join(", "));
            let search = WeightSearch::from_env(weights.model_dir);
            println!("files:");
            for c in &m.components {
                let found = match search.locate(&entry, c) {
                    Ok(p) => format!("found {}", p.display()),
                    Err(_) if m.embedded => "built into the binary".into(),
                    Err(_) => "missing".into(),
                };
                let only = if c.only_for.is_empty() {
                    String::new()
                } else {
                    format!(" (only {})", c.only_for.join(", "))
                };
                let repo = c.repo.as_deref().unwrap_or("-");
                println!(
                    "  {:<18} {} [{repo}: {}]{only}: {found}",
                    c.role, c.local, c.path
                );
            }
            Ok(())
        }
        ModelsCommand::Pull { name, resolution } => {
            let entry = registry.find(&name).map_err(registry_error)?;
            if let Some(r) = &resolution {
                if entry.manifest.resolution(r).is_none() {
                    return Err(CliError::bad_input(format!(
                        "model `{name}` has no resolution \"{r}\"; see `happyhorse models info {name}`"
                    )));
                }
            }
            let pulled = hub::pull(&entry, resolution.as_deref(), &mut |repo, file| {
                eprintln!("happyhorse: downloading {repo}: {file}")
            })
            .map_err(|e| match e {
                HubError::Offline { .. } | HubError::NoRepo { .. } => {
                    CliError::new(EXIT_MODEL_MISSING, e)
                }
                _ => CliError::new(EXIT_RUNTIME, e),
            })?;
            for p in pulled {
                println!("{}", p.path.display());
            }
            Ok(())
        }
        ModelsCommand::Path { name, weights } => {
            let entry = registry.find(&name).map_err(registry_error)?;
            let search = WeightSearch::from_env(weights.model_dir);
            if entry.manifest.embedded
                && search
                    .locate_all(&entry, &entry.manifest.defaults.resolution)
                    .is_err()
            {
                eprintln!(
                    "happyhorse: model `{name}` is built into the binary; it has no files on disk"
                );
                return Ok(());
            }
            let mut missing = None;
            for c in &entry.manifest.components {
                match search.locate(&entry, c) {
                    Ok(p) => println!("{}", p.display()),
                    Err(e) => {
                        eprintln!("happyhorse: {e}");
                        missing.get_or_insert(e);
                    }
                }
            }
            match missing {
                Some(e) => Err(registry_error(e)),
                None => Ok(()),
            }
        }
    }
}
