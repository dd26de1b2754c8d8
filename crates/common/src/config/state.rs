//! `state`: where run state lives.

use serde::{Deserialize, Serialize};

use super::ConfigError;
use super::secret::has_inline_password;

/// Where run state lives.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct State {
    /// `sqlite://PATH` (created if missing; embedded mode) or `postgres://user@host/db`
    /// (fleet mode; the password comes from `PGPASSWORD` or `~/.pgpass`).
    pub url: String,
}

impl Default for State {
    fn default() -> Self {
        Self {
            url: "sqlite://.replicator/state.db".into(),
        }
    }
}

impl State {
    /// A SQLite or PostgreSQL URL without a password. Only the scheme of a refused URL is
    /// shown: the rest may hold a password.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let url = &self.url;
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            let message = match url.split_once("://") {
                Some((scheme, _)) if scheme.chars().all(|c| c.is_ascii_alphanumeric()) => {
                    format!("scheme `{scheme}` is neither sqlite: nor postgres://")
                }
                _ => "must be a sqlite: or postgres:// URL".to_owned(),
            };
            return Err(ConfigError::key("url", message));
        }
        if has_inline_password(url) {
            return Err(ConfigError::key(
                "url",
                "carries a password: give it in PGPASSWORD or a .pgpass file, never inline",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::config::test_support::MINIMAL;

    fn check(url: &str) -> Result<(), String> {
        State { url: url.into() }
            .validate()
            .map_err(|e| e.within("state").to_string())
    }

    #[test]
    fn sqlite_or_postgres_without_a_password() {
        for ok in [
            "sqlite://.replicator/state.db",
            "sqlite::memory:",
            "postgres://replicator@db/replicator",
            "postgresql://db/replicator",
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
        assert_eq!(
            check("mysql://u:hunter2@db/x").unwrap_err(),
            "config key `state.url`: scheme `mysql` is neither sqlite: nor postgres://"
        );
        assert_eq!(
            check("/var/state.db").unwrap_err(),
            "config key `state.url`: must be a sqlite: or postgres:// URL"
        );
        let err = check("postgres://u:hunter2@db/x").unwrap_err();
        assert!(
            err.contains("carries a password") && !err.contains("hunter2"),
            "{err}"
        );
        // An odd scheme is not echoed either (it may be most of the URL).
        let err = check("u:hunter2@db://x").unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
        let err = Config::from_yaml(
            MINIMAL,
            vec![(
                "REPLICATOR__STATE__URL".to_owned(),
                "redis://cache".to_owned(),
            )],
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("`state.url`: scheme `redis`"), "{err}");
    }
}
