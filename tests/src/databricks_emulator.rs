//! A Databricks workspace emulator for tests of the Databricks engine.
//!
//! It serves the documented REST endpoints the engine calls, with their documented wire
//! formats, over plain HTTP on `127.0.0.1:0`:
//!
//! - `POST /oidc/v1/token` (OAuth client credentials, Basic auth, form body);
//! - the SQL Statement Execution API: `POST /api/2.0/sql/statements` (`wait_timeout` `0s` or
//!   `5s`–`50s`, `on_wait_timeout` `CONTINUE`/`CANCEL`, `INLINE` + `JSON_ARRAY` only),
//!   `GET …/statements/{id}`, `POST …/statements/{id}/cancel`; states PENDING → RUNNING →
//!   SUCCEEDED / FAILED / CANCELED; results as `manifest` + `result.data_array`;
//! - Unity Catalog: metastore summary, catalogs, schemas and tables (list with `max_results`
//!   and `page_token`, optionally with empty pages in between; get by name);
//! - Delta Sharing: recipients, shares (`include_shared_data`, `PATCH` updates), share
//!   permissions, providers (derived from recipients other metastores created for this one).
//!
//! Several workspaces share one [`World`], so a recipient created in the source metastore
//! shows up as a provider in the target, and a catalog created `USING SHARE` reads the
//! source's tables. Tables are local Delta directories handled by the native engine
//! (`replicator-lake`): `DEEP CLONE` really clones, `COUNT(*)` really counts, `EXCEPT`
//! really compares rows. Only the SQL shapes the engine emits are understood, parsed
//! strictly (object names must be backtick-quoted); anything else fails like a warehouse
//! does, with a syntax error.
//!
//! Errors follow the documented format, `{"error_code": …, "message": …}`: a missing object
//! is 404 with a "does not exist" code, an object that exists is 409
//! `RESOURCE_ALREADY_EXISTS`, an unknown path is 404 `ENDPOINT_NOT_FOUND`.
//!
//! Faults can be injected: N throttled answers (429 or 503 with `Retry-After`), statements
//! that fail, statements that never finish, OAuth tokens that expire, paths answered by a
//! bare 404 (no Databricks body) or `ENDPOINT_NOT_FOUND`, objects created by a concurrent
//! run between a client's read and its create. Every call, statement and cancel is recorded
//! for assertions.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use replicator_lake::{CloneOptions, TableLocation, deep_clone, inspect};
use serde_json::{Value, json};
use tokio::sync::watch;
use uuid::Uuid;

/// A table in an emulated metastore.
#[derive(Clone, Debug)]
pub struct Table {
    /// `MANAGED`, `EXTERNAL`, `STREAMING_TABLE`, `MATERIALIZED_VIEW`, `VIEW`.
    pub table_type: String,
    pub location: PathBuf,
    pub properties: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default)]
struct Catalog {
    /// Set for a catalog created `USING SHARE provider.share`.
    share: Option<(String, String)>,
    schemas: BTreeMap<String, BTreeMap<String, Table>>,
}

#[derive(Clone, Debug, Default)]
struct Share {
    /// (name, data_object_type)
    objects: Vec<(String, String)>,
    grants: BTreeMap<String, BTreeSet<String>>,
}

#[derive(Clone, Debug)]
struct Metastore {
    name: String,
    root: PathBuf,
    /// The name this metastore has as a provider in other metastores.
    provider_name: String,
    catalogs: BTreeMap<String, Catalog>,
    /// recipient name -> recipient's global metastore ID
    recipients: BTreeMap<String, String>,
    shares: BTreeMap<String, Share>,
}

/// Metastores, by global metastore ID, shared by every emulated workspace.
#[derive(Clone, Default)]
pub struct World {
    metastores: Arc<Mutex<BTreeMap<String, Metastore>>>,
}

impl World {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a metastore with managed storage under `root`; returns its global ID.
    pub fn add_metastore(&self, name: &str, root: &FsPath) -> String {
        let id = format!("aws:us-east-1:{}", Uuid::new_v4());
        let mut catalogs = BTreeMap::new();
        catalogs.insert("__databricks_internal".to_owned(), Catalog::default());
        self.metastores.lock().unwrap().insert(
            id.clone(),
            Metastore {
                name: name.to_owned(),
                root: root.to_owned(),
                provider_name: format!("{name}_provider"),
                catalogs,
                recipients: BTreeMap::new(),
                shares: BTreeMap::new(),
            },
        );
        id
    }

    /// Register a table (creating its catalog and schema as needed).
    pub fn add_table(
        &self,
        metastore: &str,
        catalog: &str,
        schema: &str,
        name: &str,
        table: Table,
    ) {
        let mut ms = self.metastores.lock().unwrap();
        let m = ms.get_mut(metastore).expect("metastore exists");
        m.catalogs
            .entry(catalog.to_owned())
            .or_default()
            .schemas
            .entry(schema.to_owned())
            .or_default()
            .insert(name.to_owned(), table);
    }

    /// Register a streaming table maintained by `pipeline`: the table itself and its backing
    /// table in `__databricks_internal`, both over the Delta directory `location`.
    pub fn add_streaming_table(
        &self,
        metastore: &str,
        catalog: &str,
        schema: &str,
        name: &str,
        pipeline: &str,
        location: &FsPath,
    ) {
        let props = BTreeMap::from([("pipelines.pipelineId".to_owned(), pipeline.to_owned())]);
        self.add_table(
            metastore,
            catalog,
            schema,
            name,
            Table {
                table_type: "STREAMING_TABLE".into(),
                location: location.to_owned(),
                properties: props,
            },
        );
        let internal = format!(
            "__dlt_materialization_schema_{}",
            pipeline.replace('-', "_")
        );
        self.add_table(
            metastore,
            "__databricks_internal",
            &internal,
            name,
            Table {
                table_type: "MANAGED".into(),
                location: location.to_owned(),
                properties: BTreeMap::new(),
            },
        );
    }

    /// The table `catalog.schema.table` of a metastore, if registered.
    pub fn table(&self, metastore: &str, catalog: &str, schema: &str, name: &str) -> Option<Table> {
        let ms = self.metastores.lock().unwrap();
        ms.get(metastore)?
            .catalogs
            .get(catalog)?
            .schemas
            .get(schema)?
            .get(name)
            .cloned()
    }
}

/// Faults to inject.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Answer this many of the next API requests (the token endpoint excepted) with
    /// `throttle_status` and `Retry-After: retry_after_s`.
    pub throttle: u32,
    /// 429 (default when 0) or 503.
    pub throttle_status: u16,
    pub retry_after_s: u64,
    /// Statements whose text contains the first string fail with the error code in the
    /// second, as many times as the third says.
    pub fail: Vec<(String, String, u32)>,
    /// Statements whose text contains one of these stay RUNNING until cancelled.
    pub hang: Vec<String>,
    /// Polls a statement reports PENDING/RUNNING before its terminal state (default 0).
    pub min_polls: u32,
    /// Insert an empty page (still carrying a next token) before every page of a listing.
    pub empty_pages: bool,
    /// Page size of listings, whatever `max_results` asks (0: as asked).
    pub page_size: usize,
    /// Rows per result chunk (0: one chunk); further chunks are fetched through
    /// `next_chunk_internal_link`.
    pub chunk_rows: usize,
    /// Requests whose path starts with one of these get a bare 404 with an HTML body, as a
    /// gateway or a wrong host answers: no Databricks error object.
    pub bare_404: Vec<String>,
    /// Requests whose path starts with one of these get 404 `ENDPOINT_NOT_FOUND`, as
    /// Databricks answers for an API it does not serve.
    pub endpoint_not_found: Vec<String>,
    /// Names (of a recipient or share to create, or a share to add objects to) that a
    /// concurrent run creates just before this workspace handles the request: the request
    /// then meets the existing object (409 `RESOURCE_ALREADY_EXISTS`). Each entry is used
    /// once.
    pub concurrent_create: Vec<String>,
}

/// How clients may log in.
#[derive(Clone, Debug)]
pub struct WorkspaceAuth {
    pub pat: Option<String>,
    pub oauth: Option<(String, String)>,
    /// Lifetime of issued OAuth tokens, seconds.
    pub token_lifetime_s: u64,
}

#[derive(Clone, Debug, PartialEq)]
enum StmtState {
    Pending,
    Running,
    Succeeded(Vec<String>, Vec<Vec<Option<String>>>),
    Failed(String, String),
    Canceled,
}

impl StmtState {
    fn terminal(&self) -> bool {
        !matches!(self, Self::Pending | Self::Running)
    }
}

struct Stmt {
    state: StmtState,
    polls: u32,
    task: Option<tokio::task::JoinHandle<()>>,
    /// Keeps a never-finishing statement's completion channel open.
    hold: Option<watch::Sender<bool>>,
}

/// A recorded request.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    pub method: String,
    pub path: String,
}

struct Inner {
    world: World,
    metastore: String,
    warehouse_id: String,
    auth: WorkspaceAuth,
    faults: Mutex<Faults>,
    /// issued OAuth tokens -> still valid
    tokens: Mutex<HashMap<String, bool>>,
    token_requests: Mutex<u32>,
    statements: Mutex<HashMap<String, Stmt>>,
    calls: Mutex<Vec<Call>>,
    sql: Mutex<Vec<(String, String)>>,
    cancels: Mutex<Vec<String>>,
}

/// One emulated workspace, serving until dropped.
pub struct Workspace {
    pub url: String,
    pub metastore: String,
    inner: Arc<Inner>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Workspace {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Workspace {
    /// Serve the metastore `metastore` of `world` on a free local port.
    pub async fn start(
        world: &World,
        metastore: &str,
        warehouse_id: &str,
        auth: WorkspaceAuth,
    ) -> Self {
        let inner = Arc::new(Inner {
            world: world.clone(),
            metastore: metastore.to_owned(),
            warehouse_id: warehouse_id.to_owned(),
            auth,
            faults: Mutex::new(Faults::default()),
            tokens: Mutex::new(HashMap::new()),
            token_requests: Mutex::new(0),
            statements: Mutex::new(HashMap::new()),
            calls: Mutex::new(Vec::new()),
            sql: Mutex::new(Vec::new()),
            cancels: Mutex::new(Vec::new()),
        });
        let state = inner.clone();
        let app = Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let state = state.clone();
                async move { handle(state, method, uri, headers, body).await }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.ok();
        });
        Self {
            url: format!("http://{addr}"),
            metastore: metastore.to_owned(),
            inner,
            server,
        }
    }

    /// Change the injected faults.
    pub fn faults(&self, f: impl FnOnce(&mut Faults)) {
        f(&mut self.inner.faults.lock().unwrap());
    }

    /// Read the injected faults (what is left of them).
    pub fn read_faults<T>(&self, f: impl FnOnce(&Faults) -> T) -> T {
        f(&self.inner.faults.lock().unwrap())
    }

    /// Revoke every OAuth token issued so far (they answer 401 from now on).
    pub fn expire_tokens(&self) {
        for valid in self.inner.tokens.lock().unwrap().values_mut() {
            *valid = false;
        }
    }

    pub fn token_requests(&self) -> u32 {
        *self.inner.token_requests.lock().unwrap()
    }

    pub fn calls(&self) -> Vec<Call> {
        self.inner.calls.lock().unwrap().clone()
    }

    /// Every statement submitted: (statement ID, text).
    pub fn statements(&self) -> Vec<(String, String)> {
        self.inner.sql.lock().unwrap().clone()
    }

    /// Statement IDs a client cancelled.
    pub fn cancels(&self) -> Vec<String> {
        self.inner.cancels.lock().unwrap().clone()
    }

    /// The final state of a statement (`SUCCEEDED`, `FAILED`, `CANCELED`, …).
    pub fn statement_state(&self, id: &str) -> Option<String> {
        self.inner
            .statements
            .lock()
            .unwrap()
            .get(id)
            .map(|s| state_name(&s.state).to_owned())
    }

    /// Calls and statements that create or change catalog or sharing objects.
    pub fn changes(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .calls()
            .into_iter()
            .filter(|c| c.method != "GET" && c.path.starts_with("/api/2.1/unity-catalog/"))
            .map(|c| format!("{} {}", c.method, c.path))
            .collect();
        out.extend(
            self.statements()
                .into_iter()
                .filter(|(_, s)| s.starts_with("CREATE CATALOG") || s.starts_with("CREATE SCHEMA"))
                .map(|(_, s)| s),
        );
        out
    }

    /// Forget recorded calls and statements.
    pub fn clear_log(&self) {
        self.inner.calls.lock().unwrap().clear();
        self.inner.sql.lock().unwrap().clear();
        self.inner.cancels.lock().unwrap().clear();
    }
}

fn state_name(s: &StmtState) -> &'static str {
    match s {
        StmtState::Pending => "PENDING",
        StmtState::Running => "RUNNING",
        StmtState::Succeeded(..) => "SUCCEEDED",
        StmtState::Failed(..) => "FAILED",
        StmtState::Canceled => "CANCELED",
    }
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(json!({"error_code": code, "message": message.into()})),
    )
        .into_response()
}

fn ok(v: Value) -> Response {
    axum::Json(v).into_response()
}

fn query_map(uri: &Uri) -> HashMap<String, String> {
    url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

async fn handle(
    st: Arc<Inner>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    st.calls.lock().unwrap().push(Call {
        method: method.to_string(),
        path: path.clone(),
    });
    if path == "/oidc/v1/token" && method == Method::POST {
        return token(&st, &headers, &body);
    }
    {
        let mut f = st.faults.lock().unwrap();
        if f.throttle > 0 {
            f.throttle -= 1;
            let status = if f.throttle_status == 503 { 503 } else { 429 };
            let mut r = error(
                StatusCode::from_u16(status).unwrap(),
                if status == 429 {
                    "REQUEST_LIMIT_EXCEEDED"
                } else {
                    "TEMPORARILY_UNAVAILABLE"
                },
                "too many requests, slow down",
            );
            r.headers_mut()
                .insert("retry-after", f.retry_after_s.to_string().parse().unwrap());
            return r;
        }
    }
    if let Some(r) = refusal(&st, &headers) {
        return r;
    }
    {
        let f = st.faults.lock().unwrap();
        if f.bare_404.iter().any(|p| path.starts_with(p.as_str())) {
            return (
                StatusCode::NOT_FOUND,
                [("content-type", "text/html")],
                "<html>\n<head><title>404 Not Found</title></head>\n<body><h1>404 Not Found</h1></body>\n</html>\n",
            )
                .into_response();
        }
        if f.endpoint_not_found
            .iter()
            .any(|p| path.starts_with(p.as_str()))
        {
            return error(
                StatusCode::NOT_FOUND,
                "ENDPOINT_NOT_FOUND",
                format!("No API found for '{method} {path}'"),
            );
        }
    }
    let segments: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
    let q = query_map(&uri);
    let body: Value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "MALFORMED_REQUEST",
                    format!("body: {e}"),
                );
            }
        }
    };
    match (method.as_str(), seg.as_slice()) {
        ("POST", ["api", "2.0", "sql", "statements"]) => submit(&st, &body).await,
        ("GET", ["api", "2.0", "sql", "statements", id]) => poll(&st, id),
        ("POST", ["api", "2.0", "sql", "statements", id, "cancel"]) => cancel(&st, id),
        ("GET", ["api", "2.0", "sql", "statements", id, "result", "chunks", n]) => {
            result_chunk(&st, id, n)
        }
        ("GET", ["api", "2.1", "unity-catalog", rest @ ..]) => uc_get(&st, rest, &q).await,
        ("POST" | "PATCH", ["api", "2.1", "unity-catalog", rest @ ..]) => {
            let name = match (method.as_str(), rest) {
                ("POST", [_]) => body["name"].as_str(),
                ("PATCH", ["shares", name]) => Some(*name),
                _ => None,
            };
            let raced = name.is_some_and(|n| {
                let mut f = st.faults.lock().unwrap();
                let i = f.concurrent_create.iter().position(|c| c == n);
                i.map(|i| f.concurrent_create.remove(i)).is_some()
            });
            if raced {
                // The concurrent run's request, then ours.
                let _ = uc_change(&st, method.as_str(), rest, &body);
            }
            uc_change(&st, method.as_str(), rest, &body)
        }
        _ => error(
            StatusCode::NOT_FOUND,
            "ENDPOINT_NOT_FOUND",
            format!("no endpoint {method} {path}"),
        ),
    }
}

fn token(st: &Inner, headers: &HeaderMap, body: &[u8]) -> Response {
    *st.token_requests.lock().unwrap() += 1;
    let Some((id, secret)) = &st.auth.oauth else {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "unsupported_grant_type"})),
        )
            .into_response();
    };
    let creds = headers
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok());
    if creds.as_deref() != Some(&format!("{id}:{secret}")) {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    let form: HashMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    if form.get("grant_type").map(String::as_str) != Some("client_credentials")
        || form.get("scope").map(String::as_str) != Some("all-apis")
    {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "invalid_request"})),
        )
            .into_response();
    }
    let token = format!("oauth-{}", Uuid::new_v4().simple());
    st.tokens.lock().unwrap().insert(token.clone(), true);
    ok(json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": st.auth.token_lifetime_s,
        "scope": "all-apis",
    }))
}

/// The refusal for a request without valid credentials, if any.
fn refusal(st: &Inner, headers: &HeaderMap) -> Option<Response> {
    let bearer = headers
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "));
    let Some(t) = bearer else {
        return Some(error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "no credentials",
        ));
    };
    if st.auth.pat.as_deref() == Some(t) {
        return None;
    }
    match st.tokens.lock().unwrap().get(t) {
        Some(true) => None,
        Some(false) => Some(error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "Token expired",
        )),
        None => Some(error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "Invalid access token",
        )),
    }
}

// ---- statements -----------------------------------------------------------------------------

/// Chunk `index` of a result split into chunks of `chunk_rows` (0: one chunk).
fn chunk(id: &str, rows: &[Vec<Option<String>>], chunk_rows: usize, index: usize) -> Value {
    let size = if chunk_rows == 0 {
        rows.len().max(1)
    } else {
        chunk_rows
    };
    let start = (index * size).min(rows.len());
    let end = (start + size).min(rows.len());
    let mut v = json!({
        "chunk_index": index,
        "row_offset": start,
        "row_count": end - start,
        "data_array": rows[start..end],
    });
    if end < rows.len() {
        v["next_chunk_index"] = json!(index + 1);
        v["next_chunk_internal_link"] = json!(format!(
            "/api/2.0/sql/statements/{id}/result/chunks/{}",
            index + 1
        ));
    }
    v
}

fn statement_json(id: &str, state: &StmtState, chunk_rows: usize) -> Value {
    match state {
        StmtState::Succeeded(cols, rows) => json!({
            "statement_id": id,
            "status": {"state": "SUCCEEDED"},
            "manifest": {
                "format": "JSON_ARRAY",
                "schema": {
                    "column_count": cols.len(),
                    "columns": cols.iter().enumerate().map(|(i, c)| json!({
                        "name": c, "type_name": if c == "ok" || c == "n" || c.contains("size") || c.contains("files") { "LONG" } else { "STRING" },
                        "type_text": "BIGINT", "position": i,
                    })).collect::<Vec<_>>(),
                },
                "total_chunk_count": if chunk_rows == 0 { 1 } else { rows.len().div_ceil(chunk_rows).max(1) },
                "total_row_count": rows.len(),
                "truncated": false,
            },
            "result": chunk(id, rows, chunk_rows, 0),
        }),
        StmtState::Failed(code, message) => json!({
            "statement_id": id,
            "status": {"state": "FAILED", "error": {"error_code": code, "message": message}},
        }),
        other => json!({"statement_id": id, "status": {"state": state_name(other)}}),
    }
}

fn parse_wait(v: &Value) -> Result<u64, String> {
    let s = match v {
        Value::Null => return Ok(10),
        Value::String(s) => s,
        _ => return Err("wait_timeout must be a string".into()),
    };
    let n: u64 = s
        .strip_suffix('s')
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("wait_timeout `{s}` is not `<n>s`"))?;
    if n == 0 || (5..=50).contains(&n) {
        Ok(n)
    } else {
        Err(format!(
            "wait_timeout must be 0s or between 5s and 50s, got {s}"
        ))
    }
}

async fn submit(st: &Arc<Inner>, body: &Value) -> Response {
    let Some(sql) = body["statement"].as_str() else {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_PARAMETER_VALUE",
            "statement is required",
        );
    };
    if body["warehouse_id"].as_str() != Some(&st.warehouse_id) {
        return error(
            StatusCode::NOT_FOUND,
            "RESOURCE_DOES_NOT_EXIST",
            format!("warehouse {} not found", body["warehouse_id"]),
        );
    }
    let wait = match parse_wait(&body["wait_timeout"]) {
        Ok(w) => w,
        Err(m) => return error(StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE", m),
    };
    if body["format"].as_str().unwrap_or("JSON_ARRAY") != "JSON_ARRAY"
        || body["disposition"].as_str().unwrap_or("INLINE") != "INLINE"
    {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_PARAMETER_VALUE",
            "only INLINE JSON_ARRAY results are emulated",
        );
    }
    let on_wait = body["on_wait_timeout"]
        .as_str()
        .unwrap_or("CONTINUE")
        .to_owned();
    let id = Uuid::new_v4().to_string();
    st.sql.lock().unwrap().push((id.clone(), sql.to_owned()));
    let (fail, hang) = {
        let mut f = st.faults.lock().unwrap();
        let hang = f.hang.iter().any(|h| sql.contains(h.as_str()));
        let fail = f
            .fail
            .iter_mut()
            .find(|(s, _, n)| *n > 0 && sql.contains(s.as_str()))
            .map(|(_, code, n)| {
                *n -= 1;
                code.clone()
            });
        (fail, hang)
    };
    let (tx, rx) = watch::channel(false);
    st.statements.lock().unwrap().insert(
        id.clone(),
        Stmt {
            state: StmtState::Pending,
            polls: 0,
            task: None,
            hold: None,
        },
    );
    if !hang {
        let (st2, id2, sql) = (st.clone(), id.clone(), sql.to_owned());
        let task = tokio::spawn(async move {
            if let Some(s) = st2.statements.lock().unwrap().get_mut(&id2)
                && s.state == StmtState::Pending
            {
                s.state = StmtState::Running;
            }
            let outcome = match fail {
                Some(code) => StmtState::Failed(
                    code,
                    "[INJECTED_FAILURE] the warehouse failed this statement".into(),
                ),
                None => match execute(&st2, &sql).await {
                    Ok((cols, rows)) => StmtState::Succeeded(cols, rows),
                    Err((code, msg)) => StmtState::Failed(code, msg),
                },
            };
            if let Some(s) = st2.statements.lock().unwrap().get_mut(&id2)
                && !s.state.terminal()
            {
                s.state = outcome;
            }
            tx.send(true).ok();
        });
        if let Some(s) = st.statements.lock().unwrap().get_mut(&id) {
            s.task = Some(task);
        }
    } else if let Some(s) = st.statements.lock().unwrap().get_mut(&id) {
        s.state = StmtState::Running;
        s.hold = Some(tx);
    }
    if wait > 0 {
        let mut rx = rx;
        let finished = tokio::time::timeout(Duration::from_secs(wait), rx.wait_for(|d| *d))
            .await
            .is_ok();
        if !finished && on_wait == "CANCEL" {
            return cancel(st, &id);
        }
    }
    let state = st.statements.lock().unwrap()[&id].state.clone();
    let chunk_rows = st.faults.lock().unwrap().chunk_rows;
    // A statement that did not finish within the wait answers with its current state.
    ok(statement_json(
        &id,
        if wait == 0 && state.terminal() {
            &StmtState::Pending
        } else {
            &state
        },
        chunk_rows,
    ))
}

fn poll(st: &Inner, id: &str) -> Response {
    let (min_polls, chunk_rows) = {
        let f = st.faults.lock().unwrap();
        (f.min_polls, f.chunk_rows)
    };
    let mut stmts = st.statements.lock().unwrap();
    let Some(s) = stmts.get_mut(id) else {
        return error(
            StatusCode::NOT_FOUND,
            "RESOURCE_DOES_NOT_EXIST",
            format!("statement {id} not found"),
        );
    };
    s.polls += 1;
    if s.state.terminal() && s.polls <= min_polls {
        return ok(statement_json(id, &StmtState::Running, chunk_rows));
    }
    ok(statement_json(id, &s.state, chunk_rows))
}

fn result_chunk(st: &Inner, id: &str, index: &str) -> Response {
    let chunk_rows = st.faults.lock().unwrap().chunk_rows;
    let stmts = st.statements.lock().unwrap();
    match (stmts.get(id).map(|s| &s.state), index.parse::<usize>()) {
        (Some(StmtState::Succeeded(_, rows)), Ok(i)) => ok(chunk(id, rows, chunk_rows, i)),
        _ => error(
            StatusCode::NOT_FOUND,
            "RESOURCE_DOES_NOT_EXIST",
            format!("no result chunk {index} of statement {id}"),
        ),
    }
}

fn cancel(st: &Inner, id: &str) -> Response {
    st.cancels.lock().unwrap().push(id.to_owned());
    let mut stmts = st.statements.lock().unwrap();
    let Some(s) = stmts.get_mut(id) else {
        return error(
            StatusCode::NOT_FOUND,
            "RESOURCE_DOES_NOT_EXIST",
            format!("statement {id} not found"),
        );
    };
    if !s.state.terminal() {
        s.state = StmtState::Canceled;
        if let Some(t) = s.task.take() {
            t.abort();
        }
    }
    ok(json!({}))
}

// ---- SQL ------------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    /// A bare word, as written.
    Word(String),
    /// A backtick-quoted identifier, unquoted.
    Quoted(String),
    Num(String),
    Sym(char),
}

type SqlError = (String, String);

fn syntax(near: &str) -> SqlError {
    (
        "BAD_REQUEST".into(),
        format!("[PARSE_SYNTAX_ERROR] Syntax error at or near '{near}'. SQLSTATE: 42601"),
    )
}

fn tokenize(sql: &str) -> Result<Vec<Tok>, SqlError> {
    let mut out = Vec::new();
    let mut it = sql.chars().peekable();
    while let Some(&c) = it.peek() {
        if c.is_whitespace() {
            it.next();
        } else if c == '`' {
            it.next();
            let mut s = String::new();
            loop {
                match it.next() {
                    None => return Err(syntax("`")),
                    Some('`') if it.peek() == Some(&'`') => {
                        it.next();
                        s.push('`');
                    }
                    Some('`') => break,
                    Some(ch) => s.push(ch),
                }
            }
            out.push(Tok::Quoted(s));
        } else if c.is_ascii_alphabetic() || c == '_' {
            let mut s = String::new();
            while let Some(&ch) = it.peek() {
                if ch.is_ascii_alphanumeric() || ch == '_' {
                    s.push(ch);
                    it.next();
                } else {
                    break;
                }
            }
            out.push(Tok::Word(s));
        } else if c.is_ascii_digit() {
            let mut s = String::new();
            while let Some(&ch) = it.peek().filter(|ch| ch.is_ascii_digit()) {
                s.push(ch);
                it.next();
            }
            out.push(Tok::Num(s));
        } else if matches!(c, '.' | '(' | ')' | ',' | '*') {
            it.next();
            out.push(Tok::Sym(c));
        } else {
            return Err(syntax(&c.to_string()));
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn near(&self) -> String {
        match self.toks.get(self.pos) {
            None => "end of input".into(),
            Some(Tok::Word(w) | Tok::Num(w)) => w.clone(),
            Some(Tok::Quoted(q)) => format!("`{q}`"),
            Some(Tok::Sym(c)) => c.to_string(),
        }
    }
    fn kw(&mut self, k: &str) -> Result<(), SqlError> {
        match self.toks.get(self.pos) {
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case(k) => {
                self.pos += 1;
                Ok(())
            }
            _ => Err(syntax(&self.near())),
        }
    }
    fn is_kw(&self, k: &str) -> bool {
        matches!(self.toks.get(self.pos), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(k))
    }
    fn sym(&mut self, c: char) -> Result<(), SqlError> {
        if self.toks.get(self.pos) == Some(&Tok::Sym(c)) {
            self.pos += 1;
            Ok(())
        } else {
            Err(syntax(&self.near()))
        }
    }
    /// Object names must be quoted: the engine always quotes them.
    fn ident(&mut self) -> Result<String, SqlError> {
        match self.toks.get(self.pos) {
            Some(Tok::Quoted(q)) => {
                self.pos += 1;
                Ok(q.clone())
            }
            _ => Err(syntax(&self.near())),
        }
    }
    fn name3(&mut self) -> Result<[String; 3], SqlError> {
        let c = self.ident()?;
        self.sym('.')?;
        let s = self.ident()?;
        self.sym('.')?;
        let t = self.ident()?;
        Ok([c, s, t])
    }
    fn columns(&mut self) -> Result<Vec<String>, SqlError> {
        let mut cols = vec![self.ident()?];
        while self.toks.get(self.pos) == Some(&Tok::Sym(',')) {
            self.pos += 1;
            cols.push(self.ident()?);
        }
        Ok(cols)
    }
    fn end(&self) -> Result<(), SqlError> {
        if self.pos == self.toks.len() {
            Ok(())
        } else {
            Err(syntax(&self.near()))
        }
    }
    /// `( SELECT cols FROM a EXCEPT SELECT cols FROM b )`
    #[allow(clippy::type_complexity)]
    fn except(&mut self) -> Result<(Vec<String>, [String; 3], Vec<String>, [String; 3]), SqlError> {
        self.sym('(')?;
        self.kw("SELECT")?;
        let a = self.columns()?;
        self.kw("FROM")?;
        let from = self.name3()?;
        self.kw("EXCEPT")?;
        self.kw("SELECT")?;
        let b = self.columns()?;
        self.kw("FROM")?;
        let other = self.name3()?;
        self.sym(')')?;
        Ok((a, from, b, other))
    }
    /// `COUNT ( * ) AS n FROM`
    fn count_prefix(&mut self) -> Result<(), SqlError> {
        self.kw("COUNT")?;
        self.sym('(')?;
        self.sym('*')?;
        self.sym(')')?;
        self.kw("AS")?;
        self.kw("n")?;
        self.kw("FROM")
    }
}

enum Stmt2 {
    CreateCatalog(String, Option<(String, String)>),
    CreateSchema(String, String),
    DeepClone([String; 3], [String; 3]),
    Count([String; 3]),
    Except(Vec<String>, [String; 3], Vec<String>, [String; 3]),
    /// `SELECT cols FROM (SELECT cols FROM a EXCEPT SELECT cols FROM b) LIMIT n`
    ExceptRows(Vec<String>, [String; 3], Vec<String>, [String; 3], usize),
    SelectOne,
}

fn parse(sql: &str) -> Result<Stmt2, SqlError> {
    let mut p = Parser {
        toks: tokenize(sql)?,
        pos: 0,
    };
    let stmt = if p.is_kw("CREATE") {
        p.kw("CREATE")?;
        if p.is_kw("CATALOG") {
            p.kw("CATALOG")?;
            p.kw("IF")?;
            p.kw("NOT")?;
            p.kw("EXISTS")?;
            let c = p.ident()?;
            let share = if p.is_kw("USING") {
                p.kw("USING")?;
                p.kw("SHARE")?;
                let prov = p.ident()?;
                p.sym('.')?;
                Some((prov, p.ident()?))
            } else {
                None
            };
            Stmt2::CreateCatalog(c, share)
        } else if p.is_kw("SCHEMA") {
            p.kw("SCHEMA")?;
            p.kw("IF")?;
            p.kw("NOT")?;
            p.kw("EXISTS")?;
            let c = p.ident()?;
            p.sym('.')?;
            Stmt2::CreateSchema(c, p.ident()?)
        } else {
            p.kw("OR")?;
            p.kw("REPLACE")?;
            p.kw("TABLE")?;
            let target = p.name3()?;
            p.kw("DEEP")?;
            p.kw("CLONE")?;
            Stmt2::DeepClone(target, p.name3()?)
        }
    } else {
        p.kw("SELECT")?;
        if matches!(p.toks.get(p.pos), Some(Tok::Num(n)) if n == "1") {
            p.pos += 1;
            p.kw("AS")?;
            p.kw("ok")?;
            Stmt2::SelectOne
        } else if p.is_kw("COUNT") {
            p.count_prefix()?;
            if p.toks.get(p.pos) == Some(&Tok::Sym('(')) {
                let (a, from, b, other) = p.except()?;
                Stmt2::Except(a, from, b, other)
            } else {
                Stmt2::Count(p.name3()?)
            }
        } else {
            let outer = p.columns()?;
            p.kw("FROM")?;
            let (a, from, b, other) = p.except()?;
            if outer != a {
                return Err(syntax("SELECT"));
            }
            p.kw("LIMIT")?;
            let limit = match p.toks.get(p.pos) {
                Some(Tok::Num(n)) => n.parse().map_err(|_| syntax(n))?,
                _ => return Err(syntax(&p.near())),
            };
            p.pos += 1;
            Stmt2::ExceptRows(a, from, b, other, limit)
        }
    };
    p.end()?;
    Ok(stmt)
}

fn quoted3(n: &[String; 3]) -> String {
    n.iter()
        .map(|p| format!("`{}`", p.replace('`', "``")))
        .collect::<Vec<_>>()
        .join(".")
}

fn not_found(n: &[String; 3]) -> SqlError {
    (
        "BAD_REQUEST".into(),
        format!(
            "[TABLE_OR_VIEW_NOT_FOUND] The table or view {} cannot be found. SQLSTATE: 42P01",
            quoted3(n)
        ),
    )
}

/// Where a readable table lives, following shared catalogs to their provider's metastore.
fn resolve(ms: &BTreeMap<String, Metastore>, me: &str, n: &[String; 3]) -> Result<Table, SqlError> {
    let m = &ms[me];
    let cat = m.catalogs.get(&n[0]).ok_or_else(|| not_found(n))?;
    if let Some((provider, share)) = &cat.share {
        let (pid, pm) = ms
            .iter()
            .find(|(_, pm)| &pm.provider_name == provider)
            .ok_or_else(|| not_found(n))?;
        let recipient = pm
            .recipients
            .iter()
            .find(|(_, gid)| *gid == me)
            .map(|(r, _)| r.clone())
            .ok_or_else(|| {
                (
                    "PERMISSION_DENIED".to_owned(),
                    format!("no recipient for this metastore in {pid}"),
                )
            })?;
        let sh = pm.shares.get(share).ok_or_else(|| not_found(n))?;
        if !sh
            .grants
            .get(&recipient)
            .is_some_and(|p| p.contains("SELECT"))
        {
            return Err((
                "PERMISSION_DENIED".into(),
                format!("recipient {recipient} has no SELECT on share {share}"),
            ));
        }
        let source_schema = sh
            .objects
            .iter()
            .filter(|(_, t)| t == "SCHEMA")
            .find_map(|(o, _)| {
                o.split_once('.')
                    .filter(|(_, s)| *s == n[1])
                    .map(|(c, s)| (c.to_owned(), s.to_owned()))
            })
            .ok_or_else(|| not_found(n))?;
        return pm
            .catalogs
            .get(&source_schema.0)
            .and_then(|c| c.schemas.get(&source_schema.1))
            .and_then(|s| s.get(&n[2]))
            .cloned()
            .ok_or_else(|| not_found(n));
    }
    cat.schemas
        .get(&n[1])
        .and_then(|s| s.get(&n[2]))
        .cloned()
        .ok_or_else(|| not_found(n))
}

fn location(t: &Table) -> Result<TableLocation, SqlError> {
    TableLocation::parse(&t.location.to_string_lossy())
        .map_err(|e| ("INTERNAL_ERROR".into(), e.to_string()))
}

fn lake(e: replicator_lake::LakeError) -> SqlError {
    ("INTERNAL_ERROR".into(), e.to_string())
}

/// Rows of `batches` projected on `cols`, rendered as text.
fn project(batches: &[RecordBatch], cols: &[String]) -> Result<BTreeSet<String>, SqlError> {
    let options = FormatOptions::default().with_null("NULL");
    let mut out = BTreeSet::new();
    for b in batches {
        let schema = b.schema();
        let fmts = cols
            .iter()
            .map(|c| {
                let i = schema.index_of(c).map_err(|_| {
                    (
                        "BAD_REQUEST".to_owned(),
                        format!("[UNRESOLVED_COLUMN] A column `{c}` cannot be resolved"),
                    )
                })?;
                ArrayFormatter::try_new(b.column(i).as_ref(), &options)
                    .map_err(|e| ("INTERNAL_ERROR".to_owned(), e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        for r in 0..b.num_rows() {
            out.insert(
                fmts.iter()
                    .map(|f| f.value(r).to_string())
                    .collect::<Vec<_>>()
                    .join("\u{1}"),
            );
        }
    }
    Ok(out)
}

type Rows = (Vec<String>, Vec<Vec<Option<String>>>);

async fn execute(st: &Inner, sql: &str) -> Result<Rows, SqlError> {
    let stmt = parse(sql)?;
    let me = st.metastore.clone();
    let world = &st.world.metastores;
    match stmt {
        Stmt2::SelectOne => Ok((vec!["ok".into()], vec![vec![Some("1".into())]])),
        Stmt2::CreateCatalog(name, share) => {
            let mut ms = world.lock().unwrap();
            if let Some((prov, sh)) = &share {
                let found = ms
                    .iter()
                    .find(|(_, m)| &m.provider_name == prov)
                    .map(|(id, m)| {
                        (
                            m.recipients.values().any(|g| *g == me),
                            m.shares.contains_key(sh),
                            id.clone(),
                        )
                    });
                match found {
                    Some((true, true, _)) => {}
                    Some((false, _, _)) | None => {
                        return Err((
                            "BAD_REQUEST".into(),
                            format!("[PROVIDER_NOT_FOUND] provider {prov} not found"),
                        ));
                    }
                    Some((true, false, _)) => {
                        return Err((
                            "BAD_REQUEST".into(),
                            format!("[SHARE_NOT_FOUND] share {prov}.{sh} not found"),
                        ));
                    }
                }
            }
            ms.get_mut(&me)
                .unwrap()
                .catalogs
                .entry(name)
                .or_insert_with(|| Catalog {
                    share,
                    schemas: BTreeMap::new(),
                });
            Ok((vec![], vec![]))
        }
        Stmt2::CreateSchema(c, s) => {
            let mut ms = world.lock().unwrap();
            let cat = ms
                .get_mut(&me)
                .unwrap()
                .catalogs
                .get_mut(&c)
                .ok_or_else(|| {
                    (
                        "BAD_REQUEST".to_owned(),
                        format!("[NO_SUCH_CATALOG_EXCEPTION] catalog `{c}` not found"),
                    )
                })?;
            if cat.share.is_some() {
                return Err((
                    "BAD_REQUEST".into(),
                    "cannot create a schema in a shared catalog".into(),
                ));
            }
            cat.schemas.entry(s).or_default();
            Ok((vec![], vec![]))
        }
        Stmt2::Count(n) => {
            let t = resolve(&world.lock().unwrap(), &me, &n)?;
            let (rows, _, _) = inspect::count_rows(&location(&t)?, None)
                .await
                .map_err(lake)?;
            Ok((vec!["n".into()], vec![vec![Some(rows.to_string())]]))
        }
        Stmt2::Except(a, from, b, other) => {
            let n = except(world, &me, &a, &from, &b, &other).await?.len();
            Ok((vec!["n".into()], vec![vec![Some(n.to_string())]]))
        }
        Stmt2::ExceptRows(a, from, b, other, limit) => {
            let rows = except(world, &me, &a, &from, &b, &other)
                .await?
                .into_iter()
                .take(limit)
                .map(|r| {
                    r.split('\u{1}')
                        .map(|v| (v != "NULL").then(|| v.to_owned()))
                        .collect()
                })
                .collect();
            Ok((a, rows))
        }
        Stmt2::DeepClone(target, source) => {
            let (src, dest, existing) = {
                let ms = world.lock().unwrap();
                let src = resolve(&ms, &me, &source)?;
                let m = &ms[&me];
                let cat = m.catalogs.get(&target[0]).ok_or_else(|| {
                    (
                        "BAD_REQUEST".to_owned(),
                        format!(
                            "[NO_SUCH_CATALOG_EXCEPTION] catalog `{}` not found",
                            target[0]
                        ),
                    )
                })?;
                if cat.share.is_some() {
                    return Err((
                        "BAD_REQUEST".into(),
                        format!("catalog `{}` is a shared catalog and read-only", target[0]),
                    ));
                }
                let schema = cat.schemas.get(&target[1]).ok_or_else(|| {
                    (
                        "BAD_REQUEST".to_owned(),
                        format!(
                            "[SCHEMA_NOT_FOUND] schema `{}`.`{}` not found",
                            target[0], target[1]
                        ),
                    )
                })?;
                let existing = schema.get(&target[2]).cloned();
                if let Some(e) = &existing
                    && e.table_type != "MANAGED"
                    && e.table_type != "EXTERNAL"
                {
                    return Err((
                        "BAD_REQUEST".into(),
                        format!(
                            "[STREAMING_TABLE_OPERATION_NOT_ALLOWED] cannot CREATE OR REPLACE {} which is a {}",
                            quoted3(&target),
                            e.table_type
                        ),
                    ));
                }
                let dest = existing
                    .as_ref()
                    .map(|e| e.location.clone())
                    .unwrap_or_else(|| m.root.join("tables").join(Uuid::new_v4().to_string()));
                (src, dest, existing)
            };
            // `CREATE OR REPLACE`: the statement itself says replace.
            let report = deep_clone(
                &location(&src)?,
                &TableLocation::parse(&dest.to_string_lossy()).map_err(lake)?,
                &CloneOptions {
                    replace: true,
                    ..Default::default()
                },
            )
            .await
            .map_err(lake)?;
            if existing.is_none() {
                let mut ms = world.lock().unwrap();
                if let Some(schema) = ms
                    .get_mut(&me)
                    .unwrap()
                    .catalogs
                    .get_mut(&target[0])
                    .and_then(|c| c.schemas.get_mut(&target[1]))
                {
                    schema.entry(target[2].clone()).or_insert(Table {
                        table_type: "MANAGED".into(),
                        location: dest,
                        properties: BTreeMap::new(),
                    });
                }
            }
            let m = report.metrics;
            let cols = [
                "source_table_size",
                "source_num_of_files",
                "num_removed_files",
                "num_copied_files",
                "removed_files_size",
                "copied_files_size",
            ];
            let vals = [
                m.source_table_size,
                m.source_num_of_files,
                m.num_removed_files,
                m.num_copied_files,
                m.removed_files_size,
                m.copied_files_size,
            ];
            Ok((
                cols.iter().map(|c| c.to_string()).collect(),
                vec![vals.iter().map(|v| Some(v.to_string())).collect()],
            ))
        }
    }
}

/// Distinct rows of `a` over `from` that are not rows of `b` over `other`, rendered and
/// sorted.
async fn except(
    world: &Mutex<BTreeMap<String, Metastore>>,
    me: &str,
    a: &[String],
    from: &[String; 3],
    b: &[String],
    other: &[String; 3],
) -> Result<Vec<String>, SqlError> {
    if a.len() != b.len() {
        return Err((
            "BAD_REQUEST".into(),
            "[NUM_COLUMNS_MISMATCH] EXCEPT sides differ".into(),
        ));
    }
    let (ta, tb) = {
        let ms = world.lock().unwrap();
        (resolve(&ms, me, from)?, resolve(&ms, me, other)?)
    };
    let left = project(
        &inspect::read_batches(&location(&ta)?, None)
            .await
            .map_err(lake)?,
        a,
    )?;
    let right = project(
        &inspect::read_batches(&location(&tb)?, None)
            .await
            .map_err(lake)?,
        b,
    )?;
    Ok(left.difference(&right).cloned().collect())
}

// ---- Unity Catalog and Delta Sharing ----------------------------------------------------------

/// One page of `items` for `page_token`, honouring `max_results` and the injected paging.
fn page(st: &Inner, field: &str, items: Vec<Value>, q: &HashMap<String, String>) -> Response {
    let (empty_pages, forced) = {
        let f = st.faults.lock().unwrap();
        (f.empty_pages, f.page_size)
    };
    let asked: usize = q
        .get("max_results")
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    let size = if forced > 0 {
        forced
    } else if asked > 0 {
        asked
    } else {
        1000
    };
    let token = q.get("page_token").cloned().unwrap_or_default();
    let (empty, offset) = match token.as_str() {
        "" if empty_pages => (true, 0),
        "" => (false, 0),
        t => match (t.strip_prefix('e'), t.strip_prefix('o')) {
            (Some(n), _) => (true, n.parse().unwrap_or(0)),
            (_, Some(n)) => (false, n.parse().unwrap_or(0)),
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_PARAMETER_VALUE",
                    "bad page_token",
                );
            }
        },
    };
    if empty {
        return ok(json!({ field: [], "next_page_token": format!("o{offset}") }));
    }
    let end = (offset + size).min(items.len());
    let mut body = json!({ field: items[offset.min(end)..end] });
    if end < items.len() {
        body["next_page_token"] = json!(if empty_pages {
            format!("e{end}")
        } else {
            format!("o{end}")
        });
    }
    ok(body)
}

fn type_text(ty: &Value) -> String {
    match ty.as_str() {
        Some("long") => "bigint".into(),
        Some("integer") => "int".into(),
        Some(s) => s.to_owned(),
        None => ty["type"].as_str().unwrap_or("struct").to_owned(),
    }
}

async fn table_json(catalog: &str, schema: &str, name: &str, t: &Table) -> Value {
    let columns: Vec<Value> = match TableLocation::parse(&t.location.to_string_lossy()) {
        Ok(loc) => match inspect::table_info(&loc, None).await {
            Ok(info) => info
                .columns
                .iter()
                .enumerate()
                .map(|(i, (n, ty, nullable))| json!({"name": n, "type_text": type_text(ty), "type_name": type_text(ty).to_uppercase(), "nullable": nullable, "position": i}))
                .collect(),
            Err(_) => Vec::new(),
        },
        Err(_) => Vec::new(),
    };
    let mut v = json!({
        "name": name,
        "catalog_name": catalog,
        "schema_name": schema,
        "full_name": format!("{catalog}.{schema}.{name}"),
        "table_type": t.table_type,
        "data_source_format": "DELTA",
        "storage_location": format!("file://{}", t.location.display()),
        "properties": t.properties,
        "columns": columns,
    });
    if let Some(p) = t.properties.get("pipelines.pipelineId") {
        v["pipeline_id"] = json!(p);
    }
    v
}

fn catalog_json(name: &str, c: &Catalog) -> Value {
    match &c.share {
        Some((p, s)) => {
            json!({"name": name, "catalog_type": "DELTASHARING_CATALOG", "provider_name": p, "share_name": s})
        }
        None => json!({"name": name, "catalog_type": "MANAGED_CATALOG"}),
    }
}

fn share_json(name: &str, s: &Share) -> Value {
    json!({
        "name": name,
        "objects": s.objects.iter().map(|(n, t)| json!({"name": n, "data_object_type": t, "status": "ACTIVE"})).collect::<Vec<_>>(),
    })
}

/// 404 for an object that does not exist: `CATALOG_DOES_NOT_EXIST`, `SCHEMA_DOES_NOT_EXIST`,
/// `TABLE_DOES_NOT_EXIST`, else `RESOURCE_DOES_NOT_EXIST`.
fn missing(what: &str, name: &str) -> Response {
    let code = match what {
        "Catalog" | "Schema" | "Table" => format!("{}_DOES_NOT_EXIST", what.to_uppercase()),
        _ => "RESOURCE_DOES_NOT_EXIST".to_owned(),
    };
    error(
        StatusCode::NOT_FOUND,
        &code,
        format!("{what} '{name}' does not exist."),
    )
}

async fn uc_get(st: &Inner, rest: &[&str], q: &HashMap<String, String>) -> Response {
    let me = st.metastore.clone();
    // Snapshot what is needed, then release the lock before reading Delta logs.
    let m = st.world.metastores.lock().unwrap()[&me].clone();
    match rest {
        ["metastore_summary"] => ok(
            json!({"metastore_id": me.rsplit(':').next(), "global_metastore_id": me, "name": m.name}),
        ),
        ["catalogs"] => page(
            st,
            "catalogs",
            m.catalogs.iter().map(|(n, c)| catalog_json(n, c)).collect(),
            q,
        ),
        ["catalogs", name] => match m.catalogs.get(*name) {
            Some(c) => ok(catalog_json(name, c)),
            None => missing("Catalog", name),
        },
        ["schemas"] => {
            let c = q.get("catalog_name").cloned().unwrap_or_default();
            let Some(cat) = m.catalogs.get(&c) else {
                return missing("Catalog", &c);
            };
            let mut items: Vec<Value> =
                vec![json!({"name": "information_schema", "catalog_name": c})];
            items.extend(
                cat.schemas.keys().map(
                    |s| json!({"name": s, "catalog_name": c, "full_name": format!("{c}.{s}")}),
                ),
            );
            page(st, "schemas", items, q)
        }
        ["schemas", full] => {
            let found = full.split_once('.').and_then(|(c, s)| {
                m.catalogs
                    .get(c)
                    .filter(|c| c.share.is_none())
                    .and_then(|cat| cat.schemas.get(s))
                    .map(|_| (c, s))
            });
            match found {
                Some((c, s)) => ok(json!({"name": s, "catalog_name": c, "full_name": full})),
                None => missing("Schema", full),
            }
        }
        ["tables"] => {
            let (c, s) = (
                q.get("catalog_name").cloned().unwrap_or_default(),
                q.get("schema_name").cloned().unwrap_or_default(),
            );
            let Some(tables) = m.catalogs.get(&c).and_then(|cat| cat.schemas.get(&s)) else {
                return missing("Schema", &format!("{c}.{s}"));
            };
            let mut items = Vec::new();
            for (n, t) in tables {
                items.push(table_json(&c, &s, n, t).await);
            }
            page(st, "tables", items, q)
        }
        ["tables", full] => {
            let parts: Vec<&str> = full.splitn(3, '.').collect();
            let [c, s, t] = parts[..] else {
                return missing("Table", full);
            };
            match m
                .catalogs
                .get(c)
                .and_then(|cat| cat.schemas.get(s))
                .and_then(|sc| sc.get(t))
            {
                Some(tb) => ok(table_json(c, s, t, tb).await),
                None => missing("Table", full),
            }
        }
        ["shares", name] => match m.shares.get(*name) {
            Some(s) => ok(share_json(name, s)),
            None => missing("Share", name),
        },
        ["shares", name, "permissions"] => match m.shares.get(*name) {
            Some(s) => ok(
                json!({"privilege_assignments": s.grants.iter().map(|(p, privs)| json!({"principal": p, "privileges": privs})).collect::<Vec<_>>()}),
            ),
            None => missing("Share", name),
        },
        ["recipients", name] => match m.recipients.get(*name) {
            Some(g) => ok(
                json!({"name": name, "authentication_type": "DATABRICKS", "data_recipient_global_metastore_id": g}),
            ),
            None => missing("Recipient", name),
        },
        ["providers"] => {
            let ms = st.world.metastores.lock().unwrap();
            let items: Vec<Value> = ms
                .iter()
                .filter(|(id, pm)| **id != me && pm.recipients.values().any(|g| *g == me))
                .map(|(id, pm)| json!({"name": pm.provider_name, "authentication_type": "DATABRICKS", "data_provider_global_metastore_id": id}))
                .collect();
            drop(ms);
            page(st, "providers", items, q)
        }
        _ => error(
            StatusCode::NOT_FOUND,
            "ENDPOINT_NOT_FOUND",
            format!("no endpoint GET {}", rest.join("/")),
        ),
    }
}

fn uc_change(st: &Inner, method: &str, rest: &[&str], body: &Value) -> Response {
    let me = st.metastore.clone();
    let mut ms = st.world.metastores.lock().unwrap();
    let m = ms.get_mut(&me).unwrap();
    let exists = |what: &str, name: &str| {
        error(
            StatusCode::CONFLICT,
            "RESOURCE_ALREADY_EXISTS",
            format!("{what} '{name}' already exists"),
        )
    };
    match (method, rest) {
        ("POST", ["recipients"]) => {
            let (Some(name), Some(gid)) = (
                body["name"].as_str(),
                body["data_recipient_global_metastore_id"].as_str(),
            ) else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_PARAMETER_VALUE",
                    "name and data_recipient_global_metastore_id are required",
                );
            };
            if body["authentication_type"].as_str() != Some("DATABRICKS") {
                return error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_PARAMETER_VALUE",
                    "authentication_type must be DATABRICKS",
                );
            }
            if m.recipients.contains_key(name) {
                return exists("Recipient", name);
            }
            m.recipients.insert(name.to_owned(), gid.to_owned());
            ok(
                json!({"name": name, "authentication_type": "DATABRICKS", "data_recipient_global_metastore_id": gid}),
            )
        }
        ("POST", ["shares"]) => {
            let Some(name) = body["name"].as_str() else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_PARAMETER_VALUE",
                    "name is required",
                );
            };
            if m.shares.contains_key(name) {
                return exists("Share", name);
            }
            m.shares.insert(name.to_owned(), Share::default());
            ok(json!({"name": name}))
        }
        ("PATCH", ["shares", name]) => {
            let catalogs = m.catalogs.clone();
            let Some(share) = m.shares.get_mut(*name) else {
                return missing("Share", name);
            };
            for u in body["updates"].as_array().into_iter().flatten() {
                let obj = &u["data_object"];
                let (Some(oname), Some(otype)) =
                    (obj["name"].as_str(), obj["data_object_type"].as_str())
                else {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "INVALID_PARAMETER_VALUE",
                        "data_object needs name and data_object_type",
                    );
                };
                if u["action"].as_str() != Some("ADD") || otype != "SCHEMA" {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "INVALID_PARAMETER_VALUE",
                        "only ADD of SCHEMA objects is emulated",
                    );
                }
                let ok_schema = oname.split_once('.').is_some_and(|(c, s)| {
                    catalogs.get(c).is_some_and(|c| c.schemas.contains_key(s))
                });
                if !ok_schema {
                    return missing("Schema", oname);
                }
                if share.objects.iter().any(|(n, _)| n == oname) {
                    return exists("Shared object", oname);
                }
                share.objects.push((oname.to_owned(), otype.to_owned()));
            }
            ok(share_json(name, share))
        }
        ("PATCH", ["shares", name, "permissions"]) => {
            let recipients = m.recipients.clone();
            let Some(share) = m.shares.get_mut(*name) else {
                return missing("Share", name);
            };
            for c in body["changes"].as_array().into_iter().flatten() {
                let Some(p) = c["principal"].as_str() else {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "INVALID_PARAMETER_VALUE",
                        "principal is required",
                    );
                };
                if !recipients.contains_key(p) {
                    return missing("Recipient", p);
                }
                let privs = share.grants.entry(p.to_owned()).or_default();
                for a in c["add"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                {
                    privs.insert(a.to_owned());
                }
                for r in c["remove"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                {
                    privs.remove(r);
                }
            }
            ok(
                json!({"privilege_assignments": share.grants.iter().map(|(p, privs)| json!({"principal": p, "privileges": privs})).collect::<Vec<_>>()}),
            )
        }
        _ => error(
            StatusCode::NOT_FOUND,
            "ENDPOINT_NOT_FOUND",
            format!("no endpoint {method} {}", rest.join("/")),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_the_engine_shapes() {
        assert!(matches!(
            parse("CREATE OR REPLACE TABLE `a`.`b`.`c` DEEP CLONE `d`.`e`.`f`"),
            Ok(Stmt2::DeepClone(..))
        ));
        assert!(
            matches!(parse("SELECT COUNT(*) AS n FROM `a`.`b`.`c``;x`"), Ok(Stmt2::Count(n)) if n[2] == "c`;x")
        );
        for bad in [
            "SELECT COUNT(*) AS n FROM a.b.c",
            "SELECT COUNT(*) AS n FROM `a`.`b`.`c`; DROP TABLE `x`",
            "DROP TABLE `a`.`b`.`c`",
            "SELECT COUNT(*) AS n FROM `a`.`b`.`c",
        ] {
            let e = parse(bad).err().unwrap_or_else(|| panic!("{bad} parsed"));
            assert!(e.1.contains("PARSE_SYNTAX_ERROR"), "{bad}: {e:?}");
        }
    }
}
