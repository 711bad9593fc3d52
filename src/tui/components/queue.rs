//! The job queue: one row per submitted job with its state, a per-step progress bar and an ETA;
//! the selected job's full message (a failure's fix included) below the list.

use std::time::{Duration, Instant};

use crossterm::event::{KeyCode, KeyEvent};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};
use ratatui::Frame;

use super::{ellipsize, key, panel, Action, Component, EventResult, KeyHelp};
use crate::jobs::Event;
use crate::tui::theme::Theme;

#[derive(Debug, Clone, PartialEq)]
pub enum JobState {
    Queued,
    Loading {
        model: String,
    },
    Running {
        variant: u32,
        variants: u32,
        step: usize,
        total: usize,
    },
    Encoding {
        variant: u32,
    },
    Done {
        seconds: f64,
        outputs: Vec<std::path::PathBuf>,
    },
    Failed {
        /// `JobError::kind()`: "bad_input", "model_missing", "runtime".
        kind: &'static str,
        message: String,
    },
    Cancelled,
}

impl JobState {
    pub fn is_active(&self) -> bool {
        !matches!(
            self,
            JobState::Done { .. } | JobState::Failed { .. } | JobState::Cancelled
        )
    }
}

#[derive(Debug, Clone)]
pub struct JobRow {
    pub ticket: u64,
    pub prompt: String,
    pub state: JobState,
    variants: u32,
    /// When the first step of the current run began (ETA is measured from there, so model
    /// loading does not count as step time).
    steps_started: Option<Instant>,
    steps_done: usize,
    cancel_requested: bool,
}

impl JobRow {
    pub fn new(ticket: u64, prompt: &str) -> JobRow {
        JobRow {
            ticket,
            prompt: prompt.replace('\n', " "),
            state: JobState::Queued,
            variants: 1,
            steps_started: None,
            steps_done: 0,
            cancel_requested: false,
        }
    }

    /// Applies a progress event from the queue.
    pub fn progress(&mut self, ev: &Event, now: Instant) {
        match ev {
            Event::Started { variants, .. } => self.variants = *variants,
            Event::Loading { model, .. } => {
                self.state = JobState::Loading {
                    model: model.clone(),
                }
            }
            Event::Step {
                variant,
                step,
                total,
                ..
            } => {
                if self.steps_started.is_none() {
                    self.steps_started = Some(now);
                }
                self.steps_done += 1;
                self.state = JobState::Running {
                    variant: *variant,
                    variants: self.variants,
                    step: *step,
                    total: *total,
                };
            }
            Event::Encoding { variant, .. } => {
                self.state = JobState::Encoding { variant: *variant }
            }
            Event::Finished { .. } => {}
        }
    }

    /// Remaining time from the mean step time so far, over every step left in every variant.
    pub fn eta(&self, now: Instant) -> Option<Duration> {
        let JobState::Running {
            variant,
            variants,
            step,
            total,
        } = self.state
        else {
            return None;
        };
        let started = self.steps_started?;
        if self.steps_done < 2 {
            return None;
        }
        let per_step = now.duration_since(started).as_secs_f64() / (self.steps_done - 1) as f64;
        let left = total.saturating_sub(step) + (variants.saturating_sub(variant)) as usize * total;
        Some(Duration::from_secs_f64(per_step * left as f64))
    }
}

fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

#[derive(Debug, Clone, Default)]
pub struct QueuePanel {
    pub jobs: Vec<JobRow>,
    selected: usize,
}

impl QueuePanel {
    pub fn push(&mut self, row: JobRow) {
        self.jobs.push(row);
        self.selected = self.jobs.len() - 1;
    }

    pub fn get_mut(&mut self, ticket: u64) -> Option<&mut JobRow> {
        self.jobs.iter_mut().find(|j| j.ticket == ticket)
    }

    pub fn any_active(&self) -> bool {
        self.jobs.iter().any(|j| j.state.is_active())
    }

    pub fn selected(&self) -> Option<&JobRow> {
        self.jobs.get(self.selected)
    }

    fn status(&self, j: &JobRow, theme: &Theme, width: usize, now: Instant) -> Line<'static> {
        let bar = |done: usize, total: usize, w: usize| {
            let filled = (done * w).checked_div(total).unwrap_or(0).min(w);
            format!("{}{}", "█".repeat(filled), "░".repeat(w - filled))
        };
        match &j.state {
            JobState::Queued => Line::styled("queued", theme.dim()),
            JobState::Loading { model } => {
                Line::styled(format!("loading {model}…"), theme.warning())
            }
            JobState::Running {
                variant,
                variants,
                step,
                total,
            } => {
                let eta = j
                    .eta(now)
                    .map(|d| format!(" ETA {}", fmt_duration(d)))
                    .unwrap_or_default();
                let v = if *variants > 1 {
                    format!("v{variant}/{variants} ")
                } else {
                    String::new()
                };
                let label = format!(" {v}{step}/{total}{eta}");
                let w = width.saturating_sub(label.chars().count()).clamp(1, 20);
                Line::from(vec![
                    Span::styled(bar(*step, *total, w), theme.base().fg(theme.progress)),
                    Span::raw(label),
                ])
            }
            JobState::Encoding { variant } => {
                Line::styled(format!("encoding v{variant}…"), theme.warning())
            }
            JobState::Done { seconds, .. } => {
                Line::styled(format!("✓ done in {seconds:.1}s"), theme.ok())
            }
            JobState::Failed { kind, .. } => {
                let what = match *kind {
                    "model_missing" => "✗ model missing",
                    "bad_input" => "✗ bad input",
                    _ => "✗ failed",
                };
                Line::styled(what, theme.error())
            }
            JobState::Cancelled => Line::styled("cancelled", theme.dim()),
        }
    }

    pub fn draw_at(&self, f: &mut Frame, area: Rect, theme: &Theme, focused: bool, now: Instant) {
        let active = self.jobs.iter().filter(|j| j.state.is_active()).count();
        let title = format!(" Queue {}/{} ", active, self.jobs.len());
        let block = panel(title, theme, focused);
        let inner = block.inner(area);
        f.render_widget(block, area);
        if self.jobs.is_empty() {
            f.render_widget(
                Paragraph::new(Line::styled(
                    "no jobs yet: write a prompt, ^S submits",
                    theme.dim(),
                )),
                inner,
            );
            return;
        }
        let list_h = (self.jobs.len() as u16).min(inner.height / 2).max(1);
        let [list, detail] =
            Layout::vertical([Constraint::Length(list_h), Constraint::Fill(1)]).areas(inner);
        let w = inner.width as usize;
        let status_w = (w / 2).min(34);
        let prompt_w = w.saturating_sub(status_w + 5);
        let top = (self.selected + 1).saturating_sub(list_h as usize);
        let rows: Vec<Line> = self
            .jobs
            .iter()
            .enumerate()
            .skip(top)
            .take(list_h as usize)
            .map(|(i, j)| {
                let sel = i == self.selected;
                let mut spans = vec![Span::styled(
                    format!(
                        "#{:<3}{:<prompt_w$} ",
                        j.ticket,
                        ellipsize(&j.prompt, prompt_w)
                    ),
                    if sel && focused {
                        theme.selected()
                    } else {
                        theme.base()
                    },
                )];
                spans.extend(self.status(j, theme, status_w, now).spans);
                Line::from(spans)
            })
            .collect();
        f.render_widget(Paragraph::new(rows), list);

        let Some(j) = self.selected() else { return };
        let text: Vec<Line> = match &j.state {
            JobState::Failed { message, .. } => message
                .lines()
                .map(|l| Line::styled(l.to_string(), theme.error()))
                .collect(),
            JobState::Done { outputs, .. } => outputs
                .iter()
                .map(|p| Line::styled(p.display().to_string(), theme.ok()))
                .collect(),
            _ if j.cancel_requested => vec![Line::styled("cancelling…", theme.warning())],
            _ => vec![Line::styled(j.prompt.clone(), theme.dim())],
        };
        f.render_widget(Paragraph::new(text).wrap(Wrap { trim: false }), detail);
    }
}

impl Component for QueuePanel {
    fn draw(&self, f: &mut Frame, area: Rect, theme: &Theme, focused: bool) {
        self.draw_at(f, area, theme, focused, Instant::now());
    }

    fn handle(&mut self, ev: &KeyEvent) -> EventResult {
        match ev.code {
            KeyCode::Up | KeyCode::Char('k') => self.selected = self.selected.saturating_sub(1),
            KeyCode::Down | KeyCode::Char('j') => {
                self.selected = (self.selected + 1).min(self.jobs.len().saturating_sub(1))
            }
            KeyCode::Char('c') | KeyCode::Delete => {
                if let Some(j) = self.jobs.get_mut(self.selected) {
                    if j.state.is_active() {
                        j.cancel_requested = true;
                        return EventResult::Action(Action::Cancel(j.ticket));
                    }
                }
            }
            KeyCode::Enter | KeyCode::Char('p') => {
                if let Some(JobState::Done { outputs, .. }) = self.selected().map(|j| &j.state) {
                    if let Some(mp4) = outputs
                        .iter()
                        .find(|p| p.extension().is_some_and(|e| e == "mp4"))
                    {
                        return EventResult::Action(Action::Preview(mp4.clone()));
                    }
                }
            }
            _ => return EventResult::Ignored,
        }
        EventResult::Consumed
    }

    fn commands(&self) -> Vec<KeyHelp> {
        let mut c = vec![key("↑↓", "job")];
        match self.selected().map(|j| &j.state) {
            Some(s) if s.is_active() => c.push(key("c", "cancel")),
            Some(JobState::Done { .. }) => c.push(key("⏎", "preview")),
            _ => {}
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_counts_remaining_steps_of_every_variant() {
        let t0 = Instant::now();
        let mut j = JobRow::new(1, "x");
        j.progress(
            &Event::Started {
                job: "a".into(),
                variants: 2,
            },
            t0,
        );
        let step = |s| Event::Step {
            job: "a".into(),
            variant: 1,
            step: s,
            total: 10,
        };
        j.progress(&step(1), t0);
        assert_eq!(j.eta(t0), None);
        j.progress(&step(2), t0 + Duration::from_secs(1));
        // 1 s per step; 8 left in variant 1 and 10 in variant 2.
        let eta = j.eta(t0 + Duration::from_secs(1)).unwrap();
        assert_eq!(eta.as_secs(), 18);
    }
}
