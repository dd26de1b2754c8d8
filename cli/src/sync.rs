//! `replicator sync …`: sync groups from the command line (docs/sync.md) — their status, a
//! sync on demand, failover to the last consistent cut, failback.

use std::sync::Arc;

use anyhow::Context;
use replicator_bus::{BusRef, MemoryBus};
use replicator_common::Config;
use replicator_common::config::{BusBackend, SyncGroup};
use replicator_engine::Engines;
use replicator_planner::sync::{Fired, GroupReport, Syncer, SystemClock};
use replicator_proto::{Operation, RunCompleted, TableFilter};
use replicator_store::GroupState;

use crate::embedded;
use crate::runtime::{Deps, open_store};

/// The sync section's group `name`, or why not.
fn group<'a>(config: &'a Config, name: &str) -> anyhow::Result<&'a SyncGroup> {
    let sync = config
        .sync
        .as_ref()
        .context("the config has no `sync` section")?;
    sync.group(name)
        .with_context(|| format!("no sync group `{name}` in the config"))
}

fn syncer(config: &Config, deps: &Deps) -> anyhow::Result<Syncer> {
    Syncer::new(
        Arc::new(config.clone()),
        deps.engines.clone(),
        deps.bus.clone(),
        deps.store.clone(),
        Arc::new(SystemClock),
    )
    .context("the config has no `sync` section")
}

/// Every group's status: last cut, lag, RPO, next firing, last error.
pub async fn status(config: &Config) -> anyhow::Result<Vec<GroupReport>> {
    // Status reads the store and the tables; it publishes nothing.
    let deps = Deps::open(config, Arc::new(MemoryBus::new(1, 1)) as BusRef).await?;
    syncer(config, &deps)?.status().await
}

/// What `sync trigger` did.
#[derive(Debug)]
pub enum Triggered {
    /// On the embedded bus: the sync ran here; the group's state afterwards.
    Ran {
        fired: Fired,
        run: Box<RunCompleted>,
        group: Option<Box<GroupState>>,
    },
    /// On a broker: the sync was published for the fleet.
    Published(Fired),
}

/// Sync `name` now. On the memory bus the sync runs in this process; on a broker it is
/// published for the fleet (whose planner finishes it).
pub async fn trigger(config: &Config, name: &str) -> anyhow::Result<Triggered> {
    let g = group(config, name)?.clone();
    if config.bus.backend != BusBackend::Memory {
        let bus = crate::fleet::connect_bus(config).await?;
        let deps = Deps::open(config, bus.clone()).await?;
        let fired = syncer(config, &deps)?
            .fire(&g, chrono::Utc::now(), "manual", 1)
            .await?;
        bus.close().await;
        return fired
            .map(Triggered::Published)
            .with_context(|| refused(name));
    }
    let mut fired = None;
    let slot = &mut fired;
    let run = embedded::in_process(config, false, config.operation, false, |deps| async move {
        let syncer = syncer(config, &deps)?;
        let f = syncer
            .fire(&g, chrono::Utc::now(), "manual", 1)
            .await?
            .with_context(|| refused(&g.name))?;
        let tables = deps.store.tasks(f.run_id).await?.len() as u64;
        let run_id = f.run_id;
        *slot = Some(f);
        Ok((run_id, tables))
    })
    .await;
    let run = match run {
        Ok(r) => r,
        Err(e) => {
            // The group's refusal, if it was refused, is the better message.
            let store = open_store(config).await?;
            if let Some(state) = store.sync_group(name).await?
                && fired.is_none()
                && let Some(m) = state.message
            {
                anyhow::bail!("sync group {name} not synced: {m}");
            }
            return Err(e);
        }
    };
    // The run completed: move the group's cut (or keep it) now, as the fleet's planner would.
    let deps = Deps::open(config, Arc::new(MemoryBus::new(1, 1)) as BusRef).await?;
    syncer(config, &deps)?.finish_completed().await?;
    Ok(Triggered::Ran {
        fired: fired.context("the sync did not start")?,
        run: Box::new(run),
        group: deps.store.sync_group(name).await?.map(Box::new),
    })
}

fn refused(name: &str) -> String {
    format!(
        "sync group {name} was not synced: it failed its checks, or another planner fired it (see `replicator sync status`)"
    )
}

/// Bring every table of group `name` in the secondary back to the group's last consistent
/// cut (dry run unless `execute`): a table a later, incomplete sync moved ahead is restored
/// to the cut's version with a new commit. Returns one line per table.
pub async fn failover(config: &Config, name: &str, execute: bool) -> anyhow::Result<Vec<String>> {
    group(config, name)?;
    let store = open_store(config).await?;
    let engines = Engines::from_config(config)?;
    failover_with(config, &store, &engines, name, execute).await
}

/// [`failover`] with the store and engines already open (the console's dry run).
pub async fn failover_with(
    config: &Config,
    store: &replicator_store::Store,
    engines: &Engines,
    name: &str,
    execute: bool,
) -> anyhow::Result<Vec<String>> {
    group(config, name)?;
    let state = store
        .sync_group(name)
        .await?
        .with_context(|| format!("sync group {name} has never synced"))?;
    let cut = state
        .cut_at
        .with_context(|| format!("sync group {name} has no consistent cut to fail over to"))?;
    let engine = engines.get(config.engine())?;
    let mut lines = Vec::new();
    for t in &state.cut_tables {
        let want = t
            .target_version
            .with_context(|| format!("{}: the cut recorded no target version", t.table))?;
        let now = engine
            .table_version(&t.target)
            .await
            .with_context(|| t.table.clone())?;
        lines.push(if now == want {
            format!("{}: at the cut (version {want})", t.table)
        } else if execute {
            engine
                .restore(&t.target, want)
                .await
                .with_context(|| t.table.clone())?
        } else {
            format!(
                "{}: would restore version {want} (now version {now}) with a new commit",
                t.table
            )
        });
    }
    if execute {
        store
            .record_failover(name, "failover", Some(cut), &lines.join("\n"))
            .await?;
    }
    Ok(lines)
}

/// Replicate group `name` back from the secondary to the primary once the primary is back
/// (dry run unless `execute`). The primary's tables are replaced by the secondary's.
pub async fn failback(config: &Config, name: &str, execute: bool) -> anyhow::Result<Vec<String>> {
    let g = group(config, name)?.clone();
    let mut request = config.request(
        Some(Operation::Replication),
        Some(format!("replicator-sync/{name}/failback")),
    );
    std::mem::swap(&mut request.source_root, &mut request.target_root);
    request.tables = TableFilter {
        include: g.tables.clone(),
        exclude: Vec::new(),
    };
    // The primary's tables are not replicas of the secondary's: failback replaces them, which
    // is what the user asked for.
    request.replace = true;
    let engines = Engines::from_config(config)?;
    if !execute {
        let plan = replicator_planner::plan(&request, &engines, true, 4).await?;
        return Ok(plan
            .items
            .iter()
            .map(|i| match (&i.would, &i.problem) {
                (_, Some(p)) => format!("{}: cannot fail back: {p}", i.table),
                (Some(m), None) => format!(
                    "{}: would copy {} files and remove {} from the primary",
                    i.table, m.num_copied_files, m.num_removed_files
                ),
                (None, None) => format!("{}: would fail back", i.table),
            })
            .collect());
    }
    let run = embedded::in_process(config, false, request.operation, false, |deps| async move {
        let plan = replicator_planner::submit(&request, &deps.engines, &deps.bus, &deps.store)
            .await
            .map_err(|e| anyhow::Error::from(e).context("planning the failback"))?;
        Ok((plan.run_id, plan.tasks()))
    })
    .await?;
    let lines: Vec<String> = run
        .summary
        .tables
        .iter()
        .map(|t| match &t.error {
            Some(e) => format!("{}: {:?}: {e}", t.table, t.status),
            None => format!("{}: {:?}", t.table, t.status),
        })
        .collect();
    let store = open_store(config).await?;
    store
        .record_failover(name, "failback", None, &lines.join("\n"))
        .await?;
    anyhow::ensure!(
        run.summary.is_success(),
        "failback of {name} incomplete: {}",
        lines.join("; ")
    );
    Ok(lines)
}
