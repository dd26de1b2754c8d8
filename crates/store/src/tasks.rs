//! Tasks: the result of each stage, recorded once (the first result stands), the task's
//! status, the result messages verbatim, and the last source version cloned into each
//! target.

use replicator_proto::{CloneResult, Outcome, ReconcileResult, Validation};
use sqlx::Row;
use uuid::Uuid;

use crate::{Stage, Store, StoreError, TaskStatus, clone_pending_sql, now, opt_i64, terminal_sql};

/// What recording a stage's result did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// The result became the task's result: the first one recorded for its stage. A later
    /// one (a redelivered task) changes nothing; its attempts are its only record.
    pub first: bool,
    /// The task's status afterwards (None if the task does not exist).
    pub status: Option<TaskStatus>,
}

/// A task as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskRecord {
    pub task_id: Uuid,
    pub table: String,
    pub source: String,
    pub target: String,
    pub status: TaskStatus,
    pub error: Option<String>,
}

/// A clone result on its task (by primary key), if no clone result is recorded yet.
pub(crate) const RECORD_CLONE: &str = concat!(
    "UPDATE tasks SET status = $1, source_version = COALESCE($2, source_version), target_version = $3,
       copied_files = $4, copied_bytes = $5, removed_files = $6, error = $7, updated_at = $8,
       detail = COALESCE($10, detail)
     WHERE task_id = $9 AND status IN ",
    clone_pending_sql!()
);
/// A validation result on its task (by primary key), if the task is not terminal yet.
pub(crate) const RECORD_RECONCILE: &str = concat!(
    "UPDATE tasks SET status = $1, source_rows = $2, target_rows = $3, error = COALESCE($4, error), updated_at = $5,
       source_version = COALESCE(source_version, $6), target_version = COALESCE(target_version, $7)
     WHERE task_id = $8 AND status NOT IN ",
    terminal_sql!()
);
pub(crate) const FAIL_TASK: &str = concat!(
    "UPDATE tasks SET status = $1, error = $2, updated_at = $3 WHERE task_id = $4 AND status NOT IN ",
    terminal_sql!()
);
/// A run's tasks in name order (`tasks_by_run_table`).
pub(crate) const TASKS_OF_RUN: &str = "SELECT task_id, table_name, source, target, status, error FROM tasks WHERE run_id = $1 ORDER BY table_name";
pub(crate) const LAST_SOURCE_VERSION: &str =
    "SELECT source_version FROM table_versions WHERE source = $1 AND target = $2";
pub(crate) const TASK_STATUS: &str = "SELECT status FROM tasks WHERE task_id = $1";

impl Store {
    /// Record a clone result. `then_reconcile` leaves a successful task at `cloned`, waiting
    /// for its validation; otherwise success is terminal.
    ///
    /// Only the first clone result of a task is recorded (the task is `queued` or
    /// `cloning`); a later one — a redelivered task — leaves the task, its metrics and its
    /// results as they are, and says so ([`Recorded::first`] is false). Either way a
    /// successful clone updates the last source version cloned into the target, which
    /// is what the target now holds.
    pub async fn record_clone(
        &self,
        r: &CloneResult,
        then_reconcile: bool,
    ) -> Result<Recorded, StoreError> {
        let mut tx = self.pool.begin().await?;
        let ts = now();
        let state = match (r.outcome, then_reconcile) {
            (Outcome::Succeeded, true) => TaskStatus::Cloned,
            (Outcome::Succeeded, false) => TaskStatus::Succeeded,
            (Outcome::Failed, _) => TaskStatus::Failed,
        };
        let m = r.metrics.clone().unwrap_or_default();
        let done = sqlx::query(RECORD_CLONE)
            .bind(state.as_str())
            .bind(opt_i64(r.source_version))
            .bind(opt_i64(r.target_version))
            .bind(m.num_copied_files as i64)
            .bind(m.copied_files_size as i64)
            .bind(m.num_removed_files as i64)
            .bind(r.error.as_ref().map(|e| e.message.clone()))
            .bind(&ts)
            .bind(r.task_id.to_string())
            // An ingestion's account (mode, rows inserted, updated, deleted).
            .bind(r.ingest.as_ref().map(|i| i.account(r.committed)))
            .execute(&mut *tx)
            .await?;
        let first = done.rows_affected() == 1;
        if first {
            insert_outcome(
                &mut tx,
                r.task_id,
                r.header.run_id,
                Stage::Clone,
                &format!("{:?}", r.outcome).to_lowercase(),
                &serde_json::to_string(r).unwrap_or_default(),
            )
            .await?;
        }
        // What the target holds now, whichever delivery put it there.
        if let (Outcome::Succeeded, Some(sv), Some(tv)) =
            (r.outcome, r.source_version, r.target_version)
        {
            sqlx::query(
                "INSERT INTO table_versions (source, target, table_name, source_version, target_version, run_id, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (source, target) DO UPDATE SET source_version = excluded.source_version,
                   target_version = excluded.target_version, run_id = excluded.run_id, updated_at = excluded.updated_at",
            )
            .bind(&r.source)
            .bind(&r.target)
            .bind(&r.table)
            .bind(sv as i64)
            .bind(tv as i64)
            .bind(r.header.run_id.to_string())
            .bind(&ts)
            .execute(&mut *tx)
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

    /// Record a validation result; always terminal for the task. Only the first one is
    /// recorded: a task already terminal keeps its result ([`Recorded::first`] is false).
    pub async fn record_reconcile(&self, r: &ReconcileResult) -> Result<Recorded, StoreError> {
        let mut tx = self.pool.begin().await?;
        let state = match r.outcome {
            Validation::Matched => TaskStatus::Succeeded,
            Validation::Mismatched => TaskStatus::Mismatched,
            Validation::Failed => TaskStatus::Failed,
        };
        let error = match (&r.error, r.outcome) {
            (Some(e), _) => Some(e.message.clone()),
            // The failed checks, and the rollback that followed them if any
            // (`reconciliation.on_mismatch: rollback`), for the summary and the digest.
            (None, Validation::Mismatched) => Some(
                r.checks
                    .iter()
                    .filter(|c| !c.passed || c.name == "rollback")
                    .map(|c| format!("{}: {}", c.name, c.detail))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            _ => None,
        };
        let done = sqlx::query(RECORD_RECONCILE)
            .bind(state.as_str())
            .bind(opt_i64(r.source_rows))
            .bind(opt_i64(r.target_rows))
            .bind(error)
            .bind(now())
            .bind(opt_i64(r.source_version))
            .bind(opt_i64(r.target_version))
            .bind(r.task_id.to_string())
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            let status = task_status(&mut *tx, r.task_id).await?;
            tx.commit().await?;
            return Ok(Recorded {
                first: false,
                status,
            });
        }
        insert_outcome(
            &mut tx,
            r.task_id,
            r.header.run_id,
            Stage::Reconcile,
            &format!("{:?}", r.outcome).to_lowercase(),
            &serde_json::to_string(r).unwrap_or_default(),
        )
        .await?;
        tx.commit().await?;
        Ok(Recorded {
            first: true,
            status: Some(state),
        })
    }

    /// A task's status, if the task exists.
    pub async fn task_status(&self, task_id: Uuid) -> Result<Option<TaskStatus>, StoreError> {
        task_status(&self.pool, task_id).await
    }

    /// Fail a task that is not terminal yet (its message was dead-lettered without a
    /// result). Returns whether the task changed.
    pub async fn fail_task(&self, task_id: Uuid, reason: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(FAIL_TASK)
            .bind(TaskStatus::Failed.as_str())
            .bind(reason)
            .bind(now())
            .bind(task_id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Every task of a run as stored (for `status`).
    pub async fn tasks(&self, run_id: Uuid) -> Result<Vec<TaskRecord>, StoreError> {
        let rows = sqlx::query(TASKS_OF_RUN)
            .bind(run_id.to_string())
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|r| {
                Ok(TaskRecord {
                    task_id: r.get::<String, _>(0).parse().unwrap_or_default(),
                    table: r.get(1),
                    source: r.get(2),
                    target: r.get(3),
                    status: r.get::<String, _>(4).parse()?,
                    error: r.get(5),
                })
            })
            .collect()
    }

    /// Put a failed task back to `queued` (it is being replayed). Returns whether it was
    /// failed; a replayed run is reopened so it completes again.
    pub async fn requeue_task(&self, task_id: Uuid) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE tasks SET status = $1, error = NULL, updated_at = $2 WHERE task_id = $3 AND status = $4",
        )
        .bind(TaskStatus::Queued.as_str())
        .bind(now())
        .bind(task_id.to_string())
        .bind(TaskStatus::Failed.as_str())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 1 {
            sqlx::query(
                "UPDATE runs SET status = 'running', completed_at = NULL, summary = NULL
                 WHERE run_id = (SELECT run_id FROM tasks WHERE task_id = $1)",
            )
            .bind(task_id.to_string())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    /// The result messages of a run's stages as recorded (audit): (stage, outcome, the
    /// `CloneResult` / `ReconcileResult` JSON), oldest first.
    pub async fn outcomes(
        &self,
        run_id: Uuid,
    ) -> Result<Vec<(String, String, serde_json::Value)>, StoreError> {
        let rows = sqlx::query(
            "SELECT stage, outcome, detail FROM outcomes WHERE run_id = $1 ORDER BY id",
        )
        .bind(run_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let detail: String = r.get(2);
                (
                    r.get(0),
                    r.get(1),
                    serde_json::from_str(&detail).unwrap_or(serde_json::Value::String(detail)),
                )
            })
            .collect())
    }

    /// The last source version cloned from `source` into `target`, if any.
    pub async fn last_source_version(
        &self,
        source: &str,
        target: &str,
    ) -> Result<Option<u64>, StoreError> {
        let row = sqlx::query(LAST_SOURCE_VERSION)
            .bind(source)
            .bind(target)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.get::<i64, _>(0) as u64))
    }
}

/// A task's status, if the task exists, read on the pool or in a transaction.
pub(crate) async fn task_status<'e>(
    db: impl sqlx::Executor<'e, Database = sqlx::Any>,
    task_id: Uuid,
) -> Result<Option<TaskStatus>, StoreError> {
    let row = sqlx::query(TASK_STATUS)
        .bind(task_id.to_string())
        .fetch_optional(db)
        .await?;
    Ok(row.map(|r| r.get::<String, _>(0).parse()).transpose()?)
}

pub(crate) async fn insert_outcome(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    task_id: Uuid,
    run_id: Uuid,
    stage: Stage,
    outcome: &str,
    detail: &str,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO outcomes (task_id, run_id, stage, outcome, detail, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(task_id.to_string())
        .bind(run_id.to_string())
        .bind(stage.as_str())
        .bind(outcome)
        .bind(detail)
        .bind(now())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests;
