//! Finished clips, newest first, kept across restarts. ⏎ opens one in the preview.

use crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::{ellipsize, key, panel, Action, Component, EventResult, KeyHelp};
use crate::tui::history::FinishedJob;
use crate::tui::theme::Theme;

#[derive(Debug, Clone, Default)]
pub struct Gallery {
    items: Vec<FinishedJob>,
    selected: usize,
}

impl Gallery {
    /// Oldest-first list as stored; shown newest first.
    pub fn set_items(&mut self, finished: &[FinishedJob]) {
        self.items = finished.iter().rev().cloned().collect();
        self.selected = self.selected.min(self.items.len().saturating_sub(1));
    }
}

impl Component for Gallery {
    fn draw(&self, f: &mut Frame, area: Rect, theme: &Theme, focused: bool) {
        let block = panel(format!(" Gallery {} ", self.items.len()), theme, focused);
        let inner = block.inner(area);
        f.render_widget(block, area);
        if self.items.is_empty() {
            f.render_widget(
                Paragraph::new(Line::styled("finished clips appear here", theme.dim())),
                inner,
            );
            return;
        }
        let h = inner.height as usize;
        let w = inner.width as usize;
        let top = (self.selected + 1).saturating_sub(h);
        let lines: Vec<Line> = self
            .items
            .iter()
            .enumerate()
            .skip(top)
            .take(h)
            .map(|(i, it)| {
                let missing = it.mp4().is_none_or(|p| !p.is_file());
                let tail = if missing {
                    " (file gone)".to_string()
                } else {
                    format!(" {:.0}s", it.seconds)
                };
                let style = if i == self.selected && focused {
                    theme.selected()
                } else {
                    theme.base()
                };
                let name = it
                    .mp4()
                    .and_then(|p| p.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| it.id.clone());
                Line::from(vec![
                    Span::styled(
                        ellipsize(&name, w.saturating_sub(tail.chars().count())),
                        style,
                    ),
                    Span::styled(tail, theme.dim()),
                ])
            })
            .collect();
        f.render_widget(Paragraph::new(lines), inner);
    }

    fn handle(&mut self, ev: &KeyEvent) -> EventResult {
        match ev.code {
            KeyCode::Up | KeyCode::Char('k') => self.selected = self.selected.saturating_sub(1),
            KeyCode::Down | KeyCode::Char('j') => {
                self.selected = (self.selected + 1).min(self.items.len().saturating_sub(1))
            }
            KeyCode::Enter | KeyCode::Char('p') => {
                if let Some(p) = self.items.get(self.selected).and_then(|i| i.mp4()) {
                    return EventResult::Action(Action::Preview(p.to_path_buf()));
                }
            }
            _ => return EventResult::Ignored,
        }
        EventResult::Consumed
    }

    fn commands(&self) -> Vec<KeyHelp> {
        vec![key("↑↓", "clip"), key("⏎", "preview")]
    }
}
