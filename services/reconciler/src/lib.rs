//! The reconciler consumes `tasks.reconcile` and checks each target against its source:
//!
//! - **row counts**: from the Delta log's statistics when every file has `numRecords`
//!   (deletion vectors subtracted; cost grows with files, not rows), otherwise by scanning;
//! - **schema**: columns, types, nullability and partition columns;
//! - **keys** (tables with a `primary_key` rule): keys missing in the target, extra in the
//!   target, and changed (same key, different hash over the other columns), with counts
//!   and samples, streamed with bounded memory ([`replicator_lake::compare`]);
//! - **partition checksums** (when on): row count and checksum per table partition, to
//!   localise a difference.
//!
//! These are the **deep validation**. A replica whose logs have not moved since a deep
//! validation that matched gets the **cheap check** instead — the latest versions and commit
//! fingerprints of both tables, compared with those the deep validation saw — until
//! `reconciliation.deep_every` has passed (see `depth`); the result's `depth` says which ran.
//!
//! The source is read at the version that was cloned (from the task), the target at its
//! latest version. The result ([`ReconcileResult`]: `matched`, `mismatched`, or `failed`
//! when the checks could not run) is recorded and published as `reconcile.*`; the delivery
//! is acked after that. Transient read errors are retried with the shared policy.

use std::time::Instant;

use replicator_bus::{BusRef, Delivery, typed};
use replicator_common::config::{Reconciliation, TableChecks};
use replicator_common::retry::RetryPolicy;
use replicator_common::shutdown::CancellationToken;
use replicator_lake::compare::{CompareOptions, Comparison, compare};
use replicator_lake::inspect::{CountMethod, TableInfo, count_rows, schema_diff, table_info};
use replicator_lake::{LakeError, TableLocation};
use replicator_proto::{
    Check, Header, KeyDiff, PartitionDiff, ReconcileResult, ReconcileTask, TaskError, Validation,
    names,
};
use replicator_store::{AttemptOutcome, Stage, Store, TaskStatus};
use tokio::task::JoinHandle;

mod databricks;
mod depth;

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
    pub keys: Option<KeyDiff>,
    pub partitions: Vec<PartitionDiff>,
}

/// Compare `target` with `source` (at `source_version`, or latest).
pub async fn validate(
    source: &TableLocation,
    target: &TableLocation,
    source_version: Option<u64>,
    checks: &TableChecks,
) -> Result<Findings, LakeError> {
    let mut out = Findings {
        source_version: 0,
        target_version: 0,
        source_rows: None,
        target_rows: None,
        checks: Vec::new(),
        keys: None,
        partitions: Vec::new(),
    };
    let (src_info, tgt_info) =
        tokio::try_join!(table_info(source, source_version), table_info(target, None))?;
    // A key comparison reads every row anyway: a side without complete log statistics is
    // counted by it rather than by a scan of its own.
    let compare_on = !checks.primary_key.is_empty() || checks.partition_checksums;
    let stats = (src_info.stats_rows, tgt_info.stats_rows);
    let defer_counts = checks.row_counts && compare_on && (stats.0.is_none() || stats.1.is_none());
    if checks.row_counts && !defer_counts {
        let (s, sm) = counted(source, &src_info).await?;
        let (t, tm) = counted(target, &tgt_info).await?;
        out.push_counts((s, sm), (t, tm));
    }
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
    if checks.primary_key.is_empty() && !checks.partition_checksums {
        return Ok(out);
    }
    let options = CompareOptions {
        primary_key: checks.primary_key.clone(),
        partition_checksums: checks.partition_checksums,
        sample_size: checks.sample_size,
        memory_budget: checks.memory_mb << 20,
    };
    let found = compare(
        source,
        Some(out.source_version),
        target,
        Some(out.target_version),
        &options,
    )
    .await;
    let cmp = match found {
        Ok(c) => c,
        // The tables cannot be compared as configured (a key column is missing, say):
        // that is a finding about this pair, not a reason to retry.
        Err(LakeError::Invalid(reason)) => {
            if defer_counts {
                let (s, sm) = counted(source, &src_info).await?;
                let (t, tm) = counted(target, &tgt_info).await?;
                out.push_counts((s, sm), (t, tm));
            }
            out.checks.push(Check {
                name: if checks.primary_key.is_empty() {
                    "partition_checksums".into()
                } else {
                    "keys".into()
                },
                passed: false,
                detail: format!("cannot compare: {reason}"),
            });
            return Ok(out);
        }
        Err(e) => return Err(e),
    };
    if defer_counts {
        let side = |stats: Option<u64>, scanned: u64| match stats {
            Some(n) => (n, CountMethod::Stats),
            None => (scanned, CountMethod::Scan),
        };
        out.push_counts(
            side(stats.0, cmp.source_rows),
            side(stats.1, cmp.target_rows),
        );
    }
    out.source_rows.get_or_insert(cmp.source_rows);
    out.target_rows.get_or_insert(cmp.target_rows);
    if let Some(k) = &cmp.keys {
        out.checks.push(Check {
            name: "keys".into(),
            passed: k.is_clean(),
            detail: key_detail(k, &cmp),
        });
    }
    if let Some((compared, differing)) = cmp.partition_counts {
        out.checks.push(Check {
            name: "partition_checksums".into(),
            passed: differing == 0,
            detail: partition_detail(compared, differing, &cmp.partitions),
        });
    }
    out.keys = cmp.keys;
    out.partitions = cmp.partitions;
    Ok(out)
}

/// A table's row count: from its log statistics when complete, else by scanning.
async fn counted(loc: &TableLocation, info: &TableInfo) -> Result<(u64, CountMethod), LakeError> {
    match info.stats_rows {
        Some(n) => Ok((n, CountMethod::Stats)),
        None => count_rows(loc, Some(info.version))
            .await
            .map(|(n, m, _)| (n, m)),
    }
}

impl Findings {
    /// Record the row counts and their check, first among the checks.
    fn push_counts(&mut self, (s, sm): (u64, CountMethod), (t, tm): (u64, CountMethod)) {
        self.source_rows = Some(s);
        self.target_rows = Some(t);
        self.checks.insert(
            0,
            Check {
                name: "row_count".into(),
                passed: s == t,
                detail: format!("source {s} rows ({sm}), target {t} rows ({tm})"),
            },
        );
    }
}

/// `by [id]: 3 missing (id=5, …), 1 extra (…), 2 changed (…); 4 columns compared`.
fn key_detail(k: &KeyDiff, cmp: &Comparison) -> String {
    let part = |n: u64, what: &str, sample: &[String]| {
        if n == 0 {
            format!("0 {what}")
        } else {
            let more = if (sample.len() as u64) < n {
                ", …"
            } else {
                ""
            };
            format!("{n} {what} ({}{more})", sample.join("; "))
        }
    };
    let mut s = format!(
        "by [{}], source {} rows, target {} rows: {}, {}, {}",
        k.primary_key.join(", "),
        cmp.source_rows,
        cmp.target_rows,
        part(k.missing, "missing", &k.missing_sample),
        part(k.extra, "extra", &k.extra_sample),
        part(k.changed, "changed", &k.changed_sample),
    );
    if k.duplicate_source + k.duplicate_target > 0 {
        s.push_str(&format!(
            "; duplicate keys: {} in the source, {} in the target",
            k.duplicate_source, k.duplicate_target
        ));
    }
    s.push_str(&format!(
        "; {} other columns compared",
        cmp.compared_columns.len()
    ));
    if !cmp.ignored_columns.is_empty() {
        s.push_str(&format!(
            ", not compared: {}",
            cmp.ignored_columns.join(", ")
        ));
    }
    s
}

/// `2 of 12 partitions differ: region=EU (source 10 rows, target 9), …`.
fn partition_detail(compared: u64, differing: u64, diffs: &[PartitionDiff]) -> String {
    if differing == 0 {
        return format!("{compared} partitions compared, all match");
    }
    let shown: Vec<String> = diffs
        .iter()
        .take(5)
        .map(|d| {
            let how = if d.source_rows == d.target_rows {
                "same row count, different checksum".to_owned()
            } else {
                format!("source {} rows, target {}", d.source_rows, d.target_rows)
            };
            format!("{} ({how})", d.partition)
        })
        .collect();
    let more = if differing as usize > shown.len() {
        ", …"
    } else {
        ""
    };
    format!(
        "{differing} of {compared} partitions differ: {}{more}",
        shown.join(", ")
    )
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
    let started = Instant::now();
    let _in_flight = replicator_common::metrics::in_flight("reconciler");
    // A task validated already (its reconcile task was queued twice: see the cloner) is
    // not checked again; the delivery is kept as an attempt.
    if let Ok(Some(state)) = store.task_status(task.task_id).await
        && state.is_terminal()
    {
        tracing::info!(status = %state, "task already finished; not validated again");
        if let Ok(id) = store
            .attempt_started(
                task.header.run_id,
                task.task_id,
                Stage::Reconcile,
                task.attempt,
                &config.worker,
            )
            .await
        {
            let why = format!("task already {state}");
            let _ = store
                .attempt_finished(id, AttemptOutcome::Skipped, Some(&why))
                .await;
        }
        return delivery.ack();
    }
    let attempt_id = store
        .attempt_started(
            task.header.run_id,
            task.task_id,
            Stage::Reconcile,
            task.attempt,
            &config.worker,
        )
        .await
        .ok();
    let mut msg = if task.engine == replicator_proto::Engine::Databricks {
        databricks::reconcile(&task).await
    } else {
        depth::reconcile(&task, config, store).await
    };
    msg.duration_ms = started.elapsed().as_millis() as u64;
    settle(msg, started, attempt_id, delivery, bus, store).await;
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
    }
}

/// Run the native engine's checks on `task`, with the shared retry policy.
async fn reconcile_native(task: &ReconcileTask, config: &ReconcilerConfig) -> ReconcileResult {
    let (found, _retries) = config
        .retry
        .retry(
            || async {
                let source = TableLocation::parse(&task.source)?;
                let target = TableLocation::parse(&task.target)?;
                validate(&source, &target, task.source_version, &config.checks.for_table(&task.table)).await
            },
            |e: &LakeError, delay| tracing::warn!(error = %e, delay_ms = delay.as_millis() as u64, "validation failed, retrying"),
        )
        .await;
    let mut msg = pending_result(task);
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
            msg.keys = f.keys;
            msg.partitions = f.partitions;
        }
        Err(e) => {
            msg.error = Some(TaskError {
                kind: e.kind(),
                message: e.to_string(),
            })
        }
    }
    msg
}

/// Count and log the validation, finish its attempt, record and publish the result, then
/// ack the delivery (nack it when recording or publishing failed, so it is redelivered).
async fn settle(
    msg: ReconcileResult,
    started: Instant,
    attempt_id: Option<i64>,
    delivery: Delivery,
    bus: &BusRef,
    store: &Store,
) {
    replicator_common::metrics::task_done(
        "reconciler",
        msg.outcome != Validation::Failed,
        started.elapsed(),
    );
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
    if let Some(id) = attempt_id {
        let outcome = if msg.outcome == Validation::Failed {
            AttemptOutcome::Failed
        } else {
            AttemptOutcome::Succeeded
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
        let recorded = store.record_reconcile(&msg).await?;
        if recorded.first {
            typed::publish_event(bus.as_ref(), key, &msg).await?;
        } else {
            // Validated twice at once: the first result recorded stands.
            tracing::info!(status = recorded.status.map_or("", TaskStatus::as_str), "the task's validation was recorded by another delivery; this one is in the attempts only");
        }
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
