//! Runs: one per replication request, created with its tasks; how far a run has got, its
//! summary as its tasks stand, and its completion (once).

use chrono::Utc;
use replicator_proto::{
    ObjectKind, Operation, ReplicationRequest, RunSummary, TableStatus, TableSummary,
};
use sqlx::Row;
use uuid::Uuid;

use crate::{Store, StoreError, TaskStatus, now, opt_i64, parse_time, terminal_sql};

/// A task to record when a run is planned.
#[derive(Clone, Debug)]
pub struct NewTask {
    pub task_id: Uuid,
    /// A catalog object's kind; `None` for a table.
    pub kind: Option<ObjectKind>,
    pub table: String,
    pub source: String,
    pub target: String,
    pub source_version: Option<u64>,
}

/// A run as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct RunRecord {
    pub run_id: Uuid,
    pub operation: Operation,
    pub source_root: String,
    pub target_root: String,
    /// `running`, then `succeeded` or `failed` once complete.
    pub status: String,
    pub created_at: chrono::DateTime<Utc>,
    pub completed_at: Option<chrono::DateTime<Utc>>,
    pub summary: Option<RunSummary>,
}

/// How far a run has got.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunProgress {
    pub total: u64,
    pub terminal: u64,
}

impl RunProgress {
    pub fn is_complete(&self) -> bool {
        self.terminal == self.total
    }
}

/// Task rows per INSERT statement when a run is created (9 parameters each: under every
/// database's parameter limit).
const TASKS_PER_INSERT: usize = 500;

/// A run being recorded ([`Store::begin_run`]): one transaction, committed with its tasks.
pub struct NewRun {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    run_id: String,
    ts: String,
}

impl NewRun {
    /// Add tasks to the run. Many rows per statement: a run of thousands of tables is one
    /// round trip per TASKS_PER_INSERT tasks, not per table.
    pub async fn add_tasks(&mut self, tasks: &[NewTask]) -> Result<(), StoreError> {
        for chunk in tasks.chunks(TASKS_PER_INSERT) {
            let mut sql = String::from(
                "INSERT INTO tasks (task_id, run_id, table_name, source, target, status, source_version, created_at, updated_at, kind) VALUES ",
            );
            for i in 0..chunk.len() {
                let b = i * 9;
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!(
                    "(${}, ${}, ${}, ${}, ${}, 'queued', ${}, ${}, ${}, ${})",
                    b + 1,
                    b + 2,
                    b + 3,
                    b + 4,
                    b + 5,
                    b + 6,
                    b + 7,
                    b + 8,
                    b + 9
                ));
            }
            let mut q = sqlx::query(&sql);
            for t in chunk {
                q = q
                    .bind(t.task_id.to_string())
                    .bind(&self.run_id)
                    .bind(&t.table)
                    .bind(&t.source)
                    .bind(&t.target)
                    .bind(opt_i64(t.source_version))
                    .bind(&self.ts)
                    .bind(&self.ts)
                    .bind(t.kind.map_or("table", ObjectKind::as_str));
            }
            q.execute(&mut *self.tx).await?;
        }
        Ok(())
    }

    /// The run and every task added, at once.
    pub async fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().await?;
        Ok(())
    }
}

/// A run's task count and terminal count (`tasks_by_run_status` covers it).
pub(crate) const RUN_PROGRESS: &str = concat!(
    "SELECT COUNT(*), CAST(COALESCE(SUM(CASE WHEN status IN ",
    terminal_sql!(),
    " THEN 1 ELSE 0 END), 0) AS BIGINT) FROM tasks WHERE run_id = $1"
);
/// A run's tasks in name order (`tasks_by_run_table`: no sort).
pub(crate) const SUMMARIZE: &str = "SELECT task_id, table_name, status, source_version, target_version, copied_files, copied_bytes,
        removed_files, source_rows, target_rows, error, kind, detail
 FROM tasks WHERE run_id = $1 ORDER BY table_name";
/// Runs not completed, oldest first (`runs_open`, a partial index).
pub(crate) const OPEN_RUNS: &str =
    "SELECT run_id FROM runs WHERE completed_at IS NULL ORDER BY created_at";

impl Store {
    /// Record a new run and its tasks, atomically.
    pub async fn create_run(
        &self,
        request: &ReplicationRequest,
        tasks: &[NewTask],
    ) -> Result<(), StoreError> {
        let mut run = self.begin_run(request).await?;
        run.add_tasks(tasks).await?;
        run.commit().await
    }

    /// Start recording a new run: its tasks are added a batch at a time
    /// ([`NewRun::add_tasks`]) and appear with the run at [`NewRun::commit`], so a run of
    /// 100,000 tables never has all its task rows in memory, and no reader sees it half made.
    pub async fn begin_run(&self, request: &ReplicationRequest) -> Result<NewRun, StoreError> {
        let mut tx = self.pool.begin().await?;
        let ts = now();
        sqlx::query(
            "INSERT INTO runs (run_id, operation, source_root, target_root, request, status, created_at)
             VALUES ($1, $2, $3, $4, $5, 'running', $6)",
        )
        .bind(request.header.run_id.to_string())
        .bind(request.operation.to_string())
        .bind(&request.source_root)
        .bind(&request.target_root)
        .bind(serde_json::to_string(request).unwrap_or_default())
        .bind(&ts)
        .execute(&mut *tx)
        .await?;
        Ok(NewRun {
            tx,
            run_id: request.header.run_id.to_string(),
            ts,
        })
    }

    /// Tasks in total and in a terminal state.
    pub async fn run_progress(&self, run_id: Uuid) -> Result<RunProgress, StoreError> {
        let row = sqlx::query(RUN_PROGRESS)
            .bind(run_id.to_string())
            .fetch_one(&self.pool)
            .await?;
        Ok(RunProgress {
            total: row.get::<i64, _>(0) as u64,
            terminal: row.get::<i64, _>(1) as u64,
        })
    }

    /// The summary of a run as its tasks stand now.
    pub async fn summarize(&self, run_id: Uuid) -> Result<RunSummary, StoreError> {
        let run = self
            .run(run_id)
            .await?
            .ok_or(StoreError::RunNotFound(run_id))?;
        let rows = sqlx::query(SUMMARIZE)
            .bind(run_id.to_string())
            .fetch_all(&self.pool)
            .await?;
        let mut s = RunSummary::default();
        for row in rows {
            let st: TaskStatus = row.get::<String, _>(2).parse()?;
            let status = match st {
                TaskStatus::Succeeded => TableStatus::Succeeded,
                TaskStatus::Mismatched => TableStatus::Mismatched,
                _ => TableStatus::Failed,
            };
            let t = TableSummary {
                task_id: row.get::<String, _>(0).parse().unwrap_or_default(),
                table: row.get(1),
                kind: ObjectKind::parse(&row.get::<String, _>(11)),
                detail: row.get(12),
                status,
                source_version: row.get::<Option<i64>, _>(3).map(|v| v as u64),
                target_version: row.get::<Option<i64>, _>(4).map(|v| v as u64),
                copied_files: row.get::<i64, _>(5) as u64,
                copied_bytes: row.get::<i64, _>(6) as u64,
                removed_files: row.get::<i64, _>(7) as u64,
                source_rows: row.get::<Option<i64>, _>(8).map(|v| v as u64),
                target_rows: row.get::<Option<i64>, _>(9).map(|v| v as u64),
                error: match (st, row.get::<Option<String>, _>(10)) {
                    (TaskStatus::Succeeded, _) => None,
                    (s, None) if !s.is_terminal() => Some(format!("task still {s}")),
                    (_, e) => e,
                },
            };
            s.total += 1;
            match t.status {
                TableStatus::Succeeded => s.succeeded += 1,
                TableStatus::Failed => s.failed += 1,
                TableStatus::Mismatched => s.mismatched += 1,
            }
            s.bytes_copied += t.copied_bytes;
            s.files_copied += t.copied_files;
            s.tables.push(t);
        }
        let end = run.completed_at.unwrap_or_else(Utc::now);
        s.duration_ms = (end - run.created_at).num_milliseconds().max(0) as u64;
        Ok(s)
    }

    /// Mark a run complete with its summary. Returns false if it was already complete, so
    /// exactly one caller sends the notifications.
    pub async fn complete_run(
        &self,
        run_id: Uuid,
        summary: &RunSummary,
    ) -> Result<bool, StoreError> {
        let status = if summary.is_success() {
            "succeeded"
        } else {
            "failed"
        };
        let done = sqlx::query(
            "UPDATE runs SET status = $1, completed_at = $2, summary = $3 WHERE run_id = $4 AND completed_at IS NULL",
        )
        .bind(status)
        .bind(now())
        .bind(serde_json::to_string(summary).unwrap_or_default())
        .bind(run_id.to_string())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// A run, if it exists.
    pub async fn run(&self, run_id: Uuid) -> Result<Option<RunRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT run_id, operation, source_root, target_root, status, created_at, completed_at, summary FROM runs WHERE run_id = $1",
        )
        .bind(run_id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|row| RunRecord {
            run_id,
            operation: row.get::<String, _>(1).parse().unwrap_or_default(),
            source_root: row.get(2),
            target_root: row.get(3),
            status: row.get(4),
            created_at: parse_time(Some(row.get(5))).unwrap_or_else(Utc::now),
            completed_at: parse_time(row.get(6)),
            summary: row
                .get::<Option<String>, _>(7)
                .and_then(|s| serde_json::from_str(&s).ok()),
        }))
    }

    /// Runs not completed yet, oldest first.
    pub async fn open_runs(&self) -> Result<Vec<Uuid>, StoreError> {
        let rows = sqlx::query(OPEN_RUNS).fetch_all(&self.pool).await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| r.get::<String, _>(0).parse().ok())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{drop_db, new_run, postgres, request, set_status};
    use crate::{AUDIT_TABLES, AttemptOutcome, AuditValue, Stage};
    use replicator_proto::{CloneMetrics, CloneResult, Header, Outcome};

    /// Progress counts a run's tasks and those in a terminal status, whichever they are;
    /// a task not finished shows in the summary as failed, saying where it stands.
    #[tokio::test]
    async fn run_progress_counts_terminal_tasks() {
        let store = Store::open("sqlite::memory:").await.unwrap();
        let tables = ["a", "b", "c", "d", "e", "f", "g"];
        let (run_id, tasks) = new_run(&store, &tables).await;
        let (other, _) = new_run(&store, &["x", "y"]).await;
        assert_eq!(
            store.run_progress(run_id).await.unwrap(),
            RunProgress {
                total: 7,
                terminal: 0
            }
        );
        for (t, s) in tasks.iter().zip(TaskStatus::ALL) {
            set_status(&store, t.task_id, s).await;
        }
        let progress = store.run_progress(run_id).await.unwrap();
        assert_eq!(
            progress,
            RunProgress {
                total: 7,
                terminal: 3
            }
        );
        assert!(!progress.is_complete());
        assert!(store.has_open_tasks(run_id).await.unwrap());
        let summary = store.summarize(run_id).await.unwrap();
        assert_eq!(
            (
                summary.total,
                summary.succeeded,
                summary.failed,
                summary.mismatched
            ),
            (7, 1, 5, 1)
        );
        assert_eq!(
            summary.tables[0].error.as_deref(),
            Some("task still queued")
        );
        assert_eq!(
            summary.tables[3].error.as_deref(),
            Some("task still reconciling")
        );
        assert_eq!(summary.tables[5].error, None, "failed without a reason");
        for t in &tasks[..4] {
            set_status(&store, t.task_id, TaskStatus::Succeeded).await;
        }
        let progress = store.run_progress(run_id).await.unwrap();
        assert_eq!(progress.terminal, 7);
        assert!(progress.is_complete());
        assert!(!store.has_open_tasks(run_id).await.unwrap());
        assert_eq!(
            store.run_progress(other).await.unwrap(),
            RunProgress {
                total: 2,
                terminal: 0
            },
            "per run"
        );
        assert_eq!(
            store.run_progress(Uuid::now_v7()).await.unwrap(),
            RunProgress::default(),
            "no such run"
        );
    }

    #[tokio::test]
    async fn run_lifecycle_on_a_sqlite_file() {
        let dir = tempfile::tempdir().unwrap();
        lifecycle(&format!(
            "sqlite://{}/nested/state.db",
            dir.path().display()
        ))
        .await;
    }

    #[tokio::test]
    async fn run_lifecycle_on_postgres() {
        let (url, name) = postgres().await;
        lifecycle(&url).await;
        crate::leases::tests::leases(&url).await;
        crate::leases::tests::a_worker_holds_a_lease_once_per_acquisition(&url).await;
        crate::tasks::tests::results_are_recorded_once(&url).await;
        crate::tasks::tests::a_stage_ends_with_its_result(&url).await;
        crate::tasks::tests::a_lease_starts_the_first_attempt(&url).await;
        drop_db(&name).await;
    }

    async fn lifecycle(url: &str) {
        let url = url.to_owned();
        let store = Store::open(&url).await.unwrap();
        let req = request();
        let run_id = req.header.run_id;
        let tasks: Vec<NewTask> = ["a.x", "b.y"]
            .iter()
            .map(|t| NewTask {
                task_id: Uuid::now_v7(),
                kind: None,
                table: t.to_string(),
                source: format!("/s/{t}"),
                target: format!("/t/{t}"),
                source_version: Some(1),
            })
            .collect();
        store.create_run(&req, &tasks).await.unwrap();
        assert_eq!(
            store.run_progress(run_id).await.unwrap(),
            RunProgress {
                total: 2,
                terminal: 0
            }
        );
        let att = store
            .attempt_started(run_id, tasks[0].task_id, Stage::Clone, 1, "w1")
            .await
            .unwrap();
        store
            .attempt_finished(&att.end(AttemptOutcome::Succeeded, None))
            .await
            .unwrap();
        let result = CloneResult {
            ingest: None,
            clone_path: None,
            header: Header::new(run_id),
            task_id: tasks[0].task_id,
            attempt: 1,
            table: "a.x".into(),
            source: "/s/a.x".into(),
            target: "/t/a.x".into(),
            outcome: Outcome::Succeeded,
            source_version: Some(3),
            target_version: Some(0),
            committed: true,
            metrics: Some(CloneMetrics {
                num_copied_files: 2,
                copied_files_size: 100,
                ..Default::default()
            }),
            error: None,
            retries: 0,
            duration_ms: 5,
            statement_ids: Vec::new(),
        };
        store
            .record_clone(&result, false, &Default::default())
            .await
            .unwrap();
        assert_eq!(
            store.last_source_version("/s/a.x", "/t/a.x").await.unwrap(),
            Some(3)
        );
        let failed = CloneResult {
            ingest: None,
            clone_path: None,
            task_id: tasks[1].task_id,
            outcome: Outcome::Failed,
            metrics: None,
            error: Some(replicator_proto::TaskError {
                kind: replicator_proto::ErrorKind::Permanent,
                message: "boom".into(),
            }),
            ..result.clone()
        };
        store
            .record_clone(&failed, false, &Default::default())
            .await
            .unwrap();
        assert!(store.run_progress(run_id).await.unwrap().is_complete());
        let summary = store.summarize(run_id).await.unwrap();
        assert_eq!(
            (
                summary.total,
                summary.succeeded,
                summary.failed,
                summary.bytes_copied
            ),
            (2, 1, 1, 100)
        );
        assert_eq!(summary.tables[1].error.as_deref(), Some("boom"));
        assert!(store.complete_run(run_id, &summary).await.unwrap());
        assert!(
            !store.complete_run(run_id, &summary).await.unwrap(),
            "completes once"
        );
        let run = store.run(run_id).await.unwrap().unwrap();
        assert_eq!(run.status, "failed");
        assert_eq!(run.summary.unwrap(), summary);
        assert_eq!(store.attempts(run_id).await.unwrap().len(), 1);
        let log = store.attempt_log(run_id).await.unwrap();
        assert_eq!(log[0].worker.as_deref(), Some("w1"));
        assert_eq!(log[0].target, "/t/a.x");
        assert!(log[0].finished_at.is_some());
        // Replaying the failed task reopens the run; it completes again.
        assert!(store.open_runs().await.unwrap().is_empty());
        assert!(store.requeue_task(tasks[1].task_id).await.unwrap());
        assert!(
            !store.requeue_task(tasks[0].task_id).await.unwrap(),
            "only failed tasks"
        );
        assert_eq!(store.open_runs().await.unwrap(), vec![run_id]);
        assert!(!store.run_progress(run_id).await.unwrap().is_complete());
        let statuses: Vec<&str> = store
            .tasks(run_id)
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.status.as_str())
            .collect();
        assert_eq!(statuses, ["succeeded", "queued"]);
        // Reopening applies no migration twice.
        drop(store);
        let store = Store::open(&url).await.unwrap();
        // The audit trail reads back on both databases, every column typed.
        let runs = store
            .audit_rows(&AUDIT_TABLES[0], Some(run_id))
            .await
            .unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0][0], AuditValue::Text(Some(run_id.to_string())));
        let tasks = store.audit_rows(&AUDIT_TABLES[1], None).await.unwrap();
        assert_eq!(tasks.len(), 2);
        assert_eq!(tasks[0][2], AuditValue::Text(Some("a.x".into())));
        assert_eq!(tasks[0][6], AuditValue::Int(Some(3)), "source_version");
        let attempts = store
            .audit_rows(&AUDIT_TABLES[2], Some(run_id))
            .await
            .unwrap();
        assert_eq!(
            attempts[0][5],
            AuditValue::Text(Some("w1".into())),
            "worker"
        );
        let results = store
            .audit_rows(&AUDIT_TABLES[3], Some(run_id))
            .await
            .unwrap();
        assert!(results.len() >= 2, "{results:?}");
        let other = store
            .audit_rows(&AUDIT_TABLES[1], Some(Uuid::now_v7()))
            .await
            .unwrap();
        assert!(other.is_empty());
    }
}
