use std::path::{Path, PathBuf};

use super::MediaError;

/// The temporary name a file is written under before it is renamed to `path`: hidden, in the
/// same folder (so the rename is atomic on one filesystem), unique per process.
pub fn temp_path_for(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// Writes `path` through `write(tmp)`, then renames tmp → path. On error the temporary file (or
/// folder) is removed and `path` is left untouched.
pub fn write_atomic<F>(path: &Path, write: F) -> Result<(), MediaError>
where
    F: FnOnce(&Path) -> Result<(), MediaError>,
{
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| MediaError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let tmp = temp_path_for(path);
    let result = write(&tmp).and_then(|()| {
        if path.is_dir() {
            // Renaming onto an existing folder fails; a rerun replaces the old frames.
            std::fs::remove_dir_all(path).map_err(|source| MediaError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        }
        std::fs::rename(&tmp, path).map_err(|source| MediaError::Io {
            path: path.to_path_buf(),
            source,
        })
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_write_leaves_no_file_and_keeps_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("clip.wav");
        std::fs::write(&target, b"old").unwrap();
        let err = write_atomic(&target, |tmp| {
            std::fs::write(tmp, b"half").unwrap();
            Err(MediaError::Invalid {
                path: tmp.to_path_buf(),
                message: "interrupted".into(),
            })
        });
        assert!(err.is_err());
        assert_eq!(std::fs::read(&target).unwrap(), b"old");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "temporary file left behind");
    }
}
