//! The preview panel: a finished clip's frames drawn with ratatui-image (kitty, sixel, iTerm2 or
//! halfblocks, whatever the terminal answered at start), scrubbed frame by frame or played at the
//! clip's fps with its sound. Decoding happens on a thread so opening a clip never blocks input.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::time::{Duration, Instant};

use crossterm::event::{KeyCode, KeyEvent};
use image::{DynamicImage, RgbImage};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;
use ratatui_image::picker::{Picker, ProtocolType};
use ratatui_image::protocol::Protocol;
use ratatui_image::{Image, Resize};

use super::audio::{loudness, AudioOut};
use super::components::{key, panel, Action, Component, EventResult, KeyHelp};
use super::theme::Theme;
use crate::media::{self, Audio, Frames};

pub struct LoadedClip {
    pub path: PathBuf,
    pub frames: Frames,
    pub audio: Option<Audio>,
}

/// Reads a clip: frames from the MP4; sound from the WAV written beside it when there is one
/// (exact samples), else from the MP4's AAC stream.
pub fn load_clip(path: &Path) -> Result<LoadedClip, String> {
    let frames = media::decode_frames(path).map_err(|e| e.to_string())?;
    let wav = path.with_extension("wav");
    let audio = if wav.is_file() {
        media::read_wav(&wav).ok()
    } else {
        media::decode_audio(path).ok().flatten()
    };
    Ok(LoadedClip {
        path: path.to_path_buf(),
        frames,
        audio,
    })
}

struct Playing {
    /// Where playback (re)started, in seconds of the clip, and when.
    from_s: f64,
    since: Instant,
}

pub struct Preview {
    picker: Picker,
    loading: Option<(PathBuf, Receiver<Result<LoadedClip, String>>)>,
    clip: Option<LoadedClip>,
    pos: usize,
    playing: Option<Playing>,
    /// Encoded image of frame `.0` for area `.1`; rebuilt only when either changes.
    encoded: Option<(usize, Rect, Protocol)>,
    error: Option<String>,
    audio: AudioOut,
}

pub fn protocol_name(p: ProtocolType) -> &'static str {
    match p {
        ProtocolType::Halfblocks => "halfblocks",
        ProtocolType::Sixel => "sixel",
        ProtocolType::Kitty => "kitty",
        ProtocolType::Iterm2 => "iterm2",
    }
}

/// `--protocol` / config values; "auto" is handled by the caller (query the terminal).
pub fn parse_protocol(s: &str) -> Option<ProtocolType> {
    match s {
        "halfblocks" => Some(ProtocolType::Halfblocks),
        "sixel" => Some(ProtocolType::Sixel),
        "kitty" => Some(ProtocolType::Kitty),
        "iterm2" => Some(ProtocolType::Iterm2),
        _ => None,
    }
}

impl Preview {
    pub fn new(picker: Picker, audio: AudioOut) -> Preview {
        Preview {
            picker,
            loading: None,
            clip: None,
            pos: 0,
            playing: None,
            encoded: None,
            error: None,
            audio,
        }
    }

    pub fn protocol(&self) -> ProtocolType {
        self.picker.protocol_type()
    }

    pub fn audio_note(&self) -> Option<&str> {
        self.audio.unavailable.as_deref()
    }

    /// Starts decoding `path` on a thread; the clip shows up on a later [`Preview::poll`].
    pub fn open(&mut self, path: PathBuf) {
        let (tx, rx) = mpsc::channel();
        let p = path.clone();
        std::thread::spawn(move || {
            let _ = tx.send(load_clip(&p));
        });
        self.stop();
        self.loading = Some((path, rx));
        self.error = None;
    }

    /// Installs a decoded clip directly (tests, and `poll`).
    pub fn set_clip(&mut self, clip: LoadedClip) {
        self.stop();
        self.clip = Some(clip);
        self.pos = 0;
        self.encoded = None;
    }

    pub fn clip(&self) -> Option<&LoadedClip> {
        self.clip.as_ref()
    }

    pub fn is_playing(&self) -> bool {
        self.playing.is_some()
    }

    /// Picks up a finished decode and advances playback. Returns whether anything visible changed.
    pub fn poll(&mut self, now: Instant) -> bool {
        let mut changed = false;
        if let Some((path, rx)) = &self.loading {
            match rx.try_recv() {
                Ok(Ok(clip)) => {
                    self.loading = None;
                    self.set_clip(clip);
                    changed = true;
                }
                Ok(Err(e)) => {
                    self.error = Some(e);
                    self.loading = None;
                    changed = true;
                }
                Err(TryRecvError::Disconnected) => {
                    self.error = Some(format!("{}: decoder stopped", path.display()));
                    self.loading = None;
                    changed = true;
                }
                Err(TryRecvError::Empty) => {}
            }
        }
        let Some(clip) = &self.clip else {
            return changed;
        };
        let Some(p) = &self.playing else {
            return changed;
        };
        // The sound card's clock when sound plays, so frames follow the audio; else wall time.
        let t = p.from_s
            + self
                .audio
                .position()
                .unwrap_or_else(|| now.duration_since(p.since))
                .as_secs_f64();
        let count = clip.frames.count();
        let frame = (t * clip.frames.fps as f64) as usize;
        if frame >= count {
            self.pos = count.saturating_sub(1);
            self.stop();
            return true;
        }
        if frame != self.pos {
            self.pos = frame;
            changed = true;
        }
        changed
    }

    fn time_s(&self) -> f64 {
        self.clip
            .as_ref()
            .map_or(0.0, |c| self.pos as f64 / c.frames.fps.max(1) as f64)
    }

    fn play(&mut self) {
        let Some(clip) = &self.clip else { return };
        if self.pos + 1 >= clip.frames.count() {
            self.pos = 0;
        }
        let from_s = self.time_s();
        if let Some(a) = &self.clip.as_ref().and_then(|c| c.audio.clone()) {
            self.audio.play(a, from_s);
        }
        self.playing = Some(Playing {
            from_s,
            since: Instant::now(),
        });
    }

    fn stop(&mut self) {
        self.playing = None;
        self.audio.stop();
    }

    fn seek(&mut self, frame: isize) {
        let Some(clip) = &self.clip else { return };
        let last = clip.frames.count().saturating_sub(1) as isize;
        let was_playing = self.is_playing();
        self.stop();
        self.pos = frame.clamp(0, last.max(0)) as usize;
        if was_playing {
            self.play();
        }
    }

    /// Time until the next frame is due while playing (the app's poll timeout).
    pub fn frame_interval(&self) -> Option<Duration> {
        let fps = self.clip.as_ref()?.frames.fps.max(1);
        self.playing
            .as_ref()
            .map(|_| Duration::from_secs_f64(1.0 / fps as f64))
    }

    fn layout(area: Rect) -> [Rect; 3] {
        Layout::vertical([
            Constraint::Fill(1),
            Constraint::Length(1),
            Constraint::Length(1),
        ])
        .areas(area)
    }

    /// Encodes the current frame for the panel's image area; call before drawing (drawing only
    /// borrows). Encoding is per frame and per size, never per redraw.
    pub fn prepare(&mut self, panel_area: Rect) {
        let inner = ratatui::widgets::Block::bordered().inner(panel_area);
        let [image_area, _, _] = Preview::layout(inner);
        let Some(clip) = &self.clip else {
            self.encoded = None;
            return;
        };
        if let Some((f, a, _)) = &self.encoded {
            if *f == self.pos && *a == image_area {
                return;
            }
        }
        if clip.frames.count() == 0 || image_area.area() == 0 {
            return;
        }
        let frame = clip.frames.frame(self.pos.min(clip.frames.count() - 1));
        let Some(rgb) = RgbImage::from_raw(clip.frames.width, clip.frames.height, frame.to_vec())
        else {
            self.error = Some("frame size does not match the clip".into());
            return;
        };
        match self
            .picker
            .new_protocol(DynamicImage::ImageRgb8(rgb), image_area, Resize::Fit(None))
        {
            Ok(p) => self.encoded = Some((self.pos, image_area, p)),
            Err(e) => self.error = Some(format!("cannot draw the frame: {e}")),
        }
    }

    fn strip(&self, width: usize, theme: &Theme) -> Line<'static> {
        let Some(clip) = &self.clip else {
            return Line::raw("");
        };
        let count = clip.frames.count().max(1);
        let playhead = (self.pos * width / count).min(width.saturating_sub(1));
        const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
        let levels = match &clip.audio {
            Some(a) => loudness(a, width),
            None => vec![0.0; width],
        };
        // Peak-normalised so quiet clips still show their shape.
        let peak = levels.iter().copied().fold(0.0f32, f32::max).max(1e-6);
        let spans = levels
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let c = if clip.audio.is_some() {
                    BARS[((l / peak) * 7.0).round().clamp(0.0, 7.0) as usize]
                } else {
                    '─'
                };
                let style = if i == playhead {
                    theme.key()
                } else {
                    theme.dim()
                };
                Span::styled(c.to_string(), style)
            })
            .collect::<Vec<_>>();
        Line::from(spans)
    }
}

impl Component for Preview {
    fn draw(&self, f: &mut Frame, area: Rect, theme: &Theme, focused: bool) {
        let title = match &self.clip {
            Some(c) => format!(
                " Preview {} ",
                c.path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            ),
            None => " Preview ".into(),
        };
        let block = panel(title, theme, focused);
        let inner = block.inner(area);
        f.render_widget(block, area);
        let [image_area, strip_area, status_area] = Preview::layout(inner);
        if let Some(e) = &self.error {
            f.render_widget(
                Paragraph::new(Line::styled(format!("✗ {e}"), theme.error()))
                    .wrap(ratatui::widgets::Wrap { trim: false }),
                image_area,
            );
        } else if let Some((path, _)) = &self.loading {
            f.render_widget(
                Paragraph::new(Line::styled(
                    format!("decoding {}…", path.display()),
                    theme.dim(),
                )),
                image_area,
            );
        } else if let Some((_, _, p)) = &self.encoded {
            f.render_widget(Image::new(p), image_area);
        } else if self.clip.is_none() {
            f.render_widget(
                Paragraph::new(Line::styled(
                    "open a finished clip from the queue or the gallery (⏎)",
                    theme.dim(),
                )),
                image_area,
            );
        }
        let Some(clip) = &self.clip else { return };
        f.render_widget(
            Paragraph::new(self.strip(strip_area.width as usize, theme)),
            strip_area,
        );
        let state = if self.is_playing() { "▶" } else { "⏸" };
        let sound = match (&clip.audio, self.audio.available()) {
            (None, _) => " · silent",
            (Some(_), true) => "",
            (Some(_), false) => " · muted",
        };
        let status = format!(
            "{state} {}/{} {:.2}/{:.2}s {}fps {}{sound}",
            self.pos + 1,
            clip.frames.count(),
            self.time_s(),
            clip.frames.duration_s(),
            clip.frames.fps,
            protocol_name(self.protocol()),
        );
        f.render_widget(
            Paragraph::new(Line::styled(status, theme.dim())),
            status_area,
        );
    }

    fn handle(&mut self, ev: &KeyEvent) -> EventResult {
        let fps = self.clip.as_ref().map_or(1, |c| c.frames.fps.max(1)) as isize;
        let pos = self.pos as isize;
        match ev.code {
            KeyCode::Char(' ') => {
                if self.is_playing() {
                    self.stop()
                } else {
                    self.play()
                }
            }
            KeyCode::Left | KeyCode::Char('h') => self.seek(pos - 1),
            KeyCode::Right | KeyCode::Char('l') => self.seek(pos + 1),
            KeyCode::Char('[') => self.seek(pos - fps),
            KeyCode::Char(']') => self.seek(pos + fps),
            KeyCode::Home => self.seek(0),
            KeyCode::End => self.seek(isize::MAX),
            KeyCode::Char('P') => {
                let next = self.picker.protocol_type().next();
                self.picker.set_protocol_type(next);
                self.encoded = None;
            }
            _ => return EventResult::Ignored,
        }
        EventResult::Action(Action::Changed)
    }

    fn commands(&self) -> Vec<KeyHelp> {
        if self.clip.is_none() {
            return vec![key("P", "protocol")];
        }
        vec![
            key("␣", if self.is_playing() { "pause" } else { "play" }),
            key("←→", "frame"),
            key("[]", "±1s"),
            key("P", "protocol"),
        ]
    }
}
