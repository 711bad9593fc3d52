//! Prompt presets: `prompts/*.toml` built into the binary, plus any `*.toml` in the config dir's
//! `happyhorse/prompts`. A preset is a name, a line of description and a job spec (its `[spec]`
//! table uses the JSON spec's field names), so loading one fills the prompt and the parameters.

use std::path::Path;

use serde::Deserialize;

use crate::spec::JobSpec;

const BUILTIN: [(&str, &str); 3] = [
    (
        "chrome-horse.toml",
        include_str!("../../prompts/chrome-horse.toml"),
    ),
    (
        "jazz-quartet.toml",
        include_str!("../../prompts/jazz-quartet.toml"),
    ),
    (
        "tokyo-street-food.toml",
        include_str!("../../prompts/tokyo-street-food.toml"),
    ),
];

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preset {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub spec: JobSpec,
}

/// Built-in presets, then the user's (sorted by file name). A user file that does not parse is
/// reported in the returned warnings and skipped, so one typo does not hide the others.
pub fn load(user_dir: Option<&Path>) -> (Vec<Preset>, Vec<String>) {
    let mut presets = Vec::new();
    let mut warnings = Vec::new();
    for (file, text) in BUILTIN {
        match toml::from_str::<Preset>(text) {
            Ok(p) => presets.push(p),
            Err(e) => warnings.push(format!("built-in preset {file}: {e}")),
        }
    }
    let Some(dir) = user_dir else {
        return (presets, warnings);
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (presets, warnings);
    };
    let mut files: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    for path in files {
        let parsed = std::fs::read_to_string(&path)
            .map_err(|e| e.to_string())
            .and_then(|t| toml::from_str::<Preset>(&t).map_err(|e| e.to_string()));
        match parsed {
            Ok(p) => presets.push(p),
            Err(e) => warnings.push(format!("preset {}: {e}", path.display())),
        }
    }
    (presets, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_are_valid_specs() {
        let (presets, warnings) = load(None);
        assert!(warnings.is_empty(), "{warnings:?}");
        let names: Vec<_> = presets.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "Chrome horse at sunset",
                "Jazz quartet in a basement bar",
                "Tokyo street-food vendor at dusk"
            ]
        );
        for p in &presets {
            p.spec.validate().unwrap();
        }
    }

    #[test]
    fn user_presets_are_added_and_bad_ones_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.toml"),
            "name = \"mine\"\n[spec]\nprompt = \"rain on a tin roof\"\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("b.toml"), "name = \"broken\"\n").unwrap();
        let (presets, warnings) = load(Some(dir.path()));
        assert_eq!(presets.len(), 4);
        assert_eq!(presets[3].spec.prompt, "rain on a tin roof");
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("b.toml"), "{warnings:?}");
    }
}
