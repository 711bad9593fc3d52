//! The real binary in a real terminal: tmux runs `happyhorse tui` at 120x40 and we type into it.
//! Type a prompt, change a parameter, submit, see the job finish with the default model (Nano)
//! and its clip reach the gallery, open a clip in the preview, play it, quit with Ctrl-C, and
//! check the exit code, that the terminal left the alternate screen, and the files written.
//! Skipped, with a note, where tmux is not installed (install.sh installs it).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use happyhorse::media::{encode_mp4, Audio, Frames, VideoOptions};

struct Session(String);

impl Session {
    fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux").args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
    fn send(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", &self.0];
        args.extend(keys);
        self.tmux(&args);
    }
    fn type_text(&self, text: &str) {
        self.tmux(&["send-keys", "-t", &self.0, "-l", text]);
    }
    fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-t", &self.0])
    }
    /// Waits until the pane shows every one of `needles`, or fails with the screen.
    fn wait_for(&self, needles: &[&str]) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let s = self.screen();
            if needles.iter().all(|n| s.contains(n)) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {needles:?}; screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .output();
    }
}

fn write_clip(path: &Path) {
    let (w, h, n) = (64u32, 36u32, 12usize);
    let mut data = Vec::with_capacity(n * (w * h * 3) as usize);
    for i in 0..n {
        for _ in 0..h {
            for x in 0..w {
                data.extend_from_slice(&[(x * 4) as u8, (i * 20) as u8, 128]);
            }
        }
    }
    let frames = Frames {
        width: w,
        height: h,
        fps: 12,
        data,
    };
    let audio = Audio {
        sample_rate: 44_100,
        channels: 1,
        samples: (0..44_100).map(|i| (i as f32 * 0.05).sin() * 0.5).collect(),
    };
    encode_mp4(path, &frames, Some(&audio), VideoOptions::default()).unwrap();
}

#[test]
fn tui_end_to_end_in_tmux() {
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("note: tmux is not installed; skipping the TUI end-to-end test (install.sh installs it)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let hub = tmp.path().join("hub");
    std::fs::create_dir_all(&hub).unwrap();
    let clip = tmp.path().join("clip.mp4");
    write_clip(&clip);
    // A finished job from an earlier session, so the gallery has a clip to preview.
    std::fs::create_dir_all(&data).unwrap();
    let state = serde_json::json!({
        "history": [],
        "finished": [{
            "id": "abc123", "prompt": "gradient", "model": "test",
            "outputs": [clip], "seconds": 1.0, "at": 0
        }]
    });
    std::fs::write(data.join("tui-state.json"), state.to_string()).unwrap();

    let name = format!("happyhorse-e2e-{}", std::process::id());
    let bin = env!("CARGO_BIN_EXE_happyhorse");
    // The shell prints the exit code after the binary returns and keeps the pane open to read.
    let script = format!(
        "cd '{}' && env -u HAPPYHORSE_MODEL_DIR HAPPYHORSE_DATA_DIR='{}' HAPPYHORSE_CONFIG_DIR='{}' HF_HOME='{}' \
         '{bin}' tui --no-audio; echo \"EXIT:$?\"; sleep 120",
        tmp.path().display(),
        data.display(),
        tmp.path().join("config").display(),
        hub.display(),
    );
    let s = Session(name.clone());
    let out = Command::new("tmux")
        .args([
            "new-session",
            "-d",
            "-x",
            "120",
            "-y",
            "40",
            "-s",
            &name,
            "sh",
            "-c",
            &script,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Auto protocol: the terminal query must neither hang nor eat the keys typed after it.
    s.wait_for(&["Prompt", "Parameters", "Queue", "^S submit"]);
    s.type_text("a chrome horse galloping at sunset");
    s.send(&["Tab"]);
    // negative_prompt, model, image, audio → duration_s
    s.send(&["Down", "Down", "Down", "Down", "Enter"]);
    s.type_text("3");
    s.send(&["Enter"]);
    s.wait_for(&["duration_s", "3"]);
    s.send(&["C-s"]);
    let screen = s.wait_for(&["✓ done in", "Gallery 2"]);
    assert!(screen.contains("#1"), "{screen}");

    // Params → Queue → History → Gallery, open the clip.
    s.send(&["Tab", "Tab", "Tab"]);
    s.wait_for(&["clip.mp4", "a-chrome-horse"]);
    // The gallery selects the newest clip: the one just generated, 3 s at 24 fps.
    s.send(&["Enter"]);
    s.wait_for(&["Preview a-chrome-horse", "1/72", "24fps", "halfblocks"]);
    s.send(&["Right"]);
    s.wait_for(&["2/72"]);
    s.send(&["Space"]);
    s.wait_for(&["72/72"]);

    s.send(&["C-c"]);
    let after = s.wait_for(&["EXIT:0"]);
    assert!(!after.contains("Parameters"), "UI left on screen:\n{after}");
    assert_eq!(
        s.tmux(&["display", "-p", "-t", &name, "#{alternate_on}"])
            .trim(),
        "0"
    );

    let saved = std::fs::read_to_string(data.join("tui-state.json")).unwrap();
    assert!(
        saved.contains("a chrome horse galloping at sunset"),
        "{saved}"
    );
    assert!(saved.contains("\"duration_s\": 3.0"), "{saved}");
    let written: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("a-chrome-horse-galloping-at-sunset-"))
        .collect();
    assert_eq!(written.len(), 2, "the job's MP4 and WAV: {written:?}");
}
