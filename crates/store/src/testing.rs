//! Helpers for the store's unit tests.

use replicator_proto::{Header, Operation, ReplicationRequest, TableFilter};
use uuid::Uuid;

pub(crate) fn request() -> ReplicationRequest {
    ReplicationRequest {
        ingest: Vec::new(),
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
        as_of: None,
        group: None,
        catalog: false,
        mirror: false,
    }
}

/// A fresh PostgreSQL database on the machine's server (127.0.0.1:5432, trust auth):
/// its URL and name (for `drop_db`).
pub(crate) async fn postgres() -> (String, String) {
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

pub(crate) async fn drop_db(name: &str) {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect("postgres://postgres@127.0.0.1:5432/postgres")
        .await
        .unwrap();
    sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .execute(&mut c)
        .await
        .unwrap();
}

/// A SQLite file in a fresh temporary directory (kept alive by the returned guard).
pub(crate) fn sqlite_file() -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (format!("sqlite://{}/state.db", dir.path().display()), dir)
}

/// A run of `tables` (`a.x`, …) on `store`, every task queued.
pub(crate) async fn new_run(store: &crate::Store, tables: &[&str]) -> (Uuid, Vec<crate::NewTask>) {
    let req = request();
    let tasks: Vec<crate::NewTask> = tables
        .iter()
        .map(|t| crate::NewTask {
            task_id: Uuid::now_v7(),
            kind: None,
            table: t.to_string(),
            source: format!("/s/{t}"),
            target: format!("/t/{t}"),
            source_version: None,
        })
        .collect();
    store.create_run(&req, &tasks).await.unwrap();
    (req.header.run_id, tasks)
}

/// A clone result of `task`: copied `files` files if it succeeded.
pub(crate) fn clone_result(
    run_id: Uuid,
    task: &crate::NewTask,
    outcome: replicator_proto::Outcome,
    files: u64,
) -> replicator_proto::CloneResult {
    let failed = outcome == replicator_proto::Outcome::Failed;
    replicator_proto::CloneResult {
        ingest: None,
        clone_path: None,
        header: Header::new(run_id),
        task_id: task.task_id,
        attempt: 1,
        table: task.table.clone(),
        source: task.source.clone(),
        target: task.target.clone(),
        outcome,
        source_version: Some(4),
        target_version: (!failed).then_some(0),
        committed: files > 0,
        metrics: (!failed).then(|| replicator_proto::CloneMetrics {
            num_copied_files: files,
            copied_files_size: files * 100,
            ..Default::default()
        }),
        error: failed.then(|| replicator_proto::TaskError {
            kind: replicator_proto::ErrorKind::Permanent,
            message: "boom".into(),
        }),
        retries: 0,
        duration_ms: 5,
        statement_ids: Vec::new(),
    }
}

/// A validation result of `task`.
pub(crate) fn reconcile_result(
    run_id: Uuid,
    task: &crate::NewTask,
    outcome: replicator_proto::Validation,
) -> replicator_proto::ReconcileResult {
    replicator_proto::ReconcileResult {
        header: Header::new(run_id),
        task_id: task.task_id,
        attempt: 1,
        table: task.table.clone(),
        outcome,
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
        rolled_back_to: None,
        depth: Default::default(),
    }
}

/// Put `task_id` in `status` directly, whatever the rules say.
pub(crate) async fn set_status(store: &crate::Store, task_id: Uuid, status: crate::TaskStatus) {
    set_status_word(store, task_id, status.as_str()).await;
}

/// Write any word as a task's status (to test what reading an unknown one does).
pub(crate) async fn set_status_word(store: &crate::Store, task_id: Uuid, word: &str) {
    sqlx::query("UPDATE tasks SET status = $1 WHERE task_id = $2")
        .bind(word)
        .bind(task_id.to_string())
        .execute(&store.pool)
        .await
        .unwrap();
}
