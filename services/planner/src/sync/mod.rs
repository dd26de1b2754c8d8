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
use replicator_proto::{Operation, ReplicationRequest, TableFilter};
use replicator_store::{Fire, LeaseToken, Store, SyncStatus};
use serde::Serialize;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::{RunPlan, plan, publish_plan};

mod carry;
mod finish;
mod metadata;
mod status;

pub use status::{GroupReport, Uncovered};

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
        let mut request = self
            .config
            .request(None, Some(format!("replicator-sync/{}", group.name)));
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
        // A cut is of the group's tables; the catalog's other objects sync with runs.
        request.catalog = false;
        request.mirror = false;
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
        let (planned, carried) = self.carry_unchanged(&group.name, planned, at).await?;
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
            .group_sync_started(&group.name, at, run_id, fired_by, &carried)
            .await?;
        if planned.items.is_empty() {
            // Nothing moved on either side since the last cut: it holds as of `at` too.
            tracing::info!(group = %group.name, %run_id, %at, fired_by, "sync fired; every table unchanged since the last cut");
            self.conclude(&group.name, run_id, Some(at), true, &carried, None)
                .await?;
        } else {
            self.metadata_status(&group.name, SyncStatus::InProgress, None, None)
                .await;
            publish_plan(&request, planned, &self.bus, &self.store).await?;
            tracing::info!(group = %group.name, %run_id, %at, fired_by, "sync fired");
        }
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
        .group_sync_started(&group, at, run_id, "message", &[])
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
