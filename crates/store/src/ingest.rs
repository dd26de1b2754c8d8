//! Ingestion state (docs/ingest.md): the watermark each target's last successful load
//! reached, per watermark column. The next load reads only rows after it.

use uuid::Uuid;

use crate::{Store, StoreError, now};

impl Store {
    /// The watermark the last load of `target` by `column` stored, if any.
    pub async fn ingest_watermark(
        &self,
        target: &str,
        column: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT watermark FROM ingest_state WHERE target = $1 AND watermark_column = $2",
        )
        .bind(target)
        .bind(column)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Store the watermark a successful load of `target` reached (replacing the last one).
    pub async fn set_ingest_watermark(
        &self,
        target: &str,
        column: &str,
        watermark: &str,
        run_id: Uuid,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO ingest_state (target, watermark_column, watermark, run_id, updated_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (target, watermark_column) DO UPDATE SET watermark = excluded.watermark,
               run_id = excluded.run_id, updated_at = excluded.updated_at",
        )
        .bind(target)
        .bind(column)
        .bind(watermark)
        .bind(run_id.to_string())
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::Store;
    use uuid::Uuid;

    #[tokio::test]
    async fn a_watermark_is_kept_per_target_and_column_and_replaced() {
        let store = Store::open("sqlite::memory:").await.unwrap();
        assert_eq!(
            store.ingest_watermark("t", "updated_at").await.unwrap(),
            None
        );
        let run = Uuid::now_v7();
        store
            .set_ingest_watermark("t", "updated_at", "2026-01-01 00:00:00.000000", run)
            .await
            .unwrap();
        store
            .set_ingest_watermark("t", "updated_at", "2026-01-02 00:00:00.000000", run)
            .await
            .unwrap();
        store
            .set_ingest_watermark("t", "id", "7", run)
            .await
            .unwrap();
        assert_eq!(
            store
                .ingest_watermark("t", "updated_at")
                .await
                .unwrap()
                .as_deref(),
            Some("2026-01-02 00:00:00.000000")
        );
        assert_eq!(
            store.ingest_watermark("t", "id").await.unwrap().as_deref(),
            Some("7")
        );
        assert_eq!(store.ingest_watermark("u", "id").await.unwrap(), None);
    }
}
