//! Clone tasks of the Databricks engine: the DEEP CLONE runs on the warehouses
//! (`replicator_databricks::fleet::clone`: backup of a streaming table on the source, then
//! replication on the target). Statement-level retries happen inside the engine; the result
//! carries every statement ID, and is recorded and published like a native clone's.

use std::time::Instant;

use replicator_bus::{BusRef, Delivery};
use replicator_proto::{CloneTask, Outcome, TaskError};
use replicator_store::{AttemptOutcome, Stage, Store};

use crate::{ClonerConfig, Lease};

pub(crate) async fn handle(
    task: CloneTask,
    delivery: Delivery,
    bus: &BusRef,
    store: &Store,
    config: &ClonerConfig,
    lease: Lease,
    started: Instant,
) {
    let run_id = task.header.run_id;
    let attempt = store
        .attempt_started(
            run_id,
            task.task_id,
            Stage::Clone,
            task.attempt,
            &config.worker,
        )
        .await
        .ok();
    let result = replicator_databricks::fleet::clone(&task.source).await;
    let mut msg = crate::pending_result(&task);
    match result {
        Ok(step) => {
            tracing::info!(statements = ?step.statement_ids, "databricks clone succeeded");
            msg.outcome = Outcome::Succeeded;
            msg.committed = step
                .metrics
                .as_ref()
                .is_some_and(|m| m.num_copied_files > 0 || m.num_removed_files > 0);
            msg.metrics = step.metrics;
            msg.statement_ids = step.statement_ids;
        }
        Err((ids, e)) => {
            tracing::error!(error = %e, statements = ?ids, "databricks clone failed");
            msg.error = Some(TaskError {
                kind: e.kind(),
                message: e.to_string(),
            });
            msg.statement_ids = ids;
        }
    }
    msg.duration_ms = started.elapsed().as_millis() as u64;
    if let Some(id) = attempt {
        let (outcome, error) = match &msg.error {
            None => (AttemptOutcome::Succeeded, None),
            Some(e) => (AttemptOutcome::Failed, Some(e.message.as_str())),
        };
        if let Err(e) = store.attempt_finished(id, outcome, error).await {
            tracing::warn!(error = %e, "could not record the attempt");
        }
    }
    crate::settle(&task, msg, delivery, bus, store, lease, started, |err| {
        format!("databricks clone failed: {err}")
    })
    .await;
}
