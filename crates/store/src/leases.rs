//! Leases on targets: one clone of a target at a time across the fleet. A lease belongs to
//! one acquisition (a [`LeaseToken`]), expires unless renewed, and only its holder renews or
//! releases it.

use chrono::Utc;
use sqlx::Row;
use uuid::Uuid;

use crate::{Store, StoreError};

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
    pub(crate) fn holder(&self) -> String {
        format!("{}#{}", self.worker, self.id)
    }
}

impl std::fmt::Display for LeaseToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (lease {})", self.worker, self.id)
    }
}

pub(crate) const RELEASE_LEASE: &str = "DELETE FROM leases WHERE target = $1 AND holder = $2";
pub(crate) const LEASE_HOLDER: &str =
    "SELECT holder FROM leases WHERE target = $1 AND expires_at >= $2";

impl Store {
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
        sqlx::query(RELEASE_LEASE)
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
        let row = sqlx::query(LEASE_HOLDER)
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
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::testing::sqlite_file;
    use std::time::Duration;

    #[tokio::test]
    async fn leases_on_sqlite() {
        let (url, _dir) = sqlite_file();
        leases(&url).await;
        a_worker_holds_a_lease_once_per_acquisition(&url).await;
    }

    /// Acquire, renew and release go by the token; a renewal moves the expiry; a lease
    /// recorded without a lease ID (an older version's) still names its worker.
    #[tokio::test]
    async fn a_lease_is_acquired_renewed_and_released_by_its_token() {
        let store = Store::open("sqlite::memory:").await.unwrap();
        let (t, task) = ("/t/a", Uuid::now_v7());
        let (a, b) = (LeaseToken::new("w"), LeaseToken::new("w"));
        let expiry = || async {
            sqlx::query("SELECT expires_at FROM leases WHERE target = $1")
                .bind(t)
                .fetch_one(&store.pool)
                .await
                .unwrap()
                .get::<i64, _>(0)
        };
        assert_eq!(store.lease_holder(t).await.unwrap(), None);
        assert!(
            store
                .acquire_lease(t, &a, task, Duration::from_secs(60))
                .await
                .unwrap()
        );
        let first = expiry().await;
        assert!(
            store
                .acquire_lease(t, &a, task, Duration::from_secs(600))
                .await
                .unwrap(),
            "the holder renews"
        );
        assert!(
            expiry().await >= first + 500_000,
            "renewal moves the expiry"
        );
        assert!(
            !store
                .acquire_lease(t, &b, task, Duration::from_secs(60))
                .await
                .unwrap(),
            "another token of the same worker is refused"
        );
        store.release_lease(t, &b).await.unwrap();
        assert_eq!(
            store.lease_holder(t).await.unwrap(),
            Some(("w".to_owned(), Some(a.id))),
            "only the holder releases"
        );
        store.release_lease(t, &a).await.unwrap();
        assert_eq!(store.lease_holder(t).await.unwrap(), None);
        assert!(
            store
                .acquire_lease(t, &b, task, Duration::from_secs(60))
                .await
                .unwrap()
        );
        assert_eq!(
            store.lease_holder(t).await.unwrap(),
            Some(("w".to_owned(), Some(b.id)))
        );
        sqlx::query("UPDATE leases SET holder = 'old-worker' WHERE target = $1")
            .bind(t)
            .execute(&store.pool)
            .await
            .unwrap();
        assert_eq!(
            store.lease_holder(t).await.unwrap(),
            Some(("old-worker".to_owned(), None))
        );
        assert_eq!(a.to_string(), format!("w (lease {})", a.id));
    }

    /// One holder at a time; renewal by the holder; expiry frees the table; release.
    pub(crate) async fn leases(url: &str) {
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
    pub(crate) async fn a_worker_holds_a_lease_once_per_acquisition(url: &str) {
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
}
