//! `lineage`: where OpenLineage events go (docs/lineage.md). The events themselves are
//! built and sent by `replicator-lineage`; this section only says where and how patiently.

use serde::{Deserialize, Serialize};

use super::secret::has_inline_password;
use super::{ConfigError, SecretRef};

/// `lineage`: an OpenLineage HTTP endpoint (Marquez's API shape) that receives a `RunEvent`
/// per task start, completion and failure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineageConfig {
    /// The server's base URL (`http://marquez:5000`); no credentials in it.
    pub url: String,
    /// The path under `url` events are POSTed to.
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    /// Sent as `Authorization: Bearer <key>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<SecretRef>,
    /// The namespace of replicator's jobs (OpenLineage's job namespace).
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Events waiting to be sent; one more is dropped (with a warning), never waited for.
    #[serde(default = "default_queue")]
    pub queue: usize,
    /// Per-request timeout in milliseconds.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Attempts per event, the first included (transport errors, 429 and 5xx are retried).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Delay before the first retry, in milliseconds; doubles each time (with jitter).
    #[serde(default = "default_base_delay_ms")]
    pub base_delay_ms: u64,
}

/// Most events one emitter holds.
const MAX_QUEUE: usize = 1_000_000;

/// Marquez's endpoint, the one OpenLineage's HTTP transport posts to by default.
pub const DEFAULT_LINEAGE_ENDPOINT: &str = "api/v1/lineage";

fn default_endpoint() -> String {
    DEFAULT_LINEAGE_ENDPOINT.into()
}

fn default_namespace() -> String {
    "replicator".into()
}

fn default_queue() -> usize {
    1000
}

fn default_timeout_ms() -> u64 {
    5000
}

fn default_max_attempts() -> u32 {
    5
}

fn default_base_delay_ms() -> u64 {
    200
}

impl LineageConfig {
    /// A section with `url` and every other key at its default.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            endpoint: default_endpoint(),
            api_key: None,
            namespace: default_namespace(),
            queue: default_queue(),
            timeout_ms: default_timeout_ms(),
            max_attempts: default_max_attempts(),
            base_delay_ms: default_base_delay_ms(),
        }
    }

    /// An http(s) URL without credentials (never echoed: it may hold them), a relative
    /// endpoint, a namespace, a key given by reference, and bounds that let events move.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let url = self.url.trim();
        if !(url.starts_with("http://") || url.starts_with("https://"))
            || url.split_once("://").is_some_and(|(_, rest)| {
                rest.split(['/', '?', '#']).next().unwrap_or("").is_empty()
            })
        {
            return Err(ConfigError::key(
                "url",
                "must be an http:// or https:// URL with a host",
            ));
        }
        if has_inline_password(url) || has_userinfo(url) {
            return Err(ConfigError::key(
                "url",
                "carries credentials: give the key in `api_key` ({ env: VAR } or { file: PATH }), never in the URL",
            ));
        }
        if self.endpoint.contains("://") || self.endpoint.chars().any(char::is_whitespace) {
            return Err(ConfigError::key(
                "endpoint",
                "must be a path under `url` (like api/v1/lineage)",
            ));
        }
        if let Some(key) = &self.api_key {
            key.validate().map_err(|e| e.within("api_key"))?;
        }
        if self.namespace.trim().is_empty() {
            return Err(ConfigError::key("namespace", "must not be empty"));
        }
        if self.queue == 0 || self.queue > MAX_QUEUE {
            return Err(ConfigError::key(
                "queue",
                format!("must be between 1 and {MAX_QUEUE}"),
            ));
        }
        if self.timeout_ms == 0 {
            return Err(ConfigError::key(
                "timeout_ms",
                "must be at least 1 (milliseconds)",
            ));
        }
        if self.max_attempts == 0 {
            return Err(ConfigError::key("max_attempts", "must be at least 1"));
        }
        Ok(())
    }
}

/// Whether a URL's authority has a user part (`https://token@host`): a credential too.
fn has_userinfo(url: &str) -> bool {
    url.split_once("://")
        .map(|(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or(""))
        .is_some_and(|authority| authority.contains('@'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::config::test_support::{MINIMAL, none};

    fn load(lineage: &str) -> Result<Config, ConfigError> {
        Config::from_yaml(&format!("{MINIMAL}lineage: {lineage}\n"), none(), &[])
    }

    #[test]
    fn only_the_url_is_required() {
        let c = load("{ url: \"http://marquez:5000\" }").unwrap();
        let l = c.lineage.unwrap();
        assert_eq!(l, LineageConfig::new("http://marquez:5000"));
        assert_eq!(l.endpoint, "api/v1/lineage");
        assert_eq!(l.namespace, "replicator");
        assert_eq!((l.queue, l.timeout_ms), (1000, 5000));
        assert_eq!((l.max_attempts, l.base_delay_ms), (5, 200));
        assert!(l.api_key.is_none());
        // Without the section there is none, and a config without it serializes without it.
        let c = Config::from_yaml(MINIMAL, none(), &[]).unwrap();
        assert!(c.lineage.is_none());
        assert!(!serde_yaml::to_string(&c).unwrap().contains("lineage"));
        let err = load("{ endpoint: x }").unwrap_err().to_string();
        assert!(err.contains("lineage") && err.contains("url"), "{err}");
    }

    #[test]
    fn a_full_section_loads_and_round_trips() {
        let c = load(
            "{ url: \"https://lineage.example.com/\", endpoint: api/v2/events, api_key: { env: OL_KEY }, namespace: dr, queue: 10, timeout_ms: 100, max_attempts: 1, base_delay_ms: 0 }",
        )
        .unwrap();
        let l = c.lineage.clone().unwrap();
        assert_eq!(l.endpoint, "api/v2/events");
        assert_eq!(l.api_key.as_ref().unwrap().env.as_deref(), Some("OL_KEY"));
        assert_eq!((l.queue, l.max_attempts), (10, 1));
        // (Without the key: a `SecretRef` serializes its unset side as `null`, which does
        // not load back; that is `SecretRef`'s own, shared by every section.)
        let mut c = c;
        c.lineage.as_mut().unwrap().api_key = None;
        let again = Config::from_yaml(&serde_yaml::to_string(&c).unwrap(), none(), &[]).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn refusals_name_the_key() {
        for (section, message) in [
            (
                "{ url: \"ftp://x\" }",
                "config key `lineage.url`: must be an http",
            ),
            (
                "{ url: \"http://\" }",
                "config key `lineage.url`: must be an http",
            ),
            (
                "{ url: \"http://m\", endpoint: \"http://elsewhere/x\" }",
                "config key `lineage.endpoint`: must be a path",
            ),
            (
                "{ url: \"http://m\", namespace: \" \" }",
                "config key `lineage.namespace`: must not be empty",
            ),
            (
                "{ url: \"http://m\", queue: 0 }",
                "config key `lineage.queue`: must be between 1 and 1000000",
            ),
            (
                "{ url: \"http://m\", queue: 1000001 }",
                "config key `lineage.queue`: must be between 1 and 1000000",
            ),
            (
                "{ url: \"http://m\", timeout_ms: 0 }",
                "config key `lineage.timeout_ms`: must be at least 1",
            ),
            (
                "{ url: \"http://m\", max_attempts: 0 }",
                "config key `lineage.max_attempts`: must be at least 1",
            ),
            (
                "{ url: \"http://m\", api_key: {} }",
                "config key `lineage.api_key`: needs exactly one of `env` or `file`",
            ),
        ] {
            let err = load(section).unwrap_err().to_string();
            assert!(err.starts_with(message), "{section}: {err}");
        }
        let err = load("{ url: \"http://m\", colour: red }")
            .unwrap_err()
            .to_string();
        assert!(err.contains("lineage") && err.contains("colour"), "{err}");
    }

    #[test]
    fn credentials_are_refused_and_never_echoed() {
        const SECRET: &str = "hunter2-do-not-print";
        for url in [
            format!("https://user:{SECRET}@marquez:5000"),
            format!("https://{SECRET}@marquez:5000/x"),
        ] {
            let err = load(&format!("{{ url: \"{url}\" }}"))
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with("config key `lineage.url`: carries credentials"),
                "{err}"
            );
            assert!(!err.contains(SECRET), "{err}");
        }
        // An `@` in the path is not userinfo.
        assert!(load("{ url: \"https://m/a@b\" }").is_ok());
        // The key itself: a reference, never inline, and never shown.
        for key in [format!("\"{SECRET}\""), "1234567890123".to_owned()] {
            let err = load(&format!("{{ url: \"http://m\", api_key: {key} }}"))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("`lineage.api_key`") && err.contains("must be a secret reference"),
                "{err}"
            );
            assert!(
                !err.contains(SECRET) && !err.contains("1234567890123"),
                "{err}"
            );
            assert!(!err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn environment_overrides_reach_the_section() {
        let c = Config::from_yaml(
            &format!("{MINIMAL}lineage: {{ url: \"http://m\" }}\n"),
            vec![("REPLICATOR__LINEAGE__QUEUE".to_owned(), "7".to_owned())],
            &["lineage.namespace=prod".into()],
        )
        .unwrap();
        let l = c.lineage.unwrap();
        assert_eq!((l.queue, l.namespace.as_str()), (7, "prod"));
    }
}
