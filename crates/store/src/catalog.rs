//! Catalog objects' results (docs/catalog.md): a catalog task is a task of its run like a
//! table's, with its `kind`; its result is terminal (succeeded, or failed) and recorded once.

use replicator_proto::{CatalogOutcome, CatalogResult};

use crate::tasks::{insert_outcome, task_status};
use uuid::Uuid;

use crate::{
    Recorded, Stage, StageEnd, Store, StoreError, TaskStatus, clone_pending_sql, now, terminal_sql,
};

/// The one-line account of a catalog task: what ran and what was only reported.
pub fn catalog_detail(r: &CatalogResult) -> String {
    let mut parts = Vec::new();
    match r.outcome {
        CatalogOutcome::Applied => parts.push("applied".to_owned()),
        CatalogOutcome::Unchanged => parts.push("unchanged".to_owned()),
        CatalogOutcome::Reported => parts.push("reported".to_owned()),
        CatalogOutcome::Mismatched => parts.push(format!(
            "{} difference(s) between source and target",
            r.mismatches
        )),
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
    if r.kind == replicator_proto::ObjectKind::Inventory {
        // The inventory's findings are the differences: one per line, under its account.
        for f in &r.findings {
            line.push('\n');
            line.push_str(f);
        }
        return line;
    }
    if !r.findings.is_empty() {
        line.push_str("; reported: ");
        line.push_str(&r.findings.join("; "));
    }
    line
}

impl Store {
    /// The run's catalog objects (not its tables, not its inventory check) that have not
    /// settled yet: the inventory check waits for none to be left.
    pub async fn catalog_in_flight(&self, run_id: Uuid) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(concat!(
            "SELECT COUNT(*) FROM tasks WHERE run_id = $1 AND kind NOT IN ('table', 'inventory') AND status NOT IN ",
            terminal_sql!()
        ))
        .bind(run_id.to_string())
        .fetch_one(&self.pool)
        .await?;
        Ok(n as u64)
    }

    /// How many of the run's tables are still being copied (queued or cloning): the Snowflake
    /// mirror waits for them, to expose the tables as the run leaves them.
    pub async fn tables_copying(&self, run_id: Uuid) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM tasks WHERE run_id = $1 AND kind = 'table' AND status IN ('queued', 'cloning')",
        )
        .bind(run_id.to_string())
        .fetch_one(&self.pool)
        .await?;
        Ok(n as u64)
    }

    /// The request a run was planned from, as recorded with the run.
    pub async fn run_request(
        &self,
        run_id: Uuid,
    ) -> Result<Option<replicator_proto::ReplicationRequest>, StoreError> {
        let json: Option<String> = sqlx::query_scalar("SELECT request FROM runs WHERE run_id = $1")
            .bind(run_id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        Ok(json.and_then(|j| serde_json::from_str(&j).ok()))
    }

    /// Record a catalog task's result; always terminal. Only the first one is recorded (the
    /// task is still `queued`); a later one changes nothing ([`Recorded::first`] is false).
    pub async fn record_catalog(
        &self,
        r: &CatalogResult,
        end: &StageEnd,
    ) -> Result<Recorded, StoreError> {
        let mut tx = self.pool.begin().await?;
        let state = match r.outcome {
            CatalogOutcome::Failed => TaskStatus::Failed,
            CatalogOutcome::Mismatched => TaskStatus::Mismatched,
            _ => TaskStatus::Succeeded,
        };
        // A mismatched inventory says why in the error column too (digests list it with the
        // run's failures).
        let error = match (&r.error, r.outcome) {
            (Some(e), _) => Some(e.message.clone()),
            (None, CatalogOutcome::Mismatched) => {
                let first = r.findings.first().map(String::as_str).unwrap_or("");
                let more = match r.mismatches {
                    0 | 1 => String::new(),
                    n => format!(" (and {} more)", n - 1),
                };
                Some(format!(
                    "the target's catalog differs from the source's: {first}{more}"
                ))
            }
            _ => None,
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
        .bind(error)
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
        end.apply(&mut tx).await?;
        tx.commit().await?;
        Ok(Recorded { first, status })
    }
}

#[cfg(test)]
mod tests {
    use replicator_proto::{CatalogOutcome, CatalogResult, Header, ObjectKind};
    use uuid::Uuid;

    use crate::testing::request;
    use crate::{NewTask, Store, TaskStatus};

    fn task(kind: Option<ObjectKind>, name: &str) -> NewTask {
        NewTask {
            task_id: Uuid::now_v7(),
            kind,
            table: name.into(),
            source: "/s".into(),
            target: "/t".into(),
            source_version: None,
        }
    }

    fn result(
        run_id: Uuid,
        t: &NewTask,
        outcome: CatalogOutcome,
        findings: &[&str],
    ) -> CatalogResult {
        CatalogResult {
            header: Header::new(run_id),
            task_id: t.task_id,
            attempt: 1,
            kind: t.kind.unwrap(),
            name: t.table.clone(),
            source: t.source.clone(),
            target: t.target.clone(),
            outcome,
            statements: Vec::new(),
            findings: findings.iter().map(|f| f.to_string()).collect(),
            files_copied: 0,
            bytes_copied: 0,
            files_deleted: 0,
            files_unchanged: 0,
            mismatches: 0,
            error: None,
            retries: 0,
            duration_ms: 1,
        }
    }

    /// The inventory check waits for the run's other catalog objects (not its tables, not
    /// itself), reads the run's request back, and a mismatched check is a mismatched task
    /// whose error names the first difference.
    #[tokio::test]
    async fn the_inventory_waits_for_the_objects_and_records_its_differences() {
        let store = Store::open("sqlite::memory:").await.unwrap();
        let mut req = request();
        req.catalog = true;
        let run_id = req.header.run_id;
        let tasks = [
            task(None, "a.x"),
            task(Some(ObjectKind::View), "view a.v"),
            task(Some(ObjectKind::Inventory), "inventory /s → /t"),
        ];
        store.create_run(&req, &tasks).await.unwrap();
        assert_eq!(store.catalog_in_flight(run_id).await.unwrap(), 1);
        assert_eq!(
            store.tables_copying(run_id).await.unwrap(),
            1,
            "table a.x is queued"
        );
        assert_eq!(store.run_request(run_id).await.unwrap(), Some(req.clone()));
        assert_eq!(store.run_request(Uuid::now_v7()).await.unwrap(), None);

        let view = result(run_id, &tasks[1], CatalogOutcome::Applied, &[]);
        assert!(
            store
                .record_catalog(&view, &Default::default())
                .await
                .unwrap()
                .first
        );
        assert_eq!(store.catalog_in_flight(run_id).await.unwrap(), 0);

        let diffs = [
            "volume models: extra on the target (1 file(s))",
            "view a.w: missing on the target",
        ];
        let mut check = result(run_id, &tasks[2], CatalogOutcome::Mismatched, &diffs);
        check.mismatches = 2;
        let recorded = store
            .record_catalog(&check, &Default::default())
            .await
            .unwrap();
        assert_eq!(recorded.status, Some(TaskStatus::Mismatched));
        let summary = store.summarize(run_id).await.unwrap();
        let row = summary
            .tables
            .iter()
            .find(|t| t.kind == Some(ObjectKind::Inventory))
            .unwrap();
        assert_eq!(
            row.error.as_deref(),
            Some(
                "the target's catalog differs from the source's: volume models: extra on the target (1 file(s)) (and 1 more)"
            )
        );
        assert_eq!(
            row.detail.as_deref(),
            Some(
                "2 difference(s) between source and target\nvolume models: extra on the target (1 file(s))\nview a.w: missing on the target"
            )
        );
    }
}
