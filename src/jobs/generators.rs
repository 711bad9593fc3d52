//! The generator for each model architecture: loads the engine pipeline once per model and
//! turns its output into media frames and sound.

use super::{Generator, JobError};
use crate::engine::registry::{ModelEntry, ResolvedJob, WeightSearch};

/// Builds the generator for `entry`, after checking every weight file it needs is on disk
/// (missing files are exit 3 with the file and the fix named).
pub fn make_generator(
    entry: &ModelEntry,
    job: &ResolvedJob,
    search: &WeightSearch,
) -> Result<Box<dyn Generator>, JobError> {
    if entry.manifest.architecture == "nano" {
        return Ok(Box::new(super::nano::NanoGenerator::load(
            entry, job, search,
        )?));
    }
    let _files = search.locate_all(entry, &job.resolution)?;
    match entry.manifest.architecture.as_str() {
        // The DiT, samplers and audio codec are ported and pass parity; the text encoder and
        // video codecs are being ported (T5Gemma, Wan2.2/Turbo VAE), so the end-to-end
        // pipeline cannot run yet. Say so rather than produce anything fake.
        "magihuman" => Err(JobError::Runtime(format!(
            "model `{}`: the end-to-end MagiHuman pipeline is not available in this build yet (its T5Gemma text encoder and Wan2.2 video decoder ports are still missing)",
            entry.manifest.name
        ))),
        other => Err(JobError::Runtime(format!(
            "model `{}` has architecture `{other}`, which this build cannot run; known: magihuman",
            entry.manifest.name
        ))),
    }
}
