//! The scene vocabulary, the seeded sampler and the held-out split.

use serde::{Deserialize, Serialize};

use super::rng::{mix64, SplitMix64};

/// Declares a closed vocabulary: the enum, `ALL` in a fixed order (the order seeds index into,
/// so never reorder it) and the canonical word used in captions and reports.
macro_rules! vocabulary {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $word:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn name(self) -> &'static str {
                match self { $($name::$variant => $word),+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

vocabulary!(
    /// Where the scene happens; each has its own colours and texture (see `render`).
    Background { NightSky => "night sky", Grass => "grass field", Desert => "desert sand", Studio => "studio" }
);
vocabulary!(Shape { Ball => "ball", Square => "square", Triangle => "triangle" });

impl Shape {
    /// The shape a diagnostic or a shape-correcting clip swaps this one for: a ball's is a
    /// square, a square's or a triangle's a ball (the blob the DiT draws for either).
    pub fn twin(self) -> Shape {
        match self {
            Shape::Ball => Shape::Square,
            Shape::Square | Shape::Triangle => Shape::Ball,
        }
    }
}
vocabulary!(
    /// Object colours, chosen far apart in RGB and away from every background palette.
    Color {
        Red => "red", Green => "green", Blue => "blue", Yellow => "yellow",
        Purple => "purple", Orange => "orange", White => "white",
    }
);
vocabulary!(Size { Small => "small", Medium => "medium", Large => "large" });
vocabulary!(
    Motion {
        Bounce => "bounce", SlideLeft => "slide left", SlideRight => "slide right",
        Fall => "fall", Orbit => "orbit", Still => "still",
    }
);
vocabulary!(Camera { Static => "static", PanLeft => "pan left", PanRight => "pan right" });
vocabulary!(Ambience { None => "none", Rain => "rain", Wind => "wind", Hum => "hum", Music => "music" });

impl Color {
    pub fn rgb(self) -> [u8; 3] {
        match self {
            Color::Red => [220, 40, 40],
            Color::Green => [40, 200, 60],
            Color::Blue => [40, 90, 230],
            Color::Yellow => [240, 220, 40],
            Color::Purple => [150, 60, 200],
            Color::Orange => [250, 140, 20],
            Color::White => [245, 245, 245],
        }
    }
}

impl Size {
    /// Half the object's extent, as a fraction of the frame's shorter side, so a ball stays
    /// round and equally large in 16:9, 9:16 and 1:1.
    pub fn half_extent(self) -> f32 {
        match self {
            Size::Small => 0.11,
            Size::Medium => 0.17,
            Size::Large => 0.23,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Object {
    pub color: Color,
    pub shape: Shape,
    pub size: Size,
}

/// Continuous parameters drawn from the seed; `motion.rs` turns them into trajectories.
/// All are unitless fractions or seconds, independent of the frame size.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Physics {
    /// Where along its allowed horizontal range the primary object sits, in [0, 1].
    pub place: f32,
    /// Same for the second object.
    pub second_place: f32,
    /// Drop height of the object's bottom edge above the ground, as a fraction of frame height.
    pub drop_height: f32,
    /// Seconds from release to the first ground contact (sets gravity).
    pub first_impact_s: f32,
    pub restitution: f32,
    /// Fraction of the frame width a slide covers over the whole clip.
    pub slide_span: f32,
    pub orbit_period_s: f32,
    /// Start angle of an orbit, radians.
    pub orbit_phase: f32,
    pub orbit_clockwise: bool,
}

/// One clip's content. `Scene::sample*` builds it from a seed; fields are public so callers
/// can also write scenes by hand.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Scene {
    pub seed: u64,
    pub background: Background,
    pub object: Object,
    pub motion: Motion,
    /// A smaller, still companion object of another colour.
    pub second: Option<Object>,
    pub camera: Camera,
    pub ambience: Ambience,
    pub silent: bool,
    pub physics: Physics,
}

/// Attributes a prompt names; `None` leaves the attribute free. Used both to constrain the
/// sampler and to check a scene (or an analysed clip) against a prompt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRequest {
    pub color: Option<Color>,
    pub shape: Option<Shape>,
    pub size: Option<Size>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SceneRequest {
    pub object: ObjectRequest,
    pub second: Option<ObjectRequest>,
    pub background: Option<Background>,
    pub motion: Option<Motion>,
    pub camera: Option<Camera>,
    pub ambience: Option<Ambience>,
    pub silent: Option<bool>,
}

impl ObjectRequest {
    pub fn matches(&self, object: &Object) -> bool {
        self.color.is_none_or(|c| c == object.color)
            && self.shape.is_none_or(|s| s == object.shape)
            && self.size.is_none_or(|s| s == object.size)
    }
}

impl SceneRequest {
    /// True when every attribute the request names agrees with the scene.
    pub fn matches(&self, scene: &Scene) -> bool {
        let second_ok = match (&self.second, &scene.second) {
            (None, _) => true,
            (Some(r), Some(o)) => r.matches(o),
            (Some(_), None) => false,
        };
        self.object.matches(&scene.object)
            && second_ok
            && self.background.is_none_or(|b| b == scene.background)
            && self.motion.is_none_or(|m| m == scene.motion)
            && self.camera.is_none_or(|c| c == scene.camera)
            && self.ambience.is_none_or(|a| a == scene.ambience)
            && self.silent.is_none_or(|s| s == scene.silent)
    }
}

/// Colour × shape × background triples the training sampler never produces: 8 of the 84
/// (9.5%), chosen by hand so every colour, shape and background appears in at least one, which
/// makes eval measure composition rather than an unseen word. Never edit: trained checkpoints
/// depend on it.
pub const HELD_OUT: [(Color, Shape, Background); 8] = [
    (Color::Red, Shape::Triangle, Background::Desert),
    (Color::Green, Shape::Square, Background::NightSky),
    (Color::Blue, Shape::Ball, Background::Studio),
    (Color::Yellow, Shape::Triangle, Background::Grass),
    (Color::Purple, Shape::Ball, Background::Desert),
    (Color::Orange, Shape::Square, Background::Grass),
    (Color::White, Shape::Triangle, Background::Studio),
    (Color::Orange, Shape::Ball, Background::NightSky),
];

/// True when any object of the scene forms a held-out triple with its background.
pub fn is_held_out(scene: &Scene) -> bool {
    let held = |o: &Object| HELD_OUT.contains(&(o.color, o.shape, scene.background));
    held(&scene.object) || scene.second.as_ref().is_some_and(held)
}

/// A training scene: a draw from `Scene::sample` redrawn (with derived seeds) until it is not
/// held out. Deterministic in `seed`.
pub fn sample_train(seed: u64) -> Scene {
    let mut s = seed;
    loop {
        let scene = Scene::sample(s, &SceneRequest::default());
        if !is_held_out(&scene) {
            return scene;
        }
        s = mix64(s ^ 0xA5A5_5A5A_DEAD_BEEF);
    }
}

/// An eval scene whose primary object forms a held-out triple.
pub fn sample_heldout(seed: u64) -> Scene {
    let (color, shape, background) = HELD_OUT[(mix64(seed) % HELD_OUT.len() as u64) as usize];
    let request = SceneRequest {
        object: ObjectRequest {
            color: Some(color),
            shape: Some(shape),
            size: None,
        },
        background: Some(background),
        ..SceneRequest::default()
    };
    Scene::sample(seed, &request)
}

impl Scene {
    /// Draws every attribute the request leaves free. Deterministic in `seed` and `request`.
    pub fn sample(seed: u64, request: &SceneRequest) -> Scene {
        let mut rng = SplitMix64::new(seed);
        // Draw every value unconditionally, in a fixed order, so that constraining one
        // attribute leaves the others of the same seed unchanged.
        let background = rng.pick(Background::ALL);
        let object = Object {
            color: rng.pick(Color::ALL),
            shape: rng.pick(Shape::ALL),
            size: rng.pick(Size::ALL),
        };
        let motion = rng.pick(Motion::ALL);
        let camera = if rng.chance(0.3) {
            rng.pick(&Camera::ALL[1..])
        } else {
            Camera::Static
        };
        let ambience = if rng.chance(0.3) {
            Ambience::None
        } else {
            rng.pick(&Ambience::ALL[1..])
        };
        let silent = rng.chance(0.1);
        let wants_second = rng.chance(0.25);
        let second_color = rng.pick(Color::ALL);
        let second_shape = rng.pick(Shape::ALL);
        let physics = Physics {
            place: rng.f32(),
            second_place: rng.f32(),
            drop_height: rng.f32(),
            first_impact_s: rng.range(FIRST_IMPACT_S.0, FIRST_IMPACT_S.1),
            restitution: rng.range(RESTITUTION.0, RESTITUTION.1),
            slide_span: rng.range(SLIDE_SPAN.0, SLIDE_SPAN.1),
            orbit_period_s: rng.range(ORBIT_PERIOD_S.0, ORBIT_PERIOD_S.1),
            orbit_phase: rng.range(ORBIT_PHASE.0, ORBIT_PHASE.1),
            orbit_clockwise: rng.chance(0.5),
        };

        let object = Object {
            color: request.object.color.unwrap_or(object.color),
            shape: request.object.shape.unwrap_or(object.shape),
            size: request.object.size.unwrap_or(object.size),
        };
        // The companion is always small and of another colour, so the primary object stays the
        // dominant one an analyzer locks on to; a small primary therefore goes alone.
        let second = match request.second {
            Some(r) => Some(Object {
                color: r
                    .color
                    .unwrap_or_else(|| other_color(object.color, second_color)),
                shape: r.shape.unwrap_or(second_shape),
                size: r.size.unwrap_or(Size::Small),
            }),
            None if wants_second && object.size != Size::Small => Some(Object {
                color: other_color(object.color, second_color),
                shape: second_shape,
                size: Size::Small,
            }),
            None => None,
        };
        let motion = request.motion.unwrap_or(motion);
        let mut physics = physics;
        // Drop height: within `drop_range` (written out as the first runs computed it, so
        // the world's clips stay the same to the bit).
        let top = drop_top(object.size);
        physics.drop_height = match motion {
            Motion::Fall => top * (0.75 + 0.25 * physics.drop_height),
            _ => 0.3 + (top - 0.3) * physics.drop_height,
        };
        Scene {
            seed,
            background: request.background.unwrap_or(background),
            object,
            motion,
            second,
            camera: request.camera.unwrap_or(camera),
            ambience: request.ambience.unwrap_or(ambience),
            silent: request.silent.unwrap_or(silent),
            physics,
        }
    }
}

/// Ranges of the continuous draws of [`Physics`].
const FIRST_IMPACT_S: (f32, f32) = (0.4, 0.65);
const RESTITUTION: (f32, f32) = (0.78, 0.9);
const SLIDE_SPAN: (f32, f32) = (0.35, 0.45);
const ORBIT_PERIOD_S: (f32, f32) = (1.8, 3.0);
const ORBIT_PHASE: (f32, f32) = (0.0, std::f32::consts::TAU);

/// The highest drop: as high as the frame allows for this size (checked in the widest
/// aspect, where the object is tallest relative to the frame), so several bounces are large
/// enough to see.
fn drop_top(size: Size) -> f32 {
    super::motion::GROUND_Y - 2.0 * size.half_extent() - 0.04
}

/// Range of the drop height; a fall starts in the top quarter of it.
pub(crate) fn drop_range(motion: Motion, size: Size) -> (f32, f32) {
    let top = drop_top(size);
    match motion {
        Motion::Fall => (0.75 * top, top),
        _ => (0.3, top),
    }
}

impl Scene {
    /// Squeezes the timing of the motion toward the middle of what the world draws: drop
    /// height, first contact, restitution, slide span, orbit period and start angle, from 1
    /// (the world's own, bit for bit) to 0 (the middle of each range, so a caption's motion,
    /// size and camera fix the whole trajectory and every contact time). Below 1 every orbit
    /// turns clockwise: the caption does not say which way, and the mean of both is a ring.
    /// Where objects start is [`squeeze_placement`](Self::squeeze_placement)'s.
    pub fn squeeze_physics(&mut self, spread: f32) {
        if spread == 1.0 {
            return;
        }
        let toward = |v, range| squeeze(v, range, spread);
        let p = &mut self.physics;
        p.drop_height = toward(p.drop_height, drop_range(self.motion, self.object.size));
        p.first_impact_s = toward(p.first_impact_s, FIRST_IMPACT_S);
        p.restitution = toward(p.restitution, RESTITUTION);
        p.slide_span = toward(p.slide_span, SLIDE_SPAN);
        p.orbit_period_s = toward(p.orbit_period_s, ORBIT_PERIOD_S);
        p.orbit_phase = toward(p.orbit_phase, ORBIT_PHASE);
        p.orbit_clockwise = true;
    }

    /// Squeezes where the objects start toward the middle of the range their paths allow,
    /// from 1 (the world's own, bit for bit) to 0 (one place per motion, size and camera).
    pub fn squeeze_placement(&mut self, spread: f32) {
        if spread == 1.0 {
            return;
        }
        self.physics.place = squeeze(self.physics.place, (0.0, 1.0), spread);
        self.physics.second_place = squeeze(self.physics.second_place, (0.0, 1.0), spread);
    }
}

/// `v` moved toward the middle of `(lo, hi)`: kept at `spread` 1, the middle at 0.
fn squeeze(v: f32, (lo, hi): (f32, f32), spread: f32) -> f32 {
    let mid = 0.5 * (lo + hi);
    mid + (v - mid) * spread
}

/// `candidate` unless it equals `taken`, else the next colour: keeps the draw uniform-ish
/// without a rejection loop.
fn other_color(taken: Color, candidate: Color) -> Color {
    if candidate != taken {
        return candidate;
    }
    let i = Color::ALL.iter().position(|&c| c == candidate).unwrap_or(0);
    Color::ALL[(i + 1) % Color::ALL.len()]
}
