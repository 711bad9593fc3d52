//! The generator for each model architecture: loads the engine pipeline once per model and
//! turns its output into media frames and sound.

mod magihuman;
mod nano;

use super::{Generator, JobError};
use crate::engine::registry::{ModelEntry, ResolvedJob, WeightSearch};

/// Builds the generator for `entry`. Weight files are located first, so a missing one is exit 3
/// with the file and the fix named, before any long load.
pub fn make_generator(
    entry: &ModelEntry,
    job: &ResolvedJob,
    search: &WeightSearch,
) -> Result<Box<dyn Generator>, JobError> {
    match entry.manifest.architecture.as_str() {
        "nano" => Ok(Box::new(nano::NanoGenerator::load(entry, job, search)?)),
        "magihuman" => Ok(Box::new(magihuman::MagiHumanGenerator::load(entry, job, search)?)),
        other => Err(JobError::Runtime(format!(
            "model `{}` has architecture `{other}`, which this build cannot run; known: nano, magihuman",
            entry.manifest.name
        ))),
    }
}
