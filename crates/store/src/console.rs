//! What the operator console reads (docs/console.md): the latest runs with their task
//! counts, and one target's history across runs.

use chrono::Utc;
use serde::Serialize;
use sqlx::Row;
use uuid::Uuid;

use crate::{Store, StoreError, parse_time};

/// A run as the console's run list shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RunOverview {
    pub run_id: Uuid,
    pub operation: String,
    pub status: String,
    pub created_at: Option<chrono::DateTime<Utc>>,
    pub completed_at: Option<chrono::DateTime<Utc>>,
    pub total: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub mismatched: u64,
}

/// One task of a target, in some run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TargetTask {
    pub run_id: Uuid,
    pub task_id: Uuid,
    pub table: String,
    pub status: String,
    pub source_version: Option<i64>,
    pub target_version: Option<i64>,
    pub error: Option<String>,
    pub updated_at: Option<chrono::DateTime<Utc>>,
}

/// The latest runs with their task counts. The runs are picked first (`runs_by_created`),
/// then only their tasks are counted (`tasks_by_run_status` covers the count): joining first
/// would count every task of every run before keeping the latest.
pub(crate) const RECENT_RUNS: &str =
    "SELECT r.run_id, r.operation, r.status, r.created_at, r.completed_at,
        COUNT(t.run_id),
        SUM(CASE WHEN t.status = 'succeeded' THEN 1 ELSE 0 END),
        SUM(CASE WHEN t.status = 'failed' THEN 1 ELSE 0 END),
        SUM(CASE WHEN t.status = 'mismatched' THEN 1 ELSE 0 END)
 FROM (SELECT run_id, operation, status, created_at, completed_at FROM runs
       ORDER BY created_at DESC LIMIT $1) r
 LEFT JOIN tasks t ON t.run_id = r.run_id
 GROUP BY r.run_id, r.operation, r.status, r.created_at, r.completed_at
 ORDER BY r.created_at DESC";

/// A target's tasks, newest first (`tasks_by_target`).
pub(crate) const TARGET_HISTORY: &str =
    "SELECT run_id, task_id, table_name, status, source_version, target_version, error, updated_at
 FROM tasks WHERE target = $1 ORDER BY updated_at DESC LIMIT $2";

impl Store {
    /// The `limit` latest runs, newest first, with their task counts by outcome.
    pub async fn recent_runs(&self, limit: u32) -> Result<Vec<RunOverview>, StoreError> {
        let rows = sqlx::query(RECENT_RUNS)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        let count =
            |r: &sqlx::any::AnyRow, i: usize| r.get::<Option<i64>, _>(i).unwrap_or(0) as u64;
        Ok(rows
            .iter()
            .filter_map(|r| {
                Some(RunOverview {
                    run_id: r.get::<String, _>(0).parse().ok()?,
                    operation: r.get(1),
                    status: r.get(2),
                    created_at: parse_time(r.get(3)),
                    completed_at: parse_time(r.get(4)),
                    total: count(r, 5),
                    succeeded: count(r, 6),
                    failed: count(r, 7),
                    mismatched: count(r, 8),
                })
            })
            .collect())
    }

    /// The tasks whose target is `target`, newest first (at most `limit`): a table's
    /// replication history.
    pub async fn target_history(
        &self,
        target: &str,
        limit: u32,
    ) -> Result<Vec<TargetTask>, StoreError> {
        let rows = sqlx::query(TARGET_HISTORY)
            .bind(target)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                Some(TargetTask {
                    run_id: r.get::<String, _>(0).parse().ok()?,
                    task_id: r.get::<String, _>(1).parse().ok()?,
                    table: r.get(2),
                    status: r.get(3),
                    source_version: r.get(4),
                    target_version: r.get(5),
                    error: r.get(6),
                    updated_at: parse_time(r.get(7)),
                })
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TaskStatus;
    use crate::testing::{new_run, set_status};

    #[tokio::test]
    async fn the_latest_runs_come_first_with_their_counts_and_a_target_has_a_history() {
        let store = Store::open("sqlite::memory:").await.unwrap();
        let (first, tasks) = new_run(&store, &["a.x", "a.y"]).await;
        set_status(&store, tasks[0].task_id, TaskStatus::Succeeded).await;
        set_status(&store, tasks[1].task_id, TaskStatus::Failed).await;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let (second, _) = new_run(&store, &["a.x"]).await;
        let runs = store.recent_runs(10).await.unwrap();
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0].run_id, second);
        assert_eq!(runs[1].run_id, first);
        assert_eq!(
            (
                runs[1].total,
                runs[1].succeeded,
                runs[1].failed,
                runs[1].mismatched
            ),
            (2, 1, 1, 0)
        );
        assert_eq!(store.recent_runs(1).await.unwrap().len(), 1);
        let target = store.tasks(first).await.unwrap()[0].target.clone();
        let history = store.target_history(&target, 10).await.unwrap();
        assert_eq!(history.len(), 2, "{history:?}");
        assert!(history.iter().all(|t| t.table == "a.x"));
    }
}
