use std::path::{Path, PathBuf};

use super::{write_atomic, Frames, MediaError};

/// Writes every frame as `frame_00001.png` in the folder `dir`, atomically (the whole folder
/// appears at once). Returns the folder.
pub fn write_png_frames(dir: &Path, frames: &Frames) -> Result<PathBuf, MediaError> {
    write_atomic(dir, |tmp| {
        std::fs::create_dir_all(tmp).map_err(|source| MediaError::Io {
            path: tmp.to_path_buf(),
            source,
        })?;
        for i in 0..frames.count() {
            let path = tmp.join(format!("frame_{:05}.png", i + 1));
            image::save_buffer(
                &path,
                frames.frame(i),
                frames.width,
                frames.height,
                image::ExtendedColorType::Rgb8,
            )
            .map_err(|source| MediaError::Png { path, source })?;
        }
        Ok(())
    })?;
    Ok(dir.to_path_buf())
}
