//! Pixels and per-frame ground truth.

use serde::{Deserialize, Serialize};

use super::motion::{Impact, Trajectory, GROUND_Y};
use super::rng::hash01;
use super::scene::{Background, Color, Object, Scene, Shape};

/// One RGB frame, row-major, 3 bytes per pixel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub width: usize,
    pub height: usize,
    pub rgb: Vec<u8>,
}

impl Frame {
    pub fn pixel(&self, x: usize, y: usize) -> [u8; 3] {
        let i = 3 * (y * self.width + x);
        [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
    }
}

/// Axis-aligned box in pixels, `x0 <= x1`, `y0 <= y1`, clipped to the frame.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BBox {
    pub x0: f32,
    pub y0: f32,
    pub x1: f32,
    pub y1: f32,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ObjectTruth {
    pub color: Color,
    pub shape: Shape,
    /// Centre of the shape's bounding box, in pixels (may lie outside the frame).
    pub center: [f32; 2],
    pub bbox: BBox,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameTruth {
    pub time_s: f32,
    /// Primary object first, then the companion if any.
    pub objects: Vec<ObjectTruth>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClipTruth {
    pub fps: f32,
    pub frames: Vec<FrameTruth>,
    /// Every sound-making contact, in time order.
    pub impacts: Vec<Impact>,
}

/// Number of frames of a clip; frame `i` shows time `i / fps`.
pub fn frame_count(fps: f32, duration_s: f32) -> usize {
    (duration_s * fps).round().max(0.0) as usize
}

/// Background colours by region, shared with the analyzer so that it knows what "not an
/// object" looks like. Gradients list their ends and middle.
impl Background {
    pub fn palette(self) -> &'static [[u8; 3]] {
        match self {
            Background::NightSky => &[
                NIGHT_TOP,
                [16, 20, 51],
                NIGHT_HORIZON,
                NIGHT_STAR,
                NIGHT_GROUND,
            ],
            Background::Grass => &[
                GRASS_SKY_TOP,
                [128, 175, 223],
                GRASS_SKY_HORIZON,
                GRASS_DARK,
                [58, 114, 41],
                GRASS_LIGHT,
            ],
            Background::Desert => &[
                DESERT_SKY_TOP,
                [150, 188, 224],
                DESERT_SKY_HORIZON,
                SAND_DARK,
                [206, 168, 105],
                SAND_LIGHT,
            ],
            Background::Studio => &[PANEL_DARK, PANEL_LIGHT, FLOOR_BACK, FLOOR_FRONT],
        }
    }
}

const NIGHT_TOP: [u8; 3] = [8, 10, 32];
const NIGHT_HORIZON: [u8; 3] = [24, 30, 70];
const NIGHT_STAR: [u8; 3] = [150, 150, 175];
const NIGHT_GROUND: [u8; 3] = [22, 22, 30];
const GRASS_SKY_TOP: [u8; 3] = [90, 150, 215];
const GRASS_SKY_HORIZON: [u8; 3] = [165, 200, 230];
const GRASS_DARK: [u8; 3] = [38, 88, 30];
const GRASS_LIGHT: [u8; 3] = [78, 140, 52];
const DESERT_SKY_TOP: [u8; 3] = [110, 165, 220];
const DESERT_SKY_HORIZON: [u8; 3] = [190, 210, 228];
const SAND_DARK: [u8; 3] = [185, 145, 85];
const SAND_LIGHT: [u8; 3] = [228, 192, 125];
const PANEL_DARK: [u8; 3] = [100, 100, 106];
const PANEL_LIGHT: [u8; 3] = [122, 122, 128];
const FLOOR_BACK: [u8; 3] = [86, 86, 92];
const FLOOR_FRONT: [u8; 3] = [62, 62, 68];

fn lerp3(a: [u8; 3], b: [u8; 3], t: f32) -> [f32; 3] {
    let t = t.clamp(0.0, 1.0);
    [0, 1, 2].map(|c| a[c] as f32 + (b[c] as f32 - a[c] as f32) * t)
}

/// Background colour at integer world column `col` (pixels, camera travel included) and row.
/// Textures repeat on the pixel grid, so they look alike at every resolution we train on.
fn background_pixel(bg: Background, seed: u64, col: i64, row: usize, height: usize) -> [f32; 3] {
    let v = (row as f32 + 0.5) / height as f32;
    let r = row as i64;
    match bg {
        Background::NightSky => {
            if v >= GROUND_Y {
                return NIGHT_GROUND.map(|c| c as f32);
            }
            if hash01(seed, col, r) < 0.015 {
                return NIGHT_STAR.map(|c| c as f32);
            }
            lerp3(NIGHT_TOP, NIGHT_HORIZON, v / GROUND_Y)
        }
        Background::Grass => {
            const HORIZON: f32 = 0.5;
            if v < HORIZON {
                return lerp3(GRASS_SKY_TOP, GRASS_SKY_HORIZON, v / HORIZON);
            }
            // Blades: columns of varying shade, broken every few rows.
            let blade = hash01(seed, col, r / 3 + (col % 3));
            lerp3(GRASS_DARK, GRASS_LIGHT, blade)
        }
        Background::Desert => {
            const HORIZON: f32 = 0.45;
            if v < HORIZON {
                return lerp3(DESERT_SKY_TOP, DESERT_SKY_HORIZON, v / HORIZON);
            }
            let x = col as f32 / height as f32;
            let dune = 0.5 + 0.5 * (x * 9.0 + (x * 3.0).sin() * 1.5 + v * 24.0).sin();
            let grain = 0.15 * (hash01(seed, col, r) - 0.5);
            lerp3(SAND_DARK, SAND_LIGHT, dune + grain)
        }
        Background::Studio => {
            const FLOOR: f32 = 0.7;
            if v >= FLOOR {
                return lerp3(FLOOR_BACK, FLOOR_FRONT, (v - FLOOR) / (1.0 - FLOOR));
            }
            // Backdrop panels give a pan something to move.
            let panel = (col.div_euclid((height / 6).max(2) as i64)) % 2 == 0;
            (if panel { PANEL_DARK } else { PANEL_LIGHT }).map(|c| c as f32)
        }
    }
}

fn inside(shape: Shape, dx: f32, dy: f32, half: f32) -> bool {
    match shape {
        Shape::Ball => dx * dx + dy * dy <= half * half,
        Shape::Square => dx.abs() <= half && dy.abs() <= half,
        // Upright isosceles: apex at the top, base on the bottom edge.
        Shape::Triangle => dy <= half && dx.abs() <= (dy + half) * 0.5,
    }
}

/// Fraction of pixel `(px, py)` covered by the shape, from a 4×4 grid of samples. The shapes
/// are convex, so a pixel whose four corners are inside is covered; only edge pixels pay for
/// the samples.
fn coverage(shape: Shape, cx: f32, cy: f32, half: f32, px: usize, py: usize) -> f32 {
    let (x, y) = (px as f32 - cx, py as f32 - cy);
    if [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (1.0, 1.0)]
        .iter()
        .all(|&(ox, oy)| inside(shape, x + ox, y + oy, half))
    {
        return 1.0;
    }
    let mut hits = 0;
    for sy in 0..4 {
        for sx in 0..4 {
            let dx = x + (sx as f32 + 0.5) / 4.0;
            let dy = y + (sy as f32 + 0.5) / 4.0;
            hits += inside(shape, dx, dy, half) as u32;
        }
    }
    hits as f32 / 16.0
}

/// Object geometry in pixels at time `t`: centre and half extent.
fn placed(
    traj: &Trajectory,
    index: usize,
    t: f32,
    width: usize,
    height: usize,
    object: &Object,
) -> Option<(f32, f32, f32)> {
    let aspect = width as f32 / height as f32;
    let (x, y) = traj.center(index, t, aspect)?;
    let half = object.size.half_extent() * width.min(height) as f32;
    Some((x * width as f32, y * height as f32, half))
}

/// The pixel columns and rows an object centred at `(cx, cy)` with half extent `half` can
/// touch (its box grown by a pixel), clipped to the frame.
fn pixel_box(
    cx: f32,
    cy: f32,
    half: f32,
    width: usize,
    height: usize,
) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
    let x0 = (cx - half - 1.0).floor().max(0.0) as usize;
    let y0 = (cy - half - 1.0).floor().max(0.0) as usize;
    let x1 = ((cx + half + 1.0).ceil().max(0.0) as usize).min(width);
    let y1 = ((cy + half + 1.0).ceil().max(0.0) as usize).min(height);
    (x0..x1, y0..y1)
}

/// Renders `round(duration_s * fps)` frames of `width × height` RGB.
pub fn render_video(
    scene: &Scene,
    width: usize,
    height: usize,
    fps: f32,
    duration_s: f32,
) -> Vec<Frame> {
    let traj = Trajectory::new(scene, duration_s);
    let n = frame_count(fps, duration_s);
    if width == 0 || height == 0 {
        return vec![
            Frame {
                width,
                height,
                rgb: Vec::new()
            };
            n
        ];
    }
    // The background is a panorama rendered once; each frame reads it at the camera offset,
    // blending neighbouring columns for sub-pixel pans.
    let travel = [0.0, duration_s].map(|t| traj.camera_x(t) * width as f32);
    let left = travel[0].min(travel[1]).floor() as i64 - 1;
    let pano_w = width + (travel[0] - travel[1]).abs().ceil() as usize + 3;
    let mut pano = vec![0f32; 3 * pano_w * height];
    for row in 0..height {
        for c in 0..pano_w {
            let p = background_pixel(scene.background, scene.seed, left + c as i64, row, height);
            pano[3 * (row * pano_w + c)..][..3].copy_from_slice(&p);
        }
    }
    let objects: Vec<Object> = std::iter::once(scene.object).chain(scene.second).collect();

    // Plain index loops: this runs per pixel per frame, and tests run it unoptimised.
    (0..n)
        .map(|i| {
            let t = i as f32 / fps;
            let shift = traj.camera_x(t) * width as f32 - left as f32;
            let base = shift.floor().max(0.0) as usize;
            let frac = shift - shift.floor();
            let mut rgb = vec![0u8; 3 * width * height];
            for row in 0..height {
                let src = &pano[3 * row * pano_w..3 * (row + 1) * pano_w];
                let dst = &mut rgb[3 * row * width..3 * (row + 1) * width];
                for x in 0..width {
                    let c = 3 * (x + base).min(pano_w - 2);
                    for k in 0..3 {
                        let (a, b) = (src[c + k], src[c + 3 + k]);
                        dst[3 * x + k] = (a + (b - a) * frac + 0.5) as u8;
                    }
                }
            }
            // Companion first so the moving primary passes in front of it.
            for index in (0..objects.len()).rev() {
                let object = &objects[index];
                let Some((cx, cy, half)) = placed(&traj, index, t, width, height, object) else {
                    continue;
                };
                let color = object.color.rgb();
                let (xs, ys) = pixel_box(cx, cy, half, width, height);
                for py in ys {
                    for px in xs.clone() {
                        let a = coverage(object.shape, cx, cy, half, px, py);
                        if a > 0.0 {
                            let p = &mut rgb[3 * (py * width + px)..][..3];
                            for k in 0..3 {
                                let v = p[k] as f32;
                                p[k] = (v + (color[k] as f32 - v) * a + 0.5) as u8;
                            }
                        }
                    }
                }
            }
            Frame { width, height, rgb }
        })
        .collect()
}

/// Per frame, the share of each pixel covered by the silhouette of an object of each shape
/// of [`Shape::ALL`] (in that order), as `render_video` with the same arguments draws them:
/// `[n, 3, height, width]`. Where the primary passes in front of the companion both count
/// (capped at 1).
pub fn shape_coverage(
    scene: &Scene,
    width: usize,
    height: usize,
    fps: f32,
    duration_s: f32,
) -> Vec<f32> {
    let traj = Trajectory::new(scene, duration_s);
    let n = frame_count(fps, duration_s);
    let plane = width * height;
    let mut out = vec![0f32; n * Shape::ALL.len() * plane];
    let objects: Vec<Object> = std::iter::once(scene.object).chain(scene.second).collect();
    for i in 0..n {
        let t = i as f32 / fps;
        for (index, object) in objects.iter().enumerate() {
            let Some((cx, cy, half)) = placed(&traj, index, t, width, height, object) else {
                continue;
            };
            let k = Shape::ALL
                .iter()
                .position(|&s| s == object.shape)
                .unwrap_or(0);
            let map = &mut out[(i * Shape::ALL.len() + k) * plane..][..plane];
            let (xs, ys) = pixel_box(cx, cy, half, width, height);
            for py in ys {
                for px in xs.clone() {
                    let v = &mut map[py * width + px];
                    *v = (*v + coverage(object.shape, cx, cy, half, px, py)).min(1.0);
                }
            }
        }
    }
    out
}

/// What `render_video` with the same arguments shows, and when sounds are due.
pub fn ground_truth(
    scene: &Scene,
    width: usize,
    height: usize,
    fps: f32,
    duration_s: f32,
) -> ClipTruth {
    let traj = Trajectory::new(scene, duration_s);
    let objects: Vec<Object> = std::iter::once(scene.object).chain(scene.second).collect();
    let frames = (0..frame_count(fps, duration_s))
        .map(|i| {
            let t = i as f32 / fps;
            let objects = objects
                .iter()
                .enumerate()
                .filter_map(|(index, object)| {
                    let (cx, cy, half) = placed(&traj, index, t, width, height, object)?;
                    let clip_x = |v: f32| v.clamp(0.0, width as f32);
                    let clip_y = |v: f32| v.clamp(0.0, height as f32);
                    Some(ObjectTruth {
                        color: object.color,
                        shape: object.shape,
                        center: [cx, cy],
                        bbox: BBox {
                            x0: clip_x(cx - half),
                            y0: clip_y(cy - half),
                            x1: clip_x(cx + half),
                            y1: clip_y(cy + half),
                        },
                    })
                })
                .collect();
            FrameTruth { time_s: t, objects }
        })
        .collect();
    ClipTruth {
        fps,
        frames,
        impacts: traj.impacts().to_vec(),
    }
}
