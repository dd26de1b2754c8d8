//! An S3 endpoint that enforces the credentials the workspace emulator vends, in front of a
//! moto server: what AWS STS and IAM do for Unity Catalog's temporary credentials. Every
//! request must be signed (SigV4 `Authorization` header) with a vended access key, carry its
//! session token (`x-amz-security-token`), be made before the credential expires, stay inside
//! the bucket and key prefix the credential was vended for, and only write with a
//! read-write credential; otherwise it gets S3's XML error (`ExpiredToken`,
//! `InvalidAccessKeyId`, `AccessDenied`) and never reaches moto. Accepted requests are
//! forwarded unchanged (moto does not check signatures), after an optional delay that
//! stands for a slow network, so a copy of a few files can outlast a short-lived credential.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use crate::databricks_emulator::World;

/// A gateway serving until dropped.
pub struct S3Gateway {
    pub url: String,
    refused: Arc<AtomicU32>,
    forwarded: Arc<AtomicU32>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for S3Gateway {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl S3Gateway {
    /// A gateway to the moto server on `moto_port`, checking credentials against `world`,
    /// holding each accepted request for `delay` first.
    pub async fn start(world: &World, moto_port: u16, delay: Duration) -> Self {
        let refused = Arc::new(AtomicU32::new(0));
        let forwarded = Arc::new(AtomicU32::new(0));
        let state = Arc::new(State {
            world: world.clone(),
            upstream: format!("http://127.0.0.1:{moto_port}"),
            http: reqwest::Client::new(),
            delay,
            refused: refused.clone(),
            forwarded: forwarded.clone(),
        });
        let app = Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Body| {
                let state = state.clone();
                async move { state.handle(method, uri, headers, body).await }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.ok();
        });
        Self {
            url: format!("http://{addr}"),
            refused,
            forwarded,
            server,
        }
    }

    /// Requests refused (expired, unknown or out-of-scope credentials).
    pub fn refused(&self) -> u32 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Requests passed on to moto.
    pub fn forwarded(&self) -> u32 {
        self.forwarded.load(Ordering::Relaxed)
    }
}

struct State {
    world: World,
    upstream: String,
    http: reqwest::Client,
    delay: Duration,
    refused: Arc<AtomicU32>,
    forwarded: Arc<AtomicU32>,
}

fn s3_error(status: u16, code: &str, message: &str) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    );
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN),
        [("content-type", "application/xml")],
        body,
    )
        .into_response()
}

/// The access key ID of a SigV4 `Authorization` header
/// (`AWS4-HMAC-SHA256 Credential=AKID/20261130/us-east-1/s3/aws4_request, …`).
fn access_key_id(headers: &HeaderMap) -> Option<String> {
    let auth = headers.get("authorization")?.to_str().ok()?;
    let cred = auth
        .strip_prefix("AWS4-HMAC-SHA256 ")?
        .split(',')
        .find_map(|p| p.trim().strip_prefix("Credential="))?;
    Some(cred.split('/').next()?.to_owned())
}

impl State {
    async fn handle(&self, method: Method, uri: Uri, headers: HeaderMap, body: Body) -> Response {
        // Path-style: /bucket/key…; a listing names its prefix in the query.
        let path = percent_encoding::percent_decode_str(uri.path().trim_start_matches('/'))
            .decode_utf8_lossy()
            .into_owned();
        let (bucket, key) = path.split_once('/').unwrap_or((path.as_str(), ""));
        let query: std::collections::HashMap<String, String> =
            url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
                .into_owned()
                .collect();
        let key = if key.is_empty() {
            query.get("prefix").cloned().unwrap_or_default()
        } else {
            key.to_owned()
        };
        let write = !matches!(method, Method::GET | Method::HEAD);
        let method_is_head = method == Method::HEAD;
        let token = headers
            .get("x-amz-security-token")
            .and_then(|h| h.to_str().ok());
        let verdict = match access_key_id(&headers) {
            Some(id) => self.world.check_s3(&id, token, bucket, &key, write),
            None => Err((403, "AccessDenied", "anonymous request".into())),
        };
        if let Err((status, code, message)) = verdict {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return s3_error(status, code, &message);
        }
        tokio::time::sleep(self.delay).await;
        let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
            return s3_error(400, "IncompleteBody", "body unreadable");
        };
        let url = format!(
            "{}{}",
            self.upstream,
            uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
        );
        let mut req = self.http.request(method, url).body(bytes);
        for (k, v) in &headers {
            if k != "host" && k != "content-length" {
                req = req.header(k, v);
            }
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => return s3_error(503, "ServiceUnavailable", &e.to_string()),
        };
        self.forwarded.fetch_add(1, Ordering::Relaxed);
        let status = resp.status();
        let head = method_is_head;
        let mut out = Response::builder().status(status.as_u16());
        for (k, v) in resp.headers() {
            // The body's own length is set from the bytes, except for HEAD (no body: the
            // object's length is the answer).
            if k != "transfer-encoding" && k != "connection" && (head || k != "content-length") {
                out = out.header(k, v);
            }
        }
        let body = resp.bytes().await.unwrap_or_default();
        out.body(Body::from(body)).unwrap()
    }
}
