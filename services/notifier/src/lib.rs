//! The notifier watches the events topic. Shortly after a task event (20 ms, together with
//! the other runs that had events meanwhile) it asks the store whether the run still has a
//! task in a non-terminal state; when none is left it completes the run
//! exactly once (an atomic update in the store), publishes `run.completed` with the
//! [`RunSummary`], logs the summary, and posts it as JSON to every configured webhook.
//!
//! Webhook delivery is retried with backoff; a notification that finally fails is logged
//! and never fails or blocks the run.

use std::time::Duration;

use replicator_bus::{BusRef, run_id_of, typed};
use replicator_common::config::{StorageValue, Webhook, WebhookFormat, When};
use replicator_common::retry::{RetryPolicy, Retryable};
use replicator_common::shutdown::CancellationToken;
use replicator_proto::{Header, Operation, RunCompleted, RunSummary, names};
use replicator_store::{NotificationRecord, Store};
use tokio_util::task::TaskTracker;

pub mod digest;
pub mod email;
mod sync;

use digest::Digest;
use tokio::task::JoinHandle;
use uuid::Uuid;

/// Notifier settings.
#[derive(Clone, Debug)]
pub struct NotifierConfig {
    pub webhooks: Vec<Webhook>,
    pub email: Option<replicator_common::config::Email>,
    pub groups: Vec<replicator_common::config::Group>,
    pub retry: RetryPolicy,
    /// How often open runs are checked from the store (besides on every event).
    pub sweep_interval: Duration,
    /// How a digest says to give failed tables another go (with which config file).
    pub retry_hint: digest::Retry,
    /// Where the replication run's lineage COMPLETE/FAIL goes (docs/lineage.md).
    pub lineage: replicator_lineage::Emitter,
}

impl Default for NotifierConfig {
    fn default() -> Self {
        Self {
            webhooks: Vec::new(),
            email: None,
            groups: Vec::new(),
            retry: RetryPolicy::default(),
            sweep_interval: Duration::from_secs(5),
            retry_hint: digest::Retry::default(),
            lineage: replicator_lineage::Emitter::disabled(),
        }
    }
}

impl NotifierConfig {
    pub fn from_config(c: &replicator_common::Config) -> Self {
        Self {
            webhooks: c.notifications.webhooks.clone(),
            email: c.notifications.email.clone(),
            groups: c.notifications.groups.clone(),
            retry: c.retry.clone(),
            // The config this notifier runs with reaches the same broker and store as the
            // rest of its fleet; the memory bus dies with its process, so there a run is
            // simply run again.
            retry_hint: if c.bus.backend == replicator_common::config::BusBackend::Memory {
                digest::Retry::RunAgain {
                    config: c.file.clone(),
                }
            } else {
                digest::Retry::Replay {
                    config: c.file.clone(),
                }
            },
            ..Default::default()
        }
    }
}

/// Why a webhook delivery failed.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("{url}: {source}")]
    Http { url: String, source: reqwest::Error },
    #[error("{url}: HTTP {status}{}", refusal_hint(*status))]
    Status { url: String, status: u16 },
    #[error("{0}")]
    Secret(String),
}

/// What a 401/403 means for a webhook: permanent, and about its credentials.
fn refusal_hint(status: u16) -> &'static str {
    match status {
        401 | 403 => {
            " (the endpoint refused the credentials: check the webhook's bearer_token and signing_secret)"
        }
        _ => "",
    }
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
    let tracker = TaskTracker::new();
    Ok(tokio::spawn(async move {
        // Events can be missed (a broker reconnect, a notifier restart): every
        // `sweep_interval` the open runs are checked from the store as well.
        let mut sweep = tokio::time::interval(config.sweep_interval);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Runs named by events since they were last checked. They are checked together a
        // moment after the first of them: on a large run the events come far faster than the
        // store can be asked about each.
        let mut pending: Vec<Uuid> = Vec::new();
        let check = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(check);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = sweep.tick() => sweep_open_runs(&bus, &store, &config, &client, &tracker).await,
                _ = &mut check, if !pending.is_empty() => {
                    check_runs(pending.drain(..), &bus, &store, &config, &client, &tracker).await;
                }
                e = events.next() => {
                    let Some((key, payload)) = e else { break };
                    if key == names::events::RUN_COMPLETED {
                        continue;
                    }
                    if key.starts_with("sync.") {
                        let (config, tracker) = (config.clone(), tracker.clone());
                        tracker.spawn(async move { sync::notice(&key, &payload, &config).await });
                        continue;
                    }
                    if key == names::events::DEAD_LETTER {
                        fail_dead_lettered_task(&payload, &store).await;
                    }
                    match run_id_of(&payload) {
                        Some(run_id) if !pending.contains(&run_id) => {
                            if pending.is_empty() {
                                check.as_mut().reset(tokio::time::Instant::now() + CHECK_DELAY);
                            }
                            pending.push(run_id);
                        }
                        Some(_) => {}
                        None => tracing::warn!(%key, "event without a run_id ignored"),
                    }
                }
            }
        }
        check_runs(pending.drain(..), &bus, &store, &config, &client, &tracker).await;
        // Notifications under way are finished before the notifier stops.
        tracker.close();
        tracker.wait().await;
    }))
}

/// How long after an event its run is checked (with the runs of the events meanwhile).
const CHECK_DELAY: Duration = Duration::from_millis(20);

async fn check_runs(
    runs: impl Iterator<Item = Uuid>,
    bus: &BusRef,
    store: &Store,
    config: &NotifierConfig,
    client: &reqwest::Client,
    tracker: &TaskTracker,
) {
    for run_id in runs {
        if let Err(e) = check_run(run_id, bus, store, config, client, tracker).await {
            tracing::warn!(%run_id, error = %e, "could not check run completion");
        }
    }
}

/// Complete every open run whose tasks are all terminal.
async fn sweep_open_runs(
    bus: &BusRef,
    store: &Store,
    config: &NotifierConfig,
    client: &reqwest::Client,
    tracker: &TaskTracker,
) {
    match store.open_runs().await {
        Ok(runs) => {
            for run_id in runs {
                if let Err(e) = check_run(run_id, bus, store, config, client, tracker).await {
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

/// Complete `run_id` if every task is terminal: publish `run.completed`, log, and notify.
pub async fn check_run(
    run_id: Uuid,
    bus: &BusRef,
    store: &Store,
    config: &NotifierConfig,
    client: &reqwest::Client,
    tracker: &TaskTracker,
) -> anyhow::Result<bool> {
    let Some(run) = store.run(run_id).await? else {
        return Ok(false);
    };
    if run.completed_at.is_some() || store.has_open_tasks(run_id).await? {
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
    let lineage = replicator_lineage::RunLineage::new(run_id);
    if msg.summary.is_success() {
        config.lineage.run_completed(&lineage);
    } else {
        config.lineage.run_failed(
            &lineage,
            &format!(
                "{} of {} tables failed, {} mismatched",
                msg.summary.failed, msg.summary.total, msg.summary.mismatched
            ),
        );
    }
    typed::publish_event(bus.as_ref(), names::events::RUN_COMPLETED, &msg).await?;
    // Notifications go out on their own task: a slow or failing channel never holds up the
    // notifier's event loop, and the run is complete whatever they do.
    let (store, config, client) = (store.clone(), config.clone(), client.clone());
    tracker.spawn(async move { notify(&msg, &config, &client, &store).await });
    Ok(true)
}

/// Send the run's digest to every channel configured for its outcome, and record how each
/// delivery ended in the store. Never fails: a notification that finally fails is logged and
/// recorded.
pub async fn notify(
    msg: &RunCompleted,
    config: &NotifierConfig,
    client: &reqwest::Client,
    store: &Store,
) {
    let run_id = msg.header.run_id;
    let full = Digest::of(msg, &config.retry_hint);
    let when = if full.succeeded() {
        When::Success
    } else {
        When::Failure
    };
    let mut records = Vec::new();
    for hook in config.webhooks.iter().filter(|h| h.on.contains(&when)) {
        let (result, attempts) =
            deliver(client, hook, &config.retry, &config.retry_hint, msg).await;
        if let Err(e) = &result {
            tracing::error!(%run_id, url = %hook_target(&hook.url, hook.format), error = %e, "webhook notification failed");
        }
        records.push((
            "webhook",
            hook_target(&hook.url, hook.format),
            attempts,
            result.err().map(|e| e.to_string()),
        ));
    }
    if let Some(email) = &config.email {
        let mut sends: Vec<(Vec<String>, Digest)> = Vec::new();
        let to = if full.succeeded() {
            &email.success_to
        } else {
            &email.failure_to
        };
        if !to.is_empty() {
            sends.push((to.clone(), full.clone()));
        }
        for g in &config.groups {
            let Ok(set) = group_matcher(&g.tables) else {
                continue;
            };
            let tables: Vec<_> = msg
                .summary
                .tables
                .iter()
                .filter(|t| set.is_match(&t.table))
                .collect();
            let digest = Digest::of_group(msg, &g.name, tables, &config.retry_hint);
            if !digest.failures().is_empty() && !g.owners.is_empty() {
                sends.push((g.owners.clone(), digest));
            }
        }
        for (to, digest) in sends {
            let (result, attempts) = send_email(email, &to, &digest, &config.retry).await;
            if let Err(e) = &result {
                tracing::error!(%run_id, to = ?to, error = %e, "email notification failed");
            }
            records.push((
                "email",
                to.join(", "),
                attempts,
                result.err().map(|e| e.to_string()),
            ));
        }
    }
    for (channel, target, attempts, error) in records {
        let record = NotificationRecord {
            run_id,
            channel: channel.into(),
            target,
            delivered: error.is_none(),
            attempts,
            error,
        };
        if let Err(e) = store.record_notification(&record).await {
            tracing::warn!(%run_id, error = %e, "could not record a notification");
        }
    }
}

fn group_matcher(patterns: &[String]) -> Result<globset::GlobSet, globset::Error> {
    let mut b = globset::GlobSetBuilder::new();
    for p in patterns {
        b.add(globset::Glob::new(p)?);
    }
    b.build()
}

/// A webhook as it may be logged and recorded: an inline URL redacted, a URL read from a
/// secret reference (a Slack or Teams URL is a credential) only named by its reference.
fn hook_target(url: &StorageValue, format: WebhookFormat) -> String {
    match url {
        StorageValue::Plain(u) => redact(u, format),
        StorageValue::Secret(s) => match (&s.env, &s.file) {
            (Some(var), _) => format!("(URL from environment variable {var})"),
            (_, Some(path)) => format!("(URL from file {})", path.display()),
            _ => "(URL from a secret reference)".into(),
        },
    }
}

/// A URL as it may be logged and recorded: no user info and no query string (webhook URLs
/// often carry their token there); for a Slack or Teams webhook, whose token is the path
/// (`/services/T…/B…/SECRET`), the scheme, host and port only.
fn redact(url: &str, format: WebhookFormat) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if format == WebhookFormat::Json => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Ok(u) => match (u.host_str(), u.port()) {
            (Some(host), Some(port)) => format!("{}://{host}:{port}/…", u.scheme()),
            (Some(host), None) => format!("{}://{host}/…", u.scheme()),
            _ => "(URL without a host)".into(),
        },
        Err(_) => "(unparsable URL)".into(),
    }
}

#[cfg(test)]
mod redact_tests {
    use replicator_common::config::WebhookFormat;

    #[test]
    fn a_webhook_url_is_recorded_without_its_token() {
        let url = "https://hooks.slack.com/services/T000/B000/XXXXSECRET?x=1";
        for format in [WebhookFormat::Slack, WebhookFormat::Teams] {
            assert_eq!(super::redact(url, format), "https://hooks.slack.com/…");
        }
        let r = super::redact(
            "http://user:pw@127.0.0.1:8080/hook/abc?token=t",
            WebhookFormat::Json,
        );
        assert_eq!(r, "http://127.0.0.1:8080/hook/abc");
    }
}

async fn send_email(
    email: &replicator_common::config::Email,
    to: &[String],
    digest: &Digest<'_>,
    retry: &RetryPolicy,
) -> (Result<(), email::EmailError>, u32) {
    let transport = match email::transport(&email.smtp) {
        Ok(t) => t,
        Err(e) => return (Err(e), 0),
    };
    let (subject, body) = (digest.subject(), digest.text());
    let run_id = digest.run.header.run_id;
    let (result, retries) = retry
        .retry(
            || email::send(&transport, &email.smtp.host, &email.from, to, &subject, &body, run_id),
            |e, delay| tracing::warn!(error = %e, delay_ms = delay.as_millis() as u64, "email delivery failed, retrying"),
        )
        .await;
    (result, retries + 1)
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

/// The header carrying the request's signature.
pub const SIGNATURE_HEADER: &str = "X-Replicator-Signature";
/// The header carrying the signing time (unix seconds).
pub const TIMESTAMP_HEADER: &str = "X-Replicator-Timestamp";

/// `v1=` + hex HMAC-SHA256 of `"{timestamp}.{body}"` under `secret`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    use hmac::Mac;
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// POST the run's digest to one webhook in its format, signed when configured, retrying
/// transient failures. Returns the result and the attempts made.
pub async fn deliver(
    client: &reqwest::Client,
    hook: &Webhook,
    retry: &RetryPolicy,
    retry_hint: &digest::Retry,
    msg: &RunCompleted,
) -> (Result<(), DeliveryError>, u32) {
    let secret = |s: &Option<replicator_common::config::SecretRef>| match s {
        Some(s) => s
            .resolve()
            .map(Some)
            .map_err(|e| DeliveryError::Secret(e.to_string())),
        None => Ok(None),
    };
    let (token, signing) = match (secret(&hook.bearer_token), secret(&hook.signing_secret)) {
        (Ok(t), Ok(s)) => (t, s),
        (Err(e), _) | (_, Err(e)) => return (Err(e), 0),
    };
    let target = hook_target(&hook.url, hook.format);
    let hook_url = match hook.url.resolve() {
        Ok(u) if u.starts_with("http://") || u.starts_with("https://") => u,
        Ok(_) => {
            let e = format!("webhook {target}: not an http:// or https:// URL");
            return (Err(DeliveryError::Secret(e)), 0);
        }
        Err(e) => return (Err(DeliveryError::Secret(e.to_string())), 0),
    };
    let body = match hook.format {
        WebhookFormat::Json => serde_json::to_vec(msg),
        WebhookFormat::Slack => serde_json::to_vec(&Digest::of(msg, retry_hint).slack()),
        WebhookFormat::Teams => serde_json::to_vec(&Digest::of(msg, retry_hint).teams()),
    }
    .unwrap_or_default();
    let (result, retries) = retry
        .retry(
            || async {
                let mut req = client
                    .post(&hook_url)
                    .timeout(Duration::from_millis(hook.timeout_ms))
                    .header("X-Replicator-Run-Id", msg.header.run_id.to_string())
                    .header(reqwest::header::CONTENT_TYPE, "application/json");
                if let Some(t) = &token {
                    req = req.bearer_auth(t);
                }
                if let Some(secret) = &signing {
                    // Signed at each attempt, so a retry carries a fresh timestamp.
                    let ts = chrono::Utc::now().timestamp();
                    req = req
                        .header(TIMESTAMP_HEADER, ts.to_string())
                        .header(SIGNATURE_HEADER, signature(secret.as_bytes(), ts, &body));
                }
                let url = target.clone();
                // Without the URL: reqwest's message would print it whole.
                let resp = req.body(body.clone()).send().await.map_err(|source| DeliveryError::Http { url: url.clone(), source: source.without_url() })?;
                if resp.status().is_success() {
                    Ok(())
                } else {
                    Err(DeliveryError::Status { url, status: resp.status().as_u16() })
                }
            },
            |e, delay| tracing::warn!(error = %e, delay_ms = delay.as_millis() as u64, "webhook delivery failed, retrying"),
        )
        .await;
    (result, retries + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use digest::Retry;

    /// The digest's way back names the config file this notifier was started with: `replay`
    /// in a fleet, `run` again in one process.
    #[test]
    fn digests_name_the_config_file_the_notifier_runs_with() {
        let dir = std::env::temp_dir().join(format!("replicator-notifier-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("fleet.yaml");
        let base = "source: { root: ./s }\ntarget: { root: ./t }\n";
        std::fs::write(&path, format!("{base}bus: {{ backend: rabbitmq }}\n")).unwrap();
        let fleet = replicator_common::Config::load(&path, &[]).unwrap();
        let file = std::fs::canonicalize(&path).unwrap();
        assert_eq!(
            NotifierConfig::from_config(&fleet).retry_hint,
            Retry::Replay {
                config: Some(file.clone())
            }
        );
        std::fs::write(&path, base).unwrap();
        let embedded = replicator_common::Config::load(&path, &[]).unwrap();
        assert_eq!(
            NotifierConfig::from_config(&embedded).retry_hint,
            Retry::RunAgain { config: Some(file) }
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
