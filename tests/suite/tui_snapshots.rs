//! Every panel of the workspace rendered into ratatui's `TestBackend` and compared with insta
//! snapshots (`cargo insta review` after an intended change). Paths, tickets and times are
//! filtered so snapshots do not depend on the machine or the clock.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use happyhorse::engine::registry::{Registry, RegistryError};
use happyhorse::jobs::{Event, JobError, RunOptions};
use happyhorse::media::{Audio, Frames};
use happyhorse::spec::JobSpec;
use happyhorse::tui::app::{App, AppOptions, Focus};
use happyhorse::tui::audio::AudioOut;
use happyhorse::tui::components::{
    Component, Gallery, HistoryPanel, JobRow, JobState, Params, QueuePanel,
};
use happyhorse::tui::history::{FinishedJob, HistoryEntry};
use happyhorse::tui::preview::{LoadedClip, Preview};
use happyhorse::tui::theme::Theme;
use happyhorse::tui::{presets, TuiError};
use ratatui::backend::TestBackend;
use ratatui::layout::Rect;
use ratatui::Terminal;
use ratatui_image::picker::Picker;

fn settings() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.set_snapshot_path("snapshots");
    s.add_filter(r"/tmp/[^\s│]*", "[TMP]");
    s.add_filter(r"ETA \d+(m\d+)?s", "ETA [t]");
    s.add_filter(r"done in \d+\.\ds", "done in [t]");
    s
}

fn app(dir: &std::path::Path) -> App {
    let registry = Registry::builtin().unwrap();
    let (presets, notes) = presets::load(None);
    assert!(notes.is_empty());
    App::new(AppOptions {
        registry,
        run: RunOptions::default(),
        // No model in tests: every job fails the way a missing default model does.
        factory: Box::new(|_, _, _| Err(JobError::Runtime("test: no generator".into()))),
        data_dir: Some(dir.to_path_buf()),
        theme: Theme::default(),
        preview: Preview::new(Picker::halfblocks(), AudioOut::disabled("test")),
        presets,
        notes: vec![],
    })
}

fn render_app(app: &mut App, w: u16, h: u16) -> String {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    app.prepare(Rect::new(0, 0, w, h));
    let now = Instant::now();
    t.draw(|f| app.draw_at(f, now)).unwrap();
    t.backend().to_string()
}

fn render(c: &dyn Component, w: u16, h: u16, focused: bool) -> String {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| c.draw(f, f.area(), &Theme::default(), focused))
        .unwrap();
    t.backend().to_string()
}

fn keys(app: &mut App, s: &str) {
    for c in s.chars() {
        app.handle_key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE));
    }
}

fn key(app: &mut App, code: KeyCode, m: KeyModifiers) {
    app.handle_key(KeyEvent::new(code, m));
}

#[test]
fn workspace_fresh() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = app(dir.path());
    settings().bind(|| insta::assert_snapshot!(render_app(&mut a, 120, 40)));
}

#[test]
fn workspace_typed_prompt_and_bad_parameter() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = app(dir.path());
    keys(&mut a, "a chrome horse galloping");
    key(&mut a, KeyCode::Tab, KeyModifiers::NONE);
    assert_eq!(a.focus, Focus::Params);
    // Down to fps, type 30: the CLI's own message appears under the row.
    for _ in 0..5 {
        key(&mut a, KeyCode::Down, KeyModifiers::NONE);
    }
    key(&mut a, KeyCode::Enter, KeyModifiers::NONE);
    keys(&mut a, "30");
    key(&mut a, KeyCode::Enter, KeyModifiers::NONE);
    key(&mut a, KeyCode::Char('s'), KeyModifiers::CONTROL);
    settings().bind(|| insta::assert_snapshot!(render_app(&mut a, 120, 40)));
}

#[test]
fn params_panel_with_values_and_errors() {
    let mut p = Params::new(Registry::builtin().unwrap());
    p.load(&JobSpec::example());
    p.set("steps", "0");
    p.validate(&JobSpec::example().prompt);
    settings().bind(|| insta::assert_snapshot!(render(&p, 44, 34, true)));
}

#[test]
fn queue_panel_running_done_and_model_missing() {
    let t0 = Instant::now();
    let mut q = QueuePanel::default();
    let mut done = JobRow::new(1, "a red ball bouncing on a green grass field");
    done.state = JobState::Done {
        seconds: 12.5,
        outputs: vec![PathBuf::from("clips/a-red-ball.mp4")],
    };
    q.push(done);
    let mut running = JobRow::new(2, "jazz quartet in a dimly lit basement bar");
    for (i, s) in [1usize, 2, 3].iter().enumerate() {
        running.progress(
            &Event::Step {
                job: "x".into(),
                variant: 1,
                step: *s,
                total: 8,
            },
            t0 + Duration::from_secs(i as u64 * 2),
        );
    }
    q.push(running);
    let missing = JobError::Model(RegistryError::WeightsMissing {
        model: "magihuman-base".into(),
        role: "dit".into(),
        file: "dit/model.safetensors".into(),
        repo: " (hub: GAIR/daVinci-MagiHuman)".into(),
        searched: "    hub cache /tmp/hub (GAIR/daVinci-MagiHuman: dit)".into(),
    });
    let mut failed = JobRow::new(3, "Tokyo street-food vendor at dusk");
    failed.state = JobState::Failed {
        kind: missing.kind(),
        message: missing.to_string(),
    };
    q.push(failed);
    let mut t = Terminal::new(TestBackend::new(60, 16)).unwrap();
    t.draw(|f| {
        q.draw_at(
            f,
            f.area(),
            &Theme::default(),
            true,
            t0 + Duration::from_secs(4),
        )
    })
    .unwrap();
    settings().bind(|| insta::assert_snapshot!(t.backend().to_string()));
}

#[test]
fn history_panel_with_favourite_and_search() {
    let mut h = HistoryPanel::default();
    let entry = |p: &str, fav| HistoryEntry {
        spec: JobSpec {
            prompt: p.into(),
            ..Default::default()
        },
        favourite: fav,
        at: 0,
    };
    h.set_entries(vec![
        entry(
            "a chrome horse running through glowing digital flowers",
            true,
        ),
        entry("a jazz quartet in a dimly lit basement bar", false),
        entry("a red ball bouncing", false),
    ]);
    let all = render(&h, 40, 6, true);
    for c in "/jazz".chars() {
        h.handle(&KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE));
    }
    let searched = render(&h, 40, 6, true);
    settings().bind(|| {
        insta::assert_snapshot!("history_all", all);
        insta::assert_snapshot!("history_search", searched);
    });
}

#[test]
fn gallery_panel() {
    let mut g = Gallery::default();
    g.set_items(&[FinishedJob {
        id: "abc123".into(),
        prompt: "a red ball".into(),
        model: "nano".into(),
        outputs: vec!["/nonexistent/a-red-ball-abc123.mp4".into()],
        seconds: 3.0,
        at: 0,
    }]);
    settings().bind(|| insta::assert_snapshot!(render(&g, 40, 4, false)));
}

fn test_clip() -> LoadedClip {
    let (w, h, n) = (16u32, 8u32, 24usize);
    let mut data = Vec::new();
    for i in 0..n {
        for y in 0..h {
            for x in 0..w {
                data.extend_from_slice(&[(x * 16) as u8, (y * 32) as u8, (i * 10) as u8]);
            }
        }
    }
    // Silence, then a tone: the loudness strip must show where the sound starts.
    let samples: Vec<f32> = (0..16_000)
        .map(|i| {
            if i < 8_000 {
                0.0
            } else {
                (i as f32 * 0.1).sin() * 0.8
            }
        })
        .collect();
    LoadedClip {
        path: "/nonexistent/clip.mp4".into(),
        frames: Frames {
            width: w,
            height: h,
            fps: 12,
            data,
        },
        audio: Some(Audio {
            sample_rate: 8_000,
            channels: 1,
            samples,
        }),
    }
}

#[test]
fn preview_halfblocks_with_loudness_strip_when_no_audio_device() {
    let mut p = Preview::new(Picker::halfblocks(), AudioOut::disabled("no audio device"));
    p.set_clip(test_clip());
    // Scrub to the middle: the playhead sits where the sound starts.
    for _ in 0..12 {
        p.handle(&KeyEvent::new(KeyCode::Right, KeyModifiers::NONE));
    }
    let area = Rect::new(0, 0, 48, 14);
    p.prepare(area);
    settings().bind(|| insta::assert_snapshot!(render(&p, 48, 14, true)));
}

#[test]
fn presets_popup_and_quit_confirmation() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = app(dir.path());
    key(&mut a, KeyCode::Char('p'), KeyModifiers::CONTROL);
    let popup = render_app(&mut a, 100, 30);
    key(&mut a, KeyCode::Down, KeyModifiers::NONE);
    key(&mut a, KeyCode::Enter, KeyModifiers::NONE);
    assert!(a.prompt.text().contains("jazz quartet"));
    // A job in the queue makes Ctrl-C ask first.
    a.submit();
    key(&mut a, KeyCode::Char('c'), KeyModifiers::CONTROL);
    assert!(!a.quit);
    let confirm = render_app(&mut a, 100, 30);
    key(&mut a, KeyCode::Char('n'), KeyModifiers::NONE);
    assert!(!a.quit);
    settings().bind(|| {
        insta::assert_snapshot!("presets_popup", popup);
        insta::assert_snapshot!("quit_confirm", confirm);
    });
}

#[test]
fn history_and_parameters_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = app(dir.path());
    keys(&mut a, "rain on a tin roof");
    key(&mut a, KeyCode::Tab, KeyModifiers::NONE);
    key(&mut a, KeyCode::Down, KeyModifiers::NONE); // model
    key(&mut a, KeyCode::Down, KeyModifiers::NONE); // image
    key(&mut a, KeyCode::Down, KeyModifiers::NONE); // audio
    key(&mut a, KeyCode::Down, KeyModifiers::NONE); // duration_s
    key(&mut a, KeyCode::Enter, KeyModifiers::NONE);
    keys(&mut a, "3");
    key(&mut a, KeyCode::Enter, KeyModifiers::NONE);
    key(&mut a, KeyCode::Char('s'), KeyModifiers::CONTROL);
    a.shutdown();

    let b = app(dir.path());
    let (spec, errs) = b.params.spec("");
    assert!(errs.is_empty());
    assert_eq!(spec.duration_s, Some(3.0));
    let mut b = b;
    b.focus = Focus::History;
    key(&mut b, KeyCode::Enter, KeyModifiers::NONE);
    assert_eq!(b.prompt.text(), "rain on a tin roof");
}

#[test]
fn theme_errors_are_config_errors() {
    assert!(matches!(
        Theme::load("nope", None),
        Err(TuiError::Config(_))
    ));
}
