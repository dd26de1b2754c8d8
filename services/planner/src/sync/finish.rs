//! Finishing syncs: a completed run moves its group's cut (every table succeeded) or marks it
//! failed keeping the cut; lag gauges and RPO alerts; the `sync.*` notices.

use std::time::Duration;

use chrono::{DateTime, Utc};
use replicator_common::config::SyncGroup;
use replicator_proto::{Header, SyncNotice, names};
use replicator_store::{CutTable, SyncStatus, TaskStatus};
use uuid::Uuid;

use super::Syncer;
use super::status::human;

impl Syncer {
    /// Finish the syncs whose runs completed: move the cut (every table succeeded) or mark
    /// the group failed keeping its cut, retry a failed sync up to the group's retries,
    /// update both metadata tables, and tell the group's recipients.
    pub async fn finish_completed(&self) -> anyhow::Result<()> {
        for state in self.store.sync_groups().await? {
            if state.status != SyncStatus::InProgress {
                continue;
            }
            let Some(run_id) = state.attempt_run_id else {
                continue;
            };
            let Some(run) = self.store.run(run_id).await? else {
                // Fired, but its run never got recorded (the planner stopped in between):
                // after a while the sync counts as failed, and the group fires again.
                let stale = Utc::now() - state.updated_at > chrono::Duration::minutes(5);
                if stale {
                    self.store
                        .group_sync_finished(
                            &state.name,
                            run_id,
                            false,
                            &[],
                            Some("the sync was interrupted before its run was planned"),
                        )
                        .await?;
                }
                continue;
            };
            let Some(summary) = run.summary.filter(|_| run.completed_at.is_some()) else {
                continue;
            };
            let tasks = self.store.tasks(run_id).await?;
            let success = summary.is_success() && !tasks.is_empty();
            let mut tables: Vec<CutTable> = tasks
                .iter()
                .map(|t| {
                    let s = summary.tables.iter().find(|s| s.task_id == t.task_id);
                    CutTable {
                        table: t.table.clone(),
                        source: t.source.clone(),
                        target: t.target.clone(),
                        source_version: s.and_then(|s| s.source_version),
                        target_version: s.and_then(|s| s.target_version),
                    }
                })
                .collect();
            // The tables the sync carried from the previous cut, unchanged.
            tables.extend(state.attempt_carry.iter().cloned());
            tables.sort_by(|a, b| a.table.cmp(&b.table));
            let message = (!success).then(|| {
                let failed: Vec<String> = tasks
                    .iter()
                    .filter(|t| t.status != TaskStatus::Succeeded)
                    .map(|t| match &t.error {
                        Some(e) => format!("{}: {e}", t.table),
                        None => format!("{}: {}", t.table, t.status),
                    })
                    .collect();
                format!("sync failed, previous cut kept: {}", failed.join("; "))
            });
            let at = state.attempt_at;
            let Some(group) = self
                .conclude(
                    &state.name,
                    run_id,
                    at,
                    success,
                    &tables,
                    message.as_deref(),
                )
                .await?
            else {
                continue;
            };
            if !success
                && let Some(at) = at
                && state.failures < self.sync.retries_of(group)
            {
                let attempt = self
                    .store
                    .last_fire(&group.name)
                    .await?
                    .filter(|f| f.tick == at)
                    .map_or(1, |f| f.attempt)
                    + 1;
                self.fire(group, at, "retry", attempt).await?;
            }
        }
        Ok(())
    }

    /// Record how the sync of run `run_id` ended (the cut moves on success), update both
    /// metadata tables and tell the group's recipients. The group's config when the sync was
    /// the group's current one and the group is still configured.
    pub(super) async fn conclude(
        &self,
        name: &str,
        run_id: Uuid,
        at: Option<DateTime<Utc>>,
        success: bool,
        tables: &[CutTable],
        message: Option<&str>,
    ) -> anyhow::Result<Option<&SyncGroup>> {
        if !self
            .store
            .group_sync_finished(name, run_id, success, tables, message)
            .await?
        {
            return Ok(None);
        }
        if success {
            tracing::info!(group = %name, %run_id, cut = ?at, "group at its new cut");
            self.metadata_status(name, SyncStatus::Success, at, None)
                .await;
        } else {
            tracing::warn!(group = %name, %run_id, message = message.unwrap_or(""), "group sync failed; previous cut kept");
            self.metadata_status(name, SyncStatus::Failed, None, message)
                .await;
        }
        let Some(group) = self.sync.group(name) else {
            return Ok(None);
        };
        self.notify(group, success, at, message, None).await;
        Ok(Some(group))
    }

    /// Lag gauges per group, and the alert to the owners when a lag passes the group's RPO
    /// (once per cut).
    pub(super) async fn watch_lag(&self, now: DateTime<Utc>) -> anyhow::Result<()> {
        for group in self.sync.valid_groups() {
            let Some(state) = self.store.sync_group(&group.name).await? else {
                continue;
            };
            let Some(cut) = state.cut_at else {
                continue;
            };
            let lag = (now - cut).to_std().unwrap_or_default();
            replicator_common::metrics::group_lag(&group.name, lag);
            if let Some(rpo) = group.rpo.map(|r| r.0)
                && lag > rpo
                && state.rpo_alerted_at.is_none()
            {
                let message = format!(
                    "group {} is {} behind the primary (RPO {})",
                    group.name,
                    human(lag),
                    human(rpo)
                );
                tracing::warn!(group = %group.name, lag_s = lag.as_secs(), rpo_s = rpo.as_secs(), "RPO exceeded");
                self.notify(group, false, Some(cut), Some(&message), Some(lag))
                    .await;
                self.store.group_alerted(&group.name, now).await?;
            }
        }
        Ok(())
    }

    /// Publish a `sync.*` notice for the notifier: success to `notify.success`, failure and
    /// lag alerts to the group's owners and `notify.failure`.
    pub(super) async fn notify(
        &self,
        group: &SyncGroup,
        success: bool,
        cut: Option<DateTime<Utc>>,
        message: Option<&str>,
        lag: Option<Duration>,
    ) {
        let (key, mut recipients) = match (success, lag) {
            (_, Some(_)) => (names::events::SYNC_LAGGING, group.owner.clone()),
            (true, None) => (
                names::events::SYNC_SUCCEEDED,
                self.sync.notify.success.clone(),
            ),
            (false, None) => (names::events::SYNC_FAILED, group.owner.clone()),
        };
        if key == names::events::SYNC_FAILED {
            recipients.extend(self.sync.notify.failure.iter().cloned());
        }
        recipients.sort();
        recipients.dedup();
        let notice = SyncNotice {
            header: Header::new(Uuid::now_v7()),
            group: group.name.clone(),
            cut_at: cut,
            message: message.map(str::to_owned),
            lag_seconds: lag.map(|l| l.as_secs()),
            recipients,
        };
        if let Err(e) = replicator_bus::typed::publish_event(self.bus.as_ref(), key, &notice).await
        {
            tracing::warn!(group = %group.name, error = %e, "cannot publish the sync notice");
        }
    }
}
