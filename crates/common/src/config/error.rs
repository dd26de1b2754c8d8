//! Why a configuration was refused, in one bounded line.

use std::path::PathBuf;

/// Longest run of a user's value (or key) an error message shows, in characters.
const SHOWN_CHARS: usize = 100;
/// Longest config error message, in characters.
const MESSAGE_CHARS: usize = 600;

/// Why a configuration was refused. Every message is one bounded line: a value is shown
/// up to [`SHOWN_CHARS`] characters, a secret's value never.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {}: {source}", bounded(&.path.display().to_string()))]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config is not valid YAML: {}", bounded(&.0.to_string()))]
    Yaml(#[from] serde_yaml::Error),
    #[error("config key `{}`: {}", elide(.key, 2 * SHOWN_CHARS), bounded(.message))]
    Key { key: String, message: String },
    #[error("invalid override `{}`: expected KEY=VALUE", elide(.0, SHOWN_CHARS))]
    Override(String),
    #[error("invalid config: {}", bounded(.0))]
    Invalid(String),
}

impl ConfigError {
    /// A refused value at `key`: relative to the section that validates it (`cloners`),
    /// made whole by [`ConfigError::within`] on the way up (`concurrency.cloners`).
    pub fn key(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Key {
            key: key.into(),
            message: message.into(),
        }
    }

    /// This error with its key placed under `section`: `cloners` within `concurrency` is
    /// `concurrency.cloners`, `[0].url` within `webhooks` is `webhooks[0].url`, the empty
    /// key is the section itself. Errors without a key are unchanged.
    pub fn within(self, section: &str) -> Self {
        match self {
            Self::Key { key, message } => {
                let key = if key.is_empty() {
                    section.to_owned()
                } else if key.starts_with('[') {
                    format!("{section}{key}")
                } else {
                    format!("{section}.{key}")
                };
                Self::Key { key, message }
            }
            other => other,
        }
    }
}

/// `s` on one line (control characters escaped), cut to `max` characters with the count
/// of what was left out.
fn elide(s: &str, max: usize) -> String {
    let mut out = String::new();
    for (shown, c) in s.chars().enumerate() {
        if shown == max {
            let total = s.chars().count();
            out.push_str(&format!("… ({} more characters)", total - max));
            return out;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// A message with every quoted part (`"…"`, as serde quotes a string value, or `` `…` ``,
/// as it quotes a field or variant name) cut to [`SHOWN_CHARS`], on one line, and at most
/// [`MESSAGE_CHARS`] long.
fn bounded(msg: &str) -> String {
    let mut out = String::new();
    let mut rest = msg;
    while let Some(i) = rest.find(['"', '`']) {
        let quote = rest.as_bytes()[i];
        out.push_str(&rest[..=i]);
        let inner = &rest[i + 1..];
        let end = if quote == b'"' {
            // serde writes a string with Debug escapes: skip `\"`.
            let mut escaped = false;
            inner.char_indices().find_map(|(j, c)| {
                let end = !escaped && c == '"';
                escaped = !escaped && c == '\\';
                end.then_some(j)
            })
        } else {
            inner.find('`')
        };
        let end = end.unwrap_or(inner.len());
        out.push_str(&elide(&inner[..end], SHOWN_CHARS));
        rest = inner.get(end..).unwrap_or("");
        if let Some(r) = rest.strip_prefix(quote as char) {
            out.push(quote as char);
            rest = r;
        }
    }
    out.push_str(rest);
    elide(&out, MESSAGE_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::test_support::{MINIMAL, none};
    use crate::config::{Config, MAX_CONFIG_BYTES};

    #[test]
    fn keys_nest_under_their_sections() {
        let e = ConfigError::key("url", "m")
            .within("[0]")
            .within("webhooks")
            .within("notifications");
        assert_eq!(
            e.to_string(),
            "config key `notifications.webhooks[0].url`: m"
        );
        let e = ConfigError::key("", "m").within("tables[2]");
        assert_eq!(e.to_string(), "config key `tables[2]`: m");
        let e = ConfigError::Invalid("x".into()).within("state");
        assert_eq!(e.to_string(), "invalid config: x");
    }

    #[test]
    fn quoted_parts_and_whole_messages_are_cut() {
        let long = "y".repeat(500);
        let m = bounded(&format!("value `{long}` and \"{long}\"\nnext"));
        assert!(m.contains("(400 more characters)`"), "{m}");
        assert!(!m.contains('\n'), "{m}");
        assert!(bounded(&"z".repeat(5000)).chars().count() < MESSAGE_CHARS + 40);
        assert_eq!(elide("a\tb", 10), "a\\tb");
    }

    #[test]
    fn error_messages_are_bounded() {
        // Over the size limit: refused before parsing, in one short line.
        let huge = format!("{MINIMAL}x: \"{}\"\n", "a".repeat(MAX_CONFIG_BYTES));
        let err = Config::from_yaml(&huge, none(), &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("larger than 4 MiB") && err.len() < 200,
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.yaml");
        std::fs::write(&path, &huge).unwrap();
        let err = Config::load(&path, &[]).unwrap_err().to_string();
        assert!(
            err.contains("larger than 4 MiB") && err.len() < 200,
            "{err}"
        );
        // A wrong-typed value, an unknown variant and an unknown key, each a megabyte long.
        let long = "x".repeat(1 << 20);
        for (text, key) in [
            (
                format!("{MINIMAL}concurrency: {{ cloners: \"{long}\" }}\n"),
                "concurrency.cloners",
            ),
            (format!("{MINIMAL}operation: \"{long}\"\n"), "operation"),
            // (YAML keys are at most 1024 characters.)
            (
                format!("{MINIMAL}concurrency: {{ {}: 1 }}\n", &long[..1000]),
                "concurrency",
            ),
            (
                format!("{MINIMAL}bus: {{ backend: \"{long}\" }}\n"),
                "bus.backend",
            ),
            (
                format!("{MINIMAL}state: {{ url: \"{long}\" }}\n"),
                "state.url",
            ),
        ] {
            let err = Config::from_yaml(&text, none(), &[])
                .unwrap_err()
                .to_string();
            assert!(err.len() < 800, "{key}: {} bytes: {err}", err.len());
            assert!(err.contains(key) && !err.contains('\n'), "{err}");
        }
        // A short value is still shown whole.
        let err = Config::from_yaml(
            &format!("{MINIMAL}concurrency: {{ cloners: many }}\n"),
            none(),
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("\"many\""), "{err}");
    }
}
