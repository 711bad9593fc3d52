//! Colours. Two themes are built in (`themes/dark.toml`, `themes/light.toml`); a file of the same
//! name in the config dir (`happyhorse/themes/NAME.toml`) overrides only the fields it names, so
//! a user changes one colour without copying the whole theme.

use std::path::Path;

use ratatui::style::{Color, Modifier, Style};
use serde::Deserialize;

use super::TuiError;

const DARK: &str = include_str!("../../themes/dark.toml");
const LIGHT: &str = include_str!("../../themes/light.toml");
pub const BUILTIN: [&str; 2] = ["dark", "light"];

/// A theme as written in TOML: every field a colour name, "#rrggbb" or "reset".
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ThemeFile {
    name: String,
    fg: String,
    bg: String,
    dim: String,
    accent: String,
    border: String,
    border_focused: String,
    selection_fg: String,
    selection_bg: String,
    ok: String,
    error: String,
    warning: String,
    progress: String,
    key: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Theme {
    pub name: String,
    pub fg: Color,
    pub bg: Color,
    pub dim: Color,
    pub accent: Color,
    pub border: Color,
    pub border_focused: Color,
    pub selection_fg: Color,
    pub selection_bg: Color,
    pub ok: Color,
    pub error: Color,
    pub warning: Color,
    pub progress: Color,
    pub key: Color,
}

impl Default for Theme {
    fn default() -> Self {
        // The built-in text is part of the binary and covered by a test; an empty overlay cannot
        // fail to merge, so this fallback is only for the type's sake.
        Theme::load("dark", None).unwrap_or_else(|_| Theme {
            name: "dark".into(),
            fg: Color::Reset,
            bg: Color::Reset,
            dim: Color::DarkGray,
            accent: Color::Cyan,
            border: Color::DarkGray,
            border_focused: Color::Cyan,
            selection_fg: Color::Black,
            selection_bg: Color::Cyan,
            ok: Color::Green,
            error: Color::LightRed,
            warning: Color::Yellow,
            progress: Color::Magenta,
            key: Color::Yellow,
        })
    }
}

impl Theme {
    /// The built-in theme `name`, with the fields of `user_dir/NAME.toml` (when it exists)
    /// laid over it. A user theme with a new name must then name every field.
    pub fn load(name: &str, user_dir: Option<&Path>) -> Result<Theme, TuiError> {
        let builtin = match name {
            "dark" => Some(DARK),
            "light" => Some(LIGHT),
            _ => None,
        };
        let mut table: toml::Table = match builtin {
            Some(text) => parse(&format!("built-in theme {name}"), text)?,
            None => toml::Table::new(),
        };
        let user = user_dir.map(|d| d.join(format!("{name}.toml")));
        match user.filter(|p| p.is_file()) {
            Some(path) => {
                let text = std::fs::read_to_string(&path).map_err(|source| TuiError::Io {
                    path: path.clone(),
                    source,
                })?;
                for (k, v) in parse(&path.display().to_string(), &text)? {
                    table.insert(k, v);
                }
            }
            None if builtin.is_none() => {
                return Err(TuiError::Config(format!(
                    "unknown theme `{name}`; built in: {}, or put {name}.toml in {}",
                    BUILTIN.join(", "),
                    user_dir
                        .map(|d| d.display().to_string())
                        .unwrap_or_else(|| "the config dir's happyhorse/themes".into())
                )))
            }
            None => {}
        }
        table
            .entry("name")
            .or_insert_with(|| toml::Value::String(name.into()));
        let file: ThemeFile = table
            .try_into()
            .map_err(|e| TuiError::Config(format!("theme `{name}`: {e}")))?;
        Theme::from_file(file)
    }

    fn from_file(f: ThemeFile) -> Result<Theme, TuiError> {
        let c = |field: &str, v: &str| {
            parse_color(v).ok_or_else(|| {
                TuiError::Config(format!(
                    "theme `{}`: field `{field}`: \"{v}\" is not a colour; use a name (red, dark_gray, …), \"#rrggbb\" or \"reset\"",
                    f.name
                ))
            })
        };
        Ok(Theme {
            fg: c("fg", &f.fg)?,
            bg: c("bg", &f.bg)?,
            dim: c("dim", &f.dim)?,
            accent: c("accent", &f.accent)?,
            border: c("border", &f.border)?,
            border_focused: c("border_focused", &f.border_focused)?,
            selection_fg: c("selection_fg", &f.selection_fg)?,
            selection_bg: c("selection_bg", &f.selection_bg)?,
            ok: c("ok", &f.ok)?,
            error: c("error", &f.error)?,
            warning: c("warning", &f.warning)?,
            progress: c("progress", &f.progress)?,
            key: c("key", &f.key)?,
            name: f.name,
        })
    }

    pub fn base(&self) -> Style {
        Style::default().fg(self.fg).bg(self.bg)
    }
    pub fn dim(&self) -> Style {
        Style::default().fg(self.dim)
    }
    pub fn border(&self, focused: bool) -> Style {
        Style::default().fg(if focused {
            self.border_focused
        } else {
            self.border
        })
    }
    pub fn title(&self, focused: bool) -> Style {
        let s = Style::default().fg(self.accent);
        if focused {
            s.add_modifier(Modifier::BOLD)
        } else {
            s
        }
    }
    pub fn selected(&self) -> Style {
        Style::default().fg(self.selection_fg).bg(self.selection_bg)
    }
    pub fn error(&self) -> Style {
        Style::default().fg(self.error)
    }
    pub fn ok(&self) -> Style {
        Style::default().fg(self.ok)
    }
    pub fn warning(&self) -> Style {
        Style::default().fg(self.warning)
    }
    pub fn key(&self) -> Style {
        Style::default().fg(self.key).add_modifier(Modifier::BOLD)
    }
}

fn parse(origin: &str, text: &str) -> Result<toml::Table, TuiError> {
    text.parse::<toml::Table>()
        .map_err(|e| TuiError::Config(format!("{origin}: {e}")))
}

/// "reset", a ratatui colour name ("dark_gray", "light_red", …) or "#rrggbb".
pub fn parse_color(s: &str) -> Option<Color> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("reset") || s.eq_ignore_ascii_case("default") {
        return Some(Color::Reset);
    }
    // ratatui's FromStr accepts names with or without separators and "#rrggbb".
    s.replace('_', "").parse::<Color>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_parse() {
        for name in BUILTIN {
            let t = Theme::load(name, None).unwrap();
            assert_eq!(t.name, name);
        }
        assert_eq!(Theme::load("dark", None).unwrap().accent, Color::Cyan);
    }

    #[test]
    fn user_file_overrides_only_named_fields() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("dark.toml"), "accent = \"#ff8800\"\n").unwrap();
        let t = Theme::load("dark", Some(dir.path())).unwrap();
        assert_eq!(t.accent, Color::Rgb(0xff, 0x88, 0x00));
        assert_eq!(t.error, Color::LightRed);
    }

    #[test]
    fn bad_colour_and_unknown_theme_name_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("dark.toml"), "ok = \"greenish\"\n").unwrap();
        let e = Theme::load("dark", Some(dir.path()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`ok`") && e.contains("greenish"), "{e}");
        let e = Theme::load("solarized", Some(dir.path()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown theme `solarized`"), "{e}");
    }
}
