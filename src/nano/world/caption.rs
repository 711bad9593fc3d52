//! Captions from scenes, and the inverse: the attributes a free-text prompt names.
//!
//! The word lists are shared by both directions, so anything `caption` writes, `parse_prompt`
//! reads back; the parser also knows a few extra synonyms a person might type.

use super::rng::{mix64, SplitMix64};
use super::scene::{
    Ambience, Background, Camera, Color, Motion, Object, ObjectRequest, Scene, SceneRequest, Shape,
    Size,
};

fn color_words(c: Color) -> &'static [&'static str] {
    match c {
        Color::Red => &["red", "scarlet"],
        Color::Green => &["green"],
        Color::Blue => &["blue"],
        Color::Yellow => &["yellow"],
        Color::Purple => &["purple", "violet"],
        Color::Orange => &["orange"],
        Color::White => &["white"],
    }
}

fn shape_words(s: Shape) -> &'static [&'static str] {
    match s {
        Shape::Ball => &["ball", "sphere", "orb"],
        Shape::Square => &["square", "cube", "block", "box"],
        Shape::Triangle => &["triangle", "pyramid"],
    }
}

fn size_words(s: Size) -> &'static [&'static str] {
    match s {
        Size::Small => &["small", "tiny", "little"],
        Size::Medium => &["medium-sized", "mid-sized"],
        Size::Large => &["large", "big", "huge"],
    }
}

/// (third person, participle) pairs; the parser recognises them through `motion_of`.
fn motion_phrases(m: Motion) -> &'static [(&'static str, &'static str)] {
    match m {
        Motion::Bounce => &[
            ("bounces", "bouncing"),
            ("hops", "hopping"),
            ("bounces up and down", "bouncing up and down"),
        ],
        Motion::SlideLeft => &[
            ("slides to the left", "sliding to the left"),
            ("glides left", "gliding left"),
            ("moves to the left", "moving to the left"),
            ("slides left", "sliding left"),
        ],
        Motion::SlideRight => &[
            ("slides to the right", "sliding to the right"),
            ("glides right", "gliding right"),
            ("moves to the right", "moving to the right"),
            ("slides right", "sliding right"),
        ],
        Motion::Fall => &[
            ("falls", "falling"),
            ("drops to the ground", "dropping to the ground"),
            ("falls down", "falling down"),
        ],
        Motion::Orbit => &[
            ("orbits", "orbiting"),
            ("circles around", "circling around"),
            ("moves in a circle", "moving in a circle"),
        ],
        Motion::Still => &[
            ("sits still", "sitting still"),
            ("rests", "resting"),
            ("stays still", "staying still"),
            ("stands motionless", "standing motionless"),
        ],
    }
}

fn background_phrases(b: Background) -> &'static [&'static str] {
    match b {
        Background::NightSky => &[
            "in the night sky",
            "under a starry night sky",
            "against the night sky",
            "at night under the stars",
        ],
        Background::Grass => &[
            "on a green grass field",
            "on the grass",
            "in a grassy meadow",
            "on a green lawn",
        ],
        Background::Desert => &[
            "on the desert sand",
            "in the desert",
            "on sand dunes",
            "in a sandy desert",
        ],
        Background::Studio => &[
            "in a studio",
            "in a grey studio",
            "on a studio floor",
            "in an empty studio",
        ],
    }
}

fn ambience_phrases(a: Ambience) -> &'static [&'static str] {
    match a {
        Ambience::None => &[],
        Ambience::Rain => &[
            "while rain falls",
            "in the rain",
            "as it rains",
            "with rain pattering",
        ],
        Ambience::Wind => &[
            "while wind blows",
            "in the wind",
            "as the wind howls",
            "with wind blowing",
        ],
        Ambience::Hum => &[
            "with a low hum",
            "over a steady hum",
            "while a machine hums",
        ],
        Ambience::Music => &["with soft music", "to gentle music", "while music plays"],
    }
}

fn camera_phrases(c: Camera) -> &'static [&'static str] {
    match c {
        Camera::Static => &[],
        Camera::PanLeft => &[
            "the camera pans left",
            "as the camera pans to the left",
            "camera panning left",
        ],
        Camera::PanRight => &[
            "the camera pans right",
            "as the camera pans to the right",
            "camera panning right",
        ],
    }
}

fn with_article(words: &str) -> String {
    let vowel = words.starts_with(['a', 'e', 'i', 'o', 'u']);
    format!("{} {words}", if vowel { "an" } else { "a" })
}

fn object_phrase(o: &Object, rng: &mut SplitMix64, size_p: f32) -> String {
    let mut words = Vec::new();
    if rng.chance(size_p) {
        words.push(rng.pick(size_words(o.size)));
    }
    words.push(rng.pick(color_words(o.color)));
    words.push(rng.pick(shape_words(o.shape)));
    with_article(&words.join(" "))
}

/// A caption of the scene; `variant` picks among wordings and word orders. Colour, shape,
/// motion and background are always named; ambience (unless silent), camera pans, the
/// companion object and silence are named when present; size sometimes.
pub fn caption(scene: &Scene, variant: u64) -> String {
    let mut rng = SplitMix64::new(mix64(scene.seed) ^ mix64(variant.wrapping_add(1)));
    let mut subject = object_phrase(&scene.object, &mut rng, 0.5);
    if let Some(second) = &scene.second {
        let link = rng.pick(&["next to", "beside", "near"]);
        subject = format!("{subject} {link} {}", object_phrase(second, &mut rng, 1.0));
    }
    let (present, participle) = rng.pick(motion_phrases(scene.motion));
    let place = rng.pick(background_phrases(scene.background));
    let mut text = match rng.below(4) {
        0 => format!("{subject} {participle} {place}"),
        1 => format!("{place}, {subject} {present}"),
        2 => format!("{subject} {present} {place}"),
        _ => format!("{subject} {place}, {participle}"),
    };
    if !scene.silent && scene.ambience != Ambience::None {
        let sep = rng.pick(&[" ", ", "]);
        text = format!("{text}{sep}{}", rng.pick(ambience_phrases(scene.ambience)));
    }
    if scene.camera != Camera::Static {
        text = format!("{text}, {}", rng.pick(camera_phrases(scene.camera)));
    }
    if scene.silent {
        text = match rng.below(4) {
            0 => format!("silent: {text}"),
            1 => format!("{text}, in silence"),
            2 => format!("{text}, no sound"),
            _ => format!("{text} (silent)"),
        };
    }
    text
}

fn find<T: Copy>(
    all: &[T],
    words: impl Fn(T) -> &'static [&'static str],
    token: &str,
) -> Option<T> {
    all.iter().copied().find(|&v| words(v).contains(&token))
}

fn color_of(token: &str) -> Option<Color> {
    find(Color::ALL, color_words, token).or(match token {
        "crimson" => Some(Color::Red),
        "golden" => Some(Color::Yellow),
        "magenta" | "lilac" => Some(Color::Purple),
        _ => None,
    })
}

fn shape_of(token: &str) -> Option<Shape> {
    let singular = token
        .strip_suffix("es")
        .filter(|s| s.ends_with('x'))
        .or_else(|| token.strip_suffix('s'));
    let lookup = |t: &str| {
        find(Shape::ALL, shape_words, t).or(match t {
            // Not "circle": "circles around" is a motion.
            "disc" | "disk" => Some(Shape::Ball),
            "cuboid" | "tile" => Some(Shape::Square),
            _ => None,
        })
    };
    lookup(token).or_else(|| singular.and_then(lookup))
}

fn size_of(token: &str) -> Option<Size> {
    find(Size::ALL, size_words, token).or(match token {
        "medium" => Some(Size::Medium),
        "giant" | "massive" => Some(Size::Large),
        "mini" => Some(Size::Small),
        _ => None,
    })
}

fn background_of(token: &str) -> Option<Background> {
    Some(match token {
        "night" | "starry" | "stars" | "sky" | "space" => Background::NightSky,
        "grass" | "grassy" | "meadow" | "lawn" | "field" => Background::Grass,
        "desert" | "sand" | "sandy" | "dune" | "dunes" => Background::Desert,
        "studio" | "stage" | "backdrop" => Background::Studio,
        _ => return None,
    })
}

fn ambience_of(token: &str) -> Option<Ambience> {
    Some(match token {
        "rain" | "rains" | "raining" | "rainy" | "drizzle" | "pattering" => Ambience::Rain,
        "wind" | "windy" | "breeze" | "howls" | "gust" | "gusts" => Ambience::Wind,
        "hum" | "hums" | "humming" | "drone" | "buzz" | "buzzing" => Ambience::Hum,
        "music" | "song" | "melody" | "tune" | "piano" => Ambience::Music,
        _ => return None,
    })
}

fn direction_of(token: &str) -> Option<bool> {
    match token {
        "left" | "leftward" | "leftwards" => Some(false),
        "right" | "rightward" | "rightwards" => Some(true),
        _ => None,
    }
}

/// Motions that need no direction, by verb form.
fn motion_of(token: &str) -> Option<Motion> {
    Some(match token {
        "bounce" | "bounces" | "bouncing" | "bounced" | "bouncy" | "hop" | "hops" | "hopping"
        | "jump" | "jumps" | "jumping" => Motion::Bounce,
        "fall" | "falls" | "falling" | "fell" | "drop" | "drops" | "dropping" | "dropped"
        | "plummets" | "tumbles" => Motion::Fall,
        "orbit" | "orbits" | "orbiting" | "circles" | "circling" | "revolves" | "revolving"
        | "circle" => Motion::Orbit,
        "still" | "motionless" | "rests" | "resting" | "stationary" | "sits" | "sitting"
        | "unmoving" => Motion::Still,
        _ => return None,
    })
}

fn is_slide_verb(token: &str) -> bool {
    matches!(
        token,
        "slide"
            | "slides"
            | "sliding"
            | "slid"
            | "glide"
            | "glides"
            | "gliding"
            | "move"
            | "moves"
            | "moving"
            | "roll"
            | "rolls"
            | "rolling"
            | "drift"
            | "drifts"
            | "drifting"
            | "travels"
            | "travelling"
            | "traveling"
    )
}

fn is_pan_verb(token: &str) -> bool {
    matches!(
        token,
        "pan" | "pans" | "panning" | "panned" | "tracks" | "tracking"
    )
}

/// Words that end the adjective run before a shape noun.
fn ends_adjectives(token: &str) -> bool {
    matches!(
        token,
        "a" | "an"
            | "the"
            | "one"
            | "another"
            | "and"
            | "with"
            | "of"
            | "to"
            | "next"
            | "beside"
            | "near"
    ) || shape_of(token).is_some()
        || background_of(token).is_some()
}

/// Reads whatever scene attributes the prompt names. Colour and size words bind to the shape
/// noun they precede ("a red ball on a green lawn": red ball, not a green one); the first
/// object named is the primary one and the motion is its motion. Never fails: unknown words
/// are ignored and unnamed attributes stay `None`.
pub fn parse_prompt(prompt: &str) -> SceneRequest {
    let lower = prompt.to_lowercase();
    let tokens: Vec<&str> = lower
        .split(|c: char| !(c.is_alphanumeric() || c == '-'))
        .filter(|t| !t.is_empty())
        .collect();
    let mut req = SceneRequest::default();
    // Direction words already claimed by the camera.
    let mut claimed = vec![false; tokens.len()];
    let pair = |i: usize, a: &str, b: &str| tokens[i] == a && tokens.get(i + 1) == Some(&b);

    let mut silent = false;
    let mut objects: Vec<ObjectRequest> = Vec::new();
    for (i, &tok) in tokens.iter().enumerate() {
        if matches!(
            tok,
            "silent" | "silence" | "silently" | "mute" | "muted" | "soundless"
        ) || pair(i, "no", "sound")
            || pair(i, "without", "sound")
            || pair(i, "no", "audio")
        {
            silent = true;
        }
        if req.background.is_none() {
            req.background = background_of(tok);
        }
        if req.ambience.is_none() {
            req.ambience = ambience_of(tok);
        }
        if is_pan_verb(tok) {
            let window = i + 1..(i + 5).min(tokens.len());
            if let Some(j) = window.clone().find(|&j| direction_of(tokens[j]).is_some()) {
                claimed[j] = true;
                let right = direction_of(tokens[j]) == Some(true);
                req.camera.get_or_insert(if right {
                    Camera::PanRight
                } else {
                    Camera::PanLeft
                });
            }
        }
        if tok == "static" && tokens.contains(&"camera") {
            req.camera.get_or_insert(Camera::Static);
        }
        if let Some(shape) = shape_of(tok) {
            let mut object = ObjectRequest {
                shape: Some(shape),
                ..ObjectRequest::default()
            };
            for &prev in tokens[..i].iter().rev().take(3) {
                if ends_adjectives(prev) {
                    break;
                }
                object.color = object.color.or(color_of(prev));
                object.size = object.size.or(size_of(prev));
            }
            // "the ball is red"
            if object.color.is_none()
                && matches!(tokens.get(i + 1), Some(&("is" | "looks" | "appears")))
            {
                object.color = tokens.get(i + 2).and_then(|t| color_of(t));
            }
            objects.push(object);
        }
    }

    for (i, &tok) in tokens.iter().enumerate() {
        if req.motion.is_some() {
            break;
        }
        // "rain falls", "raindrops drop": weather, not the object.
        if i > 0 && matches!(tokens[i - 1], "rain" | "snow") {
            continue;
        }
        if is_slide_verb(tok) {
            let window = i + 1..(i + 6).min(tokens.len());
            let mut dirs = window
                .filter(|&j| !claimed[j])
                .filter_map(|j| direction_of(tokens[j]));
            // "from left to right" names the destination last.
            let from = tokens[i + 1..(i + 3).min(tokens.len())].contains(&"from");
            let dir = if from { dirs.last() } else { dirs.next() };
            if let Some(right) = dir {
                req.motion = Some(if right {
                    Motion::SlideRight
                } else {
                    Motion::SlideLeft
                });
                continue;
            }
        }
        req.motion = motion_of(tok);
    }

    if objects.is_empty() {
        // "something red bounces": a colour not describing the ground still names the object.
        let lone = tokens.iter().enumerate().find_map(|(i, t)| {
            let next_is_ground = tokens
                .get(i + 1)
                .is_some_and(|n| background_of(n).is_some());
            color_of(t).filter(|_| !next_is_ground)
        });
        if let Some(color) = lone {
            objects.push(ObjectRequest {
                color: Some(color),
                ..ObjectRequest::default()
            });
        }
    }
    let mut objects = objects.into_iter();
    req.object = objects.next().unwrap_or_default();
    req.second = objects.next();
    if silent {
        req.silent = Some(true);
    }
    req
}
