//! The cloner consumes `tasks.clone`, clones each table with the engine the task names, and
//! publishes a [`CloneResult`] on the events topic (`clone.succeeded` / `clone.failed`);
//! when the run also validates, it queues a [`ReconcileTask`].
//!
//! Everything around the clone — the lease on the target (one clone of a target at a time,
//! across the fleet, per delivery), attempts, retries of transient errors with backoff,
//! recording, settling (ack, nack, dead letter) — is the worker skeleton's
//! ([`replicator_worker`]); this crate supplies the clone and what follows its result.
//!
//! Delivery: a task is acked only after its result is recorded and published. A task that
//! finally fails is dead-lettered with its reason, so `replay` can bring it back once the
//! cause is fixed. If the worker dies mid-task the task is redelivered; the clone is
//! idempotent (files already copied are not copied again, an up-to-date target is a no-op).
//! Only the first result of a task is recorded; a later delivery is acked and kept in the
//! attempts.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use replicator_bus::{BusRef, typed};
use replicator_common::metrics;
use replicator_common::retry::RetryPolicy;
use replicator_common::shutdown::CancellationToken;
use replicator_engine::{CloneContext, Cloned, Engines, Failure};
use replicator_lake::CloneProgress;
use replicator_proto::{
    CloneResult, CloneTask, ErrorKind, Header, Outcome, ReconcileTask, TaskError, names,
};
use replicator_store::{Recorded, Stage, StageEnd, Store, TaskStatus};
use replicator_worker::{Work, WorkerSettings};
use tokio::task::JoinHandle;
use uuid::Uuid;

mod catalog;

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

    fn settings(&self, lineage: &replicator_lineage::Emitter) -> WorkerSettings {
        WorkerSettings {
            worker: self.worker.clone(),
            concurrency: self.concurrency,
            retry: self.retry.clone(),
            lease_ttl: self.lease_ttl,
            lineage: lineage.clone(),
        }
    }
}

/// Optional observer of copy progress (the CLI's progress bar).
pub type ProgressSink = Arc<dyn Fn(&CloneTask, &CloneProgress) + Send + Sync>;

/// The cloner's work: one clone by the task's engine.
struct Cloner {
    engines: Engines,
    copy_parallelism: usize,
    progress: Option<ProgressSink>,
    /// Ingestions' watermarks (docs/ingest.md).
    store: Store,
}

/// Start consuming `tasks.clone` and `tasks.catalog`; returns once both consumers are
/// attached. The workers stop taking tasks when `shutdown` fires and return after in-flight
/// tasks finish.
pub async fn spawn(
    bus: BusRef,
    store: Store,
    engines: Engines,
    config: ClonerConfig,
    progress: Option<ProgressSink>,
    shutdown: CancellationToken,
) -> anyhow::Result<JoinHandle<()>> {
    let lineage = engines.lineage().clone();
    let objects = Arc::new(catalog::Cataloger {
        engines: engines.clone(),
        settings: engines.catalog_settings().clone(),
        parallelism: config.copy_parallelism,
        store: store.clone(),
    });
    let work = Arc::new(Cloner {
        engines,
        copy_parallelism: config.copy_parallelism,
        progress,
        store: store.clone(),
    });
    let clones = replicator_worker::spawn(
        work,
        bus.clone(),
        store.clone(),
        config.settings(&lineage),
        shutdown.clone(),
    )
    .await?;
    let catalog =
        replicator_worker::spawn(objects, bus, store, config.settings(&lineage), shutdown).await?;
    Ok(tokio::spawn(async move {
        let _ = clones.await;
        let _ = catalog.await;
    }))
}

#[async_trait]
impl Work for Cloner {
    type Task = CloneTask;
    type Output = Cloned;
    type Error = Failure;
    type Result = CloneResult;
    const SERVICE: &'static str = "cloner";
    const STAGE: Stage = Stage::Clone;

    fn queue(&self) -> &'static str {
        names::CLONE_TASKS
    }

    fn span(t: &CloneTask) -> tracing::Span {
        tracing::info_span!("clone", run_id = %t.header.run_id, task_id = %t.task_id, table = %t.table, attempt = t.attempt)
    }

    fn ids(task: &CloneTask) -> (Uuid, u32) {
        (task.task_id, task.attempt)
    }

    fn lease_key(&self, task: &CloneTask) -> Option<String> {
        Some(task.target.clone())
    }

    async fn attempt(&self, task: &CloneTask) -> Result<Cloned, Failure> {
        let engine = self
            .engines
            .get_for(task.engine, &task.source)
            .map_err(|e| Failure::new(ErrorKind::Permanent, e.to_string(), false))?;
        // An ingestion with a watermark column reads only rows after the last load's.
        let last_watermark = match task.ingest.as_ref().and_then(|i| i.watermark_column()) {
            Some(column) => self
                .store
                .ingest_watermark(&task.target, column)
                .await
                .map_err(|e| {
                    Failure::new(
                        ErrorKind::Transient,
                        format!("ingest {}: the state store: {e}", task.table),
                        true,
                    )
                })?,
            None => None,
        };
        let ctx = CloneContext {
            last_watermark,
            parallelism: self.copy_parallelism,
            progress: self.progress.as_ref().map(|p| {
                let (p, task) = (p.clone(), task.clone());
                Arc::new(move |pr: &CloneProgress| p(&task, pr))
                    as replicator_lake::clone::ProgressFn
            }),
        };
        engine.clone_table(task, &ctx).await
    }

    fn result(
        &self,
        task: &CloneTask,
        outcome: Result<Cloned, Failure>,
        retries: u32,
        took: Duration,
    ) -> CloneResult {
        let mut msg = pending_result(task);
        msg.retries = retries;
        msg.duration_ms = took.as_millis() as u64;
        match outcome {
            Ok(c) => {
                tracing::info!(
                    source_version = c.source_version,
                    target_version = c.target_version,
                    committed = c.committed,
                    copied_files = c.metrics.as_ref().map(|m| m.num_copied_files),
                    copied_bytes = c.metrics.as_ref().map(|m| m.copied_files_size),
                    statements = ?c.statement_ids,
                    retries,
                    "clone succeeded"
                );
                if let Some(m) = &c.metrics {
                    metrics::bytes_copied(m.copied_files_size);
                }
                msg.outcome = Outcome::Succeeded;
                msg.source_version = c.source_version;
                msg.target_version = c.target_version;
                msg.committed = c.committed;
                if let Some(i) = &c.ingest {
                    tracing::info!(account = %i.account(c.committed), watermark = ?i.watermark, "ingested");
                }
                msg.metrics = c.metrics;
                msg.statement_ids = c.statement_ids;
                msg.ingest = c.ingest;
                msg.clone_path = c.path;
            }
            Err(f) => {
                tracing::error!(error = %f, statements = ?f.statement_ids, retries, "clone failed");
                msg.error = Some(f.error);
                msg.statement_ids = f.statement_ids;
            }
        }
        msg
    }

    fn failure(result: &CloneResult) -> Option<&str> {
        result
            .error
            .as_ref()
            .map(|e: &TaskError| e.message.as_str())
    }

    /// Record the result; for the first result of the task publish the reconcile task that
    /// follows a success and the `clone.*` event. A later delivery publishes nothing.
    async fn record(
        &self,
        task: &CloneTask,
        msg: &CloneResult,
        end: &StageEnd,
        bus: &BusRef,
        store: &Store,
    ) -> anyhow::Result<Recorded> {
        let succeeded = msg.outcome == Outcome::Succeeded;
        let reconciles = validates(task);
        let recorded = store.record_clone(msg, reconciles, end).await?;
        // The watermark a successful ingestion reached: the next load reads after it. (A
        // worker dying before this line leaves the older one: the next load reads a few rows
        // again and merges them to the same result.)
        if succeeded
            && let (Some(column), Some(wm)) = (
                task.ingest.as_ref().and_then(|i| i.watermark_column()),
                msg.ingest.as_ref().and_then(|i| i.watermark.as_deref()),
            )
        {
            store
                .set_ingest_watermark(&task.target, column, wm, task.header.run_id)
                .await?;
        }
        // A first successful result queues its validation; so does a later one while the
        // task still waits at `cloned` (see `after_skip`). The validation and the event are
        // published at once (two broker confirms awaited together, not one after the other).
        let validation = async {
            if reconciles
                && ((succeeded && recorded.first) || recorded.status == Some(TaskStatus::Cloned))
            {
                let version = if succeeded { msg.source_version } else { None };
                queue_validation(task, version, rollback_to(task, msg), bus).await?;
            }
            anyhow::Ok(())
        };
        let event = async {
            if recorded.first {
                let key = if succeeded {
                    names::events::CLONE_SUCCEEDED
                } else {
                    names::events::CLONE_FAILED
                };
                typed::publish_event(bus.as_ref(), key, msg).await?;
            }
            anyhow::Ok(())
        };
        tokio::try_join!(validation, event)?;
        Ok(recorded)
    }

    /// A task still waiting at `cloned` for a validation that has not started gets its
    /// validation queued again: the first delivery may have died between recording its
    /// result and queueing it (a duplicate validation is then recorded as an attempt only).
    /// Once the validation started or the task finished, none is queued.
    /// A clone reads its source table and writes its target; an ingestion reads its source
    /// (named as the run names it) and writes its target.
    fn lineage(&self, task: &CloneTask) -> Option<replicator_lineage::TaskLineage> {
        let job = match &task.ingest {
            Some(_) => format!("ingest {}", task.table),
            None => format!("clone {}", task.table),
        };
        Some(
            replicator_lineage::TaskLineage::new(task.header.run_id, task.task_id, job)
                .input(task.source.clone())
                .output(task.target.clone())
                .attempt(task.attempt),
        )
    }

    async fn lineage_end(
        &self,
        lineage: &replicator_lineage::TaskLineage,
        result: &CloneResult,
        emitter: &replicator_lineage::Emitter,
    ) {
        if result.outcome != Outcome::Succeeded {
            let reason = result
                .error
                .as_ref()
                .map_or("failed", |e| e.message.as_str());
            emitter.task_failed(lineage, reason);
            return;
        }
        // The schema facet: the replica's columns as the clone left them (one log read).
        let lineage = &lineage
            .clone()
            .schema(self.engines.columns_of(&result.target).await);
        let m = result.metrics.as_ref();
        let i = result.ingest.as_ref();
        emitter.task_completed(
            lineage,
            &replicator_lineage::TaskMetrics {
                rows_read: i.map(|i| i.source_rows),
                rows_written: i.map(|i| i.inserted + i.updated),
                bytes_copied: m.map(|m| m.copied_files_size),
                files_copied: m.map(|m| m.num_copied_files),
            },
        );
    }

    async fn after_skip(
        &self,
        task: &CloneTask,
        state: TaskStatus,
        bus: &BusRef,
        store: &Store,
    ) -> anyhow::Result<()> {
        if validates(task) && state == TaskStatus::Cloned {
            // The version the recorded clone left in the target: the validation compares the
            // source at that version, not at its latest.
            let version = store
                .last_source_version(&task.source, &task.target)
                .await?;
            // The clone's result is not at hand: nothing known to roll back to.
            queue_validation(task, version, None, bus).await?;
        }
        Ok(())
    }
}

/// Whether a validation follows `task`: the run reconciles, and an ingestion's source asks
/// for it (`ingest.validate`, the default).
fn validates(task: &CloneTask) -> bool {
    task.operation.reconciles() && task.ingest.as_ref().is_none_or(|i| i.validate)
}

/// The target's version before the clone `msg` reports, when it can be rolled back to: a
/// clone commits exactly once (the native engine's one commit, Databricks' `DEEP CLONE`), so
/// it is the version before the new one. None when the clone created the table, committed
/// nothing, or is an ingestion (whose schema changes and merge may be several commits).
fn rollback_to(task: &CloneTask, msg: &CloneResult) -> Option<u64> {
    if task.ingest.is_some() || !msg.committed || msg.outcome != Outcome::Succeeded {
        return None;
    }
    msg.target_version.and_then(|v| v.checked_sub(1))
}

/// Publish the reconcile task that follows a clone of `task`.
async fn queue_validation(
    task: &CloneTask,
    source_version: Option<u64>,
    rollback_to: Option<u64>,
    bus: &BusRef,
) -> anyhow::Result<()> {
    let next = ReconcileTask {
        ingest: task.ingest.clone(),
        header: Header::new(task.header.run_id),
        task_id: task.task_id,
        attempt: 1,
        table: task.table.clone(),
        source: task.source.clone(),
        target: task.target.clone(),
        source_version,
        engine: task.engine,
        rollback_to,
    };
    typed::publish(bus.as_ref(), names::RECONCILE_TASKS, &next).await?;
    Ok(())
}

/// The result of `task` before it ran: failed, nothing copied.
fn pending_result(task: &CloneTask) -> CloneResult {
    CloneResult {
        ingest: None,
        clone_path: None,
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
