//! Run, task and audit state.
//!
//! The store records runs, their tasks (one per table), every attempt of every stage, the
//! result of each stage verbatim, and the last source version cloned into each target. It
//! is the source of truth for "is this run finished?": the notifier completes a run when no
//! task of it is left in a non-terminal state, whichever process recorded the last result.
//!
//! Embedded mode uses a SQLite file (WAL, `synchronous = NORMAL`, one connection, created on
//! first use), where the writes of concurrent tasks share one transaction and one round trip
//! (`batch`); the schema lives in `migrations/` and is applied on open. The last deep
//! validation of each pair is kept too (`validations`).

use chrono::Utc;
use replicator_proto::{
    CloneResult, Operation, Outcome, ReconcileResult, ReplicationRequest, RunSummary, TableStatus,
    TableSummary, Validation,
};
use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;
use sqlx::{Executor, Row};
use uuid::Uuid;

mod validations;
pub use validations::DeepValidation;

/// Errors from the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid state URL `{0}`: expected sqlite://PATH, sqlite::memory: or postgres://…")]
    Url(String),
    #[error("cannot create the state directory {path}: {source}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
    /// The database refused the login or a privilege: permanent, never retried.
    #[error(
        "{database} at {endpoint} refused access: {message} (check the user in state.url and its password in PGPASSWORD or ~/.pgpass)"
    )]
    Denied {
        database: &'static str,
        /// The URL without password or query string.
        endpoint: String,
        message: String,
    },
    #[error("cannot connect to the state database at {endpoint}: {source}")]
    Connect {
        endpoint: String,
        source: sqlx::Error,
    },
    #[error("state database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("state database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("run {0} not found")]
    RunNotFound(Uuid),
}

/// Task states. `succeeded`, `failed` and `mismatched` are terminal.
pub mod status {
    pub const QUEUED: &str = "queued";
    pub const CLONING: &str = "cloning";
    pub const CLONED: &str = "cloned";
    pub const RECONCILING: &str = "reconciling";
    pub const SUCCEEDED: &str = "succeeded";
    pub const FAILED: &str = "failed";
    pub const MISMATCHED: &str = "mismatched";
    pub const TERMINAL: [&str; 3] = [SUCCEEDED, FAILED, MISMATCHED];
}

/// What recording a stage's result did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// The result became the task's result: the first one recorded for its stage. A later
    /// one (a redelivered task) changes nothing; its attempts are its only record.
    pub first: bool,
    /// The task's status afterwards (empty if the task does not exist).
    pub status: String,
}

/// One acquisition of a lease on a target: the worker and an ID unique to this acquisition.
/// Two deliveries of one task handled by one worker (a broker redelivers a task to the
/// worker still cloning it) are two different holders, so only one of them gets the lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseToken {
    pub worker: String,
    pub id: Uuid,
}

impl LeaseToken {
    /// A fresh token for `worker`.
    pub fn new(worker: &str) -> Self {
        Self {
            worker: worker.to_owned(),
            id: Uuid::new_v4(),
        }
    }

    /// The `holder` stored in the lease row: `worker#lease-id`.
    fn holder(&self) -> String {
        format!("{}#{}", self.worker, self.id)
    }
}

impl std::fmt::Display for LeaseToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (lease {})", self.worker, self.id)
    }
}

/// A stage of a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Clone,
    Reconcile,
}

impl Stage {
    fn as_str(self) -> &'static str {
        match self {
            Self::Clone => "clone",
            Self::Reconcile => "reconcile",
        }
    }
}

/// A task to record when a run is planned.
#[derive(Clone, Debug)]
pub struct NewTask {
    pub task_id: Uuid,
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

/// One attempt of one stage, for audit.
#[derive(Clone, Debug, PartialEq)]
pub struct AttemptRecord {
    pub task_id: Uuid,
    pub stage: String,
    pub attempt: u32,
    pub outcome: Option<String>,
    pub error: Option<String>,
}

/// A task as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskRecord {
    pub task_id: Uuid,
    pub table: String,
    pub source: String,
    pub target: String,
    pub status: String,
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
    pub outcome: Option<String>,
}

/// How one notification of a run ended.
#[derive(Clone, Debug, PartialEq)]
pub struct NotificationRecord {
    pub run_id: Uuid,
    /// `webhook` or `email`.
    pub channel: String,
    /// The URL (query string dropped) or the recipients.
    pub target: String,
    pub delivered: bool,
    pub attempts: u32,
    pub error: Option<String>,
}

/// Handle to the state database.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

/// The database behind a [`Store`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file (embedded mode, one machine).
    Sqlite,
    /// PostgreSQL (fleet mode).
    Postgres,
}

impl Backend {
    /// The backend a state URL names.
    pub fn of(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres)
        } else {
            Err(StoreError::Url(url.to_owned()))
        }
    }
}

/// A state URL as it may be shown: no password, no query string.
fn redact_url(url: &str) -> String {
    let url = url.split('?').next().unwrap_or(url);
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((user, host)) => {
            let user = user.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}@{host}{path}")
        }
        None => format!("{scheme}://{authority}{path}"),
    }
}

/// The server's reason when `e` is an authentication or authorization failure (SQLSTATE
/// class 28, invalid authorization, or 42501, insufficient privilege): no retry can help.
fn refusal(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Database(db)
            if db
                .code()
                .is_some_and(|c| c.starts_with("28") || c == "42501") =>
        {
            Some(db.message().to_owned())
        }
        _ => None,
    }
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn opt_i64(v: Option<u64>) -> Option<i64> {
    v.map(|v| v as i64)
}

impl Store {
    /// Open the database at `url` and apply migrations: `sqlite://PATH` (created on first
    /// use), `sqlite::memory:`, or `postgres://…` (the database must exist).
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of(url)?;
        let (url, max) = match backend {
            Backend::Postgres => (url.to_owned(), 8),
            Backend::Sqlite if url == "sqlite::memory:" => (url.to_owned(), 1),
            Backend::Sqlite => {
                let path = url
                    .strip_prefix("sqlite://")
                    .or_else(|| url.strip_prefix("sqlite:"))
                    .filter(|p| !p.is_empty())
                    .ok_or_else(|| StoreError::Url(url.to_owned()))?;
                let path = std::path::Path::new(path);
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
                        path: dir.display().to_string(),
                        source,
                    })?;
                }
                // One connection: SQLite has one writer at a time anyway, and writers on
                // several connections of one process wait on each other in SQLite's busy
                // handler (sleeps of up to 100 ms) and re-read every page another one changed.
                // Other processes sharing the file still wait through `busy_timeout`.
                (format!("sqlite://{}?mode=rwc", path.display()), 1)
            }
        };
        let endpoint = redact_url(&url);
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            // A ping before every use is a round trip to SQLite's connection thread per
            // statement; a local file has no connection to lose.
            .test_before_acquire(backend == Backend::Postgres)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // Several processes (CLI, services) may share one SQLite file.
                        // `synchronous = NORMAL`: in WAL mode a commit no longer waits for an
                        // fsync (the WAL is synced at checkpoints); the database stays
                        // consistent, and a power cut may lose only its last commits: results
                        // of tasks that a rerun redoes (clones are idempotent).
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 30000; PRAGMA foreign_keys = ON;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(|e| match refusal(&e) {
                Some(message) => StoreError::Denied {
                    database: "PostgreSQL",
                    endpoint: endpoint.clone(),
                    message,
                },
                None => StoreError::Connect {
                    endpoint: endpoint.clone(),
                    source: e,
                },
            })?;
        let migrated = match backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite").run(&pool).await,
            Backend::Postgres => sqlx::migrate!("./migrations/postgres").run(&pool).await,
        };
        if let Err(e) = migrated {
            return Err(match &e {
                sqlx::migrate::MigrateError::Execute(db) => match refusal(db) {
                    Some(message) => StoreError::Denied {
                        database: "PostgreSQL",
                        endpoint,
                        message,
                    },
                    None => e.into(),
                },
                _ => e.into(),
            });
        }
        Ok(Self { pool, backend })
    }

    /// Which database this store is on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Record a new run and its tasks, atomically.
    pub async fn create_run(
        &self,
        request: &ReplicationRequest,
        tasks: &[NewTask],
    ) -> Result<(), StoreError> {
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
        // Many rows per statement: a run of thousands of tables is one round trip per
        // chunk, not per table (chunks stay under every database's parameter limit).
        for chunk in tasks.chunks(500) {
            let mut sql = String::from(
                "INSERT INTO tasks (task_id, run_id, table_name, source, target, status, source_version, created_at, updated_at) VALUES ",
            );
            for i in 0..chunk.len() {
                let b = i * 8;
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!(
                    "(${}, ${}, ${}, ${}, ${}, 'queued', ${}, ${}, ${})",
                    b + 1,
                    b + 2,
                    b + 3,
                    b + 4,
                    b + 5,
                    b + 6,
                    b + 7,
                    b + 8
                ));
            }
            let mut q = sqlx::query(&sql);
            for t in chunk {
                q = q
                    .bind(t.task_id.to_string())
                    .bind(request.header.run_id.to_string())
                    .bind(&t.table)
                    .bind(&t.source)
                    .bind(&t.target)
                    .bind(opt_i64(t.source_version))
                    .bind(&ts)
                    .bind(&ts);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

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
        let (state, guard) = match stage {
            Stage::Clone => (status::CLONING, "status IN ('queued','cloning')"),
            Stage::Reconcile => (
                status::RECONCILING,
                "status NOT IN ('succeeded','failed','mismatched')",
            ),
        };
        sqlx::query(&format!(
            "UPDATE tasks SET status = $1, updated_at = $2 WHERE task_id = $3 AND {guard}"
        ))
        .bind(state)
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

    /// An attempt ended (`succeeded`, `failed` or `retrying`).
    pub async fn attempt_finished(
        &self,
        attempt_id: i64,
        outcome: &str,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE attempts SET finished_at = $1, outcome = $2, error = $3 WHERE id = $4")
            .bind(now())
            .bind(outcome)
            .bind(error)
            .bind(attempt_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

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
            (Outcome::Succeeded, true) => status::CLONED,
            (Outcome::Succeeded, false) => status::SUCCEEDED,
            (Outcome::Failed, _) => status::FAILED,
        };
        let m = r.metrics.clone().unwrap_or_default();
        let done = sqlx::query(
            "UPDATE tasks SET status = $1, source_version = COALESCE($2, source_version), target_version = $3,
               copied_files = $4, copied_bytes = $5, removed_files = $6, error = $7, updated_at = $8
             WHERE task_id = $9 AND status IN ('queued','cloning')",
        )
        .bind(state)
        .bind(opt_i64(r.source_version))
        .bind(opt_i64(r.target_version))
        .bind(m.num_copied_files as i64)
        .bind(m.copied_files_size as i64)
        .bind(m.num_removed_files as i64)
        .bind(r.error.as_ref().map(|e| e.message.clone()))
        .bind(&ts)
        .bind(r.task_id.to_string())
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
            state.to_owned()
        } else {
            task_status(&mut tx, r.task_id).await?
        };
        tx.commit().await?;
        Ok(Recorded { first, status })
    }

    /// Record a validation result; always terminal for the task. Only the first one is
    /// recorded: a task already terminal keeps its result ([`Recorded::first`] is false).
    pub async fn record_reconcile(&self, r: &ReconcileResult) -> Result<Recorded, StoreError> {
        let mut tx = self.pool.begin().await?;
        let state = match r.outcome {
            Validation::Matched => status::SUCCEEDED,
            Validation::Mismatched => status::MISMATCHED,
            Validation::Failed => status::FAILED,
        };
        let error = match (&r.error, r.outcome) {
            (Some(e), _) => Some(e.message.clone()),
            (None, Validation::Mismatched) => Some(
                r.checks
                    .iter()
                    .filter(|c| !c.passed)
                    .map(|c| format!("{}: {}", c.name, c.detail))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            _ => None,
        };
        let done = sqlx::query(
            "UPDATE tasks SET status = $1, source_rows = $2, target_rows = $3, error = COALESCE($4, error), updated_at = $5,
               source_version = COALESCE(source_version, $6), target_version = COALESCE(target_version, $7)
             WHERE task_id = $8 AND status NOT IN ('succeeded','failed','mismatched')",
        )
        .bind(state)
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
            let status = task_status(&mut tx, r.task_id).await?;
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
            status: state.to_owned(),
        })
    }

    /// A task's status, if the task exists.
    pub async fn task_status(&self, task_id: Uuid) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT status FROM tasks WHERE task_id = $1")
            .bind(task_id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Fail a task that is not terminal yet (its message was dead-lettered without a
    /// result). Returns whether the task changed.
    pub async fn fail_task(&self, task_id: Uuid, reason: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE tasks SET status = 'failed', error = $1, updated_at = $2
             WHERE task_id = $3 AND status NOT IN ('succeeded','failed','mismatched')",
        )
        .bind(reason)
        .bind(now())
        .bind(task_id.to_string())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Tasks in total and in a terminal state.
    pub async fn run_progress(&self, run_id: Uuid) -> Result<RunProgress, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*), CAST(COALESCE(SUM(CASE WHEN status IN ('succeeded','failed','mismatched') THEN 1 ELSE 0 END), 0) AS BIGINT)
             FROM tasks WHERE run_id = $1",
        )
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
        let rows = sqlx::query(
            "SELECT task_id, table_name, status, source_version, target_version, copied_files, copied_bytes,
                    removed_files, source_rows, target_rows, error
             FROM tasks WHERE run_id = $1 ORDER BY table_name",
        )
        .bind(run_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        let mut s = RunSummary::default();
        for row in rows {
            let st: String = row.get(2);
            let status = match st.as_str() {
                status::SUCCEEDED => TableStatus::Succeeded,
                status::MISMATCHED => TableStatus::Mismatched,
                _ => TableStatus::Failed,
            };
            let t = TableSummary {
                task_id: row.get::<String, _>(0).parse().unwrap_or_default(),
                table: row.get(1),
                status,
                source_version: row.get::<Option<i64>, _>(3).map(|v| v as u64),
                target_version: row.get::<Option<i64>, _>(4).map(|v| v as u64),
                copied_files: row.get::<i64, _>(5) as u64,
                copied_bytes: row.get::<i64, _>(6) as u64,
                removed_files: row.get::<i64, _>(7) as u64,
                source_rows: row.get::<Option<i64>, _>(8).map(|v| v as u64),
                target_rows: row.get::<Option<i64>, _>(9).map(|v| v as u64),
                error: match (st.as_str(), row.get::<Option<String>, _>(10)) {
                    (status::SUCCEEDED, _) => None,
                    (s, None) if !status::TERMINAL.contains(&s) => Some(format!("task still {s}")),
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
        Ok(row.map(|row| {
            let ts = |s: Option<String>| {
                s.and_then(|s| chrono::DateTime::parse_from_rfc3339(&s).ok())
                    .map(|d| d.with_timezone(&Utc))
            };
            RunRecord {
                run_id,
                operation: row.get::<String, _>(1).parse().unwrap_or_default(),
                source_root: row.get(2),
                target_root: row.get(3),
                status: row.get(4),
                created_at: ts(Some(row.get(5))).unwrap_or_else(Utc::now),
                completed_at: ts(row.get(6)),
                summary: row
                    .get::<Option<String>, _>(7)
                    .and_then(|s| serde_json::from_str(&s).ok()),
            }
        }))
    }

    /// Every attempt of a run, oldest first.
    pub async fn attempts(&self, run_id: Uuid) -> Result<Vec<AttemptRecord>, StoreError> {
        let rows = sqlx::query("SELECT task_id, stage, attempt, outcome, error FROM attempts WHERE run_id = $1 ORDER BY id")
            .bind(run_id.to_string())
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| AttemptRecord {
                task_id: r.get::<String, _>(0).parse().unwrap_or_default(),
                stage: r.get(1),
                attempt: r.get::<i64, _>(2) as u32,
                outcome: r.get(3),
                error: r.get(4),
            })
            .collect())
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

    /// Take (or renew) the lease on `target` for `token` until `ttl` from now. Succeeds
    /// when the table is free, its lease expired, or this very token holds it. The holder
    /// is the acquisition, not the worker: the same worker with another token (a second
    /// delivery of a task it is still cloning) is refused like any other.
    pub async fn acquire_lease(
        &self,
        target: &str,
        token: &LeaseToken,
        task_id: Uuid,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError> {
        let now = Utc::now().timestamp_millis();
        let done = sqlx::query(
            "INSERT INTO leases (target, holder, task_id, expires_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (target) DO UPDATE SET holder = excluded.holder, task_id = excluded.task_id,
               expires_at = excluded.expires_at
             WHERE leases.expires_at < $5 OR leases.holder = excluded.holder",
        )
        .bind(target)
        .bind(token.holder())
        .bind(task_id.to_string())
        .bind(now + ttl.as_millis() as i64)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Give the lease on `target` back (only if `token` still holds it).
    pub async fn release_lease(&self, target: &str, token: &LeaseToken) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM leases WHERE target = $1 AND holder = $2")
            .bind(target)
            .bind(token.holder())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Who holds the lease on `target`, if it is held: the worker and the lease ID (the
    /// latter absent for a lease taken by a version that did not record one).
    pub async fn lease_holder(
        &self,
        target: &str,
    ) -> Result<Option<(String, Option<Uuid>)>, StoreError> {
        let row = sqlx::query("SELECT holder FROM leases WHERE target = $1 AND expires_at >= $2")
            .bind(target)
            .bind(Utc::now().timestamp_millis())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| {
            let holder: String = r.get(0);
            match holder.rsplit_once('#') {
                Some((worker, id)) if id.parse::<Uuid>().is_ok() => {
                    (worker.to_owned(), id.parse().ok())
                }
                _ => (holder, None),
            }
        }))
    }

    /// Runs not completed yet, oldest first.
    pub async fn open_runs(&self) -> Result<Vec<Uuid>, StoreError> {
        let rows =
            sqlx::query("SELECT run_id FROM runs WHERE completed_at IS NULL ORDER BY created_at")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| r.get::<String, _>(0).parse().ok())
            .collect())
    }

    /// Every task of a run as stored (for `status`).
    pub async fn tasks(&self, run_id: Uuid) -> Result<Vec<TaskRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT task_id, table_name, source, target, status, error FROM tasks WHERE run_id = $1 ORDER BY table_name",
        )
        .bind(run_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| TaskRecord {
                task_id: r.get::<String, _>(0).parse().unwrap_or_default(),
                table: r.get(1),
                source: r.get(2),
                target: r.get(3),
                status: r.get(4),
                error: r.get(5),
            })
            .collect())
    }

    /// Put a failed task back to `queued` (it is being replayed). Returns whether it was
    /// failed; a replayed run is reopened so it completes again.
    pub async fn requeue_task(&self, task_id: Uuid) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE tasks SET status = 'queued', error = NULL, updated_at = $1 WHERE task_id = $2 AND status = 'failed'",
        )
        .bind(now())
        .bind(task_id.to_string())
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

    /// Attempts with their workers and times, for audit (oldest first).
    pub async fn attempt_log(&self, run_id: Uuid) -> Result<Vec<AttemptLog>, StoreError> {
        let rows = sqlx::query(
            "SELECT a.task_id, t.target, a.stage, a.worker, a.started_at, a.finished_at, a.outcome
             FROM attempts a JOIN tasks t ON t.task_id = a.task_id WHERE a.run_id = $1 ORDER BY a.id",
        )
        .bind(run_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        let ts = |s: Option<String>| {
            s.and_then(|s| chrono::DateTime::parse_from_rfc3339(&s).ok())
                .map(|d| d.with_timezone(&Utc))
        };
        Ok(rows
            .into_iter()
            .map(|r| AttemptLog {
                task_id: r.get::<String, _>(0).parse().unwrap_or_default(),
                target: r.get(1),
                stage: r.get(2),
                worker: r.get(3),
                started_at: ts(Some(r.get(4))).unwrap_or_else(Utc::now),
                finished_at: ts(r.get(5)),
                outcome: r.get(6),
            })
            .collect())
    }

    /// Record how a notification of a run ended.
    pub async fn record_notification(&self, n: &NotificationRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO notifications (run_id, channel, target, delivered, attempts, error, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(n.run_id.to_string())
        .bind(&n.channel)
        .bind(&n.target)
        .bind(i64::from(n.delivered))
        .bind(i64::from(n.attempts))
        .bind(&n.error)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The notifications of a run, oldest first.
    pub async fn notifications(&self, run_id: Uuid) -> Result<Vec<NotificationRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT channel, target, delivered, attempts, error FROM notifications WHERE run_id = $1 ORDER BY created_at",
        )
        .bind(run_id.to_string())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| NotificationRecord {
                run_id,
                channel: r.get(0),
                target: r.get(1),
                delivered: r.get::<i64, _>(2) != 0,
                attempts: r.get::<i64, _>(3) as u32,
                error: r.get(4),
            })
            .collect())
    }

    /// The last source version cloned from `source` into `target`, if any.
    pub async fn last_source_version(
        &self,
        source: &str,
        target: &str,
    ) -> Result<Option<u64>, StoreError> {
        let row = sqlx::query(
            "SELECT source_version FROM table_versions WHERE source = $1 AND target = $2",
        )
        .bind(source)
        .bind(target)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.get::<i64, _>(0) as u64))
    }
}

async fn task_status(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    task_id: Uuid,
) -> Result<String, StoreError> {
    let row = sqlx::query("SELECT status FROM tasks WHERE task_id = $1")
        .bind(task_id.to_string())
        .fetch_optional(&mut **tx)
        .await?;
    Ok(row.map(|r| r.get(0)).unwrap_or_default())
}

async fn insert_outcome(
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
mod tests {
    use super::*;
    use replicator_proto::{CloneMetrics, Header, TableFilter};

    fn request() -> ReplicationRequest {
        ReplicationRequest {
            header: Header::new(Uuid::now_v7()),
            operation: Operation::Replication,
            source_root: "/s".into(),
            target_root: "/t".into(),
            tables: TableFilter::default(),
            version: None,
            requested_by: None,
            engine: Default::default(),
            replace: false,
            external_roots: Vec::new(),
        }
    }

    /// A fresh PostgreSQL database on the machine's server (127.0.0.1:5432, trust auth):
    /// its URL and name (for `drop_db`).
    async fn postgres() -> (String, String) {
        use sqlx::Connection;
        let name = format!("replicator_store_{}", Uuid::new_v4().simple());
        let admin = "postgres://postgres@127.0.0.1:5432/postgres";
        let mut c = sqlx::PgConnection::connect(admin)
            .await
            .expect("PostgreSQL on 127.0.0.1:5432");
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut c)
            .await
            .unwrap();
        (format!("postgres://postgres@127.0.0.1:5432/{name}"), name)
    }

    async fn drop_db(name: &str) {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect("postgres://postgres@127.0.0.1:5432/postgres")
            .await
            .unwrap();
        sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .execute(&mut c)
            .await
            .unwrap();
    }

    /// A login the server refuses fails at once, with one line that names the endpoint
    /// (never a password) and says what to check.
    #[tokio::test]
    async fn a_refused_login_is_permanent_and_names_the_endpoint() {
        let url = "postgres://no_such_role_x:hunter2@127.0.0.1:5432/postgres?password=hunter3";
        let started = std::time::Instant::now();
        let e = Store::open(url).await.unwrap_err();
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "refused after {:?}",
            started.elapsed()
        );
        let msg = e.to_string();
        assert!(matches!(e, StoreError::Denied { .. }), "{e:?}");
        assert!(
            msg.starts_with(
                "PostgreSQL at postgres://no_such_role_x@127.0.0.1:5432/postgres refused access: "
            ),
            "{msg}"
        );
        assert!(msg.contains("no_such_role_x"), "{msg}");
        assert!(!msg.contains("hunter"), "no password: {msg}");
        assert!(!msg.contains('\n'), "one line: {msg}");
    }

    #[test]
    fn state_urls_are_shown_without_secrets() {
        assert_eq!(
            redact_url("postgres://u:p@db:5432/x?sslmode=require&password=q"),
            "postgres://u@db:5432/x"
        );
        assert_eq!(redact_url("postgres://db/x"), "postgres://db/x");
        assert_eq!(redact_url("sqlite://a/b.db?mode=rwc"), "sqlite://a/b.db");
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
        leases(&url).await;
        a_worker_holds_a_lease_once_per_acquisition(&url).await;
        results_are_recorded_once(&url).await;
        drop_db(&name).await;
    }

    #[tokio::test]
    async fn leases_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/state.db", dir.path().display());
        leases(&url).await;
        a_worker_holds_a_lease_once_per_acquisition(&url).await;
    }

    #[tokio::test]
    async fn results_are_recorded_once_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        results_are_recorded_once(&format!("sqlite://{}/state.db", dir.path().display())).await;
    }

    /// One holder at a time; renewal by the holder; expiry frees the table; release.
    async fn leases(url: &str) {
        let store = Store::open(url).await.unwrap();
        let (t, ttl) = (
            "s3://dr/sales/orders",
            std::time::Duration::from_millis(300),
        );
        let task = Uuid::now_v7();
        let (w1, w2, w3) = (
            LeaseToken::new("w1"),
            LeaseToken::new("w2"),
            LeaseToken::new("w3"),
        );
        assert!(store.acquire_lease(t, &w1, task, ttl).await.unwrap());
        assert!(
            !store.acquire_lease(t, &w2, task, ttl).await.unwrap(),
            "held by w1"
        );
        assert!(
            store.acquire_lease(t, &w1, task, ttl).await.unwrap(),
            "w1 renews"
        );
        assert_eq!(
            store.lease_holder(t).await.unwrap(),
            Some(("w1".to_owned(), Some(w1.id)))
        );
        assert!(
            store.acquire_lease("other", &w2, task, ttl).await.unwrap(),
            "per table"
        );
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        assert_eq!(store.lease_holder(t).await.unwrap(), None, "expired");
        assert!(
            store.acquire_lease(t, &w2, task, ttl).await.unwrap(),
            "taken over"
        );
        store.release_lease(t, &w1).await.unwrap();
        assert_eq!(
            store.lease_holder(t).await.unwrap().map(|h| h.0).as_deref(),
            Some("w2"),
            "w1 cannot release w2's lease"
        );
        store.release_lease(t, &w2).await.unwrap();
        assert!(store.acquire_lease(t, &w3, task, ttl).await.unwrap());
    }

    /// The holder of a lease is one acquisition, not a worker: a second delivery of a task
    /// to the worker still cloning it (a broker redelivery after a dropped connection) does
    /// not get the lease, and cannot renew or release the first one's.
    async fn a_worker_holds_a_lease_once_per_acquisition(url: &str) {
        let store = Store::open(url).await.unwrap();
        let (t, ttl, task) = ("/t/a", std::time::Duration::from_secs(30), Uuid::now_v7());
        let first = LeaseToken::new("cloner-1");
        let redelivered = LeaseToken::new("cloner-1");
        assert!(store.acquire_lease(t, &first, task, ttl).await.unwrap());
        assert!(
            !store
                .acquire_lease(t, &redelivered, task, ttl)
                .await
                .unwrap(),
            "the same worker's second delivery must wait"
        );
        store.release_lease(t, &redelivered).await.unwrap();
        assert_eq!(
            store.lease_holder(t).await.unwrap(),
            Some(("cloner-1".to_owned(), Some(first.id))),
            "the second delivery cannot release the first one's lease"
        );
        assert!(
            store.acquire_lease(t, &first, task, ttl).await.unwrap(),
            "the first renews"
        );
        store.release_lease(t, &first).await.unwrap();
        assert!(
            store
                .acquire_lease(t, &redelivered, task, ttl)
                .await
                .unwrap()
        );
    }

    /// A task's result is recorded once: a later clone result (a redelivered task's no-op)
    /// changes neither its status nor its metrics nor its results, and a clone attempt
    /// does not reopen a task whose clone is recorded.
    async fn results_are_recorded_once(url: &str) {
        let store = Store::open(url).await.unwrap();
        let req = request();
        let run_id = req.header.run_id;
        let task = NewTask {
            task_id: Uuid::now_v7(),
            table: "a.x".into(),
            source: "/s/a.x".into(),
            target: "/t/a.x".into(),
            source_version: None,
        };
        store
            .create_run(&req, std::slice::from_ref(&task))
            .await
            .unwrap();
        let clone = |files: u64| CloneResult {
            header: Header::new(run_id),
            task_id: task.task_id,
            attempt: 1,
            table: "a.x".into(),
            source: "/s/a.x".into(),
            target: "/t/a.x".into(),
            outcome: Outcome::Succeeded,
            source_version: Some(4),
            target_version: Some(0),
            committed: files > 0,
            metrics: Some(CloneMetrics {
                num_copied_files: files,
                copied_files_size: files * 100,
                ..Default::default()
            }),
            error: None,
            retries: 0,
            duration_ms: 5,
            statement_ids: Vec::new(),
        };
        store
            .attempt_started(run_id, task.task_id, Stage::Clone, 1, "w1")
            .await
            .unwrap();
        let first = store.record_clone(&clone(6), true).await.unwrap();
        assert_eq!(
            first,
            Recorded {
                first: true,
                status: "cloned".into()
            }
        );
        // The same task delivered again: its attempt does not reopen the task, its no-op
        // result is not recorded.
        store
            .attempt_started(run_id, task.task_id, Stage::Clone, 1, "w1")
            .await
            .unwrap();
        assert_eq!(
            store.task_status(task.task_id).await.unwrap().as_deref(),
            Some("cloned")
        );
        let again = store.record_clone(&clone(0), true).await.unwrap();
        assert_eq!(
            again,
            Recorded {
                first: false,
                status: "cloned".into()
            }
        );
        let reconciled = ReconcileResult {
            header: Header::new(run_id),
            task_id: task.task_id,
            attempt: 1,
            table: "a.x".into(),
            outcome: Validation::Matched,
            source_version: Some(4),
            target_version: Some(0),
            source_rows: Some(10),
            target_rows: Some(10),
            checks: Vec::new(),
            keys: None,
            partitions: Vec::new(),
            error: None,
            duration_ms: 1,
            statement_ids: Vec::new(),
            depth: Default::default(),
        };
        assert!(store.record_reconcile(&reconciled).await.unwrap().first);
        // After the task succeeded: neither a clone nor a validation changes it.
        store
            .attempt_started(run_id, task.task_id, Stage::Clone, 1, "w2")
            .await
            .unwrap();
        let late = store.record_clone(&clone(0), true).await.unwrap();
        assert_eq!(
            late,
            Recorded {
                first: false,
                status: "succeeded".into()
            }
        );
        let failed = ReconcileResult {
            outcome: Validation::Failed,
            error: Some(replicator_proto::TaskError {
                kind: replicator_proto::ErrorKind::Transient,
                message: "late".into(),
            }),
            ..reconciled
        };
        assert!(!store.record_reconcile(&failed).await.unwrap().first);
        let summary = store.summarize(run_id).await.unwrap();
        assert_eq!(
            (
                summary.succeeded,
                summary.files_copied,
                summary.bytes_copied
            ),
            (1, 6, 600),
            "the first result stands: {summary:?}"
        );
        let outcomes = store.outcomes(run_id).await.unwrap();
        let stages: Vec<(&str, &str)> = outcomes
            .iter()
            .map(|(s, o, _)| (s.as_str(), o.as_str()))
            .collect();
        assert_eq!(stages, [("clone", "succeeded"), ("reconcile", "matched")]);
        // Every delivery's attempt is in the audit.
        assert_eq!(store.attempts(run_id).await.unwrap().len(), 3);
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
            .attempt_finished(att, "succeeded", None)
            .await
            .unwrap();
        let result = CloneResult {
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
        store.record_clone(&result, false).await.unwrap();
        assert_eq!(
            store.last_source_version("/s/a.x", "/t/a.x").await.unwrap(),
            Some(3)
        );
        let failed = CloneResult {
            task_id: tasks[1].task_id,
            outcome: Outcome::Failed,
            metrics: None,
            error: Some(replicator_proto::TaskError {
                kind: replicator_proto::ErrorKind::Permanent,
                message: "boom".into(),
            }),
            ..result.clone()
        };
        store.record_clone(&failed, false).await.unwrap();
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
        let statuses: Vec<String> = store
            .tasks(run_id)
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.status)
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

/// A column of an audit table: text or a 64-bit integer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditType {
    Text,
    Int,
}

/// One of the store's tables as exported for audit (`replicator audit export`).
#[derive(Clone, Copy, Debug)]
pub struct AuditTable {
    pub name: &'static str,
    pub columns: &'static [(&'static str, AuditType)],
    /// Column that orders the rows.
    pub order_by: &'static str,
}

/// A value of an audit row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuditValue {
    Text(Option<String>),
    Int(Option<i64>),
}

use AuditType::{Int, Text};

/// Every table that makes the audit trail, with every column, each keyed by `run_id`.
pub const AUDIT_TABLES: &[AuditTable] = &[
    AuditTable {
        name: "runs",
        columns: &[
            ("run_id", Text),
            ("operation", Text),
            ("source_root", Text),
            ("target_root", Text),
            ("status", Text),
            ("created_at", Text),
            ("completed_at", Text),
            ("request", Text),
            ("summary", Text),
        ],
        order_by: "created_at",
    },
    AuditTable {
        name: "tasks",
        columns: &[
            ("run_id", Text),
            ("task_id", Text),
            ("table_name", Text),
            ("source", Text),
            ("target", Text),
            ("status", Text),
            ("source_version", Int),
            ("target_version", Int),
            ("copied_files", Int),
            ("copied_bytes", Int),
            ("removed_files", Int),
            ("source_rows", Int),
            ("target_rows", Int),
            ("error", Text),
            ("created_at", Text),
            ("updated_at", Text),
        ],
        order_by: "table_name",
    },
    AuditTable {
        name: "attempts",
        columns: &[
            ("run_id", Text),
            ("id", Int),
            ("task_id", Text),
            ("stage", Text),
            ("attempt", Int),
            ("worker", Text),
            ("started_at", Text),
            ("finished_at", Text),
            ("outcome", Text),
            ("error", Text),
        ],
        order_by: "id",
    },
    AuditTable {
        name: "results",
        columns: &[
            ("run_id", Text),
            ("id", Int),
            ("task_id", Text),
            ("stage", Text),
            ("outcome", Text),
            ("created_at", Text),
            ("detail", Text),
        ],
        order_by: "id",
    },
    AuditTable {
        name: "notifications",
        columns: &[
            ("run_id", Text),
            ("channel", Text),
            ("target", Text),
            ("delivered", Int),
            ("attempts", Int),
            ("error", Text),
            ("created_at", Text),
        ],
        order_by: "created_at",
    },
];

impl Store {
    /// The rows of an audit table, for one run or all of them. `results` reads the
    /// `outcomes` table (each stage's result message, verbatim JSON).
    pub async fn audit_rows(
        &self,
        table: &AuditTable,
        run_id: Option<Uuid>,
    ) -> Result<Vec<Vec<AuditValue>>, StoreError> {
        let source = match table.name {
            "results" => "outcomes",
            other => other,
        };
        // Every column is cast to one type per kind, so both databases answer alike.
        let columns: Vec<String> = table
            .columns
            .iter()
            .map(|(c, t)| match t {
                Text => format!("CAST({c} AS TEXT)"),
                Int => format!("CAST({c} AS BIGINT)"),
            })
            .collect();
        let filter = if run_id.is_some() {
            " WHERE run_id = $1"
        } else {
            ""
        };
        let sql = format!(
            "SELECT {} FROM {source}{filter} ORDER BY run_id, {}",
            columns.join(", "),
            table.order_by
        );
        let mut query = sqlx::query(&sql);
        if let Some(r) = run_id {
            query = query.bind(r.to_string());
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                table
                    .columns
                    .iter()
                    .enumerate()
                    .map(|(i, (_, t))| {
                        Ok(match t {
                            Text => AuditValue::Text(r.try_get(i)?),
                            Int => AuditValue::Int(r.try_get(i)?),
                        })
                    })
                    .collect()
            })
            .collect()
    }
}
