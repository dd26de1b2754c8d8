//! Tasks: the result of each stage, recorded once (the first result stands), the task's
//! status, the result messages verbatim, and the last source version cloned into each
//! target.

use replicator_proto::{CloneResult, Outcome, ReconcileResult, Validation};
use sqlx::Row;
use uuid::Uuid;

use crate::{
    Stage, StageEnd, Store, StoreError, TaskStatus, clone_pending_sql, now, opt_i64, terminal_sql,
};

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

macro_rules! record_clone_sql {
    () => {
        concat!(
            "UPDATE tasks SET status = $1, source_version = COALESCE($2, source_version), target_version = $3,
       copied_files = $4, copied_bytes = $5, removed_files = $6, error = $7, updated_at = $8,
       detail = COALESCE($10, detail)
     WHERE task_id = $9 AND status IN ",
            clone_pending_sql!()
        )
    };
}
macro_rules! record_reconcile_sql {
    () => {
        concat!(
            "UPDATE tasks SET status = $1, source_rows = $2, target_rows = $3, error = COALESCE($4, error), updated_at = $5,
       source_version = COALESCE(source_version, $6), target_version = COALESCE(target_version, $7)
     WHERE task_id = $8 AND status NOT IN ",
            terminal_sql!()
        )
    };
}
/// The end of a stage inside a PostgreSQL result statement ([`StageEnd`]): the attempt's
/// end (`$a`… are the statement's last six parameters, see [`bind_end`]) and the lease's
/// release; either matches no row when absent (NULL).
macro_rules! stage_end_pg {
    ($at:literal, $outcome:literal, $error:literal, $id:literal, $key:literal, $holder:literal) => {
        concat!(
            ", attempt AS (UPDATE attempts SET finished_at = ",
            $at,
            ", outcome = ",
            $outcome,
            ", error = ",
            $error,
            " WHERE id = ",
            $id,
            "), lease AS (DELETE FROM leases WHERE target = ",
            $key,
            " AND holder = ",
            $holder,
            ")"
        )
    };
}

/// A clone result on its task (by primary key), if no clone result is recorded yet.
pub(crate) const RECORD_CLONE: &str = record_clone_sql!();
/// A validation result on its task (by primary key), if the task is not terminal yet.
pub(crate) const RECORD_RECONCILE: &str = record_reconcile_sql!();
/// A clone result on PostgreSQL in one statement (one round trip, one commit): the task's
/// result, its outcome row if it is the first, the target's last source version (when `$19`),
/// the attempt's end and the lease's release; returns whether the result was the first and
/// the task's status as it was (every part of a statement sees the snapshot before it).
pub(crate) const RECORD_CLONE_PG: &str = concat!(
    "WITH recorded AS (",
    record_clone_sql!(),
    " RETURNING task_id), outcome AS (INSERT INTO outcomes (task_id, run_id, stage, outcome, detail, created_at)
       SELECT task_id, $11, $12, $13, $14, $8 FROM recorded),
     versions AS (INSERT INTO table_versions (source, target, table_name, source_version, target_version, run_id, updated_at)
       SELECT $15, $16, $17, $18, $19, $11, $8 WHERE $20
       ON CONFLICT (source, target) DO UPDATE SET source_version = excluded.source_version,
         target_version = excluded.target_version, run_id = excluded.run_id, updated_at = excluded.updated_at)",
    stage_end_pg!("$21", "$22", "$23", "$24", "$25", "$26"),
    " SELECT (SELECT count(*) FROM recorded), (SELECT status FROM tasks WHERE task_id = $9)"
);
/// A validation result on PostgreSQL in one statement, as [`RECORD_CLONE_PG`].
pub(crate) const RECORD_RECONCILE_PG: &str = concat!(
    "WITH recorded AS (",
    record_reconcile_sql!(),
    " RETURNING task_id), outcome AS (INSERT INTO outcomes (task_id, run_id, stage, outcome, detail, created_at)
       SELECT task_id, $9, $10, $11, $12, $5 FROM recorded)",
    stage_end_pg!("$13", "$14", "$15", "$16", "$17", "$18"),
    " SELECT (SELECT count(*) FROM recorded), (SELECT status FROM tasks WHERE task_id = $8)"
);

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// [`RECORD_CLONE`]'s parameters `$1`…`$10` bound, for it or its PostgreSQL form.
fn clone_params<'q>(sql: &'q str, r: &CloneResult, state: TaskStatus, ts: &'q str) -> AnyQuery<'q> {
    let m = r.metrics.clone().unwrap_or_default();
    sqlx::query(sql)
        .bind(state.as_str())
        .bind(opt_i64(r.source_version))
        .bind(opt_i64(r.target_version))
        .bind(m.num_copied_files as i64)
        .bind(m.copied_files_size as i64)
        .bind(m.num_removed_files as i64)
        .bind(r.error.as_ref().map(|e| e.message.clone()))
        .bind(ts)
        .bind(r.task_id.to_string())
        // An ingestion's account (mode, rows inserted, updated, deleted).
        .bind(r.ingest.as_ref().map(|i| i.account(r.committed)))
}

/// [`RECORD_RECONCILE`]'s parameters `$1`…`$8` bound, for it or its PostgreSQL form.
fn reconcile_params<'q>(
    sql: &'q str,
    r: &ReconcileResult,
    state: TaskStatus,
    error: Option<String>,
    ts: &'q str,
) -> AnyQuery<'q> {
    sqlx::query(sql)
        .bind(state.as_str())
        .bind(opt_i64(r.source_rows))
        .bind(opt_i64(r.target_rows))
        .bind(error)
        .bind(ts)
        .bind(opt_i64(r.source_version))
        .bind(opt_i64(r.target_version))
        .bind(r.task_id.to_string())
}

/// Bind a [`StageEnd`] as the last six parameters of a PostgreSQL result statement.
fn bind_end<'q>(q: AnyQuery<'q>, end: &'q StageEnd) -> AnyQuery<'q> {
    let a = end.attempt.as_ref();
    let lease = end.lease.as_ref();
    q.bind(a.map(|a| a.at.as_str()))
        .bind(a.map(|a| a.outcome.as_str()))
        .bind(a.and_then(|a| a.error.as_deref()))
        .bind(a.map(|a| a.id))
        .bind(lease.map(|l| l.0.as_str()))
        .bind(lease.map(|l| l.1.holder()))
}

/// What a PostgreSQL result statement returned: whether its result was the first, and the
/// task's status before it.
fn recorded_pg(row: &sqlx::any::AnyRow, state: TaskStatus) -> Result<Recorded, StoreError> {
    let first = row.get::<i64, _>(0) == 1;
    let before: Option<String> = row.get(1);
    Ok(Recorded {
        first,
        status: if first {
            Some(state)
        } else {
            before.map(|s| s.parse()).transpose()?
        },
    })
}
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
        end: &StageEnd,
    ) -> Result<Recorded, StoreError> {
        let ts = now();
        let state = match (r.outcome, then_reconcile) {
            (Outcome::Succeeded, true) => TaskStatus::Cloned,
            (Outcome::Succeeded, false) => TaskStatus::Succeeded,
            (Outcome::Failed, _) => TaskStatus::Failed,
        };
        // What the target holds now, whichever delivery put it there.
        let holds = match (r.outcome, r.source_version, r.target_version) {
            (Outcome::Succeeded, Some(sv), Some(tv)) => Some((sv as i64, tv as i64)),
            _ => None,
        };
        if self.backend == crate::Backend::Postgres {
            let row = bind_end(
                clone_params(RECORD_CLONE_PG, r, state, &ts)
                    .bind(r.header.run_id.to_string())
                    .bind(Stage::Clone.as_str())
                    .bind(format!("{:?}", r.outcome).to_lowercase())
                    .bind(serde_json::to_string(r).unwrap_or_default())
                    .bind(&r.source)
                    .bind(&r.target)
                    .bind(&r.table)
                    .bind(holds.map(|h| h.0))
                    .bind(holds.map(|h| h.1))
                    .bind(holds.is_some()),
                end,
            )
            .fetch_one(&self.pool)
            .await?;
            return recorded_pg(&row, state);
        }
        let mut tx = self.pool.begin().await?;
        let done = clone_params(RECORD_CLONE, r, state, &ts)
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
        if let Some((sv, tv)) = holds {
            sqlx::query(
                "INSERT INTO table_versions (source, target, table_name, source_version, target_version, run_id, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (source, target) DO UPDATE SET source_version = excluded.source_version,
                   target_version = excluded.target_version, run_id = excluded.run_id, updated_at = excluded.updated_at",
            )
            .bind(&r.source)
            .bind(&r.target)
            .bind(&r.table)
            .bind(sv)
            .bind(tv)
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
        end.apply(&mut tx).await?;
        tx.commit().await?;
        Ok(Recorded { first, status })
    }

    /// Record a validation result; always terminal for the task. Only the first one is
    /// recorded: a task already terminal keeps its result ([`Recorded::first`] is false).
    pub async fn record_reconcile(
        &self,
        r: &ReconcileResult,
        end: &StageEnd,
    ) -> Result<Recorded, StoreError> {
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
        let ts = now();
        if self.backend == crate::Backend::Postgres {
            let row = bind_end(
                reconcile_params(RECORD_RECONCILE_PG, r, state, error, &ts)
                    .bind(r.header.run_id.to_string())
                    .bind(Stage::Reconcile.as_str())
                    .bind(format!("{:?}", r.outcome).to_lowercase())
                    .bind(serde_json::to_string(r).unwrap_or_default()),
                end,
            )
            .fetch_one(&self.pool)
            .await?;
            return recorded_pg(&row, state);
        }
        let mut tx = self.pool.begin().await?;
        let done = reconcile_params(RECORD_RECONCILE, r, state, error, &ts)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            let status = task_status(&mut *tx, r.task_id).await?;
            end.apply(&mut tx).await?;
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
        end.apply(&mut tx).await?;
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
