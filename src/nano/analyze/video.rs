//! What the frames show: the dominant object's colour, shape, trajectory and ground contacts.
//!
//! Pixels are classified by nearest colour among the background's palette and the named
//! object colours; this needs no knowledge of where the object is and tolerates the blur and
//! colour drift of decoded model output better than exact background subtraction.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use super::AnalyzeError;
use crate::nano::world::{BBox, Background, Color, Frame, Motion, Shape};

/// One frame's detection of the dominant object (its largest connected blob).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    pub pixels: usize,
    /// Pixel centroid, in pixels.
    pub center: [f32; 2],
    /// Pixel extent: `x1`/`y1` one past the last pixel.
    pub bbox: BBox,
    /// Mean row width of the top third over that of the bottom third: about 1 for a ball or
    /// a square, about 0.3 for an upright triangle.
    pub taper: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VideoAnalysis {
    pub background: Background,
    /// `None` when no object colour covers enough of the clip.
    pub color: Option<Color>,
    pub shape: Option<Shape>,
    /// What `shape` was read from: the median taper and bounding-box fill of the whole
    /// detections ([`Detection::taper`]; a square fills 1.0, a ball π/4).
    pub shape_measures: Option<ShapeMeasures>,
    pub motion: Option<Motion>,
    /// Per frame; `None` where the object was not found.
    pub track: Vec<Option<Detection>>,
    /// Ground contacts seen in the trajectory, seconds (only for bounce and fall).
    pub impacts_s: Vec<f32>,
}

/// Label for "background" in the colour table.
const BG: u8 = u8::MAX;
/// Quantisation of the colour table: 5 bits per channel.
const BITS: u32 = 5;

/// Nearest-colour labels for every quantised RGB value: one lookup per pixel afterwards.
/// Built once per background per process.
fn label_table(background: Background) -> &'static [u8] {
    static TABLES: [OnceLock<Vec<u8>>; 4] = [const { OnceLock::new() }; 4];
    let slot = Background::ALL
        .iter()
        .position(|&b| b == background)
        .unwrap_or(0);
    TABLES[slot].get_or_init(|| build_label_table(background))
}

fn build_label_table(background: Background) -> Vec<u8> {
    let side = 1usize << BITS;
    let step = 256 / side;
    let mut table = vec![BG; side * side * side];
    for (i, label) in table.iter_mut().enumerate() {
        let q = [i >> (2 * BITS), (i >> BITS) & (side - 1), i & (side - 1)];
        let rgb = q.map(|v| (v * step + step / 2) as i32);
        let dist = |c: [u8; 3]| (0..3).map(|k| (rgb[k] - c[k] as i32).pow(2)).sum::<i32>();
        let bg_best = background
            .palette()
            .iter()
            .map(|&c| dist(c))
            .min()
            .unwrap_or(i32::MAX);
        let (obj_i, obj_best) = Color::ALL
            .iter()
            .enumerate()
            .map(|(j, c)| (j, dist(c.rgb())))
            .min_by_key(|&(_, d)| d)
            .unwrap_or((0, i32::MAX));
        if obj_best < bg_best {
            *label = obj_i as u8;
        }
    }
    table
}

fn labels(frame: &Frame, table: &[u8]) -> Vec<u8> {
    let shift = 8 - BITS;
    frame
        .rgb
        .chunks_exact(3)
        .map(|p| {
            let q = |v: u8| (v >> shift) as usize;
            table[(q(p[0]) << (2 * BITS)) | (q(p[1]) << BITS) | q(p[2])]
        })
        .collect()
}

fn check_frames(frames: &[Frame]) -> Result<(usize, usize), AnalyzeError> {
    let first = frames.first().ok_or(AnalyzeError::NoFrames)?;
    let (w, h) = (first.width, first.height);
    if w == 0 || h == 0 {
        return Err(AnalyzeError::FrameSize {
            index: 0,
            width: w,
            height: h,
            bytes: first.rgb.len(),
        });
    }
    for (index, f) in frames.iter().enumerate() {
        if f.width != w || f.height != h || f.rgb.len() != w * h * 3 {
            return Err(AnalyzeError::FrameSize {
                index,
                width: f.width,
                height: f.height,
                bytes: f.rgb.len(),
            });
        }
    }
    Ok((w, h))
}

/// The background whose palette explains the frames best (mean squared distance of a pixel
/// sample to the nearest palette colour). Objects are a small share of the pixels, so they
/// barely move the estimate.
pub fn estimate_background(frames: &[Frame]) -> Result<Background, AnalyzeError> {
    check_frames(frames)?;
    let step = (frames.len() / 4).max(1);
    let cost = |bg: Background| -> u64 {
        let palette = bg.palette();
        frames
            .iter()
            .step_by(step)
            .flat_map(|f| f.rgb.chunks_exact(3).step_by(7))
            .map(|p| {
                palette
                    .iter()
                    .map(|c| {
                        (0..3)
                            .map(|k| (p[k] as i64 - c[k] as i64).pow(2) as u64)
                            .sum::<u64>()
                    })
                    .min()
                    .unwrap_or(u64::MAX)
                    // A bright object pixel far from every palette must not decide the vote.
                    .min(3 * 80 * 80)
            })
            .sum()
    };
    Ok(Background::ALL
        .iter()
        .copied()
        .min_by_key(|&bg| cost(bg))
        .unwrap_or(Background::Studio))
}

/// Largest 4-connected blob of `mask`, as (pixel count, pixel list).
fn largest_blob(mask: &[bool], w: usize, h: usize) -> Vec<usize> {
    let mut seen = vec![false; mask.len()];
    let mut best = Vec::new();
    let mut stack = Vec::new();
    for start in 0..mask.len() {
        if !mask[start] || seen[start] {
            continue;
        }
        let mut blob = Vec::new();
        seen[start] = true;
        stack.push(start);
        while let Some(i) = stack.pop() {
            blob.push(i);
            let (x, y) = (i % w, i / w);
            let mut visit = |j: usize| {
                if mask[j] && !seen[j] {
                    seen[j] = true;
                    stack.push(j);
                }
            };
            if x > 0 {
                visit(i - 1);
            }
            if x + 1 < w {
                visit(i + 1);
            }
            if y > 0 {
                visit(i - w);
            }
            if y + 1 < h {
                visit(i + w);
            }
        }
        if blob.len() > best.len() {
            best = blob;
        }
    }
    best
}

fn detect(labels: &[u8], color: u8, w: usize, h: usize) -> Option<Detection> {
    let mask: Vec<bool> = labels.iter().map(|&l| l == color).collect();
    let blob = largest_blob(&mask, w, h);
    if blob.len() < 4 {
        return None;
    }
    let (mut sx, mut sy) = (0f64, 0f64);
    let (mut x0, mut y0, mut x1, mut y1) = (w, h, 0, 0);
    for &i in &blob {
        let (x, y) = (i % w, i / w);
        sx += x as f64 + 0.5;
        sy += y as f64 + 0.5;
        x0 = x0.min(x);
        y0 = y0.min(y);
        x1 = x1.max(x + 1);
        y1 = y1.max(y + 1);
    }
    let n = blob.len() as f64;
    let third = ((y1 - y0) / 3).max(1);
    let top = blob.iter().filter(|&&i| i / w < y0 + third).count();
    let bottom = blob.iter().filter(|&&i| i / w >= y1 - third).count();
    Some(Detection {
        pixels: blob.len(),
        center: [(sx / n) as f32, (sy / n) as f32],
        bbox: BBox {
            x0: x0 as f32,
            y0: y0 as f32,
            x1: x1 as f32,
            y1: y1 as f32,
        },
        taper: top as f32 / bottom.max(1) as f32,
    })
}

/// Finds the dominant object and describes it. `background`: the scene's, if known;
/// otherwise estimated from the frames.
pub fn analyze_video(
    frames: &[Frame],
    fps: f32,
    background: Option<Background>,
) -> Result<VideoAnalysis, AnalyzeError> {
    let (w, h) = check_frames(frames)?;
    if !fps.is_finite() || fps <= 0.0 {
        return Err(AnalyzeError::Rate(fps));
    }
    let background = match background {
        Some(b) => b,
        None => estimate_background(frames)?,
    };
    let table = label_table(background);
    let labelled: Vec<Vec<u8>> = frames.iter().map(|f| labels(f, table)).collect();

    let mut counts = [0usize; 8];
    for l in labelled.iter().flatten() {
        if let Some(c) = counts.get_mut(*l as usize) {
            *c += 1;
        }
    }
    let (best, &best_count) = counts
        .iter()
        .enumerate()
        .max_by_key(|&(_, c)| c)
        .unwrap_or((0, &0));
    // An object smaller than 0.3% of the frame is noise (stars, edge blends), not a subject.
    let min_count = (w * h * frames.len()) as f64 * 0.003;
    let mut out = VideoAnalysis {
        background,
        color: None,
        shape: None,
        shape_measures: None,
        motion: None,
        track: vec![None; frames.len()],
        impacts_s: Vec::new(),
    };
    if (best_count as f64) < min_count || best >= Color::ALL.len() {
        return Ok(out);
    }
    let track: Vec<Option<Detection>> = labelled
        .iter()
        .map(|l| detect(l, best as u8, w, h))
        .collect();
    // An object is one blob of its colour, in most frames: pixels of that colour scattered
    // over a texture are not an object, however many there are.
    let min_blob = ((w * h) as f64 * 0.003).ceil() as usize;
    let whole = track
        .iter()
        .filter(|d| d.as_ref().is_some_and(|d| d.pixels >= min_blob))
        .count();
    if 2 * whole < frames.len() {
        return Ok(out);
    }
    out.color = Some(Color::ALL[best]);
    out.track = track;
    out.shape_measures = shape_measures(&out.track, w, h);
    out.shape = out.shape_measures.map(ShapeMeasures::shape);
    out.motion = classify_motion(&out.track, w, h);
    if matches!(out.motion, Some(Motion::Bounce | Motion::Fall)) {
        // Contacts are timed on the pictures the clip was made of: a held frame adds no
        // sample of the trajectory, and arcs through repeats bend wrong.
        let (k, first) = held(frames);
        let made: Vec<Option<Detection>> =
            out.track.iter().skip(first).step_by(k).copied().collect();
        out.impacts_s = contacts(&made, w.min(h) as f32, fps / k as f32)
            .into_iter()
            .map(|f| (first as f32 + f * k as f32) / fps)
            .collect();
    }
    Ok(out)
}

/// The slowest fall into a ground contact, in short sides of the frame per second (see
/// `contacts`).
const MIN_FALL_IN: f32 = 0.07;

/// How a clip shown at a higher rate than it was made at holds its pictures: `(k, first)`
/// when each picture stays for `k` frames (a picture changes only at indices that are equal
/// modulo `k`) and `first` is the middle frame of the first whole picture shown, as a
/// nearest-frame retimer shows it (Nano makes 8 fps; shown at 24, each picture holds 3
/// frames centred on its own time). `(1, 0)` when pictures change at no common interval.
pub fn held(frames: &[Frame]) -> (usize, usize) {
    let changes: Vec<usize> = (1..frames.len())
        .filter(|&i| frames[i].rgb != frames[i - 1].rgb)
        .collect();
    let gcd = |mut a: usize, mut b: usize| {
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    };
    let k = changes.windows(2).map(|p| p[1] - p[0]).fold(0, gcd);
    // At least three changes, all at a common interval (an object at rest repeats its
    // picture, so some steps of the interval may show no change).
    if changes.len() < 3 || k < 2 {
        return (1, 0);
    }
    let phase = changes[0] % k;
    // Picture n spans [phase + (n-1)k, phase + nk); its middle frame:
    let middle = (phase + (k - 1) / 2) % k;
    (k, middle)
}

/// Median taper and bounding-box fill over the frames where the object is whole and large
/// enough to count.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ShapeMeasures {
    pub taper: f32,
    pub fill: f32,
}

impl ShapeMeasures {
    /// An upright triangle is narrow at the top (taper ≈ 0.3, against ≈ 1 for the others); a
    /// square fills its bounding box (1.0) where a ball fills π/4 ≈ 0.785.
    pub fn shape(self) -> Shape {
        if self.taper < 0.6 {
            Shape::Triangle
        } else if self.fill < 0.89 {
            Shape::Ball
        } else {
            Shape::Square
        }
    }
}

fn shape_measures(track: &[Option<Detection>], w: usize, h: usize) -> Option<ShapeMeasures> {
    let whole: Vec<&Detection> = track
        .iter()
        .flatten()
        .filter(|d| {
            d.bbox.x0 > 0.0 && d.bbox.y0 > 0.0 && d.bbox.x1 < w as f32 && d.bbox.y1 < h as f32
        })
        .filter(|d| d.pixels >= 16)
        .collect();
    let median = |mut v: Vec<f32>| {
        v.sort_by(f32::total_cmp);
        v.get(v.len() / 2).copied()
    };
    let taper = median(whole.iter().map(|d| d.taper).collect())?;
    let fill = median(
        whole
            .iter()
            .map(|d| d.pixels as f32 / ((d.bbox.x1 - d.bbox.x0) * (d.bbox.y1 - d.bbox.y0)))
            .collect(),
    )?;
    Some(ShapeMeasures { taper, fill })
}

/// Largest excursion of a series away from its running extremes and back: the size of a
/// "there and back" in it (0 for a monotone series).
fn reversal(s: &[f32]) -> f32 {
    let peak = |s: &[f32], sign: f32| {
        let n = s.len();
        let mut suffix = vec![f32::INFINITY; n + 1];
        for i in (0..n).rev() {
            suffix[i] = suffix[i + 1].min(sign * s[i]);
        }
        let mut prefix = f32::INFINITY;
        let mut best = 0f32;
        for i in 0..n {
            let v = sign * s[i];
            prefix = prefix.min(v);
            best = best.max((v - prefix).min(v - suffix[i]));
        }
        best
    };
    peak(s, 1.0).max(peak(s, -1.0))
}

/// Motion class from the centroid track. Distances are in units of the frame's shorter side;
/// the thresholds sit between what the world's motions produce (orbit radius 0.22, drops of
/// at least 0.3 of the height, slides of 0.35 width or more) and what a camera pan adds
/// (0.1 width of steady drift, which never reverses).
fn classify_motion(track: &[Option<Detection>], w: usize, h: usize) -> Option<Motion> {
    let s = w.min(h) as f32;
    let pts: Vec<[f32; 2]> = track.iter().flatten().map(|d| d.center).collect();
    if pts.len() < 3 {
        return None;
    }
    let xs: Vec<f32> = pts.iter().map(|p| p[0] / s).collect();
    let ys: Vec<f32> = pts.iter().map(|p| p[1] / s).collect();
    let range = |v: &[f32]| {
        v.iter().copied().fold(f32::NEG_INFINITY, f32::max)
            - v.iter().copied().fold(f32::INFINITY, f32::min)
    };
    let (rev_x, rev_y) = (reversal(&xs), reversal(&ys));
    if rev_x > 0.05 && rev_y > 0.05 {
        return Some(Motion::Orbit);
    }
    if range(&ys) > 0.08 {
        // Down to the ground and up again is a bounce; down and stay is a fall.
        return Some(if rev_y > 0.04 {
            Motion::Bounce
        } else {
            Motion::Fall
        });
    }
    let net_dx = (pts[pts.len() - 1][0] - pts[0][0]) / w as f32;
    Some(if net_dx > 0.22 {
        Motion::SlideRight
    } else if net_dx < -0.22 {
        Motion::SlideLeft
    } else {
        Motion::Still
    })
}

/// Ground contacts, in (fractional) frame indices of pictures made at `rate` per second:
/// local maxima of the centroid height (y grows downwards) reached while falling. A contact
/// rarely falls on a frame, so its time is where the falling arc through the three frames
/// before meets the rising (or resting) arc through the three frames after; gravity makes
/// both arcs parabolas.
fn contacts(track: &[Option<Detection>], short_side: f32, rate: f32) -> Vec<f32> {
    let y: Vec<Option<f32>> = track.iter().map(|d| d.map(|d| d.center[1])).collect();
    // Centroid jitter of a resting object (edge pixels under a sub-pixel pan) stays below this.
    let eps = 0.004 * short_side;
    // What an object falls into a contact over the two pictures before it: at least
    // `MIN_FALL_IN` short sides a second. The world's slowest contacts come in at 0.10 (24 fps)
    // to 0.16 (8 fps); a decoded object at rest that twitches by a pixel every latent frame
    // (0.6-0.8 px over two pictures at 8 fps, 96x56: 0.04-0.06) is not falling.
    let fall_in = (2.0 * eps).max(MIN_FALL_IN * short_side * 2.0 / rate.max(1e-3));
    let ground = y
        .iter()
        .flatten()
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    let at = |i: isize| -> Option<f32> { y.get(usize::try_from(i).ok()?).copied().flatten() };
    let mut out = Vec::new();
    for m in 2..y.len().saturating_sub(1) {
        let mi = m as isize;
        let (Some(a), Some(b), Some(c), Some(d)) = (at(mi - 2), at(mi - 1), at(mi), at(mi + 1))
        else {
            continue;
        };
        let falling_in = c > b + eps && c - a > fall_in;
        if !falling_in || d > c + eps || c < ground - 0.1 * short_side {
            continue;
        }
        // With a single frame after, a rebound and a rest look alike: leave it unjudged.
        let Some(e) = at(mi + 2) else {
            continue;
        };
        // Arcs in local time u = t - m; a missing third frame degrades to a line, and arcs
        // that do not meet near m (noise on a tiny hop) fall back to lines.
        let before = arc([(-1.0, Some(b)), (-2.0, Some(a)), (-3.0, at(mi - 3))]);
        let after = arc([(1.0, Some(d)), (2.0, Some(e)), (3.0, at(mi + 3))]);
        let lines = (
            arc([(-1.0, Some(b)), (-2.0, Some(a)), (0.0, None)]),
            arc([(1.0, Some(d)), (2.0, Some(e)), (0.0, None)]),
        );
        let diff = |p: [f32; 3], q: [f32; 3]| [0, 1, 2].map(|k| p[k] - q[k]);
        let u = meeting(diff(before, after))
            .or_else(|| meeting(diff(lines.0, lines.1)))
            .unwrap_or(0.0);
        out.push(m as f32 + u);
    }
    out
}

/// Coefficients `[c0, c1, c2]` of `c0 + c1 u + c2 u²` through the given points (the first
/// one always present): a parabola through three, a line through two, a constant.
fn arc(points: [(f32, Option<f32>); 3]) -> [f32; 3] {
    let (u0, y0) = (points[0].0, points[0].1.unwrap_or(0.0));
    let Some(y1) = points[1].1 else {
        return [y0, 0.0, 0.0];
    };
    let u1 = points[1].0;
    let slope = (y1 - y0) / (u1 - u0);
    let line = [y0 - slope * u0, slope, 0.0];
    let Some(y2) = points[2].1 else {
        return line;
    };
    // Newton form: line + k (u - u0)(u - u1).
    let u2 = points[2].0;
    let k = (y2 - (line[0] + line[1] * u2)) / ((u2 - u0) * (u2 - u1));
    [line[0] + k * u0 * u1, line[1] - k * (u0 + u1), k]
}

/// Root of `c0 + c1 u + c2 u²` in [-1, 1] closest to 0, if any.
fn meeting([c0, c1, c2]: [f32; 3]) -> Option<f32> {
    let roots: Vec<f32> = if c2.abs() < 1e-6 {
        if c1.abs() < 1e-9 {
            Vec::new()
        } else {
            vec![-c0 / c1]
        }
    } else {
        let disc = c1 * c1 - 4.0 * c2 * c0;
        if disc < 0.0 {
            Vec::new()
        } else {
            let r = disc.sqrt();
            vec![(-c1 - r) / (2.0 * c2), (-c1 + r) / (2.0 * c2)]
        }
    };
    roots
        .into_iter()
        .filter(|u| (-1.0..=1.0).contains(u))
        .min_by(|p, q| p.abs().total_cmp(&q.abs()))
}
