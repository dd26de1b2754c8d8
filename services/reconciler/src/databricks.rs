//! Reconcile tasks of the Databricks engine: row counts, schema and missing rows checked by
//! SQL on the target warehouse (`replicator_databricks::fleet::reconcile`). The result
//! carries every statement ID and is recorded and published like a native validation's.

use replicator_proto::{ReconcileResult, ReconcileTask, TaskError, Validation};

use crate::pending_result;

/// Run the Databricks engine's checks on `task`; the caller records and settles.
pub(crate) async fn reconcile(task: &ReconcileTask) -> ReconcileResult {
    let found = replicator_databricks::fleet::reconcile(&task.source).await;
    let mut msg = pending_result(task);
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
    msg
}
