//! What the emitter tests share: a real HTTP server (axum on 127.0.0.1:0) that records
//! every POST and answers with the statuses a test gives it.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::post;
use replicator_common::config::LineageConfig;
use replicator_lineage::TaskLineage;
use serde_json::Value;
use uuid::Uuid;

/// Long enough never to be reached when things work.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// One request the server saw.
#[derive(Clone, Debug)]
pub struct Seen {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Value,
}

#[derive(Default)]
pub struct Capture {
    seen: Mutex<Vec<Seen>>,
    /// Statuses to answer with, in order; 201 (Marquez's) once they run out.
    replies: Mutex<VecDeque<u16>>,
}

impl Capture {
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn record(
    State(c): State<Arc<Capture>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    c.seen.lock().unwrap().push(Seen {
        path: uri.path().to_owned(),
        headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    let status = c.replies.lock().unwrap().pop_front().unwrap_or(201);
    StatusCode::from_u16(status).unwrap()
}

/// A server answering `replies` first; its base URL and what it records.
pub async fn server(replies: &[u16]) -> (String, Arc<Capture>) {
    let capture = Arc::new(Capture {
        seen: Mutex::default(),
        replies: Mutex::new(replies.iter().copied().collect()),
    });
    let app = Router::new()
        .route("/api/v1/lineage", post(record))
        .route("/other/path", post(record))
        .with_state(capture.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), capture)
}

pub fn config(url: &str) -> LineageConfig {
    LineageConfig {
        base_delay_ms: 1,
        ..LineageConfig::new(url)
    }
}

pub fn task() -> TaskLineage {
    TaskLineage::new(Uuid::now_v7(), Uuid::now_v7(), "clone sales.orders")
        .input("s3://prod-lake/sales/orders")
        .output("/lake/replica/sales/orders")
        .schema([("id", "long")])
}
