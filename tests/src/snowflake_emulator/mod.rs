//! A Snowflake SQL API v2 emulator for tests of `replicator-snowflake`.
//!
//! It serves, over plain HTTP on `127.0.0.1:0`, the documented endpoints with their
//! documented wire formats:
//!
//! - `POST /api/v2/statements?requestId=…[&retry=true]` with `{"statement", …}`: 200 and a
//!   `ResultSet` (`resultSetMetaData.rowType`, `partitionInfo`, `data` as strings,
//!   `statementHandle`, `statementStatusUrl`), 202 and a `QueryStatus` when answering
//!   asynchronously, 422 and a `QueryFailureStatus` (`code`, `message`, `sqlState`) when the
//!   statement fails; a resubmission with the same `requestId` and `retry=true` answers what
//!   the first submission did without running the statement again;
//! - `GET /api/v2/statements/{handle}[?partition=N]`: 202 while running, then the outcome;
//! - `POST /api/v2/statements/{handle}/cancel`.
//!
//! Every request must carry `Authorization: Bearer <JWT>` and
//! `X-Snowflake-Authorization-Token-Type: KEYPAIR_JWT`. The JWT is verified as Snowflake
//! does for key-pair authentication: RS256 signature against the public key registered for
//! the user (at least 2048 bits), `iss` = `ACCOUNT.USER.SHA256:<fingerprint>` with the
//! fingerprint of that key, `sub` = `ACCOUNT.USER`, `exp` in the future and at most one hour
//! after `iat`. A refused JWT is answered 401 `{"code": "390144", "message": "JWT token is
//! invalid. [<uuid>]"}`.
//!
//! Statements run against in-memory catalog objects (`sql.rs`): catalog integrations,
//! external volumes, databases, schemas and Iceberg tables, so `SHOW …` lists what was
//! created. Faults can be injected ([`Faults`]): a storm of 429s with `Retry-After`,
//! asynchronous answers completing after N polls, results split in partitions; and
//! [`SnowflakeEmulator::expire_tokens`] makes every JWT seen so far count as expired.
//! Every statement executed is recorded.

mod sql;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rsa::RsaPublicKey;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::EncodePublicKey;
use rsa::signature::Verifier;
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub use sql::{Catalog, IcebergTable, Integration, Outcome, Volume};

/// Injected faults and answer modes.
#[derive(Clone, Debug)]
pub struct Faults {
    /// The next this many requests are answered 429 with `Retry-After`.
    pub throttle: u32,
    /// The `Retry-After` of a throttled answer, in seconds.
    pub retry_after_s: u64,
    /// Answer every statement asynchronously: 202, then the outcome on the N-th poll.
    pub async_polls: Option<u32>,
    /// Rows per result partition.
    pub partition_rows: usize,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            throttle: 0,
            retry_after_s: 1,
            async_polls: None,
            partition_rows: 1000,
        }
    }
}

struct Pending {
    polls_left: u32,
    outcome: Outcome,
    request_id: String,
}

struct Inner {
    account: String,
    user: String,
    public_key: RsaPublicKey,
    fingerprint: String,
    catalog: Mutex<Catalog>,
    faults: Mutex<Faults>,
    statements: Mutex<HashMap<String, Pending>>,
    by_request: Mutex<HashMap<String, String>>,
    executed: Mutex<Vec<String>>,
    submitted: Mutex<Vec<String>>,
    seen_tokens: Mutex<HashSet<String>>,
    expired: Mutex<HashSet<String>>,
    auth_failures: Mutex<Vec<String>>,
    throttled: Mutex<u32>,
    polls: Mutex<u32>,
    resubmissions: Mutex<u32>,
    cancels: Mutex<Vec<String>>,
}

/// One emulated Snowflake account with one user, serving until dropped.
pub struct SnowflakeEmulator {
    pub url: String,
    inner: Arc<Inner>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for SnowflakeEmulator {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The fingerprint Snowflake shows for a public key (`RSA_PUBLIC_KEY_FP`).
pub fn fingerprint(key: &RsaPublicKey) -> String {
    let der = key.to_public_key_der().expect("public key DER");
    format!("SHA256:{}", STANDARD.encode(Sha256::digest(der.as_bytes())))
}

impl SnowflakeEmulator {
    /// Serve account `account` (as the JWT names it, e.g. `MYORG-ACCT`) with `user`, whose
    /// registered public key is `public_key`.
    pub async fn start(account: &str, user: &str, public_key: RsaPublicKey) -> Self {
        assert!(
            public_key.size() * 8 >= 2048,
            "Snowflake requires RSA keys of at least 2048 bits"
        );
        let inner = Arc::new(Inner {
            account: account.to_ascii_uppercase(),
            user: user.to_ascii_uppercase(),
            fingerprint: fingerprint(&public_key),
            public_key,
            catalog: Mutex::new(Catalog::default()),
            faults: Mutex::new(Faults::default()),
            statements: Mutex::new(HashMap::new()),
            by_request: Mutex::new(HashMap::new()),
            executed: Mutex::new(Vec::new()),
            submitted: Mutex::new(Vec::new()),
            seen_tokens: Mutex::new(HashSet::new()),
            expired: Mutex::new(HashSet::new()),
            auth_failures: Mutex::new(Vec::new()),
            throttled: Mutex::new(0),
            polls: Mutex::new(0),
            resubmissions: Mutex::new(0),
            cancels: Mutex::new(Vec::new()),
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
            inner,
            server,
        }
    }

    /// Change the injected faults.
    pub fn faults(&self, f: impl FnOnce(&mut Faults)) {
        f(&mut self.inner.faults.lock().unwrap());
    }

    /// Every JWT presented so far is treated as expired from now on.
    pub fn expire_tokens(&self) {
        let seen = self.inner.seen_tokens.lock().unwrap().clone();
        self.inner.expired.lock().unwrap().extend(seen);
    }

    /// Distinct JWTs accepted so far.
    pub fn tokens_seen(&self) -> usize {
        self.inner.seen_tokens.lock().unwrap().len()
    }

    /// Why JWTs were refused, in order.
    pub fn auth_failures(&self) -> Vec<String> {
        self.inner.auth_failures.lock().unwrap().clone()
    }

    /// Statements executed (each once, whatever the number of resubmissions), in order.
    pub fn executed(&self) -> Vec<String> {
        self.inner.executed.lock().unwrap().clone()
    }

    /// Executed statements other than `SHOW`.
    pub fn ddl_executed(&self) -> Vec<String> {
        self.executed()
            .into_iter()
            .filter(|s| !s.trim_start().to_ascii_uppercase().starts_with("SHOW"))
            .collect()
    }

    /// Every statement text received in a submission, retries included.
    pub fn submitted(&self) -> Vec<String> {
        self.inner.submitted.lock().unwrap().clone()
    }

    pub fn throttled(&self) -> u32 {
        *self.inner.throttled.lock().unwrap()
    }

    pub fn polls(&self) -> u32 {
        *self.inner.polls.lock().unwrap()
    }

    /// Submissions that carried `retry=true`.
    pub fn resubmissions(&self) -> u32 {
        *self.inner.resubmissions.lock().unwrap()
    }

    pub fn cancels(&self) -> Vec<String> {
        self.inner.cancels.lock().unwrap().clone()
    }

    /// Read the account's objects.
    pub fn catalog<T>(&self, f: impl FnOnce(&Catalog) -> T) -> T {
        f(&self.inner.catalog.lock().unwrap())
    }

    /// Forget recorded statements and counters (objects stay).
    pub fn clear_log(&self) {
        self.inner.executed.lock().unwrap().clear();
        self.inner.submitted.lock().unwrap().clear();
        *self.inner.polls.lock().unwrap() = 0;
        *self.inner.throttled.lock().unwrap() = 0;
        *self.inner.resubmissions.lock().unwrap() = 0;
    }
}

fn json_response(status: StatusCode, v: Value) -> Response {
    (status, axum::Json(v)).into_response()
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// Verify the request's JWT; `Err(reason)` when Snowflake would refuse it.
fn verify(st: &Inner, headers: &HeaderMap) -> Result<String, String> {
    let kind = headers
        .get("x-snowflake-authorization-token-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if kind != "KEYPAIR_JWT" {
        return Err(format!("token type header is {kind:?}, not KEYPAIR_JWT"));
    }
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or("no bearer token")?
        .to_owned();
    if st.expired.lock().unwrap().contains(&token) {
        return Err("expired (injected)".into());
    }
    let parts: Vec<&str> = token.split('.').collect();
    let [h, c, s] = parts[..] else {
        return Err("not three parts".into());
    };
    let decode = |p: &str| -> Result<Value, String> {
        let bytes = URL_SAFE_NO_PAD
            .decode(p)
            .map_err(|e| format!("base64url: {e}"))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("json: {e}"))
    };
    let header = decode(h)?;
    if header["alg"] != "RS256" {
        return Err(format!("alg {} is not RS256", header["alg"]));
    }
    let claims = decode(c)?;
    let sig = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|e| format!("signature base64url: {e}"))?;
    let sig = Signature::try_from(sig.as_slice()).map_err(|e| format!("signature: {e}"))?;
    VerifyingKey::<Sha256>::new(st.public_key.clone())
        .verify(format!("{h}.{c}").as_bytes(), &sig)
        .map_err(|_| "signature does not verify with the registered public key".to_owned())?;
    let sub = format!("{}.{}", st.account, st.user);
    let iss = format!("{sub}.{}", st.fingerprint);
    if claims["iss"] != iss.as_str() {
        return Err(format!("iss {} is not {iss}", claims["iss"]));
    }
    if claims["sub"] != sub.as_str() {
        return Err(format!("sub {} is not {sub}", claims["sub"]));
    }
    let (Some(iat), Some(exp)) = (claims["iat"].as_u64(), claims["exp"].as_u64()) else {
        return Err("iat or exp missing".into());
    };
    let now = now_s();
    if exp <= now {
        return Err("expired".into());
    }
    if exp.saturating_sub(iat) > 3600 {
        return Err("exp is more than one hour after iat".into());
    }
    if iat > now + 60 {
        return Err("iat is in the future".into());
    }
    Ok(token)
}

fn result_set(st: &Inner, handle: &str, request_id: &str, outcome: &Outcome) -> Response {
    match outcome {
        Outcome::Rows { columns, rows } => {
            let per = st.faults.lock().unwrap().partition_rows.max(1);
            let parts: Vec<&[Vec<Option<String>>]> = if rows.is_empty() {
                vec![&rows[..]]
            } else {
                rows.chunks(per).collect()
            };
            json_response(
                StatusCode::OK,
                json!({
                    "resultSetMetaData": {
                        "numRows": rows.len(),
                        "format": "jsonv2",
                        "rowType": columns.iter().map(|c| json!({
                            "name": c, "database": "", "schema": "", "table": "",
                            "type": "text", "nullable": true, "byteLength": 16777216,
                            "length": 16777216, "scale": null, "precision": null,
                        })).collect::<Vec<_>>(),
                        "partitionInfo": parts.iter().map(|p| json!({
                            "rowCount": p.len(), "uncompressedSize": 0,
                        })).collect::<Vec<_>>(),
                    },
                    "data": parts[0],
                    "code": "090001",
                    "statementStatusUrl": format!("/api/v2/statements/{handle}?requestId={request_id}"),
                    "requestId": request_id,
                    "sqlState": "00000",
                    "statementHandle": handle,
                    "message": "Statement executed successfully.",
                    "createdOn": now_s() * 1000,
                }),
            )
        }
        Outcome::Error {
            code,
            sql_state,
            message,
        } => json_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({
                "code": code,
                "message": message,
                "sqlState": sql_state,
                "statementHandle": handle,
            }),
        ),
    }
}

fn query_status(handle: &str) -> Response {
    json_response(
        StatusCode::ACCEPTED,
        json!({
            "code": "333334",
            "message": "Asynchronous execution in progress. Use provided query id to perform query monitoring and management.",
            "statementHandle": handle,
            "statementStatusUrl": format!("/api/v2/statements/{handle}"),
        }),
    )
}

async fn handle(
    st: Arc<Inner>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    {
        let mut f = st.faults.lock().unwrap();
        if f.throttle > 0 {
            f.throttle -= 1;
            *st.throttled.lock().unwrap() += 1;
            let mut r = json_response(
                StatusCode::TOO_MANY_REQUESTS,
                json!({"code": "000429", "message": "Too many requests. Please retry later."}),
            );
            r.headers_mut()
                .insert("retry-after", f.retry_after_s.to_string().parse().unwrap());
            return r;
        }
    }
    match verify(&st, &headers) {
        Ok(token) => {
            st.seen_tokens.lock().unwrap().insert(token);
        }
        Err(reason) => {
            st.auth_failures.lock().unwrap().push(reason);
            return json_response(
                StatusCode::UNAUTHORIZED,
                json!({
                    "code": "390144",
                    "message": format!("JWT token is invalid. [{}]", Uuid::new_v4()),
                }),
            );
        }
    }
    let q: HashMap<String, String> =
        url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let segments: Vec<&str> = uri.path().trim_start_matches('/').split('/').collect();
    match (method.as_str(), segments.as_slice()) {
        ("POST", ["api", "v2", "statements"]) => {
            let bytes = axum::body::to_bytes(body, usize::MAX)
                .await
                .unwrap_or_default();
            let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let Some(sql) = v["statement"].as_str() else {
                return json_response(
                    StatusCode::BAD_REQUEST,
                    json!({"code": "391902", "message": "Unsupported Accept header null is specified."}),
                );
            };
            st.submitted.lock().unwrap().push(sql.to_owned());
            let request_id = q
                .get("requestId")
                .cloned()
                .unwrap_or_else(|| Uuid::new_v4().to_string());
            if q.get("retry").map(String::as_str) == Some("true") {
                *st.resubmissions.lock().unwrap() += 1;
                let known = st.by_request.lock().unwrap().get(&request_id).cloned();
                if let Some(handle) = known {
                    let statements = st.statements.lock().unwrap();
                    let p = &statements[&handle];
                    return if p.polls_left > 0 {
                        query_status(&handle)
                    } else {
                        result_set(&st, &handle, &request_id, &p.outcome)
                    };
                }
            }
            let outcome = st.catalog.lock().unwrap().execute(sql);
            if matches!(outcome, Outcome::Rows { .. }) {
                st.executed.lock().unwrap().push(sql.to_owned());
            }
            let handle = Uuid::new_v4().to_string();
            let polls = st.faults.lock().unwrap().async_polls.unwrap_or(0);
            st.by_request
                .lock()
                .unwrap()
                .insert(request_id.clone(), handle.clone());
            let answer = if polls > 0 {
                query_status(&handle)
            } else {
                result_set(&st, &handle, &request_id, &outcome)
            };
            st.statements.lock().unwrap().insert(
                handle,
                Pending {
                    polls_left: polls,
                    outcome,
                    request_id,
                },
            );
            answer
        }
        ("GET", ["api", "v2", "statements", handle]) => {
            let mut statements = st.statements.lock().unwrap();
            let Some(p) = statements.get_mut(*handle) else {
                return json_response(
                    StatusCode::NOT_FOUND,
                    json!({"code": "333333", "message": format!("Statement {handle} not found")}),
                );
            };
            if let Some(n) = q.get("partition") {
                let n: usize = n.parse().unwrap_or(usize::MAX);
                let Outcome::Rows { rows, .. } = &p.outcome else {
                    return json_response(
                        StatusCode::BAD_REQUEST,
                        json!({"message": "no result set"}),
                    );
                };
                let per = st.faults.lock().unwrap().partition_rows.max(1);
                let Some(chunk) = rows.chunks(per).nth(n) else {
                    return json_response(
                        StatusCode::BAD_REQUEST,
                        json!({"code": "391910", "message": format!("Invalid partition {n}")}),
                    );
                };
                return json_response(StatusCode::OK, json!({ "data": chunk }));
            }
            *st.polls.lock().unwrap() += 1;
            if p.polls_left > 1 {
                p.polls_left -= 1;
                return query_status(handle);
            }
            p.polls_left = 0;
            let (outcome, request_id) = (p.outcome.clone(), p.request_id.clone());
            drop(statements);
            result_set(&st, handle, &request_id, &outcome)
        }
        ("POST", ["api", "v2", "statements", handle, "cancel"]) => {
            st.cancels.lock().unwrap().push((*handle).to_owned());
            json_response(
                StatusCode::OK,
                json!({"code": "000604", "message": "Statement canceled.", "statementHandle": handle}),
            )
        }
        _ => json_response(
            StatusCode::NOT_FOUND,
            json!({"code": "390404", "message": format!("No API {method} {}", uri.path())}),
        ),
    }
}
