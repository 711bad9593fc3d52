//! Trajectories and contact events. Everything here is in frame fractions (x of the width,
//! y of the height, y down) and seconds, so video and audio agree for any frame size.
//!
//! Vertical physics works on the height of the object's bottom edge above the ground, so
//! contact times do not depend on the object's size in a given aspect ratio and
//! `render_audio` (which knows no frame size) hears exactly what `render_video` shows.
//! Slides and camera pans cover a fixed share of the frame over the whole clip, so their
//! speed depends on the clip's duration; bounces, falls and orbits do not.

use super::scene::{Camera, Motion, Scene};

/// Where objects rest, as a fraction of the frame height from the top.
pub const GROUND_Y: f32 = 0.85;
/// Total camera travel over a clip, as a fraction of the frame width.
const PAN_SPAN: f32 = 0.1;
/// Orbit radius, as a fraction of the frame's shorter side.
const ORBIT_RADIUS: f32 = 0.22;
/// A bounce whose apex would be lower than this (fraction of height) ends the bouncing: the
/// object comes to rest instead of chattering in ever shorter hops that no eye or onset
/// detector could separate.
const MIN_BOUNCE_HEIGHT: f32 = 0.06;

/// A ground contact: the moment a percussive sound is due.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Impact {
    pub time_s: f32,
    /// Downward speed at contact, in frame heights per second.
    pub speed: f32,
    /// 0 for the primary object (the companion never moves).
    pub object: usize,
}

/// Precomputed motion of one clip: positions at any time, and the contact list.
#[derive(Debug, Clone)]
pub struct Trajectory {
    scene: Scene,
    duration_s: f32,
    gravity: f32,
    impacts: Vec<Impact>,
    /// Outgoing vertical speed after each impact (0 for the last: the object rests).
    rebounds: Vec<f32>,
}

impl Trajectory {
    pub fn new(scene: &Scene, duration_s: f32) -> Self {
        let p = &scene.physics;
        let h0 = p.drop_height;
        // Hand-written scenes may say 0; keep gravity finite.
        let t1 = p.first_impact_s.max(0.05);
        let gravity = 2.0 * h0 / (t1 * t1);
        let mut impacts = Vec::new();
        let mut rebounds = Vec::new();
        if matches!(scene.motion, Motion::Bounce | Motion::Fall) {
            let (mut t, mut speed) = (t1, gravity * t1);
            while t <= duration_s {
                let out = if scene.motion == Motion::Bounce {
                    p.restitution * speed
                } else {
                    0.0
                };
                let bouncing = out * out / (2.0 * gravity) >= MIN_BOUNCE_HEIGHT;
                impacts.push(Impact {
                    time_s: t,
                    speed,
                    object: 0,
                });
                rebounds.push(if bouncing { out } else { 0.0 });
                if !bouncing {
                    break;
                }
                t += 2.0 * out / gravity;
                speed = out;
            }
        }
        Trajectory {
            scene: *scene,
            duration_s,
            gravity,
            impacts,
            rebounds,
        }
    }

    pub fn impacts(&self) -> &[Impact] {
        &self.impacts
    }

    /// Camera position at `t`, as a fraction of the frame width (positive = moved right).
    pub fn camera_x(&self, t: f32) -> f32 {
        let progress = (t / self.duration_s.max(1e-3)).clamp(0.0, 1.0);
        match self.scene.camera {
            Camera::Static => 0.0,
            Camera::PanLeft => -PAN_SPAN * progress,
            Camera::PanRight => PAN_SPAN * progress,
        }
    }

    /// Height of the primary object's bottom edge above the ground at `t` (frame heights).
    pub fn lift(&self, t: f32) -> f32 {
        match self.scene.motion {
            Motion::Bounce | Motion::Fall => {
                let h0 = self.scene.physics.drop_height;
                let Some(first) = self.impacts.first() else {
                    return (h0 - 0.5 * self.gravity * t * t).max(0.0);
                };
                if t < first.time_s {
                    return (h0 - 0.5 * self.gravity * t * t).max(0.0);
                }
                let i = self
                    .impacts
                    .iter()
                    .rposition(|c| c.time_s <= t)
                    .unwrap_or(0);
                let dt = t - self.impacts[i].time_s;
                (self.rebounds[i] * dt - 0.5 * self.gravity * dt * dt).max(0.0)
            }
            _ => 0.0,
        }
    }

    /// Centre of object `index` (0 primary, 1 companion) on screen at `t`, in frame fractions,
    /// for a frame of the given aspect (width / height).
    pub fn center(&self, index: usize, t: f32, aspect: f32) -> Option<(f32, f32)> {
        let scene = &self.scene;
        let object = if index == 0 {
            scene.object
        } else {
            scene.second?
        };
        let short = aspect.min(1.0); // shorter side in frame heights
        let half_h = object.size.half_extent() * short;
        // Screen drift of anything fixed in the world over the whole clip.
        let drift = -self.camera_x(self.duration_s);
        let progress = (t / self.duration_s.max(1e-3)).clamp(0.0, 1.0);
        let cam = self.camera_x(t);
        let ground = GROUND_Y - half_h;

        if index == 1 {
            // The companion sits on the side of the frame the primary starts away from.
            let primary_x = self.start_x(drift, aspect);
            let (lo, hi) = if primary_x < 0.5 {
                (0.62, 0.82)
            } else {
                (0.18, 0.38)
            };
            let x0 = fit(lo, hi, drift, scene.physics.second_place);
            return Some((x0 - cam, ground));
        }

        let x0 = self.start_x(drift, aspect);
        Some(match scene.motion {
            Motion::Bounce | Motion::Fall | Motion::Still => (x0 - cam, ground - self.lift(t)),
            Motion::SlideLeft | Motion::SlideRight => {
                (x0 + self.slide_delta() * progress - cam, ground)
            }
            Motion::Orbit => {
                let p = &scene.physics;
                let dir = if p.orbit_clockwise { 1.0 } else { -1.0 };
                let angle = p.orbit_phase + dir * std::f32::consts::TAU * t / p.orbit_period_s;
                let r = ORBIT_RADIUS * short;
                (x0 + r / aspect * angle.cos() - cam, 0.45 + r * angle.sin())
            }
        })
    }

    fn slide_delta(&self) -> f32 {
        match self.scene.motion {
            Motion::SlideLeft => -self.scene.physics.slide_span,
            Motion::SlideRight => self.scene.physics.slide_span,
            _ => 0.0,
        }
    }

    /// World x where the primary object starts, chosen so its whole on-screen path (own
    /// motion plus camera drift) stays inside the frame.
    /// The margins are a fifth of the width, or the object's half width where that is more
    /// (large objects in 9:16).
    fn start_x(&self, drift: f32, aspect: f32) -> f32 {
        let place = self.scene.physics.place;
        let half_w = self.scene.object.size.half_extent() * aspect.min(1.0) / aspect.max(1e-3);
        let margin = (half_w + 0.01).max(0.2);
        match self.scene.motion {
            Motion::Orbit => fit(0.45, 0.55, drift, place),
            _ => fit(margin, 1.0 - margin, drift + self.slide_delta(), place),
        }
    }
}

/// Start of a path that travels `delta`, placed at `place` ∈ [0, 1] inside [lo, hi].
fn fit(lo: f32, hi: f32, delta: f32, place: f32) -> f32 {
    let from = lo - delta.min(0.0);
    let to = (hi - delta.max(0.0)).max(from);
    from + (to - from) * place
}
