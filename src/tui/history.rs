//! What survives a restart: prompt history (with favourites), the last parameters, and finished
//! jobs for the gallery. One JSON file in the data dir (`HAPPYHORSE_DATA_DIR`, else the platform
//! data dir + `happyhorse`), written atomically so a crash never leaves half a file.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::TuiError;
use crate::spec::JobSpec;

pub const STATE_FILE: &str = "tui-state.json";
/// History beyond this is dropped oldest-first (favourites are kept).
const MAX_HISTORY: usize = 500;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The whole spec that was submitted; its prompt is what the list shows.
    pub spec: JobSpec,
    #[serde(default)]
    pub favourite: bool,
    /// Unix seconds.
    pub at: u64,
}

/// A job that finished with files: what the gallery lists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinishedJob {
    pub id: String,
    pub prompt: String,
    pub model: String,
    pub outputs: Vec<PathBuf>,
    pub seconds: f64,
    pub at: u64,
}

impl FinishedJob {
    pub fn mp4(&self) -> Option<&Path> {
        self.outputs
            .iter()
            .find(|p| p.extension().is_some_and(|e| e == "mp4"))
            .map(PathBuf::as_path)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    #[serde(default)]
    pub history: Vec<HistoryEntry>,
    #[serde(default)]
    pub last_spec: Option<JobSpec>,
    #[serde(default)]
    pub finished: Vec<FinishedJob>,
}

/// The data dir: `HAPPYHORSE_DATA_DIR` (tests point it at a tempdir), else `dirs::data_dir()`.
pub fn data_dir() -> Option<PathBuf> {
    std::env::var_os("HAPPYHORSE_DATA_DIR")
        .map(PathBuf::from)
        .or_else(|| dirs::data_dir().map(|d| d.join("happyhorse")))
}

impl State {
    /// Reads the state file; a missing file is an empty state.
    pub fn load(dir: &Path) -> Result<State, TuiError> {
        let path = dir.join(STATE_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::default()),
            Err(source) => return Err(TuiError::Io { path, source }),
        };
        serde_json::from_str(&text).map_err(|e| {
            TuiError::Config(format!(
                "{}: {e}; move it aside to start with an empty history",
                path.display()
            ))
        })
    }

    pub fn save(&self, dir: &Path) -> Result<(), TuiError> {
        std::fs::create_dir_all(dir).map_err(|source| TuiError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(STATE_FILE);
        let json = serde_json::to_vec_pretty(self)
            .map_err(|e| TuiError::Config(format!("cannot serialise the TUI state: {e}")))?;
        crate::media::write_atomic(&path, |tmp| {
            std::fs::write(tmp, &json).map_err(|source| crate::media::MediaError::Io {
                path: tmp.to_path_buf(),
                source,
            })
        })
        .map_err(|e| TuiError::Config(e.to_string()))
    }

    /// Records a submitted spec at the top; an identical earlier entry moves up, keeping its
    /// favourite mark.
    pub fn record(&mut self, spec: &JobSpec, at: u64) {
        let mut favourite = false;
        if let Some(i) = self.history.iter().position(|h| &h.spec == spec) {
            favourite = self.history.remove(i).favourite;
        }
        self.history.insert(
            0,
            HistoryEntry {
                spec: spec.clone(),
                favourite,
                at,
            },
        );
        while self.history.len() > MAX_HISTORY {
            match self.history.iter().rposition(|h| !h.favourite) {
                Some(i) => {
                    self.history.remove(i);
                }
                None => break,
            }
        }
        self.last_spec = Some(spec.clone());
    }
}

pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(p: &str) -> JobSpec {
        JobSpec {
            prompt: p.into(),
            ..Default::default()
        }
    }

    #[test]
    fn round_trips_and_missing_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(State::load(dir.path()).unwrap(), State::default());
        let mut s = State::default();
        s.record(&spec("a"), 1);
        s.finished.push(FinishedJob {
            id: "abc".into(),
            prompt: "a".into(),
            model: "m".into(),
            outputs: vec!["x.mp4".into(), "x.wav".into()],
            seconds: 1.5,
            at: 2,
        });
        s.save(dir.path()).unwrap();
        let back = State::load(dir.path()).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.finished[0].mp4(), Some(Path::new("x.mp4")));
    }

    #[test]
    fn rerecording_moves_up_and_keeps_favourite() {
        let mut s = State::default();
        s.record(&spec("a"), 1);
        s.history[0].favourite = true;
        s.record(&spec("b"), 2);
        s.record(&spec("a"), 3);
        assert_eq!(s.history.len(), 2);
        assert_eq!(s.history[0].spec.prompt, "a");
        assert!(s.history[0].favourite);
        assert_eq!(s.last_spec, Some(spec("a")));
    }

    #[test]
    fn corrupt_file_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STATE_FILE), "{not json").unwrap();
        let e = State::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("move it aside"), "{e}");
    }
}
