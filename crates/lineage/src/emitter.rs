//! Sending events: a bounded queue drained by one background task that POSTs each event
//! to the configured endpoint, in order, with retries. [`Emitter::emit`] never waits and
//! never fails: a full queue drops the event (counted, warned about), a server that keeps
//! failing costs the event after the last attempt (one warning naming it).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use replicator_common::config::LineageConfig;
use replicator_common::retry::{RetryPolicy, Retryable};
use tokio::sync::{mpsc, watch};

use crate::model::RunEvent;

/// Longest delay between two attempts.
const MAX_DELAY: Duration = Duration::from_secs(30);

/// Why an emitter could not be built.
#[derive(Debug, thiserror::Error)]
pub enum LineageError {
    #[error("lineage: {0}")]
    Config(String),
    #[error("lineage: an emitter needs a tokio runtime")]
    NoRuntime,
}

/// Sends OpenLineage events without ever holding up the caller. Cheap to clone; the
/// background task ends once every clone is dropped and the queue is drained. A disabled
/// emitter ([`Emitter::disabled`], a config without `lineage`) takes events and sends none,
/// so callers need no `if`.
#[derive(Clone)]
pub struct Emitter {
    inner: Arc<Inner>,
}

struct Inner {
    /// None when disabled.
    tx: Option<mpsc::Sender<RunEvent>>,
    namespace: String,
    /// Where events go, for `Debug` (never holds credentials: the config refuses them).
    target: String,
    has_key: bool,
    /// Events accepted into the queue.
    queued: AtomicU64,
    /// Events dropped because the queue was full.
    dropped: AtomicU64,
    /// Events sent or given up on, published by the background task.
    done: watch::Receiver<u64>,
    /// Events the server accepted.
    sent: Arc<AtomicU64>,
    /// Events given up on after their last attempt (or refused by the server).
    failed: Arc<AtomicU64>,
}

impl std::fmt::Debug for Emitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key itself is never kept here: only whether there is one.
        f.debug_struct("Emitter")
            .field("enabled", &self.is_enabled())
            .field("target", &self.inner.target)
            .field("namespace", &self.inner.namespace)
            .field("api_key", &if self.inner.has_key { "set" } else { "none" })
            .field("dropped", &self.dropped())
            .finish()
    }
}

/// One POST's failure.
#[derive(Debug, thiserror::Error)]
enum SendError {
    /// Without the URL (reqwest's message would carry it).
    #[error("{0}")]
    Transport(reqwest::Error),
    #[error("HTTP {0}")]
    Status(u16),
}

impl Retryable for SendError {
    fn is_transient(&self) -> bool {
        match self {
            Self::Transport(_) => true,
            Self::Status(s) => *s == 408 || *s == 429 || *s >= 500,
        }
    }
}

/// What the background task needs to send.
struct Sender {
    client: reqwest::Client,
    url: String,
    key: Option<String>,
    retry: RetryPolicy,
    sent: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
}

impl Emitter {
    /// An emitter for `config`'s endpoint: the API key is read now from its reference, the
    /// HTTP client is built, the background task is spawned on the current tokio runtime.
    /// Errors never contain the key.
    pub fn new(config: &LineageConfig) -> Result<Self, LineageError> {
        config
            .validate()
            .map_err(|e| LineageError::Config(e.within("lineage").to_string()))?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| LineageError::NoRuntime)?;
        let key = match &config.api_key {
            Some(k) => Some(
                k.resolve()
                    .map_err(|e| LineageError::Config(format!("api_key: {e}")))?,
            ),
            None => None,
        };
        let url = endpoint_url(&config.url, &config.endpoint)?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.timeout_ms))
            .connect_timeout(Duration::from_millis(config.timeout_ms))
            // A redirect would carry the key elsewhere: a 3xx is a refusal.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| LineageError::Config(format!("HTTP client: {e}")))?;
        let (tx, rx) = mpsc::channel(config.queue);
        let (done_tx, done) = watch::channel(0u64);
        let sent = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let sender = Sender {
            client,
            url: url.clone(),
            key,
            retry: RetryPolicy {
                max_attempts: config.max_attempts,
                base_delay_ms: config.base_delay_ms,
                max_delay_ms: (MAX_DELAY.as_millis() as u64).max(config.base_delay_ms),
            },
            sent: sent.clone(),
            failed: failed.clone(),
        };
        runtime.spawn(drain(rx, sender, done_tx));
        Ok(Self {
            inner: Arc::new(Inner {
                tx: Some(tx),
                namespace: config.namespace.clone(),
                target: url,
                has_key: config.api_key.is_some(),
                queued: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
                done,
                sent,
                failed,
            }),
        })
    }

    /// The emitter of `config`'s `lineage` section; a disabled one without it.
    pub fn from_config(config: &replicator_common::Config) -> Result<Self, LineageError> {
        match &config.lineage {
            Some(l) => Self::new(l),
            None => Ok(Self::disabled()),
        }
    }

    /// An emitter that sends nothing (no runtime needed).
    pub fn disabled() -> Self {
        let (_, done) = watch::channel(0u64);
        Self {
            inner: Arc::new(Inner {
                tx: None,
                namespace: "replicator".into(),
                target: String::new(),
                has_key: false,
                queued: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
                done,
                sent: Arc::default(),
                failed: Arc::default(),
            }),
        }
    }

    /// Whether events are sent anywhere.
    pub fn is_enabled(&self) -> bool {
        self.inner.tx.is_some()
    }

    /// The job namespace events of this emitter use (`lineage.namespace`).
    pub fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    /// Queue `event` for sending and return at once. A full queue drops it with a warning
    /// (the 1st, 2nd, 4th, … drop; see [`Emitter::dropped`]); nothing here waits or fails.
    pub fn emit(&self, event: RunEvent) {
        let Some(tx) = &self.inner.tx else {
            return;
        };
        match tx.try_send(event) {
            Ok(()) => {
                self.inner.queued.fetch_add(1, Ordering::SeqCst);
            }
            Err(
                mpsc::error::TrySendError::Full(event) | mpsc::error::TrySendError::Closed(event),
            ) => {
                let dropped = self.inner.dropped.fetch_add(1, Ordering::SeqCst) + 1;
                // While the endpoint is down every new event is dropped: warn at the 1st,
                // 2nd, 4th, 8th, … drop (with the total), note the others at debug.
                if dropped.is_power_of_two() {
                    tracing::warn!(
                        job = %event.job.name,
                        event_type = %event.event_type,
                        run_id = %event.run.run_id,
                        dropped,
                        "lineage event dropped: the queue is full (lineage.queue)"
                    );
                } else {
                    tracing::debug!(
                        job = %event.job.name,
                        event_type = %event.event_type,
                        run_id = %event.run.run_id,
                        dropped,
                        "lineage event dropped: the queue is full (lineage.queue)"
                    );
                }
            }
        }
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::SeqCst)
    }

    /// Events the server accepted.
    pub fn sent(&self) -> u64 {
        self.inner.sent.load(Ordering::SeqCst)
    }

    /// Events given up on: out of attempts, or refused (a 4xx other than 408 and 429).
    pub fn failed(&self) -> u64 {
        self.inner.failed.load(Ordering::SeqCst)
    }

    /// Wait until every event queued before this call was sent or given up on, for at most
    /// `timeout`. True when they all were; false on timeout (the events stay queued and
    /// keep being tried).
    pub async fn flush(&self, timeout: Duration) -> bool {
        if !self.is_enabled() {
            return true;
        }
        let target = self.inner.queued.load(Ordering::SeqCst);
        let mut done = self.inner.done.clone();
        tokio::time::timeout(timeout, done.wait_for(|d| *d >= target))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

/// `url` + `/` + `endpoint`, checked to be an http(s) URL.
fn endpoint_url(base: &str, endpoint: &str) -> Result<String, LineageError> {
    let base = base.trim().trim_end_matches('/');
    let endpoint = endpoint.trim().trim_start_matches('/');
    let joined = if endpoint.is_empty() {
        base.to_owned()
    } else {
        format!("{base}/{endpoint}")
    };
    match url::Url::parse(&joined) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(joined),
        _ => Err(LineageError::Config(
            "lineage.url with lineage.endpoint is not an http(s) URL".into(),
        )),
    }
}

/// The background task: each event in order, until every emitter is dropped.
async fn drain(mut rx: mpsc::Receiver<RunEvent>, sender: Sender, done: watch::Sender<u64>) {
    while let Some(event) = rx.recv().await {
        sender.send(&event).await;
        done.send_modify(|d| *d += 1);
    }
}

impl Sender {
    /// POST one event, retrying transient failures; a failure is logged once, never with
    /// the key or the body.
    async fn send(&self, event: &RunEvent) {
        let body = match serde_json::to_vec(event) {
            Ok(b) => b,
            Err(e) => {
                self.failed.fetch_add(1, Ordering::SeqCst);
                tracing::warn!(job = %event.job.name, event_type = %event.event_type, run_id = %event.run.run_id, error = %e, "lineage event not sent: it does not serialize");
                return;
            }
        };
        let (result, retries) = self
            .retry
            .retry(
                || async {
                    let mut req = self
                        .client
                        .post(&self.url)
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .body(body.clone());
                    if let Some(key) = &self.key {
                        req = req.bearer_auth(key);
                    }
                    let resp = req
                        .send()
                        .await
                        .map_err(|e| SendError::Transport(e.without_url()))?;
                    let status = resp.status();
                    if status.is_success() {
                        Ok(())
                    } else {
                        Err(SendError::Status(status.as_u16()))
                    }
                },
                |e, delay| {
                    tracing::debug!(job = %event.job.name, event_type = %event.event_type, run_id = %event.run.run_id, error = %e, delay_ms = delay.as_millis() as u64, "lineage event not accepted, retrying");
                },
            )
            .await;
        match result {
            Ok(()) => {
                self.sent.fetch_add(1, Ordering::SeqCst);
            }
            Err(e) => {
                self.failed.fetch_add(1, Ordering::SeqCst);
                tracing::warn!(
                    job = %event.job.name,
                    event_type = %event.event_type,
                    run_id = %event.run.run_id,
                    status = %e,
                    attempts = retries + 1,
                    "lineage event given up"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_emitter_can_be_shared_across_threads() {
        fn shared<T: Send + Sync + Clone + 'static>() {}
        shared::<Emitter>();
    }

    #[test]
    fn the_endpoint_is_a_path_under_the_url() {
        for (url, endpoint, want) in [
            (
                "http://m:5000",
                "api/v1/lineage",
                "http://m:5000/api/v1/lineage",
            ),
            (
                "http://m:5000/",
                "/api/v1/lineage",
                "http://m:5000/api/v1/lineage",
            ),
            ("https://m/base/", "events", "https://m/base/events"),
            ("https://m/in", "", "https://m/in"),
        ] {
            assert_eq!(endpoint_url(url, endpoint).unwrap(), want);
        }
        assert!(endpoint_url("ftp://m", "x").is_err());
    }

    #[test]
    fn retried_failures_are_transport_429_and_5xx() {
        for (status, transient) in [
            (500, true),
            (503, true),
            (429, true),
            (408, true),
            (400, false),
            (401, false),
            (404, false),
        ] {
            assert_eq!(
                SendError::Status(status).is_transient(),
                transient,
                "{status}"
            );
        }
    }

    #[test]
    fn building_needs_a_runtime_and_a_resolvable_key() {
        let config = LineageConfig::new("http://127.0.0.1:9");
        assert!(matches!(
            Emitter::new(&config),
            Err(LineageError::NoRuntime)
        ));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = rt.enter();
        let mut config = config;
        config.api_key = Some(replicator_common::config::SecretRef {
            env: Some("REPLICATOR_LINEAGE_TEST_UNSET_KEY".into()),
            file: None,
        });
        let err = Emitter::new(&config).unwrap_err().to_string();
        assert!(err.contains("REPLICATOR_LINEAGE_TEST_UNSET_KEY"), "{err}");
        config.queue = 0;
        let err = Emitter::new(&config).unwrap_err().to_string();
        assert!(err.contains("lineage.queue"), "{err}");
    }

    #[test]
    fn a_config_without_the_section_has_a_disabled_emitter() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = rt.enter();
        let base = "source: { root: /s }\ntarget: { root: /t }\n";
        let none: Vec<(String, String)> = Vec::new();
        let c = replicator_common::Config::from_yaml(base, none.clone(), &[]).unwrap();
        let off = Emitter::from_config(&c).unwrap();
        assert!(!off.is_enabled());
        off.emit(crate::RunLineage::new(uuid::Uuid::nil()).start(off.namespace()));
        assert_eq!((off.sent(), off.dropped()), (0, 0));
        assert!(rt.block_on(off.flush(Duration::ZERO)));
        let c = replicator_common::Config::from_yaml(
            &format!("{base}lineage: {{ url: \"http://127.0.0.1:9\", namespace: dr }}\n"),
            none,
            &[],
        )
        .unwrap();
        let e = Emitter::from_config(&c).unwrap();
        assert!(e.is_enabled());
        assert_eq!(e.namespace(), "dr");
    }
}
