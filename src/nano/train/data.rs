//! Training clips from the procedural world, and the vocabulary of its captions.

use std::collections::BTreeSet;

use candle_core as candle;

use crate::engine::models::nano::{NanoConfig, NanoTokenizer};
use crate::nano::world::{
    caption, render_audio, render_video, sample_heldout, sample_train, SplitMix64,
};

/// One rendered training clip at the model's native rate: `4(T-1)+1` frames and one audio hop
/// per frame.
#[derive(Debug, Clone)]
pub struct Clip {
    pub width: usize,
    pub height: usize,
    pub n_frames: usize,
    /// `[n, h, w, 3]`.
    pub frames_rgb: Vec<u8>,
    pub audio: Vec<f32>,
    pub caption: String,
}

fn mix64(x: u64) -> u64 {
    SplitMix64::new(x).next_u64()
}

#[derive(Debug, Clone)]
pub struct ClipSampler {
    fps: u32,
    sample_rate: u32,
    sizes: Vec<(u32, u32)>,
    latent_frames: (usize, usize),
}

impl ClipSampler {
    pub fn new(cfg: &NanoConfig, sizes: Vec<(u32, u32)>, latent_frames: (usize, usize)) -> Self {
        Self {
            fps: cfg.native_fps,
            sample_rate: cfg.sample_rate,
            sizes,
            latent_frames,
        }
    }

    /// Clip `index` of stream `tag` for a run `seed`: a training-split scene (never a held-out
    /// triple), a size cycled by index, a random length and caption wording.
    pub fn clip(&self, seed: u64, tag: u64, index: u64) -> Clip {
        let key = mix64(seed ^ mix64(tag.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ index));
        let scene = sample_train(key);
        let (w, h) = self.sizes[(index % self.sizes.len().max(1) as u64) as usize];
        let (lo, hi) = self.latent_frames;
        let t = lo + (mix64(key ^ 1) % (hi - lo + 1) as u64) as usize;
        let n = NanoConfig::pixel_frames(t);
        let duration = n as f32 / self.fps as f32;
        let frames = render_video(&scene, w as usize, h as usize, self.fps as f32, duration);
        let frames_rgb: Vec<u8> = frames.into_iter().flat_map(|f| f.rgb).collect();
        let hop = (self.sample_rate / self.fps) as usize;
        let mut audio = render_audio(&scene, self.sample_rate, duration);
        audio.resize(n * hop, 0.0);
        Clip {
            width: w as usize,
            height: h as usize,
            n_frames: frames_rgb.len() / (3 * w as usize * h as usize).max(1),
            frames_rgb,
            audio,
            caption: caption(&scene, mix64(key ^ 2)),
        }
    }
}

/// The vocabulary of the captions of `scenes` training and held-out scenes, four wordings
/// each. Held-out scenes only recombine words training scenes use too; listing them keeps
/// the vocabulary independent of which triples are held out.
pub fn build_tokenizer(scenes: u64) -> candle::Result<NanoTokenizer> {
    let mut words = BTreeSet::new();
    for s in 0..scenes {
        for scene in [sample_train(s), sample_heldout(s)] {
            for v in 0..4 {
                words.extend(NanoTokenizer::words(&caption(&scene, v)));
            }
        }
    }
    NanoTokenizer::from_words(words)
}
