//! Reconcile tasks of the Databricks engine: row counts, schema and missing rows checked by
//! SQL on the target warehouse (`replicator_databricks::fleet::reconcile`). The result
//! carries every statement ID and is recorded and published like a native validation's.

use std::time::Instant;

use replicator_bus::{BusRef, Delivery, typed};
use replicator_proto::{Header, ReconcileResult, ReconcileTask, TaskError, Validation, names};
use replicator_store::{Stage, Store};

use crate::ReconcilerConfig;

pub(crate) async fn handle(
    task: ReconcileTask,
    delivery: Delivery,
    bus: &BusRef,
    store: &Store,
    config: &ReconcilerConfig,
) {
    let started = Instant::now();
    let run_id = task.header.run_id;
    let attempt = store
        .attempt_started(
            run_id,
            task.task_id,
            Stage::Reconcile,
            task.attempt,
            &config.worker,
        )
        .await
        .ok();
    let found = replicator_databricks::fleet::reconcile(&task.source).await;
    let mut msg = ReconcileResult {
        header: Header::new(run_id),
        task_id: task.task_id,
        attempt: task.attempt,
        table: task.table.clone(),
        outcome: Validation::Failed,
        source_version: None,
        target_version: None,
        source_rows: None,
        target_rows: None,
        checks: Vec::new(),
        keys: None,
        partitions: Vec::new(),
        error: None,
        duration_ms: 0,
        statement_ids: Vec::new(),
    };
    match found {
        Ok(r) => {
            msg.outcome = if r.matched() {
                Validation::Matched
            } else {
                Validation::Mismatched
            };
            msg.source_rows = r.source_rows;
            msg.target_rows = r.target_rows;
            msg.checks = r.checks;
            msg.statement_ids = r.statement_ids;
        }
        Err((ids, e)) => {
            msg.error = Some(TaskError {
                kind: e.kind(),
                message: e.to_string(),
            });
            msg.statement_ids = ids;
        }
    }
    msg.duration_ms = started.elapsed().as_millis() as u64;
    replicator_common::metrics::task_done(
        "reconciler",
        msg.outcome != Validation::Failed,
        started.elapsed(),
    );
    tracing::info!(outcome = ?msg.outcome, statements = ?msg.statement_ids, "databricks validation done");
    if let Some(id) = attempt {
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
