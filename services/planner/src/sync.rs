//! Sync groups on the fleet (docs/sync.md): the planner fires each group's syncs — on its
//! schedule, after its workflow succeeded, on a new commit, on demand — as runs that clone
//! every table of the group as of one instant (a consistent cut), and moves the group's cut
//! when such a run completes with every table succeeded.
//!
//! One planner fires at a time (a leader lease in the store), and each firing is recorded
//! under a unique (group, instant, attempt) key, so even two planners that both believe they
//! lead fire a tick once. A tick missed while every planner was down fires once when one
//! starts: only the latest tick at or before now is due.
//!
//! Time comes from a [`Clock`], so tests drive the schedule instead of sleeping.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use replicator_bus::BusRef;
use replicator_common::Config;
use replicator_common::config::{SyncConfig, SyncGroup};
use replicator_common::shutdown::CancellationToken;
use replicator_engine::{Engine, Engines};
use replicator_proto::{Header, Operation, ReplicationRequest, SyncNotice, TableFilter, names};
use replicator_store::{CutTable, Fire, GroupState, LeaseToken, Store, SyncStatus, TaskStatus};
use serde::Serialize;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::{RunPlan, plan, publish_plan};

/// Where time comes from.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock the caller sets (tests).
#[derive(Debug)]
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    pub fn new(at: DateTime<Utc>) -> Self {
        Self(Mutex::new(at))
    }
    pub fn set(&self, at: DateTime<Utc>) {
        *self.0.lock().expect("clock") = at;
    }
    pub fn advance(&self, by: chrono::Duration) {
        *self.0.lock().expect("clock") += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().expect("clock")
    }
}

/// The store key of the scheduler's leader lease.
const LEADER: &str = "sync-scheduler";

/// Where each region's metadata table lives under its root.
pub const METADATA_TABLE: &str = "_replicator/sync_groups";

/// What firing a group did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Fired {
    pub group: String,
    pub at: DateTime<Utc>,
    pub fired_by: String,
    pub run_id: Uuid,
}

/// A group's config columns in the metadata tables: name, workflow, tables.
type ConfigRow = (String, Option<String>, Vec<String>);

/// The sync groups of one config, over the fleet's bus, store and engines.
pub struct Syncer {
    config: Arc<Config>,
    sync: SyncConfig,
    engines: Engines,
    bus: BusRef,
    store: Store,
    clock: Arc<dyn Clock>,
    leader: LeaseToken,
    /// The config rows last merged into the metadata tables.
    merged: Mutex<Option<Vec<ConfigRow>>>,
}

impl Syncer {
    /// `None` when the config has no `sync` section.
    pub fn new(
        config: Arc<Config>,
        engines: Engines,
        bus: BusRef,
        store: Store,
        clock: Arc<dyn Clock>,
    ) -> Option<Self> {
        let sync = config.sync.clone()?;
        Some(Self {
            config,
            sync,
            engines,
            bus,
            store,
            clock,
            leader: LeaseToken::new(&replicator_common::worker_id("planner")),
            merged: Mutex::new(None),
        })
    }

    fn engine(&self) -> anyhow::Result<&dyn Engine> {
        Ok(self.engines.get(self.config.engine())?)
    }

    /// The request that syncs `group` as of `at`.
    pub fn request(&self, group: &SyncGroup, at: DateTime<Utc>) -> ReplicationRequest {
        let mut request = self.config.request(
            Some(Operation::All).filter(|_| self.config.operation == Operation::All),
            Some(format!("replicator-sync/{}", group.name)),
        );
        if request.operation == Operation::Reconciliation {
            // A sync clones; a reconciliation-only config still syncs by cloning.
            request.operation = Operation::All;
        }
        request.tables = TableFilter {
            include: group.tables.clone(),
            exclude: Vec::new(),
        };
        request.as_of = Some(at);
        request.group = Some(group.name.clone());
        request
    }

    /// One pass of the scheduler: when this planner leads, finish the syncs whose runs
    /// completed, fire the groups that are due, and update lag gauges and alerts. Returns
    /// what it fired.
    pub async fn tick(&self) -> anyhow::Result<Vec<Fired>> {
        let ttl = Duration::from_secs(30);
        if !self
            .store
            .acquire_lease(LEADER, &self.leader, Uuid::nil(), ttl)
            .await?
        {
            return Ok(Vec::new());
        }
        let now = self.clock.now();
        for (group, reason) in self.sync.check_groups() {
            tracing::warn!(%group, %reason, "sync group skipped: it fails validation (checked again on the next run)");
            if self.sync.group(&group).is_some() {
                self.store.group_refused(&group, &reason).await?;
            }
        }
        self.finish_completed().await?;
        if let Err(e) = self.ensure_metadata(now).await {
            let reason = format!("secondary region not available: {e}");
            tracing::error!(%reason, "no group syncs");
            for g in self.sync.valid_groups() {
                self.store.group_refused(&g.name, &reason).await?;
            }
            return Ok(Vec::new());
        }
        let mut fired = Vec::new();
        for group in self.sync.valid_groups() {
            self.store.ensure_group(&group.name, now).await?;
        }
        for group in self.sync.valid_groups() {
            match self.due(group, now).await {
                Ok(Some((at, by))) => {
                    if let Some(f) = self.fire(group, at, &by, 1).await? {
                        fired.push(f);
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    let reason = format!("{e:#}");
                    tracing::warn!(group = %group.name, %reason, "sync group skipped this time");
                    self.store.group_refused(&group.name, &reason).await?;
                }
            }
        }
        self.watch_lag(now).await?;
        Ok(fired)
    }

    /// Give up leading (on shutdown), so another planner's next pass fires the groups.
    pub async fn step_down(&self) {
        if let Err(e) = self.store.release_lease(LEADER, &self.leader).await {
            tracing::warn!(error = %e, "could not release the scheduler's lease; it expires by itself");
        }
    }

    /// Whether `group` is due now, and as of which instant and why.
    async fn due(
        &self,
        group: &SyncGroup,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Option<(DateTime<Utc>, String)>> {
        let state = self.store.sync_group(&group.name).await?;
        if state
            .as_ref()
            .is_some_and(|s| s.status == SyncStatus::InProgress)
        {
            // One sync of a group at a time; a tick that came meanwhile fires afterwards.
            return Ok(None);
        }
        let last = self.store.last_fire(&group.name).await?;
        let last_at = last.as_ref().map(|f| f.tick);
        if let Some(workflow) = &group.workflow {
            // A successful run of the group's workflow that ended since the last sync.
            if let Some(end) = self.engine()?.workflow_ended(workflow, last_at).await?
                && last_at.is_none_or(|l| end > l)
            {
                return Ok(Some((end, "workflow".into())));
            }
        }
        if group.on_commit && state.as_ref().is_some_and(|s| s.cut_at.is_some()) {
            // A source table whose log moved past the version its last cut cloned.
            let engine = self.engine()?;
            for t in state.iter().flat_map(|s| s.cut_tables.iter()) {
                let latest = engine.table_version(&t.source).await?;
                if t.source_version.is_some_and(|v| latest > v) && last_at.is_none_or(|l| now > l) {
                    return Ok(Some((now, "commit".into())));
                }
            }
        }
        // Schedule ticks count from the last firing, or from when the group was first seen:
        // a tick missed while every planner was down fires once; a new group waits for its
        // first tick (`sync trigger` syncs it at once).
        let since = last_at.or(state.as_ref().map(|s| s.created_at));
        if let Some(schedule) = self.sync.schedule_of(group)
            && let Some(tick) = schedule.latest_at_or_before(now)
            && since.is_none_or(|l| tick > l)
        {
            return Ok(Some((tick, "schedule".into())));
        }
        Ok(None)
    }

    /// Fire a sync of `group` as of `at`: check the group (every table it names exists),
    /// claim the firing (once fleet-wide), record the sync, publish its tasks. `None` when
    /// another planner fired it, or the group failed its checks (recorded as failed).
    pub async fn fire(
        &self,
        group: &SyncGroup,
        at: DateTime<Utc>,
        fired_by: &str,
        attempt: u32,
    ) -> anyhow::Result<Option<Fired>> {
        let request = self.request(group, at);
        let run_id = request.header.run_id;
        let planned = match self.check(group, &request).await {
            Ok(p) => p,
            Err(reason) => {
                tracing::warn!(group = %group.name, %reason, "sync group skipped: it fails its checks (checked again on the next run)");
                self.store.group_refused(&group.name, &reason).await?;
                self.metadata_status(&group.name, SyncStatus::Failed, None, Some(&reason))
                    .await;
                return Ok(None);
            }
        };
        let fire = Fire {
            group: group.name.clone(),
            tick: at,
            attempt,
            fired_by: fired_by.to_owned(),
            run_id,
        };
        if !self.store.claim_fire(&fire).await? {
            return Ok(None);
        }
        self.store
            .group_sync_started(&group.name, at, run_id, fired_by)
            .await?;
        self.metadata_status(&group.name, SyncStatus::InProgress, None, None)
            .await;
        publish_plan(&request, planned, &self.bus, &self.store).await?;
        tracing::info!(group = %group.name, %run_id, %at, fired_by, "sync fired");
        Ok(Some(Fired {
            group: group.name.clone(),
            at,
            fired_by: fired_by.to_owned(),
            run_id,
        }))
    }

    /// The group's plan, after checking that every table it names (not a glob) exists.
    async fn check(
        &self,
        group: &SyncGroup,
        request: &ReplicationRequest,
    ) -> Result<RunPlan, String> {
        let planned = plan(request, &self.engines, false, 1)
            .await
            .map_err(|e| e.to_string())?;
        let missing: Vec<&str> = group
            .tables
            .iter()
            .map(String::as_str)
            .filter(|t| !t.contains(['*', '?', '[']))
            .filter(|t| !planned.items.iter().any(|i| i.table == *t))
            .collect();
        if !missing.is_empty() {
            return Err(format!("table not found: {}", missing.join(", ")));
        }
        if planned.items.is_empty() {
            return Err("its tables match nothing".into());
        }
        Ok(planned)
    }

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
            let tables: Vec<CutTable> = tasks
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
            if !self
                .store
                .group_sync_finished(&state.name, run_id, success, &tables, message.as_deref())
                .await?
            {
                continue;
            }
            let at = state.attempt_at;
            if success {
                tracing::info!(group = %state.name, %run_id, cut = ?at, "group at its new cut");
                self.metadata_status(&state.name, SyncStatus::Success, at, None)
                    .await;
            } else {
                tracing::warn!(group = %state.name, %run_id, message = message.as_deref().unwrap_or(""), "group sync failed; previous cut kept");
                self.metadata_status(&state.name, SyncStatus::Failed, None, message.as_deref())
                    .await;
            }
            let Some(group) = self.sync.group(&state.name) else {
                continue;
            };
            self.notify(group, success, at, message.as_deref(), None)
                .await;
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

    /// Lag gauges per group, and the alert to the owners when a lag passes the group's RPO
    /// (once per cut).
    async fn watch_lag(&self, now: DateTime<Utc>) -> anyhow::Result<()> {
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
    async fn notify(
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

    /// The metadata table locations: primary and secondary region.
    fn metadata_locations(
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
    async fn ensure_metadata(&self, now: DateTime<Utc>) -> anyhow::Result<()> {
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
    async fn metadata_status(
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

    async fn report(
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
fn human(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m {s}s"),
        (h, m, _) => format!("{h}h {m}m"),
    }
}

/// A request naming a group that no scheduler fired (`sync trigger`, a client's message):
/// give it an instant (now, if it names none) and record it as the group's sync.
pub async fn record_group_request(
    request: &mut ReplicationRequest,
    store: &Store,
) -> Result<(), replicator_store::StoreError> {
    let Some(group) = request.group.clone() else {
        return Ok(());
    };
    let run_id = request.header.run_id;
    let at = *request.as_of.get_or_insert_with(Utc::now);
    if store
        .sync_group(&group)
        .await?
        .is_some_and(|g| g.attempt_run_id == Some(run_id))
    {
        return Ok(());
    }
    let fire = Fire {
        group: group.clone(),
        tick: at,
        attempt: 1,
        fired_by: "message".into(),
        run_id,
    };
    store.claim_fire(&fire).await?;
    store
        .group_sync_started(&group, at, run_id, "message")
        .await
}

/// Run the scheduler every `every` until `shutdown` fires.
pub fn spawn(syncer: Arc<Syncer>, every: Duration, shutdown: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = interval.tick() => {}
            }
            if let Err(e) = syncer.tick().await {
                tracing::warn!(error = %format!("{e:#}"), "sync scheduler pass failed; retrying at the next tick");
            }
        }
        syncer.step_down().await;
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_a_person_wrote_them() {
        assert_eq!(human(Duration::from_secs(40)), "40s");
        assert_eq!(human(Duration::from_secs(723)), "12m 3s");
        assert_eq!(human(Duration::from_secs(3900)), "1h 5m");
    }
}
