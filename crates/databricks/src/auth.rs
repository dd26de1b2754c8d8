//! Credentials for a workspace: a personal access token, or OAuth machine-to-machine
//! (client credentials at `{host}/oidc/v1/token`) with the access token cached and
//! refreshed a margin before it expires. Secrets never appear in `Debug` output or logs.

use std::fmt;
use std::time::{Duration, Instant};

use serde::Deserialize;
use url::Url;

use crate::DatabricksError;

/// How the client authenticates.
#[derive(Clone)]
pub enum Credentials {
    /// A personal access token (`Authorization: Bearer <token>`).
    Token(String),
    /// OAuth M2M: a service principal's client ID and secret.
    OAuth {
        client_id: String,
        client_secret: String,
    },
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Token(_) => f.write_str("Token(<redacted>)"),
            Self::OAuth { client_id, .. } => f
                .debug_struct("OAuth")
                .field("client_id", client_id)
                .field("client_secret", &"<redacted>")
                .finish(),
        }
    }
}

struct Cached {
    token: String,
    refresh_at: Instant,
}

/// Hands out bearer tokens, fetching and caching OAuth tokens as needed.
pub(crate) struct Auth {
    credentials: Credentials,
    cache: tokio::sync::Mutex<Option<Cached>>,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl Auth {
    pub(crate) fn new(credentials: Credentials) -> Self {
        Self {
            credentials,
            cache: tokio::sync::Mutex::new(None),
        }
    }

    /// Whether a refused token can be replaced by a fresh one.
    pub(crate) fn can_refresh(&self) -> bool {
        matches!(self.credentials, Credentials::OAuth { .. })
    }

    /// The bearer token to send. `stale` is a token the server just refused: when the cache
    /// still holds it, a new one is fetched (once, however many requests saw the refusal).
    pub(crate) async fn bearer(
        &self,
        http: &reqwest::Client,
        host: &Url,
        stale: Option<&str>,
    ) -> Result<String, DatabricksError> {
        let (client_id, client_secret) = match &self.credentials {
            Credentials::Token(t) => return Ok(t.clone()),
            Credentials::OAuth {
                client_id,
                client_secret,
            } => (client_id, client_secret),
        };
        let mut cache = self.cache.lock().await;
        if let Some(c) = cache.as_ref() {
            let refused = stale.is_some_and(|s| s == c.token);
            if !refused && Instant::now() < c.refresh_at {
                return Ok(c.token.clone());
            }
        }
        let url = host
            .join("oidc/v1/token")
            .map_err(|e| DatabricksError::Config(format!("bad host {host}: {e}")))?;
        let path = url.path().to_owned();
        let resp = http
            .post(url)
            .basic_auth(client_id, Some(client_secret))
            .form(&[("grant_type", "client_credentials"), ("scope", "all-apis")])
            .send()
            .await
            .map_err(|e| DatabricksError::Transport {
                method: "POST".into(),
                path: path.clone(),
                detail: e.without_url().to_string(),
            })?;
        let status = resp.status().as_u16();
        if status == 429 || status >= 500 {
            return Err(DatabricksError::Http {
                method: "POST".into(),
                path,
                status,
                code: "TOKEN_ENDPOINT_UNAVAILABLE".into(),
                message: "the OAuth token endpoint is unavailable".into(),
                retry_after: crate::client::retry_after(resp.headers()),
            });
        }
        if !resp.status().is_success() {
            // The body may echo request details; report the status and the OAuth error code only.
            let body: serde_json::Value = resp.json().await.unwrap_or_default();
            let code = body["error"].as_str().unwrap_or("unknown error");
            return Err(DatabricksError::Auth {
                host: host.to_string(),
                message: format!(
                    "OAuth token request for client `{client_id}` refused: HTTP {status} {code}"
                ),
            });
        }
        let token: TokenResponse = resp.json().await.map_err(|e| DatabricksError::Protocol {
            path,
            detail: format!("token response: {}", e.without_url()),
        })?;
        let lifetime = Duration::from_secs(token.expires_in.unwrap_or(3600));
        // Refresh a minute early, or at half-life for short-lived tokens.
        let margin = Duration::from_secs(60).min(lifetime / 2);
        tracing::debug!(
            lifetime_s = lifetime.as_secs(),
            "fetched an OAuth access token"
        );
        *cache = Some(Cached {
            token: token.access_token.clone(),
            refresh_at: Instant::now() + lifetime - margin,
        });
        Ok(token.access_token)
    }
}
