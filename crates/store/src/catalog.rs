//! Catalog objects' results (docs/catalog.md): a catalog task is a task of its run like a
//! table's, with its `kind`; its result is terminal (succeeded, or failed) and recorded once.

use replicator_proto::{CatalogOutcome, CatalogResult};

use crate::tasks::{insert_outcome, task_status};
use crate::{Recorded, Stage, Store, StoreError, TaskStatus, clone_pending_sql, now};

/// The one-line account of a catalog task: what ran and what was only reported.
pub fn catalog_detail(r: &CatalogResult) -> String {
    let mut parts = Vec::new();
    match r.outcome {
        CatalogOutcome::Applied => parts.push("applied".to_owned()),
        CatalogOutcome::Unchanged => parts.push("unchanged".to_owned()),
        CatalogOutcome::Reported => parts.push("reported".to_owned()),
        CatalogOutcome::Failed => parts.push("failed".to_owned()),
    }
    if !r.statements.is_empty() {
        parts.push(format!("{} statement(s)", r.statements.len()));
    }
    if r.files_copied + r.files_deleted + r.files_unchanged > 0 {
        parts.push(format!(
            "{} file(s) copied ({} bytes), {} deleted, {} unchanged",
            r.files_copied, r.bytes_copied, r.files_deleted, r.files_unchanged
        ));
    }
    let mut line = parts.join(", ");
    if !r.findings.is_empty() {
        line.push_str("; reported: ");
        line.push_str(&r.findings.join("; "));
    }
    line
}

impl Store {
    /// Record a catalog task's result; always terminal. Only the first one is recorded (the
    /// task is still `queued`); a later one changes nothing ([`Recorded::first`] is false).
    pub async fn record_catalog(&self, r: &CatalogResult) -> Result<Recorded, StoreError> {
        let mut tx = self.pool.begin().await?;
        let state = match r.outcome {
            CatalogOutcome::Failed => TaskStatus::Failed,
            _ => TaskStatus::Succeeded,
        };
        let done = sqlx::query(concat!(
            "UPDATE tasks SET status = $1, copied_files = $2, copied_bytes = $3, removed_files = $4,
               error = $5, detail = $6, updated_at = $7
             WHERE task_id = $8 AND status IN ",
            clone_pending_sql!()
        ))
        .bind(state.as_str())
        .bind(r.files_copied as i64)
        .bind(r.bytes_copied as i64)
        .bind(r.files_deleted as i64)
        .bind(r.error.as_ref().map(|e| e.message.clone()))
        .bind(catalog_detail(r))
        .bind(now())
        .bind(r.task_id.to_string())
        .execute(&mut *tx)
        .await?;
        let first = done.rows_affected() == 1;
        if first {
            insert_outcome(
                &mut tx,
                r.task_id,
                r.header.run_id,
                Stage::Catalog,
                &format!("{:?}", r.outcome).to_lowercase(),
                &serde_json::to_string(r).unwrap_or_default(),
            )
            .await?;
        }
        let status = if first {
            Some(state)
        } else {
            task_status(&mut *tx, r.task_id).await?
        };
        tx.commit().await?;
        Ok(Recorded { first, status })
    }
}
