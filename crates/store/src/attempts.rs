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
pub(crate) const START_CLONE: &str = concat!(
    "UPDATE tasks SET status = $1, updated_at = $2 WHERE task_id = $3 AND status IN ",
    clone_pending_sql!()
);
/// A catalog attempt starts: the task stays `queued`.
pub(crate) const START_CATALOG: &str =
    "UPDATE tasks SET status = $1, updated_at = $2 WHERE task_id = $3 AND status = 'queued'";
/// A validation attempt starts: the task moves to `reconciling` unless it is terminal.
pub(crate) const START_RECONCILE: &str = concat!(
    "UPDATE tasks SET status = $1, updated_at = $2 WHERE task_id = $3 AND status NOT IN ",
    terminal_sql!()
);
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

impl Store {
    /// A stage attempt starts: log it and move the task to `cloning`/`reconciling`.
    /// A clone attempt moves only a task whose clone result is not recorded yet, a
    /// reconcile attempt only a task that is not terminal: a redelivered task never
    /// reopens a stage that has its result.
    pub async fn attempt_started(
        &self,
        run_id: Uuid,
        task_id: Uuid,
        stage: Stage,
        attempt: u32,
        worker: &str,
    ) -> Result<i64, StoreError> {
        let ts = now();
        let (state, sql) = match stage {
            Stage::Clone => (TaskStatus::Cloning, START_CLONE),
            // A catalog object stays `queued` until its result: it has one stage.
            Stage::Catalog => (TaskStatus::Queued, START_CATALOG),
            Stage::Reconcile => (TaskStatus::Reconciling, START_RECONCILE),
        };
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
        Ok(row.get(0))
    }

    /// An attempt ended.
    pub async fn attempt_finished(
        &self,
        attempt_id: i64,
        outcome: AttemptOutcome,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(ATTEMPT_FINISHED)
            .bind(now())
            .bind(outcome.as_str())
            .bind(error)
            .bind(attempt_id)
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
                .attempt_finished(id, o, Some(o.as_str()))
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
            .bind(running)
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
