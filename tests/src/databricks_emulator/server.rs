//! The server of one emulated workspace: start, routing, authentication (PAT and the OAuth
//! token endpoint), injected transport faults, and what tests read back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Value, json};
use uuid::Uuid;

use super::jobs::jobs_get;
use super::sharing::uc_change;
use super::state::{
    Call, Faults, Inner, Job, JobRun, Jobs, RunResult, WorkspaceAuth, World, state_name,
};
use super::statements::{cancel, poll, result_chunk, submit};
use super::unity_catalog::uc_get;

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
            jobs: Mutex::new(Jobs::default()),
        });
        let state = inner.clone();
        let app = Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Body| {
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

    /// Add a job named `name` to this workspace; returns its `job_id`.
    pub fn add_job(&self, name: &str) -> i64 {
        let mut jobs = self.inner.jobs.lock().unwrap();
        jobs.next_id += 1;
        let job_id = 1000 + jobs.next_id;
        jobs.jobs.push(Job {
            job_id,
            name: name.to_owned(),
            runs: Vec::new(),
        });
        job_id
    }

    /// Add a run of job `job_id` that started at `start` and ended at `end` with `result`
    /// (`end` is ignored for a run still going); returns its `run_id`.
    pub fn add_run(
        &self,
        job_id: i64,
        start: chrono::DateTime<chrono::Utc>,
        end: chrono::DateTime<chrono::Utc>,
        result: RunResult,
    ) -> i64 {
        let mut jobs = self.inner.jobs.lock().unwrap();
        jobs.next_id += 1;
        let run_id = 50_000 + jobs.next_id;
        let job = jobs
            .jobs
            .iter_mut()
            .find(|j| j.job_id == job_id)
            .expect("add_run: no such job");
        job.runs.push(JobRun {
            run_id,
            start_ms: start.timestamp_millis(),
            end_ms: end.timestamp_millis(),
            result,
        });
        run_id
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

pub(super) fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(json!({"error_code": code, "message": message.into()})),
    )
        .into_response()
}

pub(super) fn ok(v: Value) -> Response {
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
    body: Body,
) -> Response {
    let path = uri.path().to_owned();
    st.calls.lock().unwrap().push(Call {
        method: method.to_string(),
        path: path.clone(),
    });
    if path == "/oidc/v1/token" && method == Method::POST {
        let body = axum::body::to_bytes(body, usize::MAX)
            .await
            .unwrap_or_default();
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
    // The Files API streams raw bytes; everything else is JSON.
    if let ["api", "2.0", "fs", rest @ ..] = seg.as_slice() {
        return super::files::handle(&st, &method, rest, &q, &headers, body).await;
    }
    let Ok(body) = axum::body::to_bytes(body, usize::MAX).await else {
        return error(
            StatusCode::BAD_REQUEST,
            "MALFORMED_REQUEST",
            "body unreadable",
        );
    };
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
        ("GET" | "POST" | "DELETE", ["api", "2.1", "unity-catalog", kind, ..])
            if matches!(
                *kind,
                "volumes" | "external-locations" | "storage-credentials"
            ) =>
        {
            super::volumes::uc(&st, method.as_str(), &seg[3..], &q, &body)
        }
        ("POST", ["api", "2.0", "unity-catalog", kind])
            if matches!(
                *kind,
                "temporary-table-credentials" | "temporary-path-credentials"
            ) =>
        {
            super::credentials::handle(&st, kind, &body)
        }
        ("GET", ["api", "2.1", "unity-catalog", rest @ ..]) => uc_get(&st, rest, &q).await,
        ("GET", ["api", "2.2", "jobs", rest @ ..]) => jobs_get(&st, rest, &q),
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
