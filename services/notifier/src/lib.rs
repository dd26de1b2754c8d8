//! The notifier watches the events topic. After every task event it asks the store whether
//! the run still has a task in a non-terminal state; when none is left it completes the run
//! exactly once (an atomic update in the store), publishes `run.completed` with the
//! [`RunSummary`], logs the summary, and posts it as JSON to every configured webhook.
//!
//! Webhook delivery is retried with backoff; a notification that finally fails is logged
//! and never fails or blocks the run.

use std::time::Duration;

use replicator_bus::{BusRef, typed};
use replicator_common::config::Webhook;
use replicator_common::retry::{RetryPolicy, Retryable};
use replicator_common::shutdown::CancellationToken;
use replicator_proto::{Header, Operation, RunCompleted, RunSummary, names};
use replicator_store::Store;
use tokio::task::JoinHandle;
use uuid::Uuid;

/// Notifier settings.
#[derive(Clone, Debug)]
pub struct NotifierConfig {
    pub webhooks: Vec<Webhook>,
    pub retry: RetryPolicy,
    /// How often open runs are checked from the store (besides on every event).
    pub sweep_interval: Duration,
}

impl Default for NotifierConfig {
    fn default() -> Self {
        Self {
            webhooks: Vec::new(),
            retry: RetryPolicy::default(),
            sweep_interval: Duration::from_secs(5),
        }
    }
}

impl NotifierConfig {
    pub fn from_config(c: &replicator_common::Config) -> Self {
        Self {
            webhooks: c.notifications.webhooks.clone(),
            retry: c.retry.clone(),
            ..Default::default()
        }
    }
}

/// Why a webhook delivery failed.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("{url}: {source}")]
    Http { url: String, source: reqwest::Error },
    #[error("{url}: HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{0}")]
    Secret(String),
}

impl Retryable for DeliveryError {
    fn is_transient(&self) -> bool {
        match self {
            Self::Http { .. } => true,
            Self::Status { status, .. } => *status == 408 || *status == 429 || *status >= 500,
            Self::Secret(_) => false,
        }
    }
}

/// Subscribe to the events topic and start watching runs; returns once subscribed, so no
/// event published afterwards is missed.
pub async fn spawn(
    bus: BusRef,
    store: Store,
    config: NotifierConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<JoinHandle<()>> {
    let mut events = bus.subscribe("#").await?;
    let client = reqwest::Client::builder().build()?;
    Ok(tokio::spawn(async move {
        // Events can be missed (a broker reconnect, a notifier restart): every
        // `sweep_interval` the open runs are checked from the store as well.
        let mut sweep = tokio::time::interval(config.sweep_interval);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let (key, payload) = tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = sweep.tick() => {
                    sweep_open_runs(&bus, &store, &config, &client).await;
                    continue;
                }
                e = events.next() => match e { Some(e) => e, None => break },
            };
            if key == names::events::RUN_COMPLETED {
                continue;
            }
            if key == names::events::DEAD_LETTER {
                fail_dead_lettered_task(&payload, &store).await;
            }
            let Some(run_id) = run_id_of(&payload) else {
                tracing::warn!(%key, "event without a run_id ignored");
                continue;
            };
            if let Err(e) = check_run(run_id, &bus, &store, &config, &client).await {
                tracing::warn!(%run_id, error = %e, "could not check run completion");
            }
        }
    }))
}

/// Complete every open run whose tasks are all terminal.
async fn sweep_open_runs(
    bus: &BusRef,
    store: &Store,
    config: &NotifierConfig,
    client: &reqwest::Client,
) {
    match store.open_runs().await {
        Ok(runs) => {
            for run_id in runs {
                if let Err(e) = check_run(run_id, bus, store, config, client).await {
                    tracing::warn!(%run_id, error = %e, "could not check run completion");
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not list open runs"),
    }
}

/// A task message dead-lettered without a result (a worker crashed on it every time, or it
/// could not be decoded) fails its task, so the run can still complete and report it.
async fn fail_dead_lettered_task(payload: &[u8], store: &Store) {
    let Ok(letter) = replicator_proto::decode::<replicator_proto::DeadLetter>(payload) else {
        return;
    };
    let task_id = serde_json::from_str::<serde_json::Value>(&letter.payload)
        .ok()
        .and_then(|v| v.get("task_id")?.as_str()?.parse::<Uuid>().ok());
    if let Some(task_id) = task_id {
        match store
            .fail_task(task_id, &format!("dead-lettered: {}", letter.reason))
            .await
        {
            Ok(true) => {
                tracing::warn!(%task_id, reason = %letter.reason, "task failed by dead letter")
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(%task_id, error = %e, "could not record a dead-lettered task"),
        }
    }
}

fn run_id_of(payload: &[u8]) -> Option<Uuid> {
    serde_json::from_slice::<serde_json::Value>(payload)
        .ok()?
        .get("run_id")?
        .as_str()?
        .parse()
        .ok()
}

/// Complete `run_id` if every task is terminal: publish `run.completed`, log, and notify.
pub async fn check_run(
    run_id: Uuid,
    bus: &BusRef,
    store: &Store,
    config: &NotifierConfig,
    client: &reqwest::Client,
) -> anyhow::Result<bool> {
    let Some(run) = store.run(run_id).await? else {
        return Ok(false);
    };
    if run.completed_at.is_some() || !store.run_progress(run_id).await?.is_complete() {
        return Ok(false);
    }
    let summary = store.summarize(run_id).await?;
    if !store.complete_run(run_id, &summary).await? {
        return Ok(false);
    }
    let msg = RunCompleted {
        header: Header::new(run_id),
        operation: run.operation,
        summary,
    };
    log_summary(run_id, run.operation, &msg.summary);
    typed::publish_event(bus.as_ref(), names::events::RUN_COMPLETED, &msg).await?;
    for hook in &config.webhooks {
        if let Err(e) = deliver(client, hook, &config.retry, &msg).await {
            tracing::error!(%run_id, url = %hook.url, error = %e, "webhook notification failed");
        }
    }
    Ok(true)
}

fn log_summary(run_id: Uuid, operation: Operation, s: &RunSummary) {
    tracing::info!(
        %run_id, %operation, total = s.total, succeeded = s.succeeded, failed = s.failed,
        mismatched = s.mismatched, bytes_copied = s.bytes_copied, duration_ms = s.duration_ms,
        "run completed"
    );
    for t in s.tables.iter().filter(|t| t.error.is_some()) {
        tracing::warn!(%run_id, table = %t.table, status = ?t.status, error = t.error.as_deref().unwrap_or(""), "table did not succeed");
    }
}

/// POST the summary to one webhook, retrying transient failures.
pub async fn deliver(
    client: &reqwest::Client,
    hook: &Webhook,
    retry: &RetryPolicy,
    msg: &RunCompleted,
) -> Result<(), DeliveryError> {
    let token = match &hook.bearer_token {
        Some(s) => Some(
            s.resolve()
                .map_err(|e| DeliveryError::Secret(e.to_string()))?,
        ),
        None => None,
    };
    let (result, _) = retry
        .retry(
            || async {
                let mut req = client
                    .post(&hook.url)
                    .timeout(Duration::from_millis(hook.timeout_ms))
                    .header("X-Replicator-Run-Id", msg.header.run_id.to_string())
                    .json(msg);
                if let Some(t) = &token {
                    req = req.bearer_auth(t);
                }
                let resp = req.send().await.map_err(|source| DeliveryError::Http { url: hook.url.clone(), source })?;
                if resp.status().is_success() {
                    Ok(())
                } else {
                    Err(DeliveryError::Status { url: hook.url.clone(), status: resp.status().as_u16() })
                }
            },
            |e, delay| tracing::warn!(error = %e, delay_ms = delay.as_millis() as u64, "webhook delivery failed, retrying"),
        )
        .await;
    result
}
