//! The workspace client: one Databricks workspace reached over REST with reqwest.
//!
//! - every request carries a bearer token from [`Credentials`]; an OAuth token the server
//!   refuses with 401 is refreshed once and the request repeated;
//! - HTTP 429 and 503 are retried after the server's `Retry-After` (capped by
//!   [`ClientOptions::max_retry_after`], never shorter than the exponential backoff); other
//!   5xx answers and transport errors are retried with backoff; 4xx answers are permanent;
//! - SQL statements go through the Statement Execution API: submitted with a server-side
//!   `wait_timeout`, polled until a terminal state, cancelled when the client's own
//!   `statement_timeout` runs out, results read inline (`JSON_ARRAY`) chunk by chunk;
//! - the Files API (`files`) streams volume files both ways (no total timeout on those
//!   requests, a read timeout instead); paths are checked so none leaves its volume;
//! - Unity Catalog listings follow `next_page_token` until it is absent (a page may be empty
//!   and still carry a token); Jobs API listings (`/api/2.2/jobs/list`, `…/runs/list`) too;
//! - with a [`Journal`] in dry-run mode, reads (GET) are sent but every SQL statement and
//!   every other call is recorded instead of sent.

mod answer;
mod catalog;
mod credentials;
mod files;
mod jobs;
mod statement;
mod unity_catalog;
mod volumes;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable as _};
use replicator_common::retry::{RetryPolicy, Retryable};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::Value;
use url::Url;

use crate::DatabricksError;
use crate::auth::{Auth, Credentials};

pub(crate) use answer::retry_after;
use answer::{error_answer, success_body};
pub use catalog::{
    CatalogDetail, ColumnDetail, ColumnMask, Dependency, DependencyList, FunctionDependency,
    Grants, RowFilter, SchemaDetail, TableDependency, TableDetail,
};
pub use credentials::{AwsTempCredentials, AzureUserDelegationSas, TemporaryCredential};
pub use files::{DirectoryEntry, Download, FileStat, MAX_UPLOAD, VolumeTree, rel_segments};
pub use jobs::{
    JobInfo, JobSettings, RunInfo, RunOutcome, RunState, RunStatus, RunsQuery, TerminationDetails,
};
pub use statement::StatementResult;
pub use unity_catalog::{
    CatalogInfo, ColumnInfo, ProviderInfo, RecipientInfo, SchemaInfo, ShareInfo, SharedObject,
    TableInfo, TableType, UniformIceberg,
};
pub use volumes::{ExternalLocationInfo, StorageCredentialInfo, VolumeInfo, VolumeName};

/// Tuning of the client; the defaults suit real workspaces, tests shrink the durations.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Interval between polls of a running statement.
    pub poll_interval: Duration,
    /// How long a statement may run before the client cancels it.
    pub statement_timeout: Duration,
    /// Server-side wait on submit: 0 (return at once) or 5 to 50 seconds.
    pub wait_timeout: Duration,
    /// Retries of throttled (429/503), failed (5xx) or unreachable requests.
    pub retry: RetryPolicy,
    /// Upper bound on one wait the server asks for with `Retry-After`.
    pub max_retry_after: Duration,
    /// Timeout of one HTTP request.
    pub request_timeout: Duration,
    /// `max_results` of Unity Catalog listings.
    pub page_size: u32,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(1),
            statement_timeout: Duration::from_secs(2 * 3600),
            wait_timeout: Duration::from_secs(10),
            retry: RetryPolicy {
                max_attempts: 8,
                base_delay_ms: 500,
                max_delay_ms: 30_000,
            },
            max_retry_after: Duration::from_secs(120),
            request_timeout: Duration::from_secs(60),
            page_size: 100,
        }
    }
}

impl ClientOptions {
    /// Refuse options the Statement Execution API or the retry loop cannot work with.
    fn check_bounds(&self) -> Result<(), DatabricksError> {
        let w = self.wait_timeout.as_secs();
        if self.wait_timeout.subsec_nanos() != 0 || !(w == 0 || (5..=50).contains(&w)) {
            return Err(DatabricksError::Config(format!(
                "wait_timeout must be 0 or 5 to 50 whole seconds, not {:?}",
                self.wait_timeout
            )));
        }
        if self.retry.max_attempts == 0 {
            return Err(DatabricksError::Config(
                "retry.max_attempts must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// What a dry run would have done, in order: one line per SQL statement or API call.
#[derive(Clone, Debug, Default)]
pub struct Journal(Arc<Mutex<Vec<String>>>);

impl Journal {
    pub fn push(&self, line: String) {
        self.0.lock().expect("journal lock").push(line);
    }
    pub fn entries(&self) -> Vec<String> {
        self.0.lock().expect("journal lock").clone()
    }
}

/// One Databricks workspace.
#[derive(Debug)]
pub struct WorkspaceClient {
    host: Url,
    warehouse_id: String,
    http: reqwest::Client,
    /// For the Files API: no total timeout (a large file takes as long as it takes), a
    /// connect timeout and a timeout on each read instead.
    transfer: reqwest::Client,
    auth: Auth,
    options: ClientOptions,
    /// Dry run: record instead of sending anything but reads.
    journal: Option<Journal>,
}

impl WorkspaceClient {
    /// A client for the workspace at `host` (`https://adb-123.4.azuredatabricks.net`) running
    /// statements on `warehouse_id`.
    pub fn new(
        host: &str,
        warehouse_id: &str,
        credentials: Credentials,
        options: ClientOptions,
    ) -> Result<Self, DatabricksError> {
        options.check_bounds()?;
        let mut host = Url::parse(host)
            .map_err(|e| DatabricksError::Config(format!("workspace host `{host}`: {e}")))?;
        if !matches!(host.scheme(), "https" | "http") || host.cannot_be_a_base() {
            return Err(DatabricksError::Config(format!(
                "workspace host `{host}` must be an https:// URL"
            )));
        }
        if !host.path().ends_with('/') {
            host.set_path(&format!("{}/", host.path()));
        }
        let http = reqwest::Client::builder()
            .timeout(options.request_timeout)
            .user_agent(concat!("replicator/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| DatabricksError::Config(format!("http client: {e}")))?;
        let transfer = reqwest::Client::builder()
            .connect_timeout(options.request_timeout)
            .read_timeout(options.request_timeout)
            .user_agent(concat!("replicator/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| DatabricksError::Config(format!("http client: {e}")))?;
        Ok(Self {
            host,
            warehouse_id: warehouse_id.to_owned(),
            http,
            transfer,
            auth: Auth::new(credentials),
            options,
            journal: None,
        })
    }

    /// Dry-run mode: reads are sent, everything else is recorded in `journal`.
    pub fn with_dry_run(mut self, journal: Journal) -> Self {
        self.journal = Some(journal);
        self
    }

    pub fn host(&self) -> &Url {
        &self.host
    }

    pub fn is_dry_run(&self) -> bool {
        self.journal.is_some()
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.host.clone();
        url.path_segments_mut()
            .expect("host is a base URL")
            .pop_if_empty()
            .extend(segments);
        url
    }

    /// Send a request with authentication and retries; returns the JSON body (`Null` when
    /// empty).
    async fn call(
        &self,
        method: Method,
        url: Url,
        query: &[(&str, String)],
        body: Option<Value>,
    ) -> Result<Value, DatabricksError> {
        if let Some(journal) = &self.journal {
            if method != Method::GET {
                let body = body.map(|b| format!(" {b}")).unwrap_or_default();
                journal.push(format!("API {method} {url}{body}"));
                return Ok(Value::Null);
            }
            let query: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
            journal.push(format!("API GET {url} {} (read: sent)", query.join("&")));
        }
        let policy = &self.options.retry;
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(policy.base_delay_ms))
            .with_max_delay(Duration::from_millis(
                policy.max_delay_ms.max(policy.base_delay_ms),
            ))
            .with_max_times(policy.max_attempts.saturating_sub(1) as usize)
            .with_jitter();
        let max_retry_after = self.options.max_retry_after;
        (|| self.once(&method, &url, query, body.as_ref()))
            .retry(backoff)
            .when(|e: &DatabricksError| e.is_transient())
            .adjust(move |e: &DatabricksError, delay| {
                delay.map(|d| match e.retry_after() {
                    Some(ra) => ra.min(max_retry_after).max(d),
                    None => d,
                })
            })
            .notify(|e: &DatabricksError, delay: Duration| {
                tracing::warn!(error = %e, delay_ms = delay.as_millis() as u64, "request failed, retrying");
            })
            .await
    }

    async fn once(
        &self,
        method: &Method,
        url: &Url,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value, DatabricksError> {
        let path = url.path().to_owned();
        let mut token = self.auth.bearer(&self.http, &self.host, None).await?;
        let mut refreshed = false;
        loop {
            let mut req = self
                .http
                .request(method.clone(), url.clone())
                .bearer_auth(&token);
            if !query.is_empty() {
                req = req.query(query);
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            let resp = req.send().await.map_err(|e| DatabricksError::Transport {
                method: method.to_string(),
                path: path.clone(),
                detail: e.without_url().to_string(),
            })?;
            let status = resp.status().as_u16();
            if status == 401 && self.auth.can_refresh() && !refreshed {
                tracing::info!(%path, "access token refused, fetching a new one");
                token = self
                    .auth
                    .bearer(&self.http, &self.host, Some(&token))
                    .await?;
                refreshed = true;
                continue;
            }
            let retry_after = retry_after(resp.headers());
            let text = resp.text().await.map_err(|e| DatabricksError::Transport {
                method: method.to_string(),
                path: path.clone(),
                detail: e.without_url().to_string(),
            })?;
            if (200..300).contains(&status) {
                return success_body(path, &text);
            }
            return Err(error_answer(
                &self.host,
                method,
                path,
                status,
                &text,
                retry_after,
            ));
        }
    }

    async fn get_json<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<T, DatabricksError> {
        let url = self.url(segments);
        let path = url.path().to_owned();
        let v = self.call(Method::GET, url, query, None).await?;
        serde_json::from_value(v).map_err(|e| DatabricksError::Protocol {
            path,
            detail: e.to_string(),
        })
    }

    /// GET that maps "the object does not exist" to `None`: an answer whose `error_code` says
    /// so (`RESOURCE_DOES_NOT_EXIST`, `TABLE_DOES_NOT_EXIST`, …). A 404 that does not (no such
    /// endpoint, or no Databricks error body) is an error, never "absent".
    async fn get_optional<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<Option<T>, DatabricksError> {
        match self.get_json(segments, query).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every item of a paginated Unity Catalog listing.
    async fn list_all<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
        field: &str,
    ) -> Result<Vec<T>, DatabricksError> {
        let url = self.url(segments);
        let path = url.path().to_owned();
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        let mut seen = HashSet::new();
        loop {
            let mut q = query.to_vec();
            q.push(("max_results", self.options.page_size.to_string()));
            if let Some(t) = &token {
                q.push(("page_token", t.clone()));
            }
            let page = self.call(Method::GET, url.clone(), &q, None).await?;
            if let Some(items) = page.get(field).filter(|v| !v.is_null()) {
                let items: Vec<T> = serde_json::from_value(items.clone()).map_err(|e| {
                    DatabricksError::Protocol {
                        path: path.clone(),
                        detail: format!("`{field}`: {e}"),
                    }
                })?;
                out.extend(items);
            }
            match page["next_page_token"].as_str().filter(|t| !t.is_empty()) {
                None => return Ok(out),
                Some(t) if !seen.insert(t.to_owned()) => {
                    return Err(DatabricksError::Protocol {
                        path,
                        detail: format!("page token {t:?} repeated; the listing does not end"),
                    });
                }
                Some(t) => token = Some(t.to_owned()),
            }
        }
    }

    fn host_name(&self) -> &str {
        self.host.host_str().unwrap_or("workspace")
    }
}

fn parse<T: DeserializeOwned>(path: &str, v: Value) -> Result<T, DatabricksError> {
    serde_json::from_value(v).map_err(|e| DatabricksError::Protocol {
        path: path.to_owned(),
        detail: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_timeout_follows_the_api_rules() {
        for (secs, ok) in [(0, true), (4, false), (5, true), (50, true), (51, false)] {
            let o = ClientOptions {
                wait_timeout: Duration::from_secs(secs),
                ..Default::default()
            };
            assert_eq!(o.check_bounds().is_ok(), ok, "{secs}");
        }
    }

    #[test]
    fn credentials_are_redacted() {
        let c = Credentials::OAuth {
            client_id: "sp".into(),
            client_secret: "s3cr3t".into(),
        };
        let t = Credentials::Token("dapi123".into());
        let shown = format!("{c:?} {t:?}");
        assert!(
            !shown.contains("s3cr3t") && !shown.contains("dapi123"),
            "{shown}"
        );
    }

    #[test]
    fn urls_encode_names() {
        let c = WorkspaceClient::new(
            "https://example.cloud.databricks.com",
            "w",
            Credentials::Token("t".into()),
            ClientOptions::default(),
        )
        .unwrap();
        let u = c.url(&["api", "2.1", "unity-catalog", "tables", "c.s.a`b;c d"]);
        assert_eq!(
            u.as_str(),
            "https://example.cloud.databricks.com/api/2.1/unity-catalog/tables/c.s.a%60b;c%20d"
        );
    }
}
