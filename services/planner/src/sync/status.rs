//! `sync status`: each group's last cut, lag, RPO, next firing, the newest source commit its
//! cut does not cover, its last error, and activity in the passive secondary.

use std::time::Duration;

use chrono::{DateTime, Utc};
use replicator_common::config::SyncGroup;
use replicator_store::{CutTable, GroupState, SyncStatus};
use serde::Serialize;

use super::Syncer;

impl Syncer {
    /// Every group's report, for `sync status`.
    pub async fn status(&self) -> anyhow::Result<Vec<GroupReport>> {
        let now = self.clock.now();
        let mut out = Vec::new();
        let refused: Vec<(String, String)> = self.sync.check_groups();
        for group in &self.sync.groups {
            let state = self.store.sync_group(&group.name).await?;
            out.push(self.report(group, state, now, &refused).await);
        }
        Ok(out)
    }

    pub(super) async fn report(
        &self,
        group: &SyncGroup,
        state: Option<GroupState>,
        now: DateTime<Utc>,
        refused: &[(String, String)],
    ) -> GroupReport {
        let invalid = refused
            .iter()
            .find(|(g, _)| *g == group.name)
            .map(|(_, r)| r.clone());
        let cut = state.as_ref().and_then(|s| s.cut_at);
        let lag = cut.map(|c| (now - c).to_std().unwrap_or_default());
        let rpo = group.rpo.map(|r| r.0);
        let mut uncovered = None;
        if let (Some(cut), Some(s), Ok(engine)) = (cut, &state, self.engine()) {
            for t in &s.cut_tables {
                if let Ok(Some((version, at))) = engine.newest_commit_after(&t.source, cut).await
                    && uncovered
                        .as_ref()
                        .is_none_or(|u: &Uncovered| at > u.committed_at)
                {
                    uncovered = Some(Uncovered {
                        table: t.table.clone(),
                        version,
                        committed_at: at,
                    });
                }
            }
        }
        let secondary_active = match (&group.workflow, self.engine()) {
            (Some(w), Ok(engine)) => engine.secondary_activity(w).await.unwrap_or_default(),
            _ => Vec::new(),
        };
        GroupReport {
            group: group.name.clone(),
            status: state
                .as_ref()
                .map_or(SyncStatus::Never, |s| s.status)
                .as_str()
                .to_owned(),
            message: invalid.or_else(|| state.as_ref().and_then(|s| s.message.clone())),
            last_cut: cut,
            lag_seconds: lag.map(|l| l.as_secs()),
            rpo_seconds: rpo.map(|r| r.as_secs()),
            rpo_exceeded: matches!((lag, rpo), (Some(l), Some(r)) if l > r),
            next_fire: self.sync.schedule_of(group).and_then(|s| s.next_after(now)),
            newest_uncovered_commit: uncovered,
            tables: state.map(|s| s.cut_tables).unwrap_or_default(),
            secondary_active,
        }
    }
}

/// The newest source commit a group's cut does not cover.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Uncovered {
    pub table: String,
    pub version: u64,
    pub committed_at: DateTime<Utc>,
}

/// One group as `sync status` shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GroupReport {
    pub group: String,
    pub status: String,
    pub message: Option<String>,
    pub last_cut: Option<DateTime<Utc>>,
    pub lag_seconds: Option<u64>,
    pub rpo_seconds: Option<u64>,
    pub rpo_exceeded: bool,
    pub next_fire: Option<DateTime<Utc>>,
    pub newest_uncovered_commit: Option<Uncovered>,
    pub tables: Vec<CutTable>,
    /// Runs of the group's workflow active in the secondary region while it is passive.
    pub secondary_active: Vec<String>,
}

/// `1h 5m`, `12m 3s`, `40s`.
pub(super) fn human(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m {s}s"),
        (h, m, _) => format!("{h}h {m}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn durations_read_like_a_person_wrote_them() {
        assert_eq!(human(Duration::from_secs(40)), "40s");
        assert_eq!(human(Duration::from_secs(723)), "12m 3s");
        assert_eq!(human(Duration::from_secs(3900)), "1h 5m");
    }
}
