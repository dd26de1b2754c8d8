//! `console`: the operator console (docs/console.md) — where it listens, and the operator
//! token its actions need.

use serde::{Deserialize, Serialize};

use super::{ConfigError, SecretRef};

/// `console`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Address the console listens on (`replicator serve console`, `replicator run --ui`).
    #[serde(default = "default_listen")]
    pub listen: std::net::SocketAddr,
    /// The token every action (replay) must carry; without it the console is read-only.
    #[serde(default)]
    pub operator_token: Option<SecretRef>,
}

fn default_listen() -> std::net::SocketAddr {
    ([127, 0, 0, 1], 8080).into()
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            operator_token: None,
        }
    }
}

impl ConsoleConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(t) = &self.operator_token {
            t.validate().map_err(|e| e.within("operator_token"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;

    #[test]
    fn the_console_listens_locally_by_default_and_takes_its_token_by_reference() {
        let c = Config::from_yaml(
            "source: { root: /s }\ntarget: { root: /t }\nconsole: {}\n",
            std::iter::empty(),
            &[],
        )
        .unwrap();
        let console = c.console.unwrap();
        assert_eq!(console.listen.to_string(), "127.0.0.1:8080");
        assert!(console.operator_token.is_none());
        let err = Config::from_yaml(
            "source: { root: /s }\ntarget: { root: /t }\nconsole: { operator_token: s3cr3t-token }\n",
            std::iter::empty(),
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("operator_token") && !err.contains("s3cr3t"),
            "{err}"
        );
    }
}
