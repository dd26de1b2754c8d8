//! The reconciler consumes `tasks.reconcile` and checks each target against its source with
//! the engine the task names (the native engine's checks: row counts, schema, keys,
//! partition checksums, and the cheap check between deep validations — see
//! [`replicator_engine::native`]; the Databricks engine's: SQL on the target warehouse).
//!
//! The source is read at the version that was cloned (from the task), the target at its
//! latest version. The result ([`ReconcileResult`]: `matched`, `mismatched`, or `failed`
//! when the checks could not run) is recorded and published as `reconcile.*`. Everything
//! around the checks — attempts, retries of transient read errors, recording, settling — is
//! the worker skeleton's ([`replicator_worker`]): a validation that ran (matched or not) is
//! acked, one that could not run is dead-lettered with the reason, so `replay` can run it
//! again.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use replicator_bus::{BusRef, typed};
use replicator_common::config::{OnMismatch, Reconciliation};
use replicator_common::retry::RetryPolicy;
use replicator_common::shutdown::CancellationToken;
use replicator_engine::{CheckContext, Checked, Engines, Failure};
use replicator_proto::{ErrorKind, Header, ReconcileResult, ReconcileTask, Validation, names};
use replicator_store::{Recorded, Stage, StageEnd, Store};
use replicator_worker::{Work, WorkerSettings};
use tokio::task::JoinHandle;
use uuid::Uuid;

/// Reconciler settings.
#[derive(Clone, Debug)]
pub struct ReconcilerConfig {
    pub concurrency: usize,
    pub checks: Reconciliation,
    pub retry: RetryPolicy,
    /// This worker's identity in the attempts it records.
    pub worker: String,
}

impl ReconcilerConfig {
    pub fn from_config(c: &replicator_common::Config) -> Self {
        Self {
            concurrency: c.concurrency.reconcilers,
            checks: c.reconciliation.clone(),
            retry: c.retry.clone(),
            worker: replicator_common::worker_id("reconciler"),
        }
    }
}

/// The reconciler's work: one check by the task's engine.
struct Reconciler {
    engines: Engines,
    checks: Reconciliation,
    store: Store,
}

/// What one validation found, and the version the target was rolled back to, if it was.
struct Outcome {
    checked: Checked,
    rolled_back_to: Option<u64>,
}

impl Reconciler {
    /// `reconciliation.on_mismatch: rollback`: restore the target of a fresh clone that
    /// failed validation to the version it had before the clone, with a new commit. The
    /// account is one more check, `rollback`, so the result, the audit and the digest show
    /// it; a target that cannot be rolled back says why.
    async fn roll_back(
        &self,
        engine: &dyn replicator_engine::Engine,
        task: &ReconcileTask,
        checked: &mut Checked,
    ) -> Option<u64> {
        let (passed, detail, done) = match task.rollback_to {
            None => (
                false,
                "not rolled back: no version before this clone to restore (the clone created the table, committed nothing, or was an ingestion)".to_owned(),
                None,
            ),
            Some(v) => match engine.restore(&task.target, v).await {
                Ok(did) => (
                    true,
                    format!("rolled back to version {v} with a new commit (history kept): {did}"),
                    Some(v),
                ),
                Err(e) => (false, format!("rolling back to version {v} failed: {e}"), None),
            },
        };
        if passed {
            tracing::warn!(target = %task.target, version = ?done, "target rolled back after failing validation");
        } else {
            tracing::error!(target = %task.target, %detail, "target not rolled back");
        }
        checked.checks.push(replicator_proto::Check {
            name: "rollback".into(),
            passed,
            detail,
        });
        done
    }
}

/// Start consuming `tasks.reconcile`; returns once the consumer is attached.
pub async fn spawn(
    bus: BusRef,
    store: Store,
    engines: Engines,
    config: ReconcilerConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<JoinHandle<()>> {
    let settings = WorkerSettings {
        worker: config.worker,
        concurrency: config.concurrency,
        retry: config.retry,
        // No lease: validations only read.
        lease_ttl: Duration::ZERO,
        lineage: engines.lineage().clone(),
    };
    let work = Arc::new(Reconciler {
        engines,
        checks: config.checks,
        store: store.clone(),
    });
    replicator_worker::spawn(work, bus, store, settings, shutdown).await
}

#[async_trait]
impl Work for Reconciler {
    type Task = ReconcileTask;
    type Output = Outcome;
    type Error = Failure;
    type Result = ReconcileResult;
    const SERVICE: &'static str = "reconciler";
    const STAGE: Stage = Stage::Reconcile;

    fn queue(&self) -> &'static str {
        names::RECONCILE_TASKS
    }

    fn span(t: &ReconcileTask) -> tracing::Span {
        tracing::info_span!("reconcile", run_id = %t.header.run_id, task_id = %t.task_id, table = %t.table, attempt = t.attempt)
    }

    fn ids(task: &ReconcileTask) -> (Uuid, u32) {
        (task.task_id, task.attempt)
    }

    async fn attempt(&self, task: &ReconcileTask) -> Result<Outcome, Failure> {
        let engine = self
            .engines
            .get_for(task.engine, &task.source)
            .map_err(|e| Failure::new(ErrorKind::Permanent, e.to_string(), false))?;
        let ctx = CheckContext {
            checks: &self.checks,
            store: &self.store,
        };
        let mut checked = engine.check(task, &ctx).await?;
        let rolled_back_to = if checked.outcome() == Validation::Mismatched
            && self.checks.on_mismatch == OnMismatch::Rollback
        {
            self.roll_back(engine, task, &mut checked).await
        } else {
            None
        };
        Ok(Outcome {
            checked,
            rolled_back_to,
        })
    }

    fn result(
        &self,
        task: &ReconcileTask,
        outcome: Result<Outcome, Failure>,
        _retries: u32,
        took: Duration,
    ) -> ReconcileResult {
        let mut msg = pending_result(task);
        msg.duration_ms = took.as_millis() as u64;
        match outcome {
            Ok(Outcome {
                checked: c,
                rolled_back_to,
            }) => {
                msg.rolled_back_to = rolled_back_to;
                msg.outcome = c.outcome();
                msg.source_version = c.source_version;
                msg.target_version = c.target_version;
                msg.source_rows = c.source_rows;
                msg.target_rows = c.target_rows;
                msg.checks = c.checks;
                msg.keys = c.keys;
                msg.partitions = c.partitions;
                msg.depth = c.depth;
                msg.statement_ids = c.statement_ids;
            }
            Err(f) => {
                msg.error = Some(f.error);
                msg.statement_ids = f.statement_ids;
            }
        }
        let statements = &msg.statement_ids;
        match msg.outcome {
            Validation::Matched => {
                tracing::info!(rows = ?msg.target_rows, ?statements, "target matches source")
            }
            Validation::Mismatched => {
                tracing::warn!(checks = ?msg.checks, ?statements, "target differs from source")
            }
            Validation::Failed => {
                tracing::error!(error = ?msg.error, ?statements, "validation could not run")
            }
        }
        msg
    }

    /// A validation reads both tables; its checks become the COMPLETE event's assertions
    /// and its row counts the data-quality metrics.
    fn lineage(&self, task: &ReconcileTask) -> Option<replicator_lineage::TaskLineage> {
        Some(
            replicator_lineage::TaskLineage::new(
                task.header.run_id,
                // Its own lineage run (the clone of the same table used the task ID): the
                // task ID with its last 48 bits flipped by "RECONC", version bits kept.
                Uuid::from_u128(task.task_id.as_u128() ^ 0x5245_434f_4e43),
                format!("reconcile {}", task.table),
            )
            .input(task.source.clone())
            .input(task.target.clone())
            .attempt(task.attempt),
        )
    }

    async fn lineage_end(
        &self,
        lineage: &replicator_lineage::TaskLineage,
        result: &ReconcileResult,
        emitter: &replicator_lineage::Emitter,
    ) {
        if result.outcome == Validation::Failed {
            let reason = result
                .error
                .as_ref()
                .map_or("failed", |e| e.message.as_str());
            emitter.task_failed(lineage, reason);
            return;
        }
        // The schema facet (on the inputs: a validation writes nothing): the replica's.
        let target = lineage.inputs.last().cloned().unwrap_or_default();
        let lineage = &lineage
            .clone()
            .schema(self.engines.columns_of(&target).await);
        emitter.task_reconciled(
            lineage,
            &replicator_lineage::Reconciliation {
                source_rows: result.source_rows,
                target_rows: result.target_rows,
                checks: result
                    .checks
                    .iter()
                    .map(|c| replicator_lineage::Check::new(c.name.clone(), c.passed))
                    .collect(),
            },
        );
    }

    fn failure(result: &ReconcileResult) -> Option<&str> {
        result.error.as_ref().map(|e| e.message.as_str())
    }

    /// Record the result; the first one of the task is published as `reconcile.*`.
    async fn record(
        &self,
        _task: &ReconcileTask,
        msg: &ReconcileResult,
        end: &StageEnd,
        bus: &BusRef,
        store: &Store,
    ) -> anyhow::Result<Recorded> {
        let recorded = store.record_reconcile(msg, end).await?;
        if recorded.first {
            let key = match msg.outcome {
                Validation::Matched => names::events::RECONCILE_MATCHED,
                Validation::Mismatched => names::events::RECONCILE_MISMATCHED,
                Validation::Failed => names::events::RECONCILE_FAILED,
            };
            typed::publish_event(bus.as_ref(), key, msg).await?;
        }
        Ok(recorded)
    }
}

/// The result of `task` before its checks ran: failed, nothing found.
fn pending_result(task: &ReconcileTask) -> ReconcileResult {
    ReconcileResult {
        header: Header::new(task.header.run_id),
        task_id: task.task_id,
        attempt: task.attempt,
        table: task.table.clone(),
        outcome: Validation::Failed,
        source_version: task.source_version,
        target_version: None,
        source_rows: None,
        target_rows: None,
        checks: Vec::new(),
        keys: None,
        partitions: Vec::new(),
        depth: Default::default(),
        error: None,
        duration_ms: 0,
        statement_ids: Vec::new(),
        rolled_back_to: None,
    }
}
