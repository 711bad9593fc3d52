//! Prompt history, newest first, favourites marked ★ and searchable. ⏎ loads an entry into the
//! editor and parameters; `r` submits it again as it was.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::{ellipsize, key, panel, Action, Component, EventResult, KeyHelp};
use crate::tui::history::HistoryEntry;
use crate::tui::theme::Theme;

#[derive(Debug, Clone, Default)]
pub struct HistoryPanel {
    entries: Vec<HistoryEntry>,
    /// `Some` while the search line is being typed into; the filter stays after ⏎.
    query: String,
    searching: bool,
    favourites_only: bool,
    selected: usize,
}

impl HistoryPanel {
    pub fn set_entries(&mut self, entries: Vec<HistoryEntry>) {
        self.entries = entries;
        self.clamp();
    }

    /// Entries that pass the search and the favourites filter.
    fn visible(&self) -> Vec<&HistoryEntry> {
        let q = self.query.to_lowercase();
        self.entries
            .iter()
            .filter(|e| !self.favourites_only || e.favourite)
            .filter(|e| q.is_empty() || e.spec.prompt.to_lowercase().contains(&q))
            .collect()
    }

    fn clamp(&mut self) {
        let n = self.visible().len();
        self.selected = self.selected.min(n.saturating_sub(1));
    }
}

impl Component for HistoryPanel {
    fn draw(&self, f: &mut Frame, area: Rect, theme: &Theme, focused: bool) {
        let title = if self.favourites_only {
            " History ★ ".to_string()
        } else {
            format!(" History {} ", self.entries.len())
        };
        let block = panel(title, theme, focused);
        let inner = block.inner(area);
        f.render_widget(block, area);
        let show_search = self.searching || !self.query.is_empty();
        let [search, list] = Layout::vertical([
            Constraint::Length(u16::from(show_search)),
            Constraint::Fill(1),
        ])
        .areas(inner);
        if show_search {
            let cursor = if self.searching { "▏" } else { "" };
            f.render_widget(
                Paragraph::new(Line::from(vec![
                    Span::styled("/", theme.key()),
                    Span::raw(format!("{}{cursor}", self.query)),
                ])),
                search,
            );
        }
        let visible = self.visible();
        if visible.is_empty() {
            let msg = if self.entries.is_empty() {
                "submitted prompts appear here"
            } else {
                "nothing matches"
            };
            f.render_widget(Paragraph::new(Line::styled(msg, theme.dim())), list);
            return;
        }
        let h = list.height as usize;
        let w = (list.width as usize).saturating_sub(2);
        let top = (self.selected + 1).saturating_sub(h);
        let lines: Vec<Line> = visible
            .iter()
            .enumerate()
            .skip(top)
            .take(h)
            .map(|(i, e)| {
                let star = if e.favourite { "★ " } else { "  " };
                let style = if i == self.selected && focused {
                    theme.selected()
                } else {
                    theme.base()
                };
                Line::from(vec![
                    Span::styled(star, theme.warning()),
                    Span::styled(ellipsize(&e.spec.prompt.replace('\n', " "), w), style),
                ])
            })
            .collect();
        f.render_widget(Paragraph::new(lines), list);
    }

    fn handle(&mut self, ev: &KeyEvent) -> EventResult {
        if self.searching {
            match ev.code {
                KeyCode::Enter => self.searching = false,
                KeyCode::Esc => {
                    self.searching = false;
                    self.query.clear();
                }
                KeyCode::Backspace => {
                    self.query.pop();
                }
                KeyCode::Char(c) if !ev.modifiers.contains(KeyModifiers::CONTROL) => {
                    self.query.push(c)
                }
                _ => return EventResult::Ignored,
            }
            self.selected = 0;
            return EventResult::Consumed;
        }
        let current = self.visible().get(self.selected).map(|e| e.spec.clone());
        match (ev.code, current) {
            (KeyCode::Up | KeyCode::Char('k'), _) => {
                self.selected = self.selected.saturating_sub(1)
            }
            (KeyCode::Down | KeyCode::Char('j'), _) => {
                self.selected += 1;
                self.clamp();
            }
            (KeyCode::Char('/'), _) => self.searching = true,
            (KeyCode::Esc, _) if !self.query.is_empty() => self.query.clear(),
            (KeyCode::Char('*'), _) => {
                self.favourites_only = !self.favourites_only;
                self.selected = 0;
            }
            (KeyCode::Enter, Some(spec)) => return EventResult::Action(Action::Load(spec)),
            (KeyCode::Char('r'), Some(spec)) => return EventResult::Action(Action::Rerun(spec)),
            (KeyCode::Char('f'), Some(spec)) => {
                return EventResult::Action(Action::ToggleFavourite(spec))
            }
            _ => return EventResult::Ignored,
        }
        EventResult::Consumed
    }

    fn commands(&self) -> Vec<KeyHelp> {
        if self.searching {
            return vec![key("⏎", "keep filter"), key("Esc", "clear")];
        }
        vec![
            key("⏎", "load"),
            key("r", "re-run"),
            key("f", "favourite"),
            key("/", "search"),
            key("*", "favourites"),
        ]
    }
}
