//! The prompt editor: multi-line text with a cursor, soft-wrapped to the panel, undo and redo.
//! Columns count chars; wide (CJK) glyphs would need unicode-width, which prompts rarely use.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::layout::{Position, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::{key, panel, wrap_chars, Action, Component, EventResult, KeyHelp};
use crate::tui::theme::Theme;

const UNDO_LIMIT: usize = 200;

#[derive(Debug, Clone, PartialEq)]
struct Snapshot {
    lines: Vec<String>,
    row: usize,
    col: usize,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum EditKind {
    Word,
    Other,
}

#[derive(Debug, Clone)]
pub struct PromptEditor {
    lines: Vec<String>,
    /// Cursor: line index and char index within the line.
    row: usize,
    col: usize,
    undo: Vec<Snapshot>,
    redo: Vec<Snapshot>,
    /// Consecutive letters typed form one undo step, like a word in most editors.
    last_edit: Option<EditKind>,
    /// Validation message for the `prompt` field, shown under the text.
    pub error: Option<String>,
}

impl Default for PromptEditor {
    fn default() -> Self {
        PromptEditor {
            lines: vec![String::new()],
            row: 0,
            col: 0,
            undo: Vec::new(),
            redo: Vec::new(),
            last_edit: None,
            error: None,
        }
    }
}

fn byte_at(s: &str, col: usize) -> usize {
    s.char_indices().nth(col).map(|(i, _)| i).unwrap_or(s.len())
}

impl PromptEditor {
    /// The prompt as the spec holds it: lines joined with '\n'.
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }

    /// Replaces the text (undoable), cursor at the end.
    pub fn set_text(&mut self, text: &str) {
        self.checkpoint(EditKind::Other);
        self.lines = text.split('\n').map(str::to_string).collect();
        if self.lines.is_empty() {
            self.lines.push(String::new());
        }
        self.row = self.lines.len() - 1;
        self.col = self.line_len(self.row);
    }

    fn line_len(&self, row: usize) -> usize {
        self.lines.get(row).map_or(0, |l| l.chars().count())
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            lines: self.lines.clone(),
            row: self.row,
            col: self.col,
        }
    }

    fn restore(&mut self, s: Snapshot) {
        self.lines = s.lines;
        self.row = s.row;
        self.col = s.col;
    }

    fn checkpoint(&mut self, kind: EditKind) {
        if kind == EditKind::Word && self.last_edit == Some(EditKind::Word) {
            return;
        }
        self.undo.push(self.snapshot());
        if self.undo.len() > UNDO_LIMIT {
            self.undo.remove(0);
        }
        self.redo.clear();
        self.last_edit = Some(kind);
    }

    fn insert(&mut self, c: char) {
        let kind = if c.is_alphanumeric() {
            EditKind::Word
        } else {
            EditKind::Other
        };
        self.checkpoint(kind);
        let line = &mut self.lines[self.row];
        let at = byte_at(line, self.col);
        line.insert(at, c);
        self.col += 1;
    }

    fn newline(&mut self) {
        self.checkpoint(EditKind::Other);
        let line = &mut self.lines[self.row];
        let at = byte_at(line, self.col);
        let rest = line.split_off(at);
        self.lines.insert(self.row + 1, rest);
        self.row += 1;
        self.col = 0;
    }

    fn backspace(&mut self) {
        if self.col > 0 {
            self.checkpoint(EditKind::Other);
            let line = &mut self.lines[self.row];
            let at = byte_at(line, self.col - 1);
            line.remove(at);
            self.col -= 1;
        } else if self.row > 0 {
            self.checkpoint(EditKind::Other);
            let line = self.lines.remove(self.row);
            self.row -= 1;
            self.col = self.line_len(self.row);
            self.lines[self.row].push_str(&line);
        }
    }

    fn delete(&mut self) {
        if self.col < self.line_len(self.row) {
            self.checkpoint(EditKind::Other);
            let line = &mut self.lines[self.row];
            let at = byte_at(line, self.col);
            line.remove(at);
        } else if self.row + 1 < self.lines.len() {
            self.checkpoint(EditKind::Other);
            let next = self.lines.remove(self.row + 1);
            self.lines[self.row].push_str(&next);
        }
    }

    fn undo(&mut self) -> bool {
        match self.undo.pop() {
            Some(s) => {
                self.redo.push(self.snapshot());
                self.restore(s);
                self.last_edit = None;
                true
            }
            None => false,
        }
    }

    fn redo(&mut self) -> bool {
        match self.redo.pop() {
            Some(s) => {
                self.undo.push(self.snapshot());
                self.restore(s);
                self.last_edit = None;
                true
            }
            None => false,
        }
    }

    fn move_to(&mut self, row: usize, col: usize) {
        self.row = row.min(self.lines.len() - 1);
        self.col = col.min(self.line_len(self.row));
        self.last_edit = None;
    }
}

impl Component for PromptEditor {
    fn draw(&self, f: &mut Frame, area: Rect, theme: &Theme, focused: bool) {
        let block = panel(" Prompt ", theme, focused);
        let inner = block.inner(area);
        f.render_widget(block, area);
        let width = inner.width as usize;
        let reserved = usize::from(self.error.is_some());
        let height = (inner.height as usize).saturating_sub(reserved);
        // Visual rows, and where the cursor lands among them.
        let mut rows: Vec<String> = Vec::new();
        let mut cursor = (0usize, 0usize);
        for (i, line) in self.lines.iter().enumerate() {
            let wrapped = wrap_chars(line, width.max(1));
            if i == self.row {
                let w = width.max(1);
                // A cursor right after a full row sits at the start of the next one.
                cursor = (rows.len() + self.col / w, self.col % w);
            }
            rows.extend(wrapped);
        }
        let top = (cursor.0 + 1).saturating_sub(height);
        let mut text: Vec<Line> = rows
            .iter()
            .skip(top)
            .take(height)
            .map(|r| Line::raw(r.clone()))
            .collect();
        if self.text().trim().is_empty() && !focused {
            text = vec![Line::styled("describe the clip…", theme.dim())];
        }
        if let Some(e) = &self.error {
            while text.len() < height {
                text.push(Line::raw(""));
            }
            text.push(Line::from(Span::styled(format!("✗ {e}"), theme.error())));
        }
        f.render_widget(Paragraph::new(text).style(theme.base()), inner);
        if focused && inner.width > 0 && inner.height > 0 {
            let y = inner.y + (cursor.0 - top).min(height.saturating_sub(1)) as u16;
            f.set_cursor_position(Position::new(inner.x + cursor.1 as u16, y));
        }
    }

    fn handle(&mut self, ev: &KeyEvent) -> EventResult {
        let ctrl = ev.modifiers.contains(KeyModifiers::CONTROL);
        let before = self.lines.clone();
        match ev.code {
            KeyCode::Char('z') if ctrl => {
                self.undo();
            }
            KeyCode::Char('y') if ctrl => {
                self.redo();
            }
            KeyCode::Char('a') if ctrl => self.move_to(self.row, 0),
            KeyCode::Char('e') if ctrl => self.move_to(self.row, usize::MAX),
            KeyCode::Char('l') if ctrl => self.set_text(""),
            KeyCode::Char(_) if ctrl => return EventResult::Ignored,
            KeyCode::Char(c) => self.insert(c),
            KeyCode::Enter => self.newline(),
            KeyCode::Backspace => self.backspace(),
            KeyCode::Delete => self.delete(),
            KeyCode::Left if self.col > 0 => self.move_to(self.row, self.col - 1),
            KeyCode::Left if self.row > 0 => self.move_to(self.row - 1, usize::MAX),
            KeyCode::Right if self.col < self.line_len(self.row) => {
                self.move_to(self.row, self.col + 1)
            }
            KeyCode::Right if self.row + 1 < self.lines.len() => self.move_to(self.row + 1, 0),
            KeyCode::Up if self.row > 0 => self.move_to(self.row - 1, self.col),
            KeyCode::Down => self.move_to(self.row + 1, self.col),
            KeyCode::Home => self.move_to(self.row, 0),
            KeyCode::End => self.move_to(self.row, usize::MAX),
            KeyCode::Left | KeyCode::Right | KeyCode::Up => {}
            _ => return EventResult::Ignored,
        }
        if self.lines != before {
            EventResult::Action(Action::Changed)
        } else {
            EventResult::Consumed
        }
    }

    fn commands(&self) -> Vec<KeyHelp> {
        vec![
            key("⏎", "new line"),
            key("^Z/^Y", "undo/redo"),
            key("^L", "clear"),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn press(e: &mut PromptEditor, code: KeyCode) {
        e.handle(&KeyEvent::new(code, KeyModifiers::NONE));
    }
    fn ctrl(e: &mut PromptEditor, c: char) {
        e.handle(&KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL));
    }
    fn typ(e: &mut PromptEditor, s: &str) {
        s.chars().for_each(|c| press(e, KeyCode::Char(c)));
    }

    #[test]
    fn typing_newlines_and_editing() {
        let mut e = PromptEditor::default();
        typ(&mut e, "a red ball");
        press(&mut e, KeyCode::Enter);
        typ(&mut e, "bounces");
        assert_eq!(e.text(), "a red ball\nbounces");
        press(&mut e, KeyCode::Home);
        press(&mut e, KeyCode::Backspace);
        assert_eq!(e.text(), "a red ballbounces");
        press(&mut e, KeyCode::Char(' '));
        assert_eq!(e.text(), "a red ball bounces");
    }

    #[test]
    fn undo_goes_back_a_word_at_a_time_and_redo_returns() {
        let mut e = PromptEditor::default();
        typ(&mut e, "chrome horse");
        ctrl(&mut e, 'z');
        assert_eq!(e.text(), "chrome ");
        ctrl(&mut e, 'z');
        assert_eq!(e.text(), "chrome");
        ctrl(&mut e, 'y');
        ctrl(&mut e, 'y');
        assert_eq!(e.text(), "chrome horse");
        ctrl(&mut e, 'l');
        assert_eq!(e.text(), "");
        ctrl(&mut e, 'z');
        assert_eq!(e.text(), "chrome horse");
    }

    #[test]
    fn multibyte_text_is_edited_by_char() {
        let mut e = PromptEditor::default();
        typ(&mut e, "café");
        press(&mut e, KeyCode::Left);
        press(&mut e, KeyCode::Backspace);
        assert_eq!(e.text(), "caé");
    }
}
