//! How each notification of a run ended (`notifications`).

use sqlx::Row;
use uuid::Uuid;

use crate::{Store, StoreError, now};

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

impl Store {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_run_s_notifications_read_back_in_order() {
        let store = Store::open("sqlite::memory:").await.unwrap();
        let (run_id, other) = (Uuid::now_v7(), Uuid::now_v7());
        let webhook = NotificationRecord {
            run_id,
            channel: "webhook".into(),
            target: "https://hooks.example/x".into(),
            delivered: true,
            attempts: 1,
            error: None,
        };
        let email = NotificationRecord {
            channel: "email".into(),
            target: "ops@example.com".into(),
            delivered: false,
            attempts: 3,
            error: Some("connection refused".into()),
            ..webhook.clone()
        };
        store.record_notification(&webhook).await.unwrap();
        // Ordered by time (microseconds): make sure the two differ.
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        store.record_notification(&email).await.unwrap();
        store
            .record_notification(&NotificationRecord {
                run_id: other,
                ..webhook.clone()
            })
            .await
            .unwrap();
        assert_eq!(store.notifications(run_id).await.unwrap(), [webhook, email]);
        assert_eq!(store.notifications(other).await.unwrap().len(), 1);
    }
}
