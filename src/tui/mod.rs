//! The terminal workspace (`happyhorse` on a TTY, or `happyhorse tui`): prompt editor, parameters
//! with the CLI's validation inline, job queue, history, gallery and a preview with sound.
//!
//! Data flows one way: this module drives [`crate::jobs::Queue`] and reads [`crate::media`];
//! nothing below it knows it exists. The loop never blocks on work: it waits for input at most a
//! frame's time, drains every pending key and queue event, then redraws at most ~30 times a
//! second.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod app;
pub mod audio;
pub mod components;
pub mod history;
pub mod presets;
pub mod preview;
pub mod theme;

use std::io::Stdout;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crossterm::event::{self, Event, KeyEventKind};
use crossterm::execute;
use crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;
use ratatui_image::picker::{Picker, ProtocolType};
use serde::Deserialize;

use crate::engine::registry::{Registry, RegistryError, WeightSearch};
use crate::jobs::{self, RunOptions};
use app::{App, AppOptions};
use audio::AudioOut;
use preview::Preview;
use theme::Theme;

/// Fastest redraw: ~30 fps is smooth for progress bars and the clip rates we make (≤ 25 fps).
const MIN_FRAME: Duration = Duration::from_millis(33);
/// ratatui-image waits 2 s for the terminal's answers; a query this slow got none.
const QUERY_GAVE_UP: Duration = Duration::from_millis(1500);

#[derive(Debug, thiserror::Error)]
pub enum TuiError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(String),
    #[error("terminal: {0}")]
    Terminal(#[from] std::io::Error),
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

/// `config.toml` in the config dir's `happyhorse` folder; flags override it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// "dark" (default), "light", or a theme file's name in `themes/`.
    pub theme: Option<String>,
    /// "auto" (default), "kitty", "sixel", "iterm2", "halfblocks".
    pub protocol: Option<String>,
}

/// `HAPPYHORSE_CONFIG_DIR`, else the platform config dir + `happyhorse`.
pub fn config_dir() -> Option<PathBuf> {
    std::env::var_os("HAPPYHORSE_CONFIG_DIR")
        .map(PathBuf::from)
        .or_else(|| dirs::config_dir().map(|d| d.join("happyhorse")))
}

impl Config {
    pub fn load() -> Result<Config, TuiError> {
        let Some(path) = config_dir().map(|d| d.join("config.toml")) else {
            return Ok(Config::default());
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text)
                .map_err(|e| TuiError::Config(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(source) => Err(TuiError::Io { path, source }),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct TuiOptions {
    pub protocol: Option<String>,
    pub theme: Option<String>,
    pub no_audio: bool,
    pub weights: WeightSearch,
}

type Term = Terminal<CrosstermBackend<Stdout>>;

fn enter() -> Result<Term, TuiError> {
    // Restore the terminal before the default hook prints, so a panic message is readable and
    // the shell is usable afterwards.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        leave();
        default_hook(info);
    }));
    enable_raw_mode()?;
    execute!(std::io::stdout(), EnterAlternateScreen)?;
    Ok(Terminal::new(CrosstermBackend::new(std::io::stdout()))?)
}

fn leave() {
    // Best effort: each step is independent, and there is nowhere left to report a failure.
    let _ = disable_raw_mode();
    let _ = execute!(
        std::io::stdout(),
        LeaveAlternateScreen,
        crossterm::cursor::Show
    );
}

/// Picks the image protocol: the flag, else the config, else asks the terminal. Must run after
/// entering the alternate screen and before reading input (the answers arrive on stdin).
fn picker(choice: &str) -> Result<Picker, TuiError> {
    let wanted = match choice {
        "auto" => None,
        other => Some(preview::parse_protocol(other).ok_or_else(|| {
            TuiError::Config(format!(
                "protocol \"{other}\" is unknown; allowed: auto, kitty, sixel, iterm2, halfblocks"
            ))
        })?),
    };
    if wanted == Some(ProtocolType::Halfblocks) {
        // Nothing to ask: halfblocks need no cell size.
        return Ok(Picker::halfblocks());
    }
    let started = Instant::now();
    // ratatui-image answers halfblocks when the terminal stays silent, without saying so.
    let mut p = Picker::from_query_stdio().unwrap_or_else(|_| Picker::halfblocks());
    if started.elapsed() >= QUERY_GAVE_UP {
        // The query timed out, but its reader thread is still blocked on stdin and would eat our
        // keys until it sees a status report. Under tmux with no outer terminal (or without
        // allow-passthrough) the passthrough-wrapped query is never answered; an unwrapped status
        // request is answered by tmux or the terminal itself and lets that thread finish.
        use std::io::Write;
        let mut out = std::io::stdout();
        let _ = out.write_all(b"\x1b[5n").and_then(|_| out.flush());
        std::thread::sleep(Duration::from_millis(150));
    }
    if let Some(w) = wanted {
        p.set_protocol_type(w);
    }
    Ok(p)
}

/// Runs the workspace until Ctrl-C; the terminal is restored on every way out.
pub fn run(opts: TuiOptions) -> Result<(), TuiError> {
    let config = Config::load()?;
    let cfg_dir = config_dir();
    let theme_name = opts.theme.or(config.theme).unwrap_or_else(|| "dark".into());
    let theme = Theme::load(
        &theme_name,
        cfg_dir.as_ref().map(|d| d.join("themes")).as_deref(),
    )?;
    let protocol = opts
        .protocol
        .or(config.protocol)
        .unwrap_or_else(|| "auto".into());
    let (presets, mut notes) =
        presets::load(cfg_dir.as_ref().map(|d| d.join("prompts")).as_deref());
    let registry = Registry::builtin()?;
    // Before the alternate screen: ALSA may write to stderr while it probes.
    let audio = if opts.no_audio {
        AudioOut::disabled("audio off (--no-audio)")
    } else {
        AudioOut::open()
    };
    if let Some(why) = &audio.unavailable {
        notes.push(format!("{why}: previews show a loudness strip instead"));
    }

    let mut terminal = enter()?;
    let result = (|| {
        let picker = picker(&protocol)?;
        let app = App::new(AppOptions {
            registry,
            run: RunOptions {
                weights: opts.weights,
                skip_existing: false,
            },
            factory: Box::new(jobs::make_generator),
            data_dir: history::data_dir(),
            theme,
            preview: Preview::new(picker, audio),
            presets,
            notes,
        });
        event_loop(&mut terminal, app)
    })();
    leave();
    result
}

fn event_loop(terminal: &mut Term, mut app: App) -> Result<(), TuiError> {
    let mut dirty = true;
    let mut last_draw = Instant::now() - MIN_FRAME;
    loop {
        let wait = if dirty {
            MIN_FRAME.saturating_sub(last_draw.elapsed())
        } else {
            app.poll_interval()
        };
        if event::poll(wait)? {
            // Everything already typed is handled before the next frame, so fast typing or a
            // paste never queues behind redraws.
            loop {
                match event::read()? {
                    Event::Key(k) if k.kind != KeyEventKind::Release => app.handle_key(k),
                    Event::Resize(..) => terminal.autoresize()?,
                    _ => {}
                }
                dirty = true;
                if app.quit || !event::poll(Duration::ZERO)? {
                    break;
                }
            }
        }
        dirty |= app.tick(Instant::now());
        if app.quit {
            app.shutdown();
            return Ok(());
        }
        if dirty && last_draw.elapsed() >= MIN_FRAME {
            let size = terminal.size()?;
            app.prepare(ratatui::layout::Rect::new(0, 0, size.width, size.height));
            terminal.draw(|f| app.draw(f))?;
            last_draw = Instant::now();
            dirty = false;
        }
    }
}
