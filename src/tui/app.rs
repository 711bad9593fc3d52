//! The workspace's state and its reactions: keys go to the focused panel first (after the few
//! global keys), panels answer with actions, queue events update the job rows, and everything
//! that must survive a restart is saved as it changes.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph, Wrap};
use ratatui::Frame;

use super::components::{
    help_spans, key, panel, Action, Component, EventResult, Gallery, HistoryPanel, JobRow,
    JobState, KeyHelp, Params, PromptEditor, QueuePanel,
};
use super::history::{now_unix, FinishedJob, State};
use super::presets::Preset;
use super::preview::Preview;
use super::theme::Theme;
use crate::engine::registry::Registry;
use crate::jobs::{GeneratorFactory, JobError, Queue, QueueEvent, RunOptions};
use crate::spec::JobSpec;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    Prompt,
    Params,
    Queue,
    History,
    Gallery,
    Preview,
}

impl Focus {
    const ORDER: [Focus; 6] = [
        Focus::Prompt,
        Focus::Params,
        Focus::Queue,
        Focus::History,
        Focus::Gallery,
        Focus::Preview,
    ];

    fn step(self, by: isize) -> Focus {
        let i = Focus::ORDER.iter().position(|f| *f == self).unwrap_or(0) as isize;
        Focus::ORDER[(i + by).rem_euclid(Focus::ORDER.len() as isize) as usize]
    }
}

/// Where each panel goes; computed from the terminal size alone so the preview can encode its
/// frame for the right area before drawing.
#[derive(Debug, Clone, Copy)]
pub struct Areas {
    pub prompt: Rect,
    pub params: Rect,
    pub queue: Rect,
    pub history: Rect,
    pub gallery: Rect,
    pub preview: Rect,
    pub status: Rect,
    pub help: Rect,
}

impl Areas {
    pub fn new(area: Rect) -> Areas {
        let [main, status, help] = Layout::vertical([
            Constraint::Fill(1),
            Constraint::Length(1),
            Constraint::Length(1),
        ])
        .areas(area);
        let [left, mid, right] = Layout::horizontal([
            Constraint::Percentage(34),
            Constraint::Percentage(31),
            Constraint::Fill(1),
        ])
        .areas(main);
        let [prompt, queue, history] = Layout::vertical([
            Constraint::Length(8),
            Constraint::Fill(3),
            Constraint::Fill(2),
        ])
        .areas(left);
        let [preview, gallery] =
            Layout::vertical([Constraint::Fill(3), Constraint::Fill(1)]).areas(right);
        Areas {
            prompt,
            params: mid,
            queue,
            history,
            gallery,
            preview,
            status,
            help,
        }
    }
}

/// Everything the app needs from outside: the real binary passes the registry, the queue's
/// generator factory, the terminal's picker and the audio device; tests pass fakes.
pub struct AppOptions {
    pub registry: Registry,
    pub run: RunOptions,
    pub factory: GeneratorFactory,
    /// Where history and finished jobs are saved; `None` keeps them in memory only.
    pub data_dir: Option<PathBuf>,
    pub theme: Theme,
    pub preview: Preview,
    pub presets: Vec<Preset>,
    /// Shown in the status line at start (bad user presets, no audio device, …).
    pub notes: Vec<String>,
}

pub struct App {
    pub prompt: PromptEditor,
    pub params: Params,
    pub jobs: QueuePanel,
    pub history: HistoryPanel,
    pub gallery: Gallery,
    pub preview: Preview,
    pub focus: Focus,
    pub theme: Theme,
    queue: Queue,
    specs: HashMap<u64, JobSpec>,
    state: State,
    data_dir: Option<PathBuf>,
    presets: Vec<Preset>,
    /// Selected preset while the presets list is open.
    preset_popup: Option<usize>,
    confirm_quit: bool,
    pub quit: bool,
    status: Option<(String, bool)>,
}

impl App {
    pub fn new(opts: AppOptions) -> App {
        let state = match &opts.data_dir {
            Some(d) => State::load(d),
            None => Ok(State::default()),
        };
        let (state, load_note) = match state {
            Ok(s) => (s, None),
            Err(e) => (State::default(), Some(e.to_string())),
        };
        let mut app = App {
            prompt: PromptEditor::default(),
            params: Params::new(opts.registry.clone()),
            jobs: QueuePanel::default(),
            history: HistoryPanel::default(),
            gallery: Gallery::default(),
            preview: opts.preview,
            focus: Focus::Prompt,
            theme: opts.theme,
            queue: Queue::start(opts.registry, opts.run, opts.factory),
            specs: HashMap::new(),
            state,
            data_dir: opts.data_dir,
            presets: opts.presets,
            preset_popup: None,
            confirm_quit: false,
            quit: false,
            status: None,
        };
        if let Some(spec) = app.state.last_spec.clone() {
            app.params.load(&spec);
        }
        app.history.set_entries(app.state.history.clone());
        app.gallery.set_items(&app.state.finished);
        app.revalidate();
        let notes: Vec<String> = load_note.into_iter().chain(opts.notes).collect();
        if !notes.is_empty() {
            app.status = Some((notes.join(" · "), load_note_is_error(&notes)));
        }
        app
    }

    fn revalidate(&mut self) {
        let text = self.prompt.text();
        self.params.validate(&text);
        // An empty prompt is the normal state of a fresh editor, not worth a red line.
        self.prompt.error = if text.trim().is_empty() {
            None
        } else {
            self.params.prompt_errors.first().cloned()
        };
    }

    fn say(&mut self, msg: impl Into<String>, error: bool) {
        self.status = Some((msg.into(), error));
    }

    fn save(&mut self) {
        let Some(dir) = &self.data_dir else { return };
        if let Err(e) = self.state.save(dir) {
            self.status = Some((format!("cannot save history: {e}"), true));
        }
    }

    /// Validates the editor and parameters like the CLI would, then queues the job.
    pub fn submit(&mut self) {
        let text = self.prompt.text();
        match self.params.validate(&text) {
            Some(spec) => self.submit_spec(spec),
            None => {
                self.prompt.error = self.params.prompt_errors.first().cloned();
                let n = self.params.error_count();
                self.say(
                    format!(
                        "not submitted: {n} problem{} (marked ✗)",
                        if n == 1 { "" } else { "s" }
                    ),
                    true,
                );
            }
        }
    }

    pub fn submit_spec(&mut self, spec: JobSpec) {
        let ticket = self.queue.submit(spec.clone());
        self.jobs.push(JobRow::new(ticket, &spec.prompt));
        self.state.record(&spec, now_unix());
        self.specs.insert(ticket, spec);
        self.history.set_entries(self.state.history.clone());
        self.save();
        self.say(format!("job #{ticket} queued"), false);
    }

    fn load_spec(&mut self, spec: &JobSpec) {
        self.prompt.set_text(&spec.prompt);
        self.params.load(spec);
        self.revalidate();
        self.focus = Focus::Prompt;
    }

    /// Applies one queue event.
    pub fn on_queue_event(&mut self, ev: QueueEvent, now: Instant) {
        match ev {
            QueueEvent::Progress(t, e) => {
                if let Some(row) = self.jobs.get_mut(t) {
                    row.progress(&e, now);
                }
            }
            QueueEvent::Done(t, result) => {
                let spec = self.specs.remove(&t);
                let state = match result {
                    Ok(r) => {
                        let outputs: Vec<PathBuf> =
                            r.paths().iter().map(|p| p.to_path_buf()).collect();
                        self.state.finished.push(FinishedJob {
                            id: r.id.clone(),
                            prompt: spec.map(|s| s.prompt).unwrap_or_default(),
                            model: r.model.clone(),
                            outputs: outputs.clone(),
                            seconds: r.timings.total_s,
                            at: now_unix(),
                        });
                        self.gallery.set_items(&self.state.finished);
                        self.save();
                        self.say(format!("job #{t} done"), false);
                        JobState::Done {
                            seconds: r.timings.total_s,
                            outputs,
                        }
                    }
                    Err(JobError::Cancelled) => {
                        self.say(format!("job #{t} cancelled"), false);
                        JobState::Cancelled
                    }
                    Err(e) => {
                        let message = e.to_string();
                        let first = message.lines().next().unwrap_or("").to_string();
                        self.say(format!("job #{t} failed: {first}"), true);
                        JobState::Failed {
                            kind: e.kind(),
                            message,
                        }
                    }
                };
                if let Some(row) = self.jobs.get_mut(t) {
                    row.state = state;
                }
            }
        }
    }

    /// Drains the queue and advances playback; returns whether a redraw is due.
    pub fn tick(&mut self, now: Instant) -> bool {
        let events = self.queue.drain();
        let mut dirty = !events.is_empty();
        for ev in events {
            self.on_queue_event(ev, now);
        }
        dirty |= self.preview.poll(now);
        dirty
    }

    /// How long the loop may sleep waiting for input.
    pub fn poll_interval(&self) -> std::time::Duration {
        let idle = std::time::Duration::from_millis(250);
        let busy = std::time::Duration::from_millis(33);
        match self.preview.frame_interval() {
            Some(f) => f.min(busy),
            None if self.jobs.any_active() => busy,
            None => idle,
        }
    }

    pub fn handle_key(&mut self, ev: KeyEvent) {
        let ctrl = ev.modifiers.contains(KeyModifiers::CONTROL);
        if self.confirm_quit {
            match ev.code {
                KeyCode::Char('y') | KeyCode::Char('Y') => self.quit = true,
                KeyCode::Char('c') if ctrl => self.quit = true,
                KeyCode::Char('n') | KeyCode::Esc => self.confirm_quit = false,
                _ => {}
            }
            return;
        }
        if let Some(sel) = self.preset_popup {
            match ev.code {
                KeyCode::Up | KeyCode::Char('k') => self.preset_popup = Some(sel.saturating_sub(1)),
                KeyCode::Down | KeyCode::Char('j') => {
                    self.preset_popup = Some((sel + 1).min(self.presets.len().saturating_sub(1)))
                }
                KeyCode::Enter => {
                    self.preset_popup = None;
                    if let Some(p) = self.presets.get(sel).cloned() {
                        self.load_spec(&p.spec);
                        self.say(format!("preset: {}", p.name), false);
                    }
                }
                KeyCode::Esc | KeyCode::Char('q') => self.preset_popup = None,
                KeyCode::Char('c') if ctrl => self.preset_popup = None,
                _ => {}
            }
            return;
        }
        match ev.code {
            KeyCode::Char('c') if ctrl => {
                if self.jobs.any_active() {
                    self.confirm_quit = true;
                } else {
                    self.quit = true;
                }
                return;
            }
            KeyCode::Char('s') if ctrl => return self.submit(),
            KeyCode::Char('p') if ctrl => {
                self.preset_popup = Some(0);
                return;
            }
            // Tab moves focus except while a parameter is being typed (then it is ignored, so a
            // half-typed value is never left behind unseen).
            KeyCode::Tab if !self.params.is_editing() => {
                self.focus = self.focus.step(1);
                return;
            }
            KeyCode::BackTab if !self.params.is_editing() => {
                self.focus = self.focus.step(-1);
                return;
            }
            _ => {}
        }
        let result = match self.focus {
            Focus::Prompt => self.prompt.handle(&ev),
            Focus::Params => self.params.handle(&ev),
            Focus::Queue => self.jobs.handle(&ev),
            Focus::History => self.history.handle(&ev),
            Focus::Gallery => self.gallery.handle(&ev),
            Focus::Preview => self.preview.handle(&ev),
        };
        if let EventResult::Action(a) = result {
            self.act(a);
        }
    }

    fn act(&mut self, a: Action) {
        match a {
            Action::Changed => self.revalidate(),
            Action::Load(spec) => self.load_spec(&spec),
            Action::Rerun(spec) => self.submit_spec(spec),
            Action::ToggleFavourite(spec) => {
                if let Some(h) = self.state.history.iter_mut().find(|h| h.spec == spec) {
                    h.favourite = !h.favourite;
                }
                self.history.set_entries(self.state.history.clone());
                self.save();
            }
            Action::Cancel(t) => {
                self.queue.cancel(t);
                self.say(format!("cancelling job #{t}…"), false);
            }
            Action::Preview(path) => {
                self.preview.open(path);
                self.focus = Focus::Preview;
            }
        }
    }

    /// Saves the current parameters (the prompt is left out: it lives in the history) and
    /// cancels whatever still runs. Dropping the queue afterwards does not wait for the worker,
    /// so quitting is immediate even during a model load.
    pub fn shutdown(mut self) {
        let (mut spec, _) = self.params.spec("");
        spec.prompt.clear();
        self.state.last_spec = Some(spec);
        self.save();
        self.queue.handle().cancel_all();
    }

    fn commands(&self) -> Vec<KeyHelp> {
        if self.confirm_quit {
            return vec![key("y", "quit, cancelling jobs"), key("n", "stay")];
        }
        if self.preset_popup.is_some() {
            return vec![key("↑↓", "preset"), key("⏎", "load"), key("Esc", "close")];
        }
        let mut c = match self.focus {
            Focus::Prompt => self.prompt.commands(),
            Focus::Params => self.params.commands(),
            Focus::Queue => self.jobs.commands(),
            Focus::History => self.history.commands(),
            Focus::Gallery => self.gallery.commands(),
            Focus::Preview => self.preview.commands(),
        };
        c.extend([
            key("Tab", "panel"),
            key("^S", "submit"),
            key("^P", "presets"),
            key("^C", "quit"),
        ]);
        c
    }

    /// Encodes what the preview needs for this terminal size; call before [`App::draw`].
    pub fn prepare(&mut self, area: Rect) {
        self.preview.prepare(Areas::new(area).preview);
    }

    pub fn draw(&self, f: &mut Frame) {
        self.draw_at(f, Instant::now());
    }

    /// Draws the workspace as of `now` (tests pass a fixed instant).
    pub fn draw_at(&self, f: &mut Frame, now: Instant) {
        let a = Areas::new(f.area());
        let t = &self.theme;
        let is = |p: Focus| self.focus == p && !self.confirm_quit && self.preset_popup.is_none();
        self.prompt.draw(f, a.prompt, t, is(Focus::Prompt));
        self.params.draw(f, a.params, t, is(Focus::Params));
        self.jobs.draw_at(f, a.queue, t, is(Focus::Queue), now);
        self.history.draw(f, a.history, t, is(Focus::History));
        self.gallery.draw(f, a.gallery, t, is(Focus::Gallery));
        self.preview.draw(f, a.preview, t, is(Focus::Preview));
        if let Some((msg, err)) = &self.status {
            let style = if *err { t.error() } else { t.dim() };
            f.render_widget(Paragraph::new(Line::styled(msg.clone(), style)), a.status);
        }
        let spans: Vec<Span> = self
            .commands()
            .iter()
            .flat_map(|h| help_spans(h, t))
            .collect();
        f.render_widget(Paragraph::new(Line::from(spans)), a.help);
        if self.confirm_quit {
            let area = centered(f.area(), 46, 5);
            f.render_widget(Clear, area);
            let running = self
                .jobs
                .jobs
                .iter()
                .filter(|j| j.state.is_active())
                .count();
            f.render_widget(
                Paragraph::new(vec![
                    Line::raw(format!(
                        "{running} job{} still running or queued.",
                        if running == 1 { " is" } else { "s are" }
                    )),
                    Line::from(vec![
                        Span::raw("Quit and cancel? "),
                        Span::styled("y", t.key()),
                        Span::raw("/"),
                        Span::styled("n", t.key()),
                    ]),
                ])
                .wrap(Wrap { trim: true })
                .block(panel(" Quit? ", t, true)),
                area,
            );
        }
        if let Some(sel) = self.preset_popup {
            let h = (self.presets.len() as u16 * 2 + 2).min(f.area().height);
            let area = centered(f.area(), 70, h);
            f.render_widget(Clear, area);
            let lines: Vec<Line> = self
                .presets
                .iter()
                .enumerate()
                .flat_map(|(i, p)| {
                    let style = if i == sel { t.selected() } else { t.base() };
                    [
                        Line::styled(p.name.clone(), style),
                        Line::styled(format!("  {}", p.description), t.dim()),
                    ]
                })
                .collect();
            f.render_widget(
                Paragraph::new(lines).block(panel(" Presets ", t, true)),
                area,
            );
        }
    }
}

fn load_note_is_error(notes: &[String]) -> bool {
    notes
        .iter()
        .any(|n| n.contains("preset") || n.contains("move it aside"))
}

fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let [r] = Layout::vertical([Constraint::Length(h)])
        .flex(Flex::Center)
        .areas(area);
    let [r] = Layout::horizontal([Constraint::Length(w.min(area.width))])
        .flex(Flex::Center)
        .areas(r);
    r
}
