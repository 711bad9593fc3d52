//! One file per panel. Every panel implements [`Component`]: it draws itself, says whether it
//! consumed a key (or asks the app to do something it cannot do alone), and lists its own keys,
//! from which the help bar is built, so help never drifts from behaviour.

mod gallery;
mod history;
mod params;
mod prompt;
mod queue;

pub use gallery::Gallery;
pub use history::HistoryPanel;
pub use params::{ParamField, Params};
pub use prompt::PromptEditor;
pub use queue::{JobRow, JobState, QueuePanel};

use crossterm::event::KeyEvent;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Borders};
use ratatui::Frame;

use super::theme::Theme;
use crate::spec::JobSpec;

/// One entry of the help bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyHelp {
    pub key: &'static str,
    pub desc: &'static str,
}

pub const fn key(key: &'static str, desc: &'static str) -> KeyHelp {
    KeyHelp { key, desc }
}

/// What a panel asks the app to do: things that touch the queue, other panels or the disk.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Put this spec in the prompt editor and the parameters.
    Load(JobSpec),
    /// Submit this spec as it is.
    Rerun(JobSpec),
    ToggleFavourite(JobSpec),
    Cancel(u64),
    /// Open a clip in the preview.
    Preview(std::path::PathBuf),
    /// The panel's content changed in a way others depend on (the prompt, a parameter).
    Changed,
}

// One value per key press, moved once: boxing the spec would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum EventResult {
    /// Not for this panel; the app may use the key.
    Ignored,
    Consumed,
    Action(Action),
}

pub trait Component {
    /// Draws into `area`. `focused` decides the border and whether the cursor is shown.
    fn draw(&self, f: &mut Frame, area: Rect, theme: &Theme, focused: bool);
    fn handle(&mut self, ev: &KeyEvent) -> EventResult;
    /// This panel's keys, for the help bar.
    fn commands(&self) -> Vec<KeyHelp>;
}

/// The frame every panel draws in: rounded borders, title, focus colour.
pub fn panel<'a>(title: impl Into<Line<'a>>, theme: &Theme, focused: bool) -> Block<'a> {
    Block::default()
        .borders(Borders::ALL)
        .border_type(BorderType::Rounded)
        .border_style(theme.border(focused))
        .title(title.into().style(theme.title(focused)))
        .style(theme.base())
}

/// "key desc" spans for one help entry.
pub fn help_spans(h: &KeyHelp, theme: &Theme) -> Vec<Span<'static>> {
    vec![
        Span::styled(h.key, theme.key()),
        Span::styled(format!(" {}  ", h.desc), Style::default().fg(theme.fg)),
    ]
}

/// Cuts `s` to at most `width` characters, marking the cut with '…'.
pub fn ellipsize(s: &str, width: usize) -> String {
    let n = s.chars().count();
    if n <= width {
        return s.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let mut out: String = s.chars().take(width - 1).collect();
    out.push('…');
    out
}

/// Wraps at character boundaries to `width` columns (prompts are prose; a word-wrapper would
/// move the cursor math away from what the editor stores).
pub fn wrap_chars(s: &str, width: usize) -> Vec<String> {
    if width == 0 {
        return vec![];
    }
    let chars: Vec<char> = s.chars().collect();
    if chars.is_empty() {
        return vec![String::new()];
    }
    chars.chunks(width).map(|c| c.iter().collect()).collect()
}
