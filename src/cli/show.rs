//! `happyhorse show FILE.mp4`: a strip of evenly spaced frames printed with half-block
//! characters and 24-bit colour, two pixel rows per text row. A hand-rolled renderer rather than
//! viuer: viuer needs `image` with its default codecs, a second heavy build of what we already
//! have with PNG only, and the half-block output is all a frame strip over SSH needs.

use std::io::Write;
use std::path::Path;

use super::{CliError, CliResult};
use crate::media::{self, Frames};

/// Nearest-neighbour sample of frame `i` at output cell (x, y) of a `w`×`h` pixel grid.
fn sample(frames: &Frames, i: usize, x: usize, y: usize, w: usize, h: usize) -> [u8; 3] {
    let sx = (x * frames.width as usize / w).min(frames.width as usize - 1);
    let sy = (y * frames.height as usize / h).min(frames.height as usize - 1);
    let o = (sy * frames.width as usize + sx) * 3;
    let f = frames.frame(i);
    [f[o], f[o + 1], f[o + 2]]
}

/// Renders frames `picks` side by side, each `cols` wide, as ANSI text.
pub fn render_strip(frames: &Frames, picks: &[usize], cols: usize) -> String {
    let aspect = frames.height as f64 / frames.width.max(1) as f64;
    // A cell is about twice as tall as wide; half-blocks give two pixel rows per cell.
    let px_h = ((cols as f64 * aspect).round() as usize).max(2) & !1;
    let mut out = String::new();
    for row in (0..px_h).step_by(2) {
        for (k, &i) in picks.iter().enumerate() {
            if k > 0 {
                out.push_str("\x1b[0m ");
            }
            for x in 0..cols {
                let t = sample(frames, i, x, row, cols, px_h);
                let b = sample(frames, i, x, row + 1, cols, px_h);
                out.push_str(&format!(
                    "\x1b[38;2;{};{};{}m\x1b[48;2;{};{};{}m▀",
                    t[0], t[1], t[2], b[0], b[1], b[2]
                ));
            }
        }
        out.push_str("\x1b[0m\n");
    }
    out
}

pub fn show(file: &Path, n: usize, width: Option<u16>) -> CliResult {
    if n == 0 {
        return Err(CliError::bad_input("--frames must be at least 1"));
    }
    let frames = media::decode_frames(file).map_err(|e| CliError::new(super::EXIT_BAD_INPUT, e))?;
    let count = frames.count();
    if count == 0 || frames.width == 0 || frames.height == 0 {
        return Err(CliError::bad_input(format!(
            "{}: no video frames",
            file.display()
        )));
    }
    let n = n.min(count);
    let picks: Vec<usize> = (0..n).map(|k| k * count / n).collect();
    let total = width
        .map(usize::from)
        .or_else(|| crossterm::terminal::size().ok().map(|(w, _)| w as usize))
        .unwrap_or(80);
    let cols = (total.saturating_sub(n - 1) / n).clamp(4, 80);
    let strip = render_strip(&frames, &picks, cols);
    let times: Vec<String> = picks
        .iter()
        .map(|&i| {
            format!(
                "{:<w$}",
                format!("{:.2}s", i as f64 / frames.fps.max(1) as f64),
                w = cols
            )
        })
        .collect();
    let mut stdout = std::io::stdout().lock();
    let r = writeln!(stdout, "{strip}{}", times.join(" ").trim_end()).and_then(|_| stdout.flush());
    match r {
        Ok(()) => Ok(()),
        // A closed pipe (`| head`) is not an error worth reporting.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(CliError::runtime(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_has_two_pixel_rows_per_line_and_true_colour() {
        let frames = Frames {
            width: 4,
            height: 4,
            fps: 12,
            data: [[255u8, 0, 0]; 32].concat(),
        };
        let s = render_strip(&frames, &[0, 1], 4);
        assert_eq!(s.lines().count(), 2);
        assert!(s.contains("\x1b[38;2;255;0;0m"));
        assert_eq!(s.matches('▀').count(), 16);
    }
}
