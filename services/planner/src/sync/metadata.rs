//! The metadata tables in both regions (`replicator_lake::sync_meta`): created where missing,
//! the groups' config merged, every status change written to both.

use chrono::{DateTime, Utc};
use replicator_store::SyncStatus;

use super::{ConfigRow, METADATA_TABLE, Syncer};

impl Syncer {
    /// The metadata table locations: primary and secondary region.
    pub(super) fn metadata_locations(
        &self,
    ) -> anyhow::Result<(
        replicator_lake::TableLocation,
        replicator_lake::TableLocation,
    )> {
        let storage = self.engines.native_engine();
        let at = |root: String| -> anyhow::Result<_> {
            Ok(storage.resolve(&root)?.child(METADATA_TABLE)?)
        };
        Ok((
            at(self.sync.primary_root(&self.config))?,
            at(self.sync.secondary_root(&self.config))?,
        ))
    }

    /// Create the metadata tables where missing (copying one region's to the other), and
    /// merge the groups' config rows when they changed.
    pub(super) async fn ensure_metadata(&self, now: DateTime<Utc>) -> anyhow::Result<()> {
        let (primary, secondary) = self.metadata_locations()?;
        let rows: Vec<ConfigRow> = self
            .sync
            .groups
            .iter()
            .map(|g| (g.name.clone(), g.workflow.clone(), g.tables.clone()))
            .collect();
        if self.merged.lock().expect("merged").as_ref() == Some(&rows) {
            return Ok(());
        }
        replicator_lake::sync_meta::ensure(&primary, &secondary).await?;
        let config_rows: Vec<replicator_lake::sync_meta::GroupConfigRow> = rows
            .iter()
            .map(
                |(name, workflow, tables)| replicator_lake::sync_meta::GroupConfigRow {
                    group_name: name.clone(),
                    workflow: workflow.clone(),
                    tables: tables.clone(),
                },
            )
            .collect();
        for loc in [&primary, &secondary] {
            let (r, _) = self
                .config
                .retry
                .retry(
                    || replicator_lake::sync_meta::merge_config(loc, &config_rows, now),
                    |e, _| tracing::debug!(error = %e, "metadata table write conflicted; retrying"),
                )
                .await;
            r?;
        }
        *self.merged.lock().expect("merged") = Some(rows);
        Ok(())
    }

    /// Write a group's status to both metadata tables; a region that cannot be written is
    /// logged (the store holds the truth).
    pub(super) async fn metadata_status(
        &self,
        group: &str,
        status: SyncStatus,
        cut: Option<DateTime<Utc>>,
        message: Option<&str>,
    ) {
        let Ok((primary, secondary)) = self.metadata_locations() else {
            return;
        };
        let now = self.clock.now();
        for loc in [&primary, &secondary] {
            // A new cut: its instant and when the sync ended. In progress or failed: the
            // previous cut's timestamps stay. A concurrent writer (a `sync trigger` beside the
            // fleet) makes a commit conflict: read again and retry.
            let (start, end, keep) = match status {
                SyncStatus::Success => (cut, Some(now), false),
                _ => (None, None, true),
            };
            let (r, _) = self
                .config
                .retry
                .retry(
                    || {
                        replicator_lake::sync_meta::set_status(
                            loc,
                            group,
                            status.as_str(),
                            start,
                            end,
                            message,
                            keep,
                        )
                    },
                    |e, _| tracing::debug!(error = %e, "metadata table write conflicted; retrying"),
                )
                .await;
            if let Err(e) = r {
                tracing::warn!(%group, table = %loc, error = %e, "cannot write the group's status to the metadata table");
            }
        }
    }
}
