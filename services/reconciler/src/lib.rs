//! The reconciler consumes `tasks.reconcile` and checks each target against its source:
//!
//! - **row counts**: from the Delta log's statistics when every file has `numRecords`
//!   (deletion vectors subtracted; cost grows with files, not rows), otherwise by scanning;
//! - **schema**: columns, types, nullability and partition columns.
//!
//! The source is read at the version that was cloned (from the task), the target at its
//! latest version. The result ([`ReconcileResult`]: `matched`, `mismatched`, or `failed`
//! when the checks could not run) is recorded and published as `reconcile.*`; the delivery
//! is acked after that. Transient read errors are retried with the shared policy.

use std::time::Instant;

use replicator_bus::{BusRef, Delivery, typed};
use replicator_common::config::Reconciliation;
use replicator_common::retry::RetryPolicy;
use replicator_common::shutdown::CancellationToken;
use replicator_lake::inspect::{CountMethod, count_rows, schema_diff, table_info};
use replicator_lake::{LakeError, TableLocation};
use replicator_proto::{
    Check, Header, ReconcileResult, ReconcileTask, TaskError, Validation, names,
};
use replicator_store::{Stage, Store};
use tokio::task::JoinHandle;

mod databricks;

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

/// What the checks found.
#[derive(Clone, Debug, PartialEq)]
pub struct Findings {
    pub source_version: u64,
    pub target_version: u64,
    pub source_rows: Option<u64>,
    pub target_rows: Option<u64>,
    pub checks: Vec<Check>,
}

/// Compare `target` with `source` (at `source_version`, or latest).
pub async fn validate(
    source: &TableLocation,
    target: &TableLocation,
    source_version: Option<u64>,
    checks: &Reconciliation,
) -> Result<Findings, LakeError> {
    let mut out = Findings {
        source_version: 0,
        target_version: 0,
        source_rows: None,
        target_rows: None,
        checks: Vec::new(),
    };
    let (src_info, tgt_info) = if checks.row_counts {
        let (s, sm, si) = count_rows(source, source_version).await?;
        let (t, tm, ti) = count_rows(target, None).await?;
        out.source_rows = Some(s);
        out.target_rows = Some(t);
        let how = |m: CountMethod| m.to_string();
        out.checks.push(Check {
            name: "row_count".into(),
            passed: s == t,
            detail: format!(
                "source {s} rows ({}), target {t} rows ({})",
                how(sm),
                how(tm)
            ),
        });
        (si, ti)
    } else {
        (
            table_info(source, source_version).await?,
            table_info(target, None).await?,
        )
    };
    out.source_version = src_info.version;
    out.target_version = tgt_info.version;
    if checks.schema {
        let diff = schema_diff(&src_info, &tgt_info);
        out.checks.push(Check {
            name: "schema".into(),
            passed: diff.is_empty(),
            detail: if diff.is_empty() {
                "schemas and partition columns match".into()
            } else {
                diff.join("; ")
            },
        });
    }
    Ok(out)
}

/// Start consuming `tasks.reconcile`; returns once the consumer is attached.
pub async fn spawn(
    bus: BusRef,
    store: Store,
    config: ReconcilerConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<JoinHandle<()>> {
    let concurrency = config.concurrency;
    let consumer = bus.consume(names::RECONCILE_TASKS, concurrency).await?;
    Ok(tokio::spawn(replicator_bus::worker::serve(
        consumer,
        concurrency,
        shutdown,
        |t: &ReconcileTask| tracing::info_span!("reconcile", run_id = %t.header.run_id, task_id = %t.task_id, table = %t.table, attempt = t.attempt),
        move |task, delivery| {
            let (bus, store, config) = (bus.clone(), store.clone(), config.clone());
            async move { handle(task, delivery, &bus, &store, &config).await }
        },
    )))
}

/// Validate one table, record and publish the result, then settle the delivery.
pub async fn handle(
    task: ReconcileTask,
    delivery: Delivery,
    bus: &BusRef,
    store: &Store,
    config: &ReconcilerConfig,
) {
    if task.engine == replicator_proto::Engine::Databricks {
        return databricks::handle(task, delivery, bus, store, config).await;
    }
    let started = Instant::now();
    let _in_flight = replicator_common::metrics::in_flight("reconciler");
    let run_id = task.header.run_id;
    let task_id = task.task_id;
    let attempt_id = store
        .attempt_started(
            run_id,
            task_id,
            Stage::Reconcile,
            task.attempt,
            &config.worker,
        )
        .await
        .ok();
    let (found, _retries) = config
        .retry
        .retry(
            || async {
                let source = TableLocation::parse(&task.source)?;
                let target = TableLocation::parse(&task.target)?;
                validate(&source, &target, task.source_version, &config.checks).await
            },
            |e: &LakeError, delay| tracing::warn!(error = %e, delay_ms = delay.as_millis() as u64, "validation failed, retrying"),
        )
        .await;
    let mut msg = ReconcileResult {
        header: Header::new(run_id),
        task_id,
        attempt: task.attempt,
        table: task.table.clone(),
        outcome: Validation::Failed,
        source_version: task.source_version,
        target_version: None,
        source_rows: None,
        target_rows: None,
        checks: Vec::new(),
        error: None,
        duration_ms: 0,
        statement_ids: Vec::new(),
    };
    match found {
        Ok(f) => {
            msg.outcome = if f.checks.iter().all(|c| c.passed) {
                Validation::Matched
            } else {
                Validation::Mismatched
            };
            msg.source_version = Some(f.source_version);
            msg.target_version = Some(f.target_version);
            msg.source_rows = f.source_rows;
            msg.target_rows = f.target_rows;
            msg.checks = f.checks;
        }
        Err(e) => {
            msg.error = Some(TaskError {
                kind: e.kind(),
                message: e.to_string(),
            })
        }
    }
    msg.duration_ms = started.elapsed().as_millis() as u64;
    replicator_common::metrics::task_done(
        "reconciler",
        msg.outcome != Validation::Failed,
        started.elapsed(),
    );
    match msg.outcome {
        Validation::Matched => tracing::info!(rows = ?msg.target_rows, "target matches source"),
        Validation::Mismatched => {
            tracing::warn!(checks = ?msg.checks, "target differs from source")
        }
        Validation::Failed => tracing::error!(error = ?msg.error, "validation could not run"),
    }
    if let Some(id) = attempt_id {
        let outcome = if msg.outcome == Validation::Failed {
            "failed"
        } else {
            "succeeded"
        };
        let _ = store
            .attempt_finished(id, outcome, msg.error.as_ref().map(|e| e.message.as_str()))
            .await;
    }
    let key = match msg.outcome {
        Validation::Matched => names::events::RECONCILE_MATCHED,
        Validation::Mismatched => names::events::RECONCILE_MISMATCHED,
        Validation::Failed => names::events::RECONCILE_FAILED,
    };
    let published = async {
        store.record_reconcile(&msg).await?;
        typed::publish_event(bus.as_ref(), key, &msg).await?;
        anyhow::Ok(())
    }
    .await;
    match published {
        Ok(()) => delivery.ack(),
        Err(e) => {
            tracing::warn!(error = %e, "could not record or publish the validation; the task will be redelivered");
            delivery.nack(&e.to_string());
        }
    }
}
