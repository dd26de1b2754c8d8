//! `log`: how the commands that read a config log.

use serde::{Deserialize, Serialize};

pub use crate::telemetry::LogFormat;

fn format<'de, D: serde::Deserializer<'de>>(d: D) -> Result<LogFormat, D::Error> {
    super::one_of(d, |_| "must be `text` or `json`".to_owned())
}

/// Logging.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// `text` or `json`.
    #[serde(deserialize_with = "format")]
    pub format: LogFormat,
    /// Default filter (`RUST_LOG` wins).
    pub level: String,
}

impl Default for Log {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "warn".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::config::test_support::{MINIMAL, none};

    #[test]
    fn the_format_is_text_or_json() {
        let c = Config::from_yaml(MINIMAL, none(), &[]).unwrap();
        assert_eq!(c.log, Log::default());
        let c =
            Config::from_yaml(&format!("{MINIMAL}log: {{ format: json }}\n"), none(), &[]).unwrap();
        assert_eq!(c.log.format, LogFormat::Json);
        assert_eq!(serde_yaml::to_string(&c.log.format).unwrap().trim(), "json");
        for bad in ["xml", "JSON", "\"\""] {
            let err =
                Config::from_yaml(&format!("{MINIMAL}log: {{ format: {bad} }}\n"), none(), &[])
                    .unwrap_err()
                    .to_string();
            assert_eq!(
                err, "config key `log.format`: must be `text` or `json`",
                "{bad}"
            );
        }
        let c = Config::from_yaml(
            MINIMAL,
            vec![("REPLICATOR__LOG__FORMAT".to_owned(), "json".to_owned())],
            &["log.level=debug".into()],
        )
        .unwrap();
        assert_eq!(
            (c.log.format, c.log.level.as_str()),
            (LogFormat::Json, "debug")
        );
    }
}
