//! One holder of a target at a time, across the fleet: a lease in the store per delivery.

use std::time::Duration;

use replicator_store::{LeaseToken, Stage, Started, Store};
use uuid::Uuid;

/// Holds the lease on a key (a clone's target) for one delivery and renews it until released
/// or dropped. The holder is a [`LeaseToken`] made for this delivery, so a second delivery of
/// the same task on the same worker (redelivered by the broker after a dropped connection
/// while this one still runs) does not get the lease and is deferred.
pub(crate) struct Lease {
    key: String,
    token: LeaseToken,
    renew: tokio::task::JoinHandle<()>,
}

impl Lease {
    /// Take the lease on `key` for `task_id` and start the task's first attempt of `stage`
    /// (one round trip on PostgreSQL), or say who holds the lease.
    pub(crate) async fn begin(
        key: &str,
        task: (Uuid, Uuid),
        stage: Stage,
        store: &Store,
        worker: &str,
        ttl: Duration,
    ) -> Result<(Lease, Option<Started>), String> {
        let (run_id, task_id) = task;
        let token = LeaseToken::new(worker);
        let started = match store
            .start_leased(key, &token, ttl, run_id, task_id, stage, worker)
            .await
        {
            Ok(Some(started)) => started,
            Ok(None) => {
                let holder = match store.lease_holder(key).await.ok().flatten() {
                    Some((holder, _)) if holder == worker => {
                        "another delivery on this worker".to_owned()
                    }
                    Some((holder, _)) => holder,
                    None => "another worker".to_owned(),
                };
                return Err(format!(
                    "target {key} is being cloned by {holder}; retrying later"
                ));
            }
            Err(e) => return Err(format!("cannot take the lease on {key}: {e}")),
        };
        let (store, renewing, target) = (store.clone(), token.clone(), key.to_owned());
        let renew = tokio::spawn(async move {
            loop {
                tokio::time::sleep(ttl / 3).await;
                match store.acquire_lease(&target, &renewing, task_id, ttl).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::error!(%target, "lost the lease on the target (expired while cloning); a conflicting commit will be refused")
                    }
                    Err(e) => tracing::warn!(%target, error = %e, "could not renew the lease"),
                }
            }
        });
        Ok((
            Lease {
                key: key.to_owned(),
                token,
                renew,
            },
            started,
        ))
    }

    /// Stop renewing and hand the lease over to be released with the stage's result, in its
    /// transaction ([`replicator_store::StageEnd`]). Releasing it again later (the result
    /// could not be recorded) is harmless.
    pub(crate) fn hand_over(&self) -> (String, LeaseToken) {
        self.renew.abort();
        (self.key.clone(), self.token.clone())
    }

    pub(crate) async fn release(self, store: &Store) {
        self.renew.abort();
        if let Err(e) = store.release_lease(&self.key, &self.token).await {
            tracing::warn!(target = %self.key, error = %e, "could not release the lease; it expires by itself");
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // A handler that ends without releasing (cancelled, panicked) stops renewing: the
        // lease then expires by itself.
        self.renew.abort();
    }
}
