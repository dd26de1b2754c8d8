//! The last deep validation of each replica pair that matched (table `validations`), and the
//! cheap "is a task of this run still open?" question the notifier asks after every event.

use chrono::{DateTime, Utc};
use sqlx::Row;
use uuid::Uuid;

use crate::{Store, StoreError, TaskStatus, opt_i64};

/// A deep validation that matched: where both logs stood and what it counted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeepValidation {
    pub source: String,
    pub target: String,
    /// The checks that ran, as the reconciler describes them: another set of checks needs
    /// its own deep validation.
    pub checks: String,
    pub source_version: u64,
    /// Fingerprint of the source's commit file at `source_version`.
    pub source_commit: String,
    pub target_version: u64,
    pub target_commit: String,
    pub source_rows: Option<u64>,
    pub target_rows: Option<u64>,
    /// When it ran (millisecond precision).
    pub validated_at: DateTime<Utc>,
    pub run_id: Uuid,
}

/// The reconciler's last-validation lookup (the primary key).
pub(crate) const DEEP_VALIDATION: &str =
    "SELECT checks, source_version, source_commit, target_version, target_commit, source_rows,
        target_rows, validated_at, run_id
 FROM validations WHERE source = $1 AND target = $2";
/// The notifier's completion check: one open task of the run (`tasks_by_run_status`).
pub(crate) const HAS_OPEN_TASKS: &str =
    "SELECT 1 FROM tasks WHERE run_id = $1 AND status IN ($2, $3, $4, $5) LIMIT 1";

impl Store {
    /// The last deep validation of `source` → `target` that matched, if it is still on record.
    pub async fn deep_validation(
        &self,
        source: &str,
        target: &str,
    ) -> Result<Option<DeepValidation>, StoreError> {
        let row = sqlx::query(DEEP_VALIDATION)
            .bind(source)
            .bind(target)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| DeepValidation {
            source: source.to_owned(),
            target: target.to_owned(),
            checks: r.get(0),
            source_version: r.get::<i64, _>(1) as u64,
            source_commit: r.get(2),
            target_version: r.get::<i64, _>(3) as u64,
            target_commit: r.get(4),
            source_rows: r.get::<Option<i64>, _>(5).map(|v| v as u64),
            target_rows: r.get::<Option<i64>, _>(6).map(|v| v as u64),
            validated_at: DateTime::from_timestamp_millis(r.get::<i64, _>(7)).unwrap_or_default(),
            run_id: r.get::<String, _>(8).parse().unwrap_or_default(),
        }))
    }

    /// Record a deep validation that matched (replacing the pair's previous one).
    pub async fn save_deep_validation(&self, v: &DeepValidation) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO validations (source, target, checks, source_version, source_commit, target_version,
               target_commit, source_rows, target_rows, validated_at, run_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT (source, target) DO UPDATE SET checks = excluded.checks,
               source_version = excluded.source_version, source_commit = excluded.source_commit,
               target_version = excluded.target_version, target_commit = excluded.target_commit,
               source_rows = excluded.source_rows, target_rows = excluded.target_rows,
               validated_at = excluded.validated_at, run_id = excluded.run_id",
        )
        .bind(&v.source)
        .bind(&v.target)
        .bind(&v.checks)
        .bind(v.source_version as i64)
        .bind(&v.source_commit)
        .bind(v.target_version as i64)
        .bind(&v.target_commit)
        .bind(opt_i64(v.source_rows))
        .bind(opt_i64(v.target_rows))
        .bind(v.validated_at.timestamp_millis())
        .bind(v.run_id.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Forget the pair's deep validation (a later one did not match, or could not run): its
    /// next validation is deep.
    pub async fn forget_deep_validation(
        &self,
        source: &str,
        target: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM validations WHERE source = $1 AND target = $2")
            .bind(source)
            .bind(target)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Whether a task of `run_id` is not terminal yet. Reads at most one index entry, where
    /// [`Store::run_progress`] counts every task of the run.
    pub async fn has_open_tasks(&self, run_id: Uuid) -> Result<bool, StoreError> {
        let row = sqlx::query(HAS_OPEN_TASKS)
            .bind(run_id.to_string())
            .bind(TaskStatus::Queued.as_str())
            .bind(TaskStatus::Cloning.as_str())
            .bind(TaskStatus::Cloned.as_str())
            .bind(TaskStatus::Reconciling.as_str())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_deep_validation_is_kept_replaced_and_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("sqlite://{}/state.db", dir.path().display()))
            .await
            .unwrap();
        assert_eq!(store.deep_validation("/s/t", "/d/t").await.unwrap(), None);
        let mut v = DeepValidation {
            source: "/s/t".into(),
            target: "/d/t".into(),
            checks: "row_counts,schema".into(),
            source_version: 2,
            source_commit: "00aa".into(),
            target_version: 1,
            target_commit: "00bb".into(),
            source_rows: Some(10),
            target_rows: Some(10),
            validated_at: DateTime::from_timestamp_millis(1_764_000_000_123).unwrap(),
            run_id: Uuid::now_v7(),
        };
        store.save_deep_validation(&v).await.unwrap();
        assert_eq!(
            store.deep_validation("/s/t", "/d/t").await.unwrap(),
            Some(v.clone())
        );
        assert_eq!(
            store.deep_validation("/s/t", "/d/other").await.unwrap(),
            None
        );
        v.source_version = 3;
        v.source_rows = None;
        store.save_deep_validation(&v).await.unwrap();
        assert_eq!(
            store.deep_validation("/s/t", "/d/t").await.unwrap(),
            Some(v)
        );
        store.forget_deep_validation("/s/t", "/d/t").await.unwrap();
        assert_eq!(store.deep_validation("/s/t", "/d/t").await.unwrap(), None);
    }
}
