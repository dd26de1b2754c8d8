//! The cloner consumes `tasks.clone`, deep-clones each table with the native engine, and
//! publishes a [`CloneResult`] on the events topic (`clone.succeeded` / `clone.failed`);
//! when the run also validates, it queues a [`ReconcileTask`].
//!
//! Retries: transient errors (storage hiccups, commit conflicts) are retried in place with
//! exponential backoff and jitter ([`RetryPolicy`]); permanent ones (missing files,
//! unsupported features) fail at once. Every attempt is recorded in the store.
//!
//! Delivery: a task is acked only after its result is recorded and published. A task that
//! finally fails is dead-lettered with its reason, so `replay` can bring it back once the
//! cause is fixed. If the worker dies mid-task the task is redelivered; the clone is
//! idempotent (files already copied are not copied again, an up-to-date target is a no-op).
//!
//! One clone of a target at a time, per delivery: each delivery takes the target's lease
//! in the store with a token of its own, so a redelivered copy of a task that is still
//! being cloned (even on the same worker) is deferred until the first one is done. Only
//! the first result of a task is recorded; a later delivery is acked and kept in the
//! attempts.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use replicator_bus::{BusRef, Delivery, typed};
use replicator_common::metrics;
use replicator_common::retry::RetryPolicy;
use replicator_common::shutdown::CancellationToken;
use replicator_lake::{CloneOptions, CloneProgress, LakeError, TableLocation, deep_clone};
use replicator_proto::{CloneResult, CloneTask, Header, Outcome, ReconcileTask, TaskError, names};
use replicator_store::{AttemptOutcome, LeaseToken, Recorded, Stage, Store, TaskStatus};
use tokio::task::JoinHandle;

mod databricks;

/// Cloner settings.
#[derive(Clone, Debug)]
pub struct ClonerConfig {
    /// Tables cloned at once by this worker.
    pub concurrency: usize,
    /// Files copied at once within one clone.
    pub copy_parallelism: usize,
    pub retry: RetryPolicy,
    /// This worker's identity in leases and attempts.
    pub worker: String,
    /// How long a lease on a target lasts unless renewed (renewed every third of it while
    /// the clone runs; a worker killed mid-clone frees the table after at most this long).
    pub lease_ttl: Duration,
}

impl ClonerConfig {
    pub fn from_config(c: &replicator_common::Config) -> Self {
        Self {
            concurrency: c.concurrency.cloners,
            copy_parallelism: c.concurrency.copy_parallelism,
            retry: c.retry.clone(),
            worker: replicator_common::worker_id("cloner"),
            lease_ttl: Duration::from_millis(c.concurrency.lease_ttl_ms),
        }
    }
}

/// Holds the lease on a target for one delivery and renews it until released or dropped.
/// The holder is a [`LeaseToken`] made for this delivery, so a second delivery of the same
/// task on the same worker (redelivered by the broker after a dropped connection while
/// this one still runs) does not get the lease and is deferred.
struct Lease {
    token: LeaseToken,
    renew: tokio::task::JoinHandle<()>,
}

impl Lease {
    /// Take the lease on `task.target`, or say who holds it.
    async fn take(task: &CloneTask, store: &Store, config: &ClonerConfig) -> Result<Lease, String> {
        let (target, ttl) = (task.target.clone(), config.lease_ttl);
        let token = LeaseToken::new(&config.worker);
        match store
            .acquire_lease(&target, &token, task.task_id, ttl)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                let holder = match store.lease_holder(&target).await.ok().flatten() {
                    Some((worker, _)) if worker == config.worker => {
                        "another delivery on this worker".to_owned()
                    }
                    Some((worker, _)) => worker,
                    None => "another worker".to_owned(),
                };
                return Err(format!(
                    "target {target} is being cloned by {holder}; retrying later"
                ));
            }
            Err(e) => return Err(format!("cannot take the lease on {target}: {e}")),
        }
        let (store, task_id, renewing) = (store.clone(), task.task_id, token.clone());
        let renew = tokio::spawn(async move {
            loop {
                tokio::time::sleep(ttl / 3).await;
                match store.acquire_lease(&target, &renewing, task_id, ttl).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::error!(%target, "lost the lease on the target (expired while cloning); a conflicting commit will be refused")
                    }
                    Err(e) => tracing::warn!(%target, error = %e, "could not renew the lease"),
                }
            }
        });
        Ok(Lease { token, renew })
    }

    async fn release(self, target: &str, store: &Store) {
        self.renew.abort();
        if let Err(e) = store.release_lease(target, &self.token).await {
            tracing::warn!(%target, error = %e, "could not release the lease; it expires by itself");
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // A handler that ends without releasing (cancelled, panicked) stops renewing: the
        // lease then expires by itself.
        self.renew.abort();
    }
}

/// Optional observer of copy progress (the CLI's progress bar).
pub type ProgressSink = Arc<dyn Fn(&CloneTask, &CloneProgress) + Send + Sync>;

/// Start consuming `tasks.clone`; returns once the consumer is attached. The worker stops
/// taking tasks when `shutdown` fires and returns after in-flight clones finish.
pub async fn spawn(
    bus: BusRef,
    store: Store,
    config: ClonerConfig,
    progress: Option<ProgressSink>,
    shutdown: CancellationToken,
) -> anyhow::Result<JoinHandle<()>> {
    let concurrency = config.concurrency;
    let consumer = bus.consume(names::CLONE_TASKS, concurrency).await?;
    Ok(tokio::spawn(replicator_bus::worker::serve(
        consumer,
        concurrency,
        shutdown,
        |t: &CloneTask| tracing::info_span!("clone", run_id = %t.header.run_id, task_id = %t.task_id, table = %t.table, attempt = t.attempt),
        move |task, delivery| {
            let (bus, store, config, progress) =
                (bus.clone(), store.clone(), config.clone(), progress.clone());
            async move { handle(task, delivery, &bus, &store, &config, progress).await }
        },
    )))
}

/// Clone one table with retries, record and publish the result, then settle the delivery.
pub async fn handle(
    task: CloneTask,
    delivery: Delivery,
    bus: &BusRef,
    store: &Store,
    config: &ClonerConfig,
    progress: Option<ProgressSink>,
) {
    let started = Instant::now();
    let run_id = task.header.run_id;
    // One clone of a target at a time, across every worker of the fleet.
    let lease = match Lease::take(&task, store, config).await {
        Ok(l) => l,
        Err(reason) => {
            tracing::info!(%reason, "task deferred");
            delivery.defer(&reason);
            return;
        }
    };
    let _in_flight = metrics::in_flight("cloner");
    if task.engine == replicator_proto::Engine::Databricks {
        return databricks::handle(task, delivery, bus, store, config, lease, started).await;
    }
    let (result, retries) = match locations(&task) {
        Err(e) => (Err(e), 0),
        Ok((source, target, external_roots)) => {
            let options = CloneOptions {
                version: task.version,
                parallelism: config.copy_parallelism,
                progress: progress.map(|p| {
                    let task = task.clone();
                    Arc::new(move |pr: &CloneProgress| p(&task, pr))
                        as replicator_lake::clone::ProgressFn
                }),
                dry_run: false,
                timestamp: None,
                // A target that is not this source's replica fails permanently unless the
                // run says `clone.replace`.
                replace: task.replace,
                external_roots,
                cancel: None,
            };
            let job = Arc::new((source, target, options));
            let attempts = Arc::new(AtomicU32::new(0));
            let task_id = task.task_id;
            config
                .retry
                .retry(
                    || {
                        let (job, store, attempts) = (job.clone(), store.clone(), attempts.clone());
                        let worker = config.worker.clone();
                        async move {
                            let n = attempts.fetch_add(1, Ordering::SeqCst) + 1;
                            let id = store.attempt_started(run_id, task_id, Stage::Clone, n, &worker).await.ok();
                            let r = deep_clone(&job.0, &job.1, &job.2).await;
                            if let Some(id) = id {
                                let (o, e) = match &r {
                                    Ok(_) => (AttemptOutcome::Succeeded, None),
                                    Err(e) if e.is_transient() => (AttemptOutcome::Retrying, Some(e.to_string())),
                                    Err(e) => (AttemptOutcome::Failed, Some(e.to_string())),
                                };
                                if let Err(err) = store.attempt_finished(id, o, e.as_deref()).await {
                                    tracing::warn!(error = %err, "could not record the attempt");
                                }
                            }
                            r
                        }
                    },
                    |e: &LakeError, delay| tracing::warn!(error = %e, delay_ms = delay.as_millis() as u64, "clone attempt failed, retrying"),
                )
                .await
        }
    };
    let mut msg = pending_result(&task);
    msg.retries = retries;
    msg.duration_ms = started.elapsed().as_millis() as u64;
    match result {
        Ok(r) => {
            tracing::info!(
                source_version = r.source_version,
                target_version = r.target_version,
                committed = r.committed,
                copied_files = r.metrics.num_copied_files,
                copied_bytes = r.metrics.copied_files_size,
                retries,
                "clone succeeded"
            );
            msg.outcome = Outcome::Succeeded;
            msg.source_version = Some(r.source_version);
            msg.target_version = Some(r.target_version);
            msg.committed = r.committed;
            msg.metrics = Some(r.metrics);
        }
        Err(e) => {
            tracing::error!(error = %e, retries, "clone failed");
            msg.error = Some(TaskError {
                kind: e.kind(),
                message: e.to_string(),
            });
        }
    }
    if let Some(m) = &msg.metrics {
        metrics::bytes_copied(m.copied_files_size);
    }
    settle(&task, msg, delivery, bus, store, lease, started, |err| {
        format!("clone failed after {retries} retries: {err}")
    })
    .await;
}

/// The result of `task` before it ran: failed, nothing copied.
fn pending_result(task: &CloneTask) -> CloneResult {
    CloneResult {
        header: Header::new(task.header.run_id),
        task_id: task.task_id,
        attempt: task.attempt,
        table: task.table.clone(),
        source: task.source.clone(),
        target: task.target.clone(),
        outcome: Outcome::Failed,
        source_version: None,
        target_version: None,
        committed: false,
        metrics: None,
        error: None,
        retries: 0,
        duration_ms: 0,
        statement_ids: Vec::new(),
    }
}

/// Record and publish `msg` (and the reconcile task that follows a success), release the
/// lease, count the task, then settle the delivery: ack a success, dead-letter a failure
/// with `failure(message)`, nack when recording or publishing failed (redelivered).
///
/// A delivery whose task already has its clone result (a redelivered task) is acked
/// whatever its own outcome: the first result stands, this one is in the attempts only.
#[allow(clippy::too_many_arguments)]
async fn settle(
    task: &CloneTask,
    msg: CloneResult,
    delivery: Delivery,
    bus: &BusRef,
    store: &Store,
    lease: Lease,
    started: Instant,
    failure: impl FnOnce(&str) -> String,
) {
    let published = publish(task, &msg, task.operation.reconciles(), bus, store).await;
    lease.release(&task.target, store).await;
    metrics::task_done(
        "cloner",
        msg.outcome == Outcome::Succeeded,
        started.elapsed(),
    );
    let recorded = match published {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "could not record or publish the clone result; the task will be redelivered");
            delivery.nack(&e.to_string());
            return;
        }
    };
    if !recorded.first {
        tracing::info!(
            status = recorded.status.map_or("", TaskStatus::as_str),
            outcome = ?msg.outcome,
            "task delivered again after its clone result was recorded; the recorded result stands, this delivery is in the attempts only"
        );
        return delivery.ack();
    }
    match msg.error {
        None => delivery.ack(),
        Some(err) => delivery.dead_letter(&failure(&err.message)),
    }
}

fn locations(
    task: &CloneTask,
) -> Result<(TableLocation, TableLocation, Vec<TableLocation>), LakeError> {
    Ok((
        TableLocation::parse(&task.source)?,
        TableLocation::parse(&task.target)?,
        task.external_roots
            .iter()
            .map(String::as_str)
            .map(TableLocation::parse)
            .collect::<Result<_, _>>()?,
    ))
}

/// Record the result; for the first result of the task publish the reconcile task that
/// follows a success and the `clone.*` event. A later delivery publishes nothing, except
/// the reconcile task while the task still waits at `cloned` for a validation that has
/// not started: the first delivery may have died between recording and publishing it
/// (a duplicate validation is then recorded as an attempt only); once the validation
/// started or the task finished, no second one is queued.
async fn publish(
    task: &CloneTask,
    msg: &CloneResult,
    reconcile_next: bool,
    bus: &BusRef,
    store: &Store,
) -> anyhow::Result<Recorded> {
    let succeeded = msg.outcome == Outcome::Succeeded;
    let recorded = store.record_clone(msg, reconcile_next).await?;
    // A first successful result queues its validation. A later delivery of a task still
    // waiting at `cloned` queues one too, whatever its own outcome: the first delivery may
    // have died between recording and publishing, and without this the task would wait
    // forever (the reconciler skips a task that is already validated).
    let queue_validation =
        (succeeded && recorded.first) || recorded.status == Some(TaskStatus::Cloned);
    if reconcile_next && queue_validation {
        let next = ReconcileTask {
            header: Header::new(task.header.run_id),
            task_id: task.task_id,
            attempt: 1,
            table: task.table.clone(),
            source: task.source.clone(),
            target: task.target.clone(),
            // A failed later delivery knows no version: the validation reads the latest.
            source_version: if succeeded { msg.source_version } else { None },
            engine: task.engine,
        };
        typed::publish(bus.as_ref(), names::RECONCILE_TASKS, &next).await?;
    }
    if recorded.first {
        let key = if succeeded {
            names::events::CLONE_SUCCEEDED
        } else {
            names::events::CLONE_FAILED
        };
        typed::publish_event(bus.as_ref(), key, msg).await?;
    }
    Ok(recorded)
}
