//! Attempts: every try of every stage of a task, retries and redeliveries included, with
//! the worker that ran it and how it ended.

use chrono::Utc;
use sqlx::Row;
use uuid::Uuid;

use crate::{
    AttemptOutcome, Stage, Store, StoreError, TaskStatus, clone_pending_sql, now, parse_time,
    terminal_sql,
};

/// One attempt of one stage, for audit.
#[derive(Clone, Debug, PartialEq)]
pub struct AttemptRecord {
    pub task_id: Uuid,
    pub stage: String,
    pub attempt: u32,
    /// None while the attempt runs.
    pub outcome: Option<AttemptOutcome>,
    pub error: Option<String>,
}

/// One attempt with the worker that ran it.
#[derive(Clone, Debug, PartialEq)]
pub struct AttemptLog {
    pub task_id: Uuid,
    pub target: String,
    pub stage: String,
    pub worker: Option<String>,
    pub started_at: chrono::DateTime<Utc>,
    pub finished_at: Option<chrono::DateTime<Utc>>,
    pub outcome: Option<AttemptOutcome>,
}

/// A clone attempt starts: the task moves to `cloning` unless its clone result is recorded.
macro_rules! start_clone_sql {
    () => {
        concat!(
            "UPDATE tasks SET status = $1, updated_at = $2 WHERE task_id = $3 AND status IN ",
            clone_pending_sql!()
        )
    };
}
/// A catalog attempt starts: the task stays `queued`.
macro_rules! start_catalog_sql {
    () => {
        "UPDATE tasks SET status = $1, updated_at = $2 WHERE task_id = $3 AND status = 'queued'"
    };
}
/// A validation attempt starts: the task moves to `reconciling` unless it is terminal.
macro_rules! start_reconcile_sql {
    () => {
        concat!(
            "UPDATE tasks SET status = $1, updated_at = $2 WHERE task_id = $3 AND status NOT IN ",
            terminal_sql!()
        )
    };
}
pub(crate) const START_CLONE: &str = start_clone_sql!();
pub(crate) const START_CATALOG: &str = start_catalog_sql!();
pub(crate) const START_RECONCILE: &str = start_reconcile_sql!();
pub(crate) const ATTEMPT_FINISHED: &str =
    "UPDATE attempts SET finished_at = $1, outcome = $2, error = $3 WHERE id = $4";
/// A run's attempts in order (`attempts_by_run`).
pub(crate) const ATTEMPTS_OF_RUN: &str =
    "SELECT task_id, stage, attempt, outcome, error FROM attempts WHERE run_id = $1 ORDER BY id";
/// A run's attempts with their targets. The tasks are joined within the run too, so
/// PostgreSQL reads the run's tasks by index instead of hashing the whole table.
pub(crate) const ATTEMPT_LOG: &str =
    "SELECT a.task_id, t.target, a.stage, a.worker, a.started_at, a.finished_at, a.outcome
 FROM attempts a JOIN tasks t ON t.task_id = a.task_id AND t.run_id = a.run_id
 WHERE a.run_id = $1 ORDER BY a.id";

/// An attempt starts on PostgreSQL in one statement (one round trip, one commit): the
/// task's status as it was, the task moved (one of the `START_*` updates, `$1`…`$3`), the
/// attempt row inserted (`$3`…`$7`). Every part of a statement sees the snapshot from before
/// it, so `prior` is the status the delivery found.
macro_rules! start_attempt_pg {
    ($update:expr) => {
        concat!(
            "WITH prior AS (SELECT status FROM tasks WHERE task_id = $3), moved AS (",
            $update,
            "), started AS (INSERT INTO attempts (task_id, run_id, stage, attempt, started_at, worker) VALUES ($3, $4, $5, $6, $2, $7) RETURNING id)
 SELECT started.id, (SELECT status FROM prior) FROM started"
        )
    };
}
pub(crate) const START_CLONE_PG: &str = start_attempt_pg!(start_clone_sql!());
pub(crate) const START_CATALOG_PG: &str = start_attempt_pg!(start_catalog_sql!());
pub(crate) const START_RECONCILE_PG: &str = start_attempt_pg!(start_reconcile_sql!());

/// A delivery that works on a key (a clone's target) takes the key's lease and starts its
/// first attempt in one statement on PostgreSQL: the lease (`$8`…`$11`, as
/// [`Store::acquire_lease`]), then — only if it was taken — the task moved (`$1`…`$3`) and the
/// attempt row; returns whether the lease was taken, the attempt's row (none for an unknown
/// task) and the status the task had.
macro_rules! start_leased_pg {
    ($update:expr) => {
        concat!(
            "WITH lease AS (INSERT INTO leases (target, holder, task_id, expires_at) VALUES ($8, $9, $3, $10)
     ON CONFLICT (target) DO UPDATE SET holder = excluded.holder, task_id = excluded.task_id,
       expires_at = excluded.expires_at
     WHERE leases.expires_at < $11 OR leases.holder = excluded.holder RETURNING 1),
 prior AS (SELECT status FROM tasks WHERE task_id = $3), moved AS (",
            $update,
            " AND EXISTS (SELECT 1 FROM lease)), started AS (INSERT INTO attempts (task_id, run_id, stage, attempt, started_at, worker)
   SELECT $3, $4, $5, $6, $2, $7 WHERE EXISTS (SELECT 1 FROM lease) AND EXISTS (SELECT 1 FROM prior) RETURNING id)
 SELECT (SELECT count(*) FROM lease), (SELECT id FROM started), (SELECT status FROM prior)"
        )
    };
}
pub(crate) const START_LEASED_CLONE_PG: &str = start_leased_pg!(start_clone_sql!());
pub(crate) const START_LEASED_CATALOG_PG: &str = start_leased_pg!(start_catalog_sql!());

/// An attempt that started: its row, and the task's status when it started (None: no such
/// task). A status that already has the stage's result
/// ([`TaskStatus::has_result`]) means a redelivery: the attempt is then ended as skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Started {
    pub id: i64,
    pub prior: Option<TaskStatus>,
}

impl Started {
    /// This attempt ended with `outcome` (and `error`).
    pub fn end(&self, outcome: AttemptOutcome, error: Option<&str>) -> AttemptEnd {
        AttemptEnd {
            id: self.id,
            outcome,
            error: error.map(str::to_owned),
            at: now(),
        }
    }
}

/// How an attempt ended, to record with the stage's result ([`StageEnd`]) or alone
/// ([`Store::attempt_finished`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptEnd {
    pub id: i64,
    pub outcome: AttemptOutcome,
    pub error: Option<String>,
    /// When it ended (as stored), which may be before it is written.
    pub at: String,
}

/// What ends with a stage's result, in the result's own transaction: the last attempt's
/// outcome and the release of the delivery's lease. One commit instead of three per task.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StageEnd {
    pub attempt: Option<AttemptEnd>,
    /// The lease on a key (a clone's target) held by this delivery.
    pub lease: Option<(String, crate::LeaseToken)>,
}

impl StageEnd {
    /// Record the attempt's end and release the lease inside `tx`.
    pub(crate) async fn apply(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    ) -> Result<(), StoreError> {
        if let Some(a) = &self.attempt {
            sqlx::query(ATTEMPT_FINISHED)
                .bind(&a.at)
                .bind(a.outcome.as_str())
                .bind(a.error.as_deref())
                .bind(a.id)
                .execute(&mut **tx)
                .await?;
        }
        if let Some((key, token)) = &self.lease {
            sqlx::query(crate::leases::RELEASE_LEASE)
                .bind(key)
                .bind(token.holder())
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }
}

impl Store {
    /// A stage attempt starts: log it and move the task to `cloning`/`reconciling`.
    /// A clone attempt moves only a task whose clone result is not recorded yet, a
    /// reconcile attempt only a task that is not terminal: a redelivered task never
    /// reopens a stage that has its result. Returns the attempt's row and the status the
    /// task had before (one round trip on PostgreSQL).
    pub async fn attempt_started(
        &self,
        run_id: Uuid,
        task_id: Uuid,
        stage: Stage,
        attempt: u32,
        worker: &str,
    ) -> Result<Started, StoreError> {
        let ts = now();
        let (state, sql, pg) = match stage {
            Stage::Clone => (TaskStatus::Cloning, START_CLONE, START_CLONE_PG),
            // A catalog object stays `queued` until its result: it has one stage.
            Stage::Catalog => (TaskStatus::Queued, START_CATALOG, START_CATALOG_PG),
            Stage::Reconcile => (TaskStatus::Reconciling, START_RECONCILE, START_RECONCILE_PG),
        };
        if self.backend == crate::Backend::Postgres {
            let row = sqlx::query(pg)
                .bind(state.as_str())
                .bind(&ts)
                .bind(task_id.to_string())
                .bind(run_id.to_string())
                .bind(stage.as_str())
                .bind(attempt as i64)
                .bind(worker)
                .fetch_one(&self.pool)
                .await?;
            let prior: Option<String> = row.get(1);
            return Ok(Started {
                id: row.get(0),
                prior: prior.map(|s| s.parse()).transpose()?,
            });
        }
        // SQLite: in-process, no round trips to save; the same three steps in order.
        let prior = crate::tasks::task_status(&self.pool, task_id).await?;
        sqlx::query(sql)
            .bind(state.as_str())
            .bind(&ts)
            .bind(task_id.to_string())
            .execute(&self.pool)
            .await?;
        let row = sqlx::query(
            "INSERT INTO attempts (task_id, run_id, stage, attempt, started_at, worker) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(task_id.to_string())
        .bind(run_id.to_string())
        .bind(stage.as_str())
        .bind(attempt as i64)
        .bind(&ts)
        .bind(worker)
        .fetch_one(&self.pool)
        .await?;
        Ok(Started {
            id: row.get(0),
            prior,
        })
    }

    /// Take the lease on `key` for `token` (as [`Store::acquire_lease`]) and, if it was
    /// taken, start the task's first attempt of `stage` (as [`Store::attempt_started`]): one
    /// round trip on PostgreSQL. None: another delivery holds the lease, nothing started.
    /// Some(None): the lease is taken but no attempt row was written (no such task).
    #[allow(clippy::too_many_arguments)]
    pub async fn start_leased(
        &self,
        key: &str,
        token: &crate::LeaseToken,
        ttl: std::time::Duration,
        run_id: Uuid,
        task_id: Uuid,
        stage: Stage,
        worker: &str,
    ) -> Result<Option<Option<Started>>, StoreError> {
        let pg = match stage {
            Stage::Clone => Some(START_LEASED_CLONE_PG),
            Stage::Catalog => Some(START_LEASED_CATALOG_PG),
            Stage::Reconcile => None,
        };
        let (Some(sql), crate::Backend::Postgres) = (pg, self.backend) else {
            if !self.acquire_lease(key, token, task_id, ttl).await? {
                return Ok(None);
            }
            return Ok(Some(
                match self
                    .attempt_started(run_id, task_id, stage, 1, worker)
                    .await
                {
                    Ok(s) => Some(s),
                    Err(e) => {
                        tracing::warn!(error = %e, "could not record the attempt");
                        None
                    }
                },
            ));
        };
        let ts = now();
        let state = match stage {
            Stage::Clone => TaskStatus::Cloning,
            _ => TaskStatus::Queued,
        };
        let millis = Utc::now().timestamp_millis();
        let row = sqlx::query(sql)
            .bind(state.as_str())
            .bind(&ts)
            .bind(task_id.to_string())
            .bind(run_id.to_string())
            .bind(stage.as_str())
            .bind(1_i64)
            .bind(worker)
            .bind(key)
            .bind(token.holder())
            .bind(millis + ttl.as_millis() as i64)
            .bind(millis)
            .fetch_one(&self.pool)
            .await?;
        if row.get::<i64, _>(0) == 0 {
            return Ok(None);
        }
        let id: Option<i64> = row.get(1);
        let prior: Option<String> = row.get(2);
        let prior = prior.map(|s| s.parse()).transpose()?;
        Ok(Some(id.map(|id| Started { id, prior })))
    }

    /// An attempt ended (one that ends without the stage's result: a retry, a deferral, a
    /// skip; the last one ends with the result, see [`StageEnd`]).
    pub async fn attempt_finished(&self, end: &AttemptEnd) -> Result<(), StoreError> {
        sqlx::query(ATTEMPT_FINISHED)
            .bind(&end.at)
            .bind(end.outcome.as_str())
            .bind(end.error.as_deref())
            .bind(end.id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Every attempt of a run, oldest first.
    pub async fn attempts(&self, run_id: Uuid) -> Result<Vec<AttemptRecord>, StoreError> {
        let rows = sqlx::query(ATTEMPTS_OF_RUN)
            .bind(run_id.to_string())
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|r| {
                Ok(AttemptRecord {
                    task_id: r.get::<String, _>(0).parse().unwrap_or_default(),
                    stage: r.get(1),
                    attempt: r.get::<i64, _>(2) as u32,
                    outcome: outcome(r.get(3))?,
                    error: r.get(4),
                })
            })
            .collect()
    }

    /// Attempts with their workers and times, for audit (oldest first).
    pub async fn attempt_log(&self, run_id: Uuid) -> Result<Vec<AttemptLog>, StoreError> {
        let rows = sqlx::query(ATTEMPT_LOG)
            .bind(run_id.to_string())
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|r| {
                Ok(AttemptLog {
                    task_id: r.get::<String, _>(0).parse().unwrap_or_default(),
                    target: r.get(1),
                    stage: r.get(2),
                    worker: r.get(3),
                    started_at: parse_time(Some(r.get(4))).unwrap_or_else(Utc::now),
                    finished_at: parse_time(r.get(5)),
                    outcome: outcome(r.get(6))?,
                })
            })
            .collect()
    }
}

/// An attempt's outcome as stored: none while it runs.
fn outcome(word: Option<String>) -> Result<Option<AttemptOutcome>, StoreError> {
    Ok(word.map(|w| w.parse()).transpose()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::new_run;

    /// Every outcome reads back as it was written, a running attempt has none, and a word
    /// this version does not know is an error naming it.
    #[tokio::test]
    async fn attempt_outcomes_read_back_typed() {
        let store = Store::open("sqlite::memory:").await.unwrap();
        let (run_id, tasks) = new_run(&store, &["a.x"]).await;
        let task_id = tasks[0].task_id;
        for (n, o) in (1..).zip(AttemptOutcome::ALL) {
            let id = store
                .attempt_started(run_id, task_id, Stage::Clone, n, "w1")
                .await
                .unwrap();
            store
                .attempt_finished(&id.end(o, Some(o.as_str())))
                .await
                .unwrap();
        }
        let running = store
            .attempt_started(run_id, task_id, Stage::Reconcile, 1, "r1")
            .await
            .unwrap();
        let mut expected: Vec<_> = AttemptOutcome::ALL.map(Some).to_vec();
        expected.push(None);
        let attempts = store.attempts(run_id).await.unwrap();
        assert_eq!(
            attempts.iter().map(|a| a.outcome).collect::<Vec<_>>(),
            expected
        );
        assert_eq!(attempts[1].error.as_deref(), Some("retrying"));
        assert_eq!(
            (attempts[5].stage.as_str(), attempts[5].attempt),
            ("reconcile", 1)
        );
        let log = store.attempt_log(run_id).await.unwrap();
        assert_eq!(log.iter().map(|a| a.outcome).collect::<Vec<_>>(), expected);
        assert!(log[5].finished_at.is_none() && log[4].finished_at.is_some());
        sqlx::query("UPDATE attempts SET outcome = 'exploded' WHERE id = $1")
            .bind(running.id)
            .execute(&store.pool)
            .await
            .unwrap();
        let expected = "the state database holds an unknown attempt outcome `exploded`";
        assert_eq!(
            store.attempts(run_id).await.unwrap_err().to_string(),
            expected
        );
        assert_eq!(
            store.attempt_log(run_id).await.unwrap_err().to_string(),
            expected
        );
    }
}
