//! Training clips from the procedural world, and the vocabulary of its captions.

use std::collections::BTreeSet;

use candle_core as candle;

use crate::engine::models::nano::conditioning::Span;
use crate::engine::models::nano::{FrameLayout, NanoConfig, NanoTokenizer, VideoCodecConfig};
use crate::nano::world::{
    caption, ground_truth, render_audio, render_audio_with_contacts, render_video, sample_heldout,
    sample_train, shape_coverage, ClipTruth, Scene, Shape, SplitMix64,
};

/// One rendered training clip at the model's native rate: `s(T-1)+1` frames (s the video
/// codec's temporal stride) and one audio hop per frame.
#[derive(Debug, Clone)]
pub struct Clip {
    pub width: usize,
    pub height: usize,
    pub n_frames: usize,
    /// How the video codec groups the frames into latent frames.
    pub layout: FrameLayout,
    /// `[n, h, w, 3]`.
    pub frames_rgb: Vec<u8>,
    pub audio: Vec<f32>,
    pub caption: String,
    /// `[n, h, w]`: 1 on the pixels of every object's bounding box (grown by one pixel),
    /// 0 elsewhere. The losses weigh these up: the subjects are a few percent of the frame.
    pub object_mask: Vec<f32>,
    /// Per audio latent frame (one per video frame): 1 where a sounding contact falls.
    pub impact_frames: Vec<f32>,
    /// `[3, T, h/8, w/8]` on the video latent grid: the share of each latent cell covered by
    /// a ball, a square and a triangle (the order of [`Shape::ALL`]), over the cell's pixels
    /// and its latent frame's frames. The codec stage can ask the encoder to carry it in its
    /// first latent channels ([`TrainConfig::codec_shape_weight`](super::TrainConfig::codec_shape_weight)).
    pub shape_cells: Vec<f32>,
    /// What the clip shows.
    pub scene: Scene,
    /// Where the clip was cut from the world's clip of `span.total` latent frames (the whole
    /// clip unless the sampler cuts windows, [`ClipSampler::with_window`]).
    pub span: Span,
}

/// Per frame of a clip `n` frames long at `fps`: 1 where one of the contacts at `times_s`
/// sounds (none in a silent scene).
fn impact_frames(scene: &Scene, times_s: &[f32], n: usize, fps: u32) -> Vec<f32> {
    let mut out = vec![0f32; n];
    if !scene.silent {
        for t in times_s {
            if let Some(f) = out.get_mut((t.max(0.0) * fps as f32) as usize) {
                *f = 1.0;
            }
        }
    }
    out
}

impl Clip {
    /// The clip with its sound as the world would make it for a picture whose contacts come
    /// at `contacts_s` ([`render_audio_with_contacts`]), and its hit frames with them; the
    /// picture, caption and masks are the clip's own. For whole clips (the decoder stages'
    /// samplers cut no windows).
    pub fn with_contacts(&self, contacts_s: &[f32], fps: u32, sample_rate: u32) -> Clip {
        let duration = self.n_frames as f32 / fps as f32;
        let mut audio = render_audio_with_contacts(&self.scene, sample_rate, duration, contacts_s);
        audio.resize(self.audio.len(), 0.0);
        // A clip without contacts of its own takes no hits (the sound above: a slide, an
        // orbit, a bounce whose first contact is past its end), so no hit frames either.
        let has_hits = self.impact_frames.iter().any(|&f| f > 0.0);
        let sounding = if has_hits { contacts_s } else { &[] };
        Clip {
            audio,
            impact_frames: impact_frames(&self.scene, sounding, self.n_frames, fps),
            ..self.clone()
        }
    }

    /// The object mask pooled to the video latent grid `[T, h/8, w/8]` (max over each 8x8
    /// cell and each latent frame's group of frames, the first frame alone), as the codec
    /// lays its latents out.
    pub fn latent_object_mask(&self) -> (Vec<f32>, [usize; 3]) {
        let layout = self.layout;
        let s = VideoCodecConfig::SPATIAL_STRIDE;
        let t = layout.latent_frames(self.n_frames);
        let (h, w) = (self.height / s, self.width / s);
        let mut out = vec![0f32; t * h * w];
        for f in 0..self.n_frames {
            let lt = layout.latent_frame_of(f);
            let frame =
                &self.object_mask[f * self.height * self.width..][..self.height * self.width];
            for (i, &m) in frame.iter().enumerate() {
                if m > 0.0 {
                    let (y, x) = (i / self.width / s, i % self.width / s);
                    out[(lt * h + y) * w + x] = 1.0;
                }
            }
        }
        (out, [t, h, w])
    }
}

/// Bounding boxes of the objects of `truth` as a `[n, h, w]` 0/1 mask.
fn object_mask(truth: &ClipTruth, n: usize, w: usize, h: usize) -> Vec<f32> {
    let mut mask = vec![0f32; n * w * h];
    for (f, frame) in truth.frames.iter().take(n).enumerate() {
        for o in &frame.objects {
            let b = o.bbox;
            let x0 = (b.x0 - 1.0).floor().max(0.0) as usize;
            let y0 = (b.y0 - 1.0).floor().max(0.0) as usize;
            let x1 = ((b.x1 + 1.0).ceil().max(0.0) as usize).min(w);
            let y1 = ((b.y1 + 1.0).ceil().max(0.0) as usize).min(h);
            for y in y0..y1 {
                mask[(f * h + y) * w + x0..(f * h + y) * w + x1.max(x0)].fill(1.0);
            }
        }
    }
    mask
}

/// Pixel coverage `[n, 3, h, w]` pooled to the video latent grid `[3, T, h/8, w/8]`: the
/// mean over each 8x8 cell and each latent frame's group of frames (the first alone).
fn latent_shape_cells(
    coverage: &[f32],
    n: usize,
    (w, h): (usize, usize),
    layout: FrameLayout,
) -> Vec<f32> {
    let st = VideoCodecConfig::SPATIAL_STRIDE;
    let shapes = Shape::ALL.len();
    let t = layout.latent_frames(n);
    let (lh, lw) = (h / st, w / st);
    let mut out = vec![0f32; shapes * t * lh * lw];
    for f in 0..n {
        let lt = layout.latent_frame_of(f);
        let frames_in_group = if lt == 0 { 1 } else { layout.stride };
        let scale = 1.0 / (frames_in_group * st * st) as f32;
        for k in 0..shapes {
            let map = &coverage[(f * shapes + k) * h * w..][..h * w];
            let cells = &mut out[(k * t + lt) * lh * lw..][..lh * lw];
            for y in 0..lh * st {
                for x in 0..lw * st {
                    let v = map[y * w + x];
                    if v > 0.0 {
                        cells[(y / st) * lw + x / st] += v * scale;
                    }
                }
            }
        }
    }
    out
}

pub(crate) fn mix64(x: u64) -> u64 {
    SplitMix64::new(x).next_u64()
}

#[derive(Debug, Clone)]
pub struct ClipSampler {
    fps: u32,
    layout: FrameLayout,
    sample_rate: u32,
    sizes: Vec<(u32, u32)>,
    latent_frames: (usize, usize),
    length_group: u64,
    placement_spread: f32,
    physics_spread: f32,
    /// Cut each clip from a world clip of up to this many latent frames (0: whole clips).
    window: usize,
}

impl ClipSampler {
    pub fn new(cfg: &NanoConfig, sizes: Vec<(u32, u32)>, latent_frames: (usize, usize)) -> Self {
        Self {
            fps: cfg.native_fps,
            layout: cfg.video.frames(),
            sample_rate: cfg.sample_rate,
            sizes,
            latent_frames,
            length_group: 1,
            placement_spread: 1.0,
            physics_spread: 1.0,
            window: 0,
        }
    }

    /// Cuts each clip from a longer one: the world renders a clip of `t..=max_latent_frames`
    /// latent frames (uniform; `t` the clip's drawn length) and the clip is `t` latent frames
    /// of it, from its start half the time and from anywhere the other half ([`Clip::span`]).
    /// The starts keep the first second (release, first contact) as trained as before; the
    /// rest teach every later time of a long clip at a short clip's cost. 0 cuts nothing.
    pub fn with_window(mut self, max_latent_frames: usize) -> Self {
        self.window = max_latent_frames;
        self
    }

    /// Where a clip of `t` latent frames is cut, from the clip's `key`.
    fn span(&self, key: u64, t: usize) -> Span {
        if self.window <= t {
            return Span::whole(t);
        }
        let r = mix64(key ^ 0x5A4E_0003);
        let total = t + (r % (self.window - t + 1) as u64) as usize;
        let from_start = (r >> 32) & 1 == 0;
        let start = if from_start {
            0
        } else {
            ((r >> 33) % (total - t + 1) as u64) as usize
        };
        Span { start, total }
    }

    /// Squeezes where the objects start toward the middle of their allowed range: 1 keeps
    /// the world's spread, 0 puts every object of a given motion, size and camera at one
    /// place (see [`TrainConfig::placement_spread`](super::TrainConfig::placement_spread)).
    pub fn with_placement_spread(mut self, spread: f32) -> Self {
        self.placement_spread = spread;
        self
    }

    /// Squeezes the timing of the objects' motion toward the middle of what the world draws
    /// (see [`TrainConfig::physics_spread`](super::TrainConfig::physics_spread)).
    pub fn with_physics_spread(mut self, spread: f32) -> Self {
        self.physics_spread = spread;
        self
    }

    /// Clips of `latent_frames` (MIN, MAX) latent frames.
    pub fn with_latent_frames(mut self, latent_frames: (usize, usize)) -> Self {
        self.latent_frames = latent_frames;
        self
    }

    /// Clips `index` with the same `index / group` share one drawn length: one optimizer
    /// step's clips, so the workers differentiating them finish together (lengths drawn per
    /// clip left one worker idle while the other finished a clip up to 4x longer).
    pub fn with_length_group(mut self, group: usize) -> Self {
        self.length_group = group.max(1) as u64;
        self
    }

    /// Clip `index` of stream `tag` for a run `seed`: a training-split scene (never a held-out
    /// triple), a size cycled by index, a random length and caption wording.
    pub fn clip(&self, seed: u64, tag: u64, index: u64) -> Clip {
        self.clip_with(seed, tag, index, |_| {})
    }

    /// [`clip`](Self::clip) with its scene changed by `edit` before it is rendered and
    /// captioned (the diagnostics' "the same clip, but a square").
    pub fn clip_with(
        &self,
        seed: u64,
        tag: u64,
        index: u64,
        edit: impl FnOnce(&mut Scene),
    ) -> Clip {
        let key = mix64(seed ^ mix64(tag.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ index));
        let mut scene = sample_train(key);
        scene.squeeze_placement(self.placement_spread);
        scene.squeeze_physics(self.physics_spread);
        edit(&mut scene);
        let (w, h) = self.sizes[(index % self.sizes.len().max(1) as u64) as usize];
        let (lo, hi) = self.latent_frames;
        let length_key = if self.length_group > 1 {
            mix64(mix64(seed ^ tag.rotate_left(17)) ^ (index / self.length_group) ^ 0x1E47)
        } else {
            mix64(key ^ 1)
        };
        let t = lo + (length_key % (hi - lo + 1) as u64) as usize;
        let span = self.span(key, t);
        // The world's clip, then frames `first..first + n` of it: a window starts on the last
        // pixel frame of a latent frame, so its latent frames are the world clip's.
        let (n, n_world) = (
            self.layout.pixel_frames(t),
            self.layout.pixel_frames(span.total),
        );
        let first = span.start * self.layout.stride;
        let frames = first..first + n;
        let (wu, hu) = (w as usize, h as usize);
        let duration = n_world as f32 / self.fps as f32;
        let rendered = render_video(&scene, wu, hu, self.fps as f32, duration);
        let frames_rgb: Vec<u8> = rendered
            .into_iter()
            .skip(first)
            .take(n)
            .flat_map(|f| f.rgb)
            .collect();
        let hop = (self.sample_rate / self.fps) as usize;
        let mut audio = render_audio(&scene, self.sample_rate, duration);
        audio.resize(n_world * hop, 0.0);
        let audio = audio[first * hop..(first + n) * hop].to_vec();
        let truth = ground_truth(&scene, wu, hu, self.fps as f32, duration);
        let times: Vec<f32> = truth.impacts.iter().map(|i| i.time_s).collect();
        let impact_frames =
            impact_frames(&scene, &times, n_world, self.fps)[frames.clone()].to_vec();
        let plane = wu * hu;
        let mask = object_mask(&truth, n_world, wu, hu);
        let object_mask = mask[first * plane..(first + n) * plane].to_vec();
        let coverage = shape_coverage(&scene, wu, hu, self.fps as f32, duration);
        let per_frame = Shape::ALL.len() * plane;
        let coverage = &coverage[first * per_frame..(first + n) * per_frame];
        Clip {
            object_mask,
            shape_cells: latent_shape_cells(coverage, n, (wu, hu), self.layout),
            impact_frames,
            width: wu,
            height: hu,
            n_frames: frames_rgb.len() / (3 * plane).max(1),
            layout: self.layout,
            frames_rgb,
            audio,
            caption: caption(&scene, mix64(key ^ 2)),
            scene,
            span,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_masks_cover_the_objects_and_pool_to_the_latent_grid() {
        for stride in [4, 2] {
            object_masks_pool_to_the_latent_grid_of_stride(stride);
        }
    }

    fn object_masks_pool_to_the_latent_grid_of_stride(stride: usize) {
        let cfg = NanoConfig::tiny_for_tests(10).with_temporal_stride(stride);
        let sampler = ClipSampler::new(&cfg, vec![(48, 32)], (3, 3));
        let clip = sampler.clip(1, 2, 3);
        let (w, h, n) = (clip.width, clip.height, clip.n_frames);
        assert_eq!(n, 2 * stride + 1);
        let cells = Shape::ALL.len() * 3 * (h / 8) * (w / 8);
        assert_eq!(clip.shape_cells.len(), cells);
        assert_eq!(clip.object_mask.len(), n * w * h);
        assert_eq!(clip.impact_frames.len(), n);
        // Some of the frame, not all of it.
        let covered = clip.object_mask.iter().filter(|&&m| m > 0.0).count();
        assert!(
            covered > 0 && covered < n * w * h / 2,
            "{covered} of {}",
            n * w * h
        );
        let (lat, [t, lh, lw]) = clip.latent_object_mask();
        assert_eq!([t, lh, lw], [3, h / 8, w / 8]);
        for f in 0..n {
            let lt = if f == 0 { 0 } else { (f - 1) / stride + 1 };
            for y in 0..h {
                for x in 0..w {
                    if clip.object_mask[(f * h + y) * w + x] > 0.0 {
                        assert_eq!(
                            lat[(lt * lh + y / 8) * lw + x / 8],
                            1.0,
                            "frame {f} ({x}, {y})"
                        );
                    }
                }
            }
        }
        assert!(lat.contains(&0.0), "the background stays unweighted");
    }

    #[test]
    fn shape_cells_hold_each_objects_area_in_its_own_shapes_channel() {
        let cfg = NanoConfig::tiny_for_tests(10);
        let sampler = ClipSampler::new(&cfg, vec![(96, 56)], (2, 2));
        for (shape, fill) in [
            (Shape::Ball, std::f32::consts::FRAC_PI_4),
            (Shape::Square, 1.0),
            (Shape::Triangle, 0.5),
        ] {
            let clip = sampler.clip_with(7, 1, 0, |s| {
                s.object.shape = shape;
                s.second = None;
            });
            let [t, lh, lw] = [2, 56 / 8, 96 / 8];
            assert_eq!(clip.shape_cells.len(), 3 * t * lh * lw);
            let k = Shape::ALL.iter().position(|&s| s == shape).unwrap();
            let plane = t * lh * lw;
            for (j, channel) in clip.shape_cells.chunks(plane).enumerate() {
                assert!(channel.iter().all(|&v| (0.0..=1.0 + 1e-6).contains(&v)));
                let sum: f32 = channel[..lh * lw].iter().sum();
                if j == k {
                    // The first latent frame is frame 0 alone: its cells add up to the
                    // object's area in cells, (2 half / 8)^2 times the shape's fill.
                    let half = clip.scene.object.size.half_extent() * 56.0;
                    let area = (2.0 * half / 8.0).powi(2) * fill;
                    assert!((sum - area).abs() < 0.1 * area, "{shape}: {sum} vs {area}");
                } else {
                    assert_eq!(sum, 0.0, "{shape} in channel {j}");
                }
            }
        }
    }

    #[test]
    fn a_length_group_shares_one_length_and_groups_still_vary() {
        let cfg = NanoConfig::tiny_for_tests(10);
        let sampler = ClipSampler::new(&cfg, vec![(16, 8)], (1, 4)).with_length_group(2);
        let lengths: Vec<usize> = (0..24).map(|i| sampler.clip(3, 2, i).n_frames).collect();
        for pair in lengths.chunks(2) {
            assert_eq!(pair[0], pair[1], "{lengths:?}");
        }
        let distinct: BTreeSet<usize> = lengths.iter().copied().collect();
        assert!(distinct.len() >= 3, "{lengths:?}");
        // Other lengths (a restart phase's) draw from their own range; the scene is the same.
        let long = sampler.clone().with_latent_frames((9, 9));
        let (a, b) = (sampler.clip(3, 2, 5), long.clip(3, 2, 5));
        assert_eq!(b.n_frames, cfg.video.frames().pixel_frames(9));
        assert_eq!(a.caption, b.caption);
    }

    #[test]
    fn a_window_is_the_world_clips_frames_sound_and_hits_where_it_was_cut() {
        use crate::nano::world::Motion;
        let cfg = NanoConfig::tiny_for_tests(10);
        let (w, h) = (48u32, 32u32);
        let cut = ClipSampler::new(&cfg, vec![(w, h)], (2, 3)).with_window(21);
        let layout = cfg.video.frames();
        let hop = (cfg.sample_rate / cfg.native_fps) as usize;
        let (mut from_start, mut later, mut bounces_later) = (0, 0, 0);
        for i in 0..40 {
            let clip = cut.clip(5, 2, i);
            let Span { start, total } = clip.span;
            let t = layout.latent_frames(clip.n_frames);
            assert!((2..=3).contains(&t) && (t..=21).contains(&total) && start + t <= total);
            if start == 0 {
                from_start += 1;
                continue;
            }
            later += 1;
            // The same scene rendered whole at the world clip's length.
            let whole = ClipSampler::new(&cfg, vec![(w, h)], (total, total)).clip(5, 2, i);
            assert_eq!(
                (whole.span, whole.caption.as_str()),
                (Span::whole(total), clip.caption.as_str())
            );
            let (first, n, plane) = (start * layout.stride, clip.n_frames, (w * h) as usize);
            assert_eq!(
                clip.frames_rgb,
                whole.frames_rgb[3 * first * plane..3 * (first + n) * plane]
            );
            assert_eq!(clip.audio, whole.audio[first * hop..(first + n) * hop]);
            assert_eq!(clip.impact_frames, whole.impact_frames[first..first + n]);
            assert_eq!(
                clip.object_mask,
                whole.object_mask[first * plane..(first + n) * plane]
            );
            if clip.scene.motion == Motion::Bounce && clip.impact_frames.iter().any(|&f| f > 0.0) {
                bounces_later += 1;
            }
        }
        assert!(
            from_start >= 10 && later >= 10,
            "{from_start} from the start, {later} later"
        );
        assert!(bounces_later >= 1, "a later window hears a bounce");
        // Without a window, or one no longer than the clip, clips are whole.
        let whole = ClipSampler::new(&cfg, vec![(w, h)], (2, 3));
        assert_eq!(whole.clip(5, 2, 3).span.start, 0);
        let short = whole.clone().with_window(3);
        assert_eq!(
            short.clip(5, 2, 3).frames_rgb,
            whole.clip(5, 2, 3).frames_rgb
        );
    }

    /// The mean x of the objects on a clip's first frame, in pixels.
    fn first_frame_x(clip: &Clip) -> f32 {
        let (w, h) = (clip.width, clip.height);
        let (mut sum, mut count) = (0f32, 0f32);
        for (j, &m) in clip.object_mask[..w * h].iter().enumerate() {
            sum += m * (j % w) as f32;
            count += m;
        }
        sum / count.max(1.0)
    }

    #[test]
    fn physics_spread_zero_gives_every_bounce_of_a_size_the_same_contacts() {
        use crate::nano::world::{Camera, Motion, Size};
        let cfg = NanoConfig::tiny_for_tests(10);
        let world = ClipSampler::new(&cfg, vec![(96, 56)], (4, 4));
        let squeezed = world.clone().with_physics_spread(0.0);
        let same = world.clone().with_physics_spread(1.0).clip(7, 2, 5);
        assert_eq!(
            same.frames_rgb,
            world.clip(7, 2, 5).frames_rgb,
            "1 is the world's"
        );
        // Bounces of a large object under a static camera: the world times their contacts
        // apart, spread 0 alike (and the sound follows the picture's timing).
        let bounce = |c: &Clip| {
            c.scene.motion == Motion::Bounce
                && c.scene.object.size == Size::Large
                && c.scene.camera == Camera::Static
                && !c.scene.silent
        };
        let (mut world_hits, mut squeezed_hits) = (Vec::new(), Vec::new());
        for i in 0..240 {
            let a = world.clip(7, 2, i);
            if bounce(&a) {
                let b = squeezed.clip(7, 2, i);
                assert_eq!(a.caption, b.caption);
                world_hits.push(a.impact_frames.clone());
                squeezed_hits.push(b.impact_frames.clone());
            }
        }
        assert!(world_hits.len() >= 4, "{} bounces", world_hits.len());
        assert!(
            world_hits.windows(2).any(|p| p[0] != p[1]),
            "{world_hits:?}"
        );
        assert!(
            squeezed_hits.windows(2).all(|p| p[0] == p[1]),
            "{squeezed_hits:?}"
        );
        assert!(
            squeezed_hits[0].iter().any(|&h| h > 0.0),
            "a bounce is heard"
        );
    }

    #[test]
    fn placement_spread_squeezes_where_objects_start_and_nothing_else() {
        use crate::nano::world::{Camera, Motion};
        let cfg = NanoConfig::tiny_for_tests(10);
        let world = ClipSampler::new(&cfg, vec![(96, 56)], (2, 2));
        let middle = world.clone().with_placement_spread(0.0);
        let (a, b) = (world.clip(7, 2, 5), middle.clip(7, 2, 5));
        assert_eq!(a.caption, b.caption);
        assert_eq!(
            a.audio, b.audio,
            "the sound does not depend on where the object is"
        );
        let same = world.clone().with_placement_spread(1.0).clip(7, 2, 5);
        assert_eq!(a.frames_rgb, same.frames_rgb, "spread 1 is the world's own");
        assert_eq!(
            a.scene,
            sample_train(a.scene.seed),
            "and its scene, bit for bit"
        );

        // A lone still object under a static camera: anywhere in the world, mid-frame at 0.
        let lone = |c: &Clip| {
            c.scene.motion == Motion::Still
                && c.scene.camera == Camera::Static
                && c.scene.second.is_none()
        };
        let (mut world_xs, mut middle_xs) = (Vec::new(), Vec::new());
        for i in 0..400 {
            let (a, b) = (world.clip(7, 2, i), middle.clip(7, 2, i));
            if lone(&a) {
                world_xs.push(first_frame_x(&a));
                middle_xs.push(first_frame_x(&b));
            }
        }
        assert!(world_xs.len() >= 5, "{} lone still objects", world_xs.len());
        let range = |xs: &[f32]| {
            xs.iter().cloned().fold(f32::MIN, f32::max)
                - xs.iter().cloned().fold(f32::MAX, f32::min)
        };
        assert!(range(&world_xs) > 20.0, "world: {world_xs:?}");
        for x in &middle_xs {
            assert!((x - 48.0).abs() <= 1.0, "spread 0: {middle_xs:?}");
        }
    }
}
