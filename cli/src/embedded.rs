//! `replicator run`: the whole fleet in one process — planner, cloners, reconcilers and the
//! notifier as tasks over the in-process memory bus, with run state in SQLite. A table that
//! fails does not stop the others; the run ends when every task is terminal.

use std::sync::Arc;

use anyhow::Context;
use replicator_bus::{BusRef, MemoryBus};
use replicator_cloner::ClonerConfig;
use replicator_common::Config;
use replicator_common::shutdown::CancellationToken;
use replicator_lake::{TableLocation, discover};
use replicator_notifier::NotifierConfig;
use replicator_planner::Plan;
use replicator_proto::{Header, Operation, ReplicationRequest, RunCompleted, names};
use replicator_reconciler::ReconcilerConfig;
use replicator_store::Store;

use crate::output;

/// Flags of `replicator run`.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Overrides the config's `operation`.
    pub operation: Option<Operation>,
    pub dry_run: bool,
    pub validate_only: bool,
    /// Show progress bars (only drawn on a terminal).
    pub progress: bool,
}

/// What `run` produced.
#[derive(Debug)]
pub enum RunOutput {
    /// `--validate-only`: the config is valid and these tables match.
    Validated { tables: Vec<String> },
    /// `--dry-run`: what would happen.
    Planned(Plan),
    /// A finished run.
    Completed(RunCompleted),
}

/// The request a config describes.
pub fn request_from(config: &Config, operation: Option<Operation>) -> ReplicationRequest {
    // A config with only a `databricks` section replicates between Unity Catalog metastores.
    let (engine, source_root, target_root) = match &config.databricks {
        Some(d) if config.source.root.is_empty() => {
            let (s, t) = replicator_databricks::fleet::roots(d);
            (replicator_proto::Engine::Databricks, s, t)
        }
        _ => (
            replicator_proto::Engine::Native,
            config.source.root.clone(),
            config.target.root.clone(),
        ),
    };
    ReplicationRequest {
        header: Header::new(uuid::Uuid::now_v7()),
        operation: operation.unwrap_or(config.operation),
        source_root,
        target_root,
        tables: (&config.tables).into(),
        version: None,
        requested_by: Some(format!("replicator-cli/{}", env!("CARGO_PKG_VERSION"))),
        engine,
        replace: config.cloning.replace,
        external_roots: config.cloning.external_roots.clone(),
    }
}

/// Check what can be checked without changing anything: the config (already validated when
/// loaded), both roots, and the tables the filters select.
pub async fn validate(config: &Config) -> anyhow::Result<Vec<String>> {
    if let Some(d) = config
        .databricks
        .as_ref()
        .filter(|_| config.source.root.is_empty())
    {
        let probes = replicator_databricks::WorkspacePair::from_config(d, false)?
            .probe()
            .await;
        let failed: Vec<String> = probes
            .iter()
            .filter(|p| !p.ok)
            .map(|p| format!("{}: {}", p.check, p.detail))
            .collect();
        anyhow::ensure!(failed.is_empty(), "{}", failed.join("; "));
        return Ok(probes.into_iter().map(|p| p.check).collect());
    }
    replicator_lake::location::configure(config)?;
    let source = TableLocation::parse(&config.source.root).context("source.root")?;
    tracing::debug!(source = %source, filter = ?config.tables, "validating");
    let target = TableLocation::parse(&config.target.root).context("target.root")?;
    anyhow::ensure!(
        !source.overlaps(&target),
        "source.root and target.root overlap"
    );
    for (i, root) in config.cloning.external_roots.iter().enumerate() {
        TableLocation::parse(root).with_context(|| format!("clone.external_roots[{i}]"))?;
    }
    let tables = discover(&source, &(&config.tables).into())
        .await
        .context("source.root")?;
    Ok(tables.into_iter().map(|t| t.name).collect())
}

/// Run the config's request end to end in this process.
pub async fn run(config: &Config, opts: &RunOptions) -> anyhow::Result<RunOutput> {
    let request = request_from(config, opts.operation);
    if opts.validate_only {
        return Ok(RunOutput::Validated {
            tables: validate(config).await?,
        });
    }
    replicator_lake::location::configure(config)?;
    replicator_databricks::fleet::configure(config)?;
    if opts.dry_run {
        let plan =
            replicator_planner::plan(&request, true, config.concurrency.cloners.max(4)).await?;
        return Ok(RunOutput::Planned(plan));
    }
    let store = Store::open(&config.state.url)
        .await
        .context("opening the state store")?;
    let memory = MemoryBus::new(config.bus.queue_capacity, config.bus.max_deliveries);
    let bus: BusRef = Arc::new(memory.clone());
    let shutdown = CancellationToken::new();
    let run_id = request.header.run_id;

    // Subscribe before anything is published, so no event is missed.
    let mut events = bus.subscribe("#").await?;
    let bar = output::progress_bar(
        0,
        "{spinner} [{elapsed_precise}] [{bar:30}] {pos}/{len} tables  {msg}",
        opts.progress,
    );
    let services = vec![
        replicator_notifier::spawn(
            bus.clone(),
            store.clone(),
            NotifierConfig::from_config(config),
            shutdown.clone(),
        )
        .await?,
        replicator_reconciler::spawn(
            bus.clone(),
            store.clone(),
            ReconcilerConfig::from_config(config),
            shutdown.clone(),
        )
        .await?,
        replicator_cloner::spawn(
            bus.clone(),
            store.clone(),
            ClonerConfig::from_config(config),
            Some({
                let bar = bar.clone();
                Arc::new(
                    move |task: &replicator_proto::CloneTask,
                          p: &replicator_lake::CloneProgress| {
                        bar.set_message(format!(
                            "{}: {}/{} files, {}",
                            task.table,
                            p.files_done,
                            p.files_total,
                            output::bytes(p.bytes_done)
                        ))
                    },
                )
            }),
            shutdown.clone(),
        )
        .await?,
    ];

    let finish = |services: Vec<tokio::task::JoinHandle<()>>| {
        let (shutdown, memory) = (shutdown.clone(), memory.clone());
        async move {
            shutdown.cancel();
            for s in services {
                let _ = s.await;
            }
            memory.close();
        }
    };

    let plan = match replicator_planner::submit(&request, &bus, &store).await {
        Ok(p) => p,
        Err(e) => {
            finish(services).await;
            return Err(e).context("planning the run");
        }
    };
    bar.set_length(plan.items.len() as u64);
    let reconciles = request.operation.reconciles();
    let completed = loop {
        let next = tokio::select! {
            e = events.next() => e,
            _ = tokio::signal::ctrl_c() => {
                bar.abandon_with_message("interrupted");
                finish(services).await;
                anyhow::bail!("interrupted: run {run_id} is incomplete; rerun to finish it (clones are incremental)");
            }
        };
        let Some((key, payload)) = next else {
            finish(services).await;
            anyhow::bail!("the bus closed before run {run_id} completed");
        };
        let terminal = match key.as_str() {
            names::events::CLONE_FAILED => true,
            names::events::CLONE_SUCCEEDED => !reconciles,
            k => k.starts_with("reconcile."),
        };
        if terminal {
            bar.inc(1);
        }
        if key == names::events::RUN_COMPLETED
            && let Ok(done) = replicator_proto::decode::<RunCompleted>(&payload)
            && done.header.run_id == run_id
        {
            break done;
        }
    };
    bar.finish_and_clear();
    finish(services).await;
    Ok(RunOutput::Completed(completed))
}
