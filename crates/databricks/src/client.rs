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
//! - Unity Catalog listings follow `next_page_token` until it is absent (a page may be empty
//!   and still carry a token);
//! - with a [`Journal`] in dry-run mode, reads (GET) are sent but every SQL statement and
//!   every other call is recorded instead of sent.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable as _};
use replicator_common::retry::{RetryPolicy, Retryable};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use url::Url;

use crate::DatabricksError;
use crate::auth::{Auth, Credentials};

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
    fn validate(&self) -> Result<(), DatabricksError> {
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

/// A finished statement's rows (every value as text, `None` for NULL).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StatementResult {
    pub statement_id: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
}

impl StatementResult {
    /// The value of `column` in row `row`.
    pub fn get(&self, row: usize, column: &str) -> Option<&str> {
        let i = self.columns.iter().position(|c| c == column)?;
        self.rows.get(row)?.get(i)?.as_deref()
    }

    /// The first column of the first row as an integer (a `COUNT(*)`).
    pub fn single_u64(&self) -> Result<u64, DatabricksError> {
        let v = self.rows.first().and_then(|r| r.first()).cloned().flatten();
        v.as_deref()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| DatabricksError::Protocol {
                path: format!("statement {}", self.statement_id),
                detail: format!("expected one integer, got {:?}", self.rows),
            })
    }
}

#[derive(Deserialize)]
struct StatementResponse {
    statement_id: String,
    status: StatementStatus,
    #[serde(default)]
    manifest: Option<Manifest>,
    #[serde(default)]
    result: Option<ResultData>,
}

#[derive(Deserialize)]
struct StatementStatus {
    state: String,
    #[serde(default)]
    error: Option<ServiceError>,
}

#[derive(Deserialize)]
struct ServiceError {
    #[serde(default)]
    error_code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize)]
struct Manifest {
    #[serde(default)]
    schema: Option<ManifestSchema>,
}

#[derive(Deserialize)]
struct ManifestSchema {
    #[serde(default)]
    columns: Vec<ManifestColumn>,
}

#[derive(Deserialize)]
struct ManifestColumn {
    name: String,
}

#[derive(Deserialize)]
struct ResultData {
    #[serde(default)]
    data_array: Vec<Vec<Option<String>>>,
    #[serde(default)]
    next_chunk_internal_link: Option<String>,
}

/// Unity Catalog table types.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TableType {
    Managed,
    External,
    StreamingTable,
    MaterializedView,
    View,
    Other(String),
}

impl TableType {
    pub fn parse(s: &str) -> Self {
        match s {
            "MANAGED" => Self::Managed,
            "EXTERNAL" => Self::External,
            "STREAMING_TABLE" => Self::StreamingTable,
            "MATERIALIZED_VIEW" => Self::MaterializedView,
            "VIEW" => Self::View,
            other => Self::Other(other.to_owned()),
        }
    }
}

/// A catalog as Unity Catalog lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CatalogInfo {
    pub name: String,
    #[serde(default)]
    pub catalog_type: Option<String>,
    #[serde(default)]
    pub provider_name: Option<String>,
    #[serde(default)]
    pub share_name: Option<String>,
}

/// A schema as Unity Catalog lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SchemaInfo {
    pub name: String,
    pub catalog_name: String,
}

/// A column of a table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ColumnInfo {
    pub name: String,
    #[serde(default)]
    pub type_text: String,
    #[serde(default = "yes")]
    pub nullable: bool,
}

fn yes() -> bool {
    true
}

/// A table as Unity Catalog describes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TableInfo {
    pub name: String,
    pub catalog_name: String,
    pub schema_name: String,
    pub table_type: String,
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    #[serde(default)]
    pub columns: Vec<ColumnInfo>,
    #[serde(default)]
    pub pipeline_id: Option<String>,
    #[serde(default)]
    pub storage_location: Option<String>,
}

impl TableInfo {
    pub fn kind(&self) -> TableType {
        TableType::parse(&self.table_type)
    }

    /// The pipeline that maintains a streaming table, from its properties
    /// (`pipelines.pipelineId`), else from `pipeline_id`.
    pub fn pipeline(&self) -> Option<&str> {
        self.properties
            .get("pipelines.pipelineId")
            .map(String::as_str)
            .or(self.pipeline_id.as_deref())
            .filter(|p| !p.is_empty())
    }
}

/// An object in a share.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SharedObject {
    pub name: String,
    pub data_object_type: String,
}

/// A share and what it holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShareInfo {
    pub name: String,
    #[serde(default)]
    pub objects: Vec<SharedObject>,
}

/// A Delta Sharing recipient.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecipientInfo {
    pub name: String,
    #[serde(default)]
    pub authentication_type: Option<String>,
    #[serde(default)]
    pub data_recipient_global_metastore_id: Option<String>,
}

/// A Delta Sharing provider, as the recipient's metastore sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProviderInfo {
    pub name: String,
    #[serde(default)]
    pub data_provider_global_metastore_id: Option<String>,
}

/// One Databricks workspace.
#[derive(Debug)]
pub struct WorkspaceClient {
    host: Url,
    warehouse_id: String,
    http: reqwest::Client,
    auth: Auth,
    options: ClientOptions,
    /// Dry run: record instead of sending anything but reads.
    journal: Option<Journal>,
}

/// The `Retry-After` header as a duration (delay-seconds form).
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
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
        options.validate()?;
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
        Ok(Self {
            host,
            warehouse_id: warehouse_id.to_owned(),
            http,
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
                if text.trim().is_empty() {
                    return Ok(Value::Null);
                }
                return serde_json::from_str(&text).map_err(|e| DatabricksError::Protocol {
                    path,
                    detail: format!("body is not JSON: {e}"),
                });
            }
            let err: Value = serde_json::from_str(&text).unwrap_or_default();
            let code = err["error_code"].as_str().unwrap_or("").to_owned();
            let message = err["message"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| {
                    // Not a Databricks error body (a proxy's or gateway's page): one line of it.
                    text.chars()
                        .take(200)
                        .map(|c| if c.is_control() { ' ' } else { c })
                        .collect::<String>()
                        .trim()
                        .to_owned()
                });
            if status == 401 {
                return Err(DatabricksError::Auth {
                    host: self.host.to_string(),
                    message: format!("{method} {path}: HTTP 401 {code}: {message}"),
                });
            }
            if status == 404 && !crate::error::means_not_found(&code) {
                return Err(DatabricksError::NoEndpoint {
                    method: method.to_string(),
                    path,
                    code: if code.is_empty() {
                        "(no Databricks error body)".into()
                    } else {
                        code
                    },
                    message,
                });
            }
            return Err(DatabricksError::Http {
                method: method.to_string(),
                path,
                status,
                code,
                message,
                retry_after,
            });
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

    // ---- SQL Statement Execution -------------------------------------------------------

    /// Run one SQL statement to completion and return its rows. Cancels the statement when
    /// it outlives `statement_timeout` or when polling fails for good.
    pub async fn execute(&self, sql: &str) -> Result<StatementResult, DatabricksError> {
        if let Some(journal) = &self.journal {
            journal.push(format!("SQL [{}] {sql}", self.host_name()));
            return Ok(StatementResult {
                statement_id: "dry-run".into(),
                ..Default::default()
            });
        }
        let started = Instant::now();
        let timeout = self.options.statement_timeout;
        let wait = if self.options.wait_timeout <= timeout {
            self.options.wait_timeout
        } else {
            Duration::ZERO
        };
        let body = json!({
            "statement": sql,
            "warehouse_id": self.warehouse_id,
            "wait_timeout": format!("{}s", wait.as_secs()),
            "on_wait_timeout": "CONTINUE",
            "disposition": "INLINE",
            "format": "JSON_ARRAY",
        });
        let url = self.url(&["api", "2.0", "sql", "statements"]);
        let mut resp: StatementResponse = parse(
            url.path(),
            self.call(Method::POST, url.clone(), &[], Some(body))
                .await?,
        )?;
        let id = resp.statement_id.clone();
        tracing::debug!(statement_id = %id, "statement submitted");
        loop {
            match resp.status.state.as_str() {
                "SUCCEEDED" => return self.collect(resp).await,
                "FAILED" | "CANCELED" | "CLOSED" => {
                    let e = resp.status.error.unwrap_or(ServiceError {
                        error_code: None,
                        message: None,
                    });
                    return Err(DatabricksError::Statement {
                        statement_id: id,
                        state: resp.status.state,
                        code: e.error_code.unwrap_or_else(|| "UNKNOWN".into()),
                        message: e.message.unwrap_or_default(),
                    });
                }
                "PENDING" | "RUNNING" => {}
                other => {
                    self.cancel(&id).await;
                    return Err(DatabricksError::Protocol {
                        path: url.path().to_owned(),
                        detail: format!("statement {id} in unknown state {other}"),
                    });
                }
            }
            let elapsed = started.elapsed();
            if elapsed >= timeout {
                self.cancel(&id).await;
                return Err(DatabricksError::Timeout {
                    statement_id: id,
                    state: resp.status.state,
                    timeout_ms: timeout.as_millis() as u64,
                });
            }
            tokio::time::sleep(self.options.poll_interval.min(timeout - elapsed)).await;
            let poll = self.url(&["api", "2.0", "sql", "statements", &id]);
            resp = match self.call(Method::GET, poll.clone(), &[], None).await {
                Ok(v) => parse(poll.path(), v)?,
                Err(e) => {
                    // Do not leave work running that nobody will look at.
                    self.cancel(&id).await;
                    return Err(e);
                }
            };
        }
    }

    /// Ask the warehouse to cancel a statement (best effort: a failure is logged).
    pub async fn cancel(&self, statement_id: &str) {
        let url = self.url(&["api", "2.0", "sql", "statements", statement_id, "cancel"]);
        match self.call(Method::POST, url, &[], None).await {
            Ok(_) => tracing::warn!(%statement_id, "statement cancelled"),
            Err(e) => tracing::error!(%statement_id, error = %e, "could not cancel the statement"),
        }
    }

    async fn collect(&self, resp: StatementResponse) -> Result<StatementResult, DatabricksError> {
        let columns = resp
            .manifest
            .and_then(|m| m.schema)
            .map(|s| s.columns.into_iter().map(|c| c.name).collect())
            .unwrap_or_default();
        let mut rows = Vec::new();
        let mut next = None;
        if let Some(r) = resp.result {
            rows.extend(r.data_array);
            next = r.next_chunk_internal_link;
        }
        while let Some(link) = next {
            let url = self.host.join(link.trim_start_matches('/')).map_err(|e| {
                DatabricksError::Protocol {
                    path: link.clone(),
                    detail: format!("bad chunk link: {e}"),
                }
            })?;
            let chunk: ResultData = parse(
                url.path(),
                self.call(Method::GET, url.clone(), &[], None).await?,
            )?;
            rows.extend(chunk.data_array);
            next = chunk.next_chunk_internal_link;
        }
        Ok(StatementResult {
            statement_id: resp.statement_id,
            columns,
            rows,
        })
    }

    fn host_name(&self) -> &str {
        self.host.host_str().unwrap_or("workspace")
    }

    // ---- Unity Catalog --------------------------------------------------------------------

    pub async fn metastore_global_id(&self) -> Result<String, DatabricksError> {
        let v: Value = self
            .get_json(&["api", "2.1", "unity-catalog", "metastore_summary"], &[])
            .await?;
        v["global_metastore_id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| DatabricksError::Protocol {
                path: "/api/2.1/unity-catalog/metastore_summary".into(),
                detail: "no global_metastore_id".into(),
            })
    }

    pub async fn list_catalogs(&self) -> Result<Vec<CatalogInfo>, DatabricksError> {
        self.list_all(
            &["api", "2.1", "unity-catalog", "catalogs"],
            &[],
            "catalogs",
        )
        .await
    }

    pub async fn get_catalog(&self, name: &str) -> Result<Option<CatalogInfo>, DatabricksError> {
        self.get_optional(&["api", "2.1", "unity-catalog", "catalogs", name], &[])
            .await
    }

    pub async fn list_schemas(&self, catalog: &str) -> Result<Vec<SchemaInfo>, DatabricksError> {
        self.list_all(
            &["api", "2.1", "unity-catalog", "schemas"],
            &[("catalog_name", catalog.to_owned())],
            "schemas",
        )
        .await
    }

    pub async fn get_schema(
        &self,
        catalog: &str,
        schema: &str,
    ) -> Result<Option<SchemaInfo>, DatabricksError> {
        let full_name = format!("{catalog}.{schema}");
        self.get_optional(&["api", "2.1", "unity-catalog", "schemas", &full_name], &[])
            .await
    }

    pub async fn list_tables(
        &self,
        catalog: &str,
        schema: &str,
    ) -> Result<Vec<TableInfo>, DatabricksError> {
        self.list_all(
            &["api", "2.1", "unity-catalog", "tables"],
            &[
                ("catalog_name", catalog.to_owned()),
                ("schema_name", schema.to_owned()),
            ],
            "tables",
        )
        .await
    }

    pub async fn get_table(&self, full_name: &str) -> Result<Option<TableInfo>, DatabricksError> {
        self.get_optional(&["api", "2.1", "unity-catalog", "tables", full_name], &[])
            .await
    }

    // ---- Delta Sharing ----------------------------------------------------------------------

    pub async fn get_share(&self, name: &str) -> Result<Option<ShareInfo>, DatabricksError> {
        self.get_optional(
            &["api", "2.1", "unity-catalog", "shares", name],
            &[("include_shared_data", "true".into())],
        )
        .await
    }

    pub async fn create_share(&self, name: &str) -> Result<(), DatabricksError> {
        let url = self.url(&["api", "2.1", "unity-catalog", "shares"]);
        self.call(Method::POST, url, &[], Some(json!({ "name": name })))
            .await
            .map(drop)
    }

    /// Add schemas (`catalog.schema`) to a share.
    pub async fn add_schemas_to_share(
        &self,
        share: &str,
        schemas: &[String],
    ) -> Result<(), DatabricksError> {
        let updates: Vec<Value> = schemas
            .iter()
            .map(|s| json!({"action": "ADD", "data_object": {"name": s, "data_object_type": "SCHEMA"}}))
            .collect();
        let url = self.url(&["api", "2.1", "unity-catalog", "shares", share]);
        self.call(Method::PATCH, url, &[], Some(json!({ "updates": updates })))
            .await
            .map(drop)
    }

    pub async fn get_recipient(
        &self,
        name: &str,
    ) -> Result<Option<RecipientInfo>, DatabricksError> {
        self.get_optional(&["api", "2.1", "unity-catalog", "recipients", name], &[])
            .await
    }

    /// A Databricks-to-Databricks recipient for the metastore with `global_metastore_id`.
    pub async fn create_recipient(
        &self,
        name: &str,
        global_metastore_id: &str,
    ) -> Result<(), DatabricksError> {
        let url = self.url(&["api", "2.1", "unity-catalog", "recipients"]);
        let body = json!({
            "name": name,
            "authentication_type": "DATABRICKS",
            "data_recipient_global_metastore_id": global_metastore_id,
        });
        self.call(Method::POST, url, &[], Some(body))
            .await
            .map(drop)
    }

    /// Principals and their privileges on a share.
    pub async fn share_permissions(
        &self,
        share: &str,
    ) -> Result<Vec<(String, Vec<String>)>, DatabricksError> {
        #[derive(Deserialize)]
        struct Assignment {
            principal: String,
            #[serde(default)]
            privileges: Vec<String>,
        }
        #[derive(Deserialize)]
        struct Permissions {
            #[serde(default)]
            privilege_assignments: Vec<Assignment>,
        }
        let p: Permissions = self
            .get_json(
                &[
                    "api",
                    "2.1",
                    "unity-catalog",
                    "shares",
                    share,
                    "permissions",
                ],
                &[],
            )
            .await?;
        Ok(p.privilege_assignments
            .into_iter()
            .map(|a| (a.principal, a.privileges))
            .collect())
    }

    pub async fn grant_share(&self, share: &str, recipient: &str) -> Result<(), DatabricksError> {
        let url = self.url(&[
            "api",
            "2.1",
            "unity-catalog",
            "shares",
            share,
            "permissions",
        ]);
        let body = json!({"changes": [{"principal": recipient, "add": ["SELECT"]}]});
        self.call(Method::PATCH, url, &[], Some(body))
            .await
            .map(drop)
    }

    pub async fn list_providers(&self) -> Result<Vec<ProviderInfo>, DatabricksError> {
        self.list_all(
            &["api", "2.1", "unity-catalog", "providers"],
            &[],
            "providers",
        )
        .await
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
            assert_eq!(o.validate().is_ok(), ok, "{secs}");
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
