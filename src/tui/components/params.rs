//! Every job-spec field but the prompt, as an editable list. Values are kept as text, turned into
//! a [`JobSpec`] on each change and checked with the CLI's own validation (`JobSpec::validate`,
//! then `registry::resolve` against the chosen model), so the messages shown inline are exactly
//! the ones `happyhorse generate` would print.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::{ellipsize, key, panel, Action, Component, EventResult, KeyHelp};
use crate::engine::registry::{self, Registry};
use crate::spec::{
    Aspect, DialogueLine, Format, Guidance, JobSpec, OutputSpec, SpecError, VideoCodec,
    ALLOWED_FPS, CAMERA_MOVES,
};
use crate::tui::theme::Theme;

/// One row: the spec field it edits (as `SpecError` names it) and its text.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamField {
    pub field: &'static str,
    pub value: String,
}

/// The fields, in the spec's order. Lists are comma-separated; dialogue is
/// `speaker:lang:text; speaker:lang:text`.
const FIELDS: [&str; 23] = [
    "negative_prompt",
    "model",
    "image",
    "audio",
    "duration_s",
    "fps",
    "aspect",
    "resolution",
    "steps",
    "guidance.video",
    "guidance.audio",
    "seed",
    "audio_seed",
    "audio_weight",
    "sound_style",
    "background_sound",
    "dialogue",
    "camera",
    "variants",
    "output.dir",
    "output.name",
    "output.video_codec",
    "output.formats",
];

#[derive(Debug, Clone)]
pub struct Params {
    pub fields: Vec<ParamField>,
    selected: usize,
    /// The text being typed into the selected field, until ⏎ (keep) or Esc (drop).
    editing: Option<String>,
    registry: Registry,
    /// Messages by row field name, from the last validation.
    errors: BTreeMap<&'static str, Vec<String>>,
    /// Messages for the prompt (shown by the editor).
    pub prompt_errors: Vec<String>,
    scroll: std::cell::Cell<usize>,
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map(|v| v.to_string()).unwrap_or_default()
}

impl Params {
    pub fn new(registry: Registry) -> Params {
        Params {
            fields: FIELDS
                .iter()
                .map(|f| ParamField {
                    field: f,
                    value: String::new(),
                })
                .collect(),
            selected: 0,
            editing: None,
            registry,
            errors: BTreeMap::new(),
            prompt_errors: Vec::new(),
            scroll: std::cell::Cell::new(0),
        }
    }

    fn value(&self, field: &str) -> &str {
        self.fields
            .iter()
            .find(|f| f.field == field)
            .map_or("", |f| f.value.trim())
    }

    pub fn set(&mut self, field: &str, value: impl Into<String>) {
        if let Some(f) = self.fields.iter_mut().find(|f| f.field == field) {
            f.value = value.into();
        }
    }

    pub fn select(&mut self, field: &str) {
        if let Some(i) = self.fields.iter().position(|f| f.field == field) {
            self.selected = i;
        }
    }

    /// Fills every row from a spec (loading history or a preset).
    pub fn load(&mut self, s: &JobSpec) {
        let g = s.guidance.unwrap_or_default();
        let o = s.output.clone().unwrap_or_default();
        let path = |p: &Option<PathBuf>| {
            p.as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        };
        let values: [(&str, String); 23] = [
            ("negative_prompt", opt(&s.negative_prompt)),
            ("model", opt(&s.model)),
            ("image", path(&s.image)),
            ("audio", path(&s.audio)),
            ("duration_s", opt(&s.duration_s)),
            ("fps", opt(&s.fps)),
            ("aspect", opt(&s.aspect)),
            ("resolution", opt(&s.resolution)),
            ("steps", opt(&s.steps)),
            ("guidance.video", opt(&g.video)),
            ("guidance.audio", opt(&g.audio)),
            ("seed", opt(&s.seed)),
            ("audio_seed", opt(&s.audio_seed)),
            ("audio_weight", opt(&s.audio_weight)),
            ("sound_style", s.sound_style.join(", ")),
            ("background_sound", opt(&s.background_sound)),
            (
                "dialogue",
                s.dialogue
                    .iter()
                    .map(|d| format!("{}:{}:{}", d.speaker, d.language, d.text))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            ("camera", opt(&s.camera)),
            ("variants", opt(&s.variants)),
            ("output.dir", path(&o.dir)),
            ("output.name", opt(&o.name)),
            (
                "output.video_codec",
                o.video_codec
                    .map(|c| c.as_str().to_string())
                    .unwrap_or_default(),
            ),
            (
                "output.formats",
                o.formats
                    .map(|f| f.iter().map(|f| f.as_str()).collect::<Vec<_>>().join(","))
                    .unwrap_or_default(),
            ),
        ];
        for (field, value) in values {
            self.set(field, value);
        }
        self.editing = None;
    }

    /// Builds the spec, returning the messages of fields whose text does not even parse.
    pub fn spec(&self, prompt: &str) -> (JobSpec, Vec<SpecError>) {
        let mut errs = Vec::new();
        let v = |f: &str| {
            let s = self.value(f);
            (!s.is_empty()).then(|| s.to_string())
        };
        fn num<T: std::str::FromStr>(
            errs: &mut Vec<SpecError>,
            field: &str,
            v: Option<String>,
            what: &str,
        ) -> Option<T> {
            let s = v?;
            match s.parse() {
                Ok(n) => Some(n),
                Err(_) => {
                    errs.push(SpecError::field(field, format!("\"{s}\" is not {what}")));
                    None
                }
            }
        }
        let aspect = v("aspect").and_then(|a| {
            let parsed = Aspect::parse(&a);
            if parsed.is_none() {
                errs.push(SpecError::field(
                    "aspect",
                    format!("\"{a}\" is not an aspect; allowed: 16:9, 9:16, 1:1"),
                ));
            }
            parsed
        });
        let codec = v("output.video_codec").and_then(|c| match c.as_str() {
            "h264" => Some(VideoCodec::H264),
            "h265" | "hevc" => Some(VideoCodec::H265),
            _ => {
                errs.push(SpecError::field(
                    "output.video_codec",
                    format!("\"{c}\" is not a video codec; allowed: h264, h265"),
                ));
                None
            }
        });
        let formats = v("output.formats").map(|list| {
            list.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .filter_map(|f| match f {
                    "mp4" => Some(Format::Mp4),
                    "wav" => Some(Format::Wav),
                    "png" => Some(Format::Png),
                    _ => {
                        errs.push(SpecError::field(
                            "output.formats",
                            format!("\"{f}\" is not an output format; allowed: mp4, wav, png"),
                        ));
                        None
                    }
                })
                .collect::<Vec<_>>()
        });
        let dialogue = v("dialogue")
            .map(|d| {
                d.split(';')
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .filter_map(|l| {
                        let mut parts = l.splitn(3, ':');
                        match (parts.next(), parts.next(), parts.next()) {
                            (Some(speaker), Some(language), Some(text)) => Some(DialogueLine {
                                speaker: speaker.trim().into(),
                                language: language.trim().into(),
                                text: text.trim().into(),
                            }),
                            _ => {
                                errs.push(SpecError::field(
                                    "dialogue",
                                    format!("\"{l}\" is not speaker:language:text"),
                                ));
                                None
                            }
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        let gv = num(&mut errs, "guidance.video", v("guidance.video"), "a number");
        let ga = num(&mut errs, "guidance.audio", v("guidance.audio"), "a number");
        let output = OutputSpec {
            dir: v("output.dir").map(PathBuf::from),
            name: v("output.name"),
            video_codec: codec,
            formats,
        };
        let spec = JobSpec {
            prompt: prompt.to_string(),
            negative_prompt: v("negative_prompt"),
            model: v("model"),
            image: v("image").map(PathBuf::from),
            audio: v("audio").map(PathBuf::from),
            duration_s: num(
                &mut errs,
                "duration_s",
                v("duration_s"),
                "a number of seconds",
            ),
            fps: num(&mut errs, "fps", v("fps"), "a whole number"),
            aspect,
            resolution: v("resolution"),
            steps: num(&mut errs, "steps", v("steps"), "a whole number"),
            guidance: (gv.is_some() || ga.is_some()).then_some(Guidance {
                video: gv,
                audio: ga,
            }),
            seed: num(&mut errs, "seed", v("seed"), "a whole number"),
            audio_seed: num(&mut errs, "audio_seed", v("audio_seed"), "a whole number"),
            audio_weight: num(&mut errs, "audio_weight", v("audio_weight"), "a number"),
            sound_style: v("sound_style")
                .map(|s| s.split(',').map(|t| t.trim().to_string()).collect())
                .unwrap_or_default(),
            background_sound: v("background_sound"),
            dialogue,
            camera: v("camera"),
            variants: num(&mut errs, "variants", v("variants"), "a whole number"),
            output: (output != OutputSpec::default()).then_some(output),
        };
        (spec, errs)
    }

    /// Re-checks everything; returns the spec when it would be accepted by the CLI.
    pub fn validate(&mut self, prompt: &str) -> Option<JobSpec> {
        let (spec, mut errs) = self.spec(prompt);
        if let Err(e) = spec.validate() {
            errs.extend(e);
        }
        let name = spec.model.as_deref().unwrap_or(registry::DEFAULT_MODEL);
        match self.registry.find(name) {
            Ok(entry) => {
                if let Err(e) = registry::resolve(&spec, &entry.manifest) {
                    // validate() already reported these fields; keep one message per problem.
                    for err in e {
                        if !errs.contains(&err) {
                            errs.push(err);
                        }
                    }
                }
            }
            Err(e) => errs.push(SpecError::field("model", e.to_string())),
        }
        self.errors.clear();
        self.prompt_errors.clear();
        for e in &errs {
            let (field, message) = match e {
                SpecError::Field { field, message } => (field.as_str(), message.clone()),
                SpecError::Json { .. } => ("", e.to_string()),
            };
            if field == "prompt" {
                self.prompt_errors.push(message);
                continue;
            }
            // "dialogue[0].text" → "dialogue"; "guidance" (refused as a whole) → both rows.
            let base = field.split('[').next().unwrap_or(field);
            for row in FIELDS
                .iter()
                .filter(|r| **r == base || r.starts_with(&format!("{base}.")))
            {
                self.errors.entry(row).or_default().push(message.clone());
            }
        }
        errs.is_empty().then_some(spec)
    }

    pub fn error_count(&self) -> usize {
        self.errors.values().map(Vec::len).sum::<usize>() + self.prompt_errors.len()
    }

    /// Values Left/Right cycle through, for fields with a fixed set ("" = the model default).
    fn choices(&self, field: &str) -> Option<Vec<String>> {
        let mut list: Vec<String> = match field {
            "model" => self
                .registry
                .names()
                .iter()
                .map(|s| s.to_string())
                .collect(),
            "fps" => ALLOWED_FPS.iter().map(|f| f.to_string()).collect(),
            "aspect" => Aspect::ALL.iter().map(|a| a.to_string()).collect(),
            "camera" => CAMERA_MOVES.iter().map(|c| c.to_string()).collect(),
            "output.video_codec" => vec!["h264".into(), "h265".into()],
            "resolution" => {
                let name = self.value("model");
                let name = if name.is_empty() {
                    registry::DEFAULT_MODEL
                } else {
                    name
                };
                let entry = self.registry.find(name).ok()?;
                entry
                    .manifest
                    .resolutions
                    .iter()
                    .map(|r| r.name.clone())
                    .collect()
            }
            _ => return None,
        };
        list.insert(0, String::new());
        Some(list)
    }

    /// The model default a blank row stands for, shown dimmed.
    fn default_for(&self, field: &str) -> Option<String> {
        let name = self.value("model");
        let name = if name.is_empty() {
            registry::DEFAULT_MODEL
        } else {
            name
        };
        let m = self.registry.find(name).ok()?.manifest;
        Some(match field {
            "model" => registry::DEFAULT_MODEL.to_string(),
            "duration_s" => m.defaults.duration_s.to_string(),
            "fps" => m.defaults.fps.unwrap_or(m.native_fps).to_string(),
            "aspect" => m.defaults.aspect.clone(),
            "resolution" => m.defaults.resolution.clone(),
            "steps" => m.defaults.steps.to_string(),
            "guidance.video" => m.defaults.guidance_video.to_string(),
            "guidance.audio" => m.defaults.guidance_audio.to_string(),
            "seed" => "random".into(),
            "audio_seed" => "from seed".into(),
            "audio_weight" => "1".into(),
            "variants" => "1".into(),
            "output.dir" => ".".into(),
            "output.name" => "{slug}-{id}".into(),
            "output.video_codec" => "h264".into(),
            "output.formats" => "mp4,wav".into(),
            _ => return None,
        })
    }

    fn cycle(&mut self, step: isize) -> bool {
        let field = self.fields[self.selected].field;
        let Some(list) = self.choices(field) else {
            return false;
        };
        let cur = self.value(field).to_string();
        let i = list.iter().position(|c| *c == cur).unwrap_or(0) as isize;
        let n = list.len() as isize;
        let next = list[((i + step).rem_euclid(n)) as usize].clone();
        self.fields[self.selected].value = next;
        true
    }

    pub fn is_editing(&self) -> bool {
        self.editing.is_some()
    }
}

impl Component for Params {
    fn draw(&self, f: &mut Frame, area: Rect, theme: &Theme, focused: bool) {
        let n_err = self.error_count();
        let title = if n_err == 0 {
            Line::from(" Parameters ✓ ")
        } else {
            Line::from(format!(" Parameters ✗ {n_err} "))
        };
        let block = panel(title, theme, focused);
        let inner = block.inner(area);
        f.render_widget(block, area);
        let label_w = 18usize;
        let value_w = (inner.width as usize).saturating_sub(label_w + 2);
        let mut lines: Vec<Line> = Vec::new();
        let mut selected_line = 0;
        for (i, p) in self.fields.iter().enumerate() {
            let sel = i == self.selected;
            if sel {
                selected_line = lines.len();
            }
            let label = Span::styled(
                format!("{:<label_w$} ", ellipsize(p.field, label_w)),
                if sel && focused {
                    theme.selected()
                } else {
                    theme.title(false)
                },
            );
            let value = match (&self.editing, sel) {
                (Some(text), true) => Span::styled(
                    ellipsize(&format!("{text}▏"), value_w),
                    theme.base().add_modifier(Modifier::UNDERLINED),
                ),
                _ if p.value.is_empty() => Span::styled(
                    ellipsize(
                        &self
                            .default_for(p.field)
                            .map(|d| format!("({d})"))
                            .unwrap_or_else(|| "–".into()),
                        value_w,
                    ),
                    theme.dim(),
                ),
                _ => Span::styled(ellipsize(&p.value, value_w), theme.base()),
            };
            let errs = self.errors.get(p.field);
            let mark = if errs.is_some() {
                Span::styled("✗", theme.error())
            } else {
                Span::raw(" ")
            };
            lines.push(Line::from(vec![mark, label, value]));
            // The message of every bad field is shown right under it, wrapped to the panel.
            for e in errs.into_iter().flatten() {
                for chunk in super::wrap_chars(&format!("  ✗ {e}"), inner.width as usize) {
                    lines.push(Line::styled(chunk, theme.error()));
                }
            }
        }
        // Keep the selected row in view.
        let h = inner.height as usize;
        let mut top = self.scroll.get();
        if selected_line < top {
            top = selected_line;
        } else if selected_line + 2 > top + h {
            top = (selected_line + 2).saturating_sub(h);
        }
        self.scroll.set(top);
        let visible: Vec<Line> = lines.into_iter().skip(top).take(h).collect();
        f.render_widget(Paragraph::new(visible), inner);
    }

    fn handle(&mut self, ev: &KeyEvent) -> EventResult {
        if let Some(text) = &mut self.editing {
            match ev.code {
                KeyCode::Enter => {
                    let value = text.clone();
                    self.fields[self.selected].value = value;
                    self.editing = None;
                    return EventResult::Action(Action::Changed);
                }
                KeyCode::Esc => self.editing = None,
                KeyCode::Backspace => {
                    text.pop();
                }
                KeyCode::Char('u') if ev.modifiers.contains(KeyModifiers::CONTROL) => text.clear(),
                KeyCode::Char(c) if !ev.modifiers.contains(KeyModifiers::CONTROL) => text.push(c),
                _ => return EventResult::Ignored,
            }
            return EventResult::Consumed;
        }
        match ev.code {
            KeyCode::Up | KeyCode::Char('k') => {
                self.selected = self.selected.saturating_sub(1);
            }
            KeyCode::Down | KeyCode::Char('j') => {
                self.selected = (self.selected + 1).min(self.fields.len() - 1);
            }
            KeyCode::Enter | KeyCode::Char('e') => {
                self.editing = Some(self.fields[self.selected].value.clone());
            }
            KeyCode::Left | KeyCode::Char('h') => {
                if self.cycle(-1) {
                    return EventResult::Action(Action::Changed);
                }
            }
            KeyCode::Right | KeyCode::Char('l') => {
                if self.cycle(1) {
                    return EventResult::Action(Action::Changed);
                }
            }
            KeyCode::Delete | KeyCode::Backspace => {
                self.fields[self.selected].value.clear();
                return EventResult::Action(Action::Changed);
            }
            _ => return EventResult::Ignored,
        }
        EventResult::Consumed
    }

    fn commands(&self) -> Vec<KeyHelp> {
        if self.editing.is_some() {
            return vec![key("⏎", "keep"), key("Esc", "drop"), key("^U", "clear")];
        }
        let mut c = vec![key("↑↓", "field"), key("⏎", "edit")];
        if self.choices(self.fields[self.selected].field).is_some() {
            c.push(key("←→", "choose"));
        }
        c.push(key("Del", "default"));
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> Params {
        Params::new(Registry::builtin().unwrap())
    }

    #[test]
    fn example_spec_round_trips_through_the_rows() {
        let mut p = params();
        let mut spec = JobSpec::example();
        // Fields the default model refuses are still representable.
        spec.dialogue = vec![DialogueLine {
            speaker: "A".into(),
            language: "en".into(),
            text: "hi: there".into(),
        }];
        p.load(&spec);
        let (back, errs) = p.spec(&spec.prompt);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(back, spec);
    }

    #[test]
    fn messages_are_the_clis_and_land_on_their_rows() {
        let mut p = params();
        p.set("fps", "30");
        p.set("steps", "many");
        p.set("camera", "orbit");
        assert!(p.validate("").is_none());
        assert!(p.errors["fps"][0].contains("30 is not supported; allowed: 12, 18, 24, 25"));
        assert!(p.errors["steps"][0].contains("\"many\" is not a whole number"));
        assert!(p.errors["camera"][0].contains("cannot use camera moves"));
        assert!(p.prompt_errors[0].contains("must not be empty"));
        p.set("fps", "");
        p.set("steps", "");
        p.set("camera", "");
        assert!(p.validate("a horse").is_some());
        assert_eq!(p.error_count(), 0);
    }

    #[test]
    fn choice_fields_cycle_through_allowed_values_and_default() {
        let mut p = params();
        p.select("aspect");
        let right = KeyEvent::new(KeyCode::Right, KeyModifiers::NONE);
        p.handle(&right);
        assert_eq!(p.value("aspect"), "16:9");
        for _ in 0..3 {
            p.handle(&right);
        }
        assert_eq!(p.value("aspect"), "");
    }
}
