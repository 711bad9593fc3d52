//! The procedural audio-visual world HappyHorse Nano is trained on.
//!
//! A [`Scene`] is drawn from a `u64` seed ([`sample_train`], [`sample_heldout`], or
//! [`Scene::sample`] with a [`SceneRequest`] constraint). From it: frames
//! ([`render_video`]), a soundtrack whose percussive hits are caused by ground contacts
//! ([`render_audio`]), per-frame ground truth and contact times ([`ground_truth`]), and
//! captions in varied wording ([`caption`]); [`parse_prompt`] reads the attributes back out of
//! free text. Everything is deterministic in the seed and independent of the frame size, so
//! the same scene can be rendered at 16:9, 9:16 or 1:1.

mod caption;
mod motion;
mod render;
mod rng;
mod scene;
mod sound;

pub use caption::{caption, parse_prompt};
pub use motion::{Impact, Trajectory, GROUND_Y};
pub use render::{
    frame_count, ground_truth, render_video, shape_coverage, BBox, ClipTruth, Frame, FrameTruth,
    ObjectTruth,
};
pub use rng::SplitMix64;
pub use scene::{
    is_held_out, sample_heldout, sample_train, Ambience, Background, Camera, Color, Motion, Object,
    ObjectRequest, Physics, Scene, SceneRequest, Shape, Size, HELD_OUT,
};
pub use sound::{render_audio, render_audio_with_contacts};

#[cfg(test)]
mod tests;
