//! `replicator run`: the whole fleet in one process — planner, cloners, reconcilers and the
//! notifier as tasks over the in-process memory bus, with run state in SQLite. A table that
//! fails does not stop the others; the run ends when every task is terminal.

use std::sync::Arc;

use replicator_bus::{BusRef, MemoryBus};
use replicator_common::Config;
use replicator_common::shutdown::CancellationToken;
use replicator_engine::Engines;
use replicator_planner::RunPlan;
use replicator_proto::{Operation, ReplicationRequest, RunCompleted, names};

use crate::output;
use crate::progress::RunProgress;
use crate::runtime::{self, Deps, Service};

/// Flags of `replicator run`.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Overrides the config's `operation`.
    pub operation: Option<Operation>,
    pub dry_run: bool,
    pub validate_only: bool,
    /// Show progress bars (only drawn on a terminal).
    pub progress: bool,
    /// `replicator ingest`: only the config's ingest sources (docs/ingest.md).
    pub ingest_only: bool,
    /// `replicator mirror snowflake`: only the Snowflake mirror (docs/snowflake.md).
    pub mirror_only: bool,
    /// `replicator run --ui`: serve the operator console (docs/console.md) during the run,
    /// and after it until Ctrl-C.
    pub ui: bool,
}

/// What `run` produced.
#[derive(Debug)]
pub enum RunOutput {
    /// `--validate-only`: the config is valid and these tables match.
    Validated { tables: Vec<String> },
    /// `--dry-run`: what would happen.
    Planned(RunPlan),
    /// A finished run.
    Completed(RunCompleted),
}

/// The request a config describes, with its ingest sources (docs/ingest.md).
pub fn request_from(
    config: &Config,
    operation: Option<Operation>,
) -> anyhow::Result<ReplicationRequest> {
    let mut request = config.request(
        operation,
        Some(format!("replicator-cli/{}", env!("CARGO_PKG_VERSION"))),
    );
    request.ingest = crate::ingest::sources(config)?;
    Ok(request)
}

/// Check what can be checked without changing anything: the config (already validated when
/// loaded), both roots, and the tables the filters select (for the Databricks engine:
/// connectivity and access on both workspaces).
pub async fn validate(config: &Config) -> anyhow::Result<Vec<String>> {
    let request = request_from(config, None)?;
    let engines = Engines::only_for(config, request.engine)?;
    engines.get(request.engine)?.probe(&request).await
}

/// Run the config's request end to end in this process.
pub async fn run(config: &Config, opts: &RunOptions) -> anyhow::Result<RunOutput> {
    let mut request = request_from(config, opts.operation)?;
    if opts.ingest_only {
        anyhow::ensure!(
            !request.ingest.is_empty(),
            "the config has no `ingest` section: nothing to ingest"
        );
        // The sources only: not the tables under `source.root` (file sources keep it as
        // their root), not the catalog.
        request.source_root.clear();
        request.catalog = false;
        request.engine = replicator_proto::EngineKind::Native;
    }
    if opts.mirror_only {
        anyhow::ensure!(
            config.snowflake.is_some(),
            "the config has no `snowflake` section: nothing to mirror"
        );
        // The mirror only: no clones, no catalog objects, no ingestion.
        request.source_root.clear();
        request.catalog = false;
        request.ingest.clear();
        request.mirror = true;
        request.operation = Operation::Replication;
    }
    if opts.validate_only {
        return Ok(RunOutput::Validated {
            tables: validate(config).await?,
        });
    }
    if opts.dry_run {
        let engines = Engines::from_config(config)?;
        let plan =
            replicator_planner::plan(&request, &engines, true, config.concurrency.cloners.max(4))
                .await?;
        return Ok(RunOutput::Planned(plan));
    }
    let completed = in_process(
        config,
        opts.progress && !opts.ui,
        request.operation,
        opts.ui,
        |deps| async move {
            let plan = replicator_planner::submit(&request, &deps.engines, &deps.bus, &deps.store)
                .await
                .map_err(|e| anyhow::Error::from(e).context("planning the run"))?;
            Ok((plan.run_id, plan.tasks()))
        },
    )
    .await?;
    Ok(RunOutput::Completed(completed))
}

/// Run every service but the planner in this process over the memory bus and the configured
/// store, let `start` put a run on it (it returns the run's ID and how many tables it has),
/// and wait until that run completes. A run of `operation` (progress counts tasks the same
/// way `watch` does); `progress` draws a bar on a terminal.
pub async fn in_process<F, Fut>(
    config: &Config,
    progress: bool,
    operation: Operation,
    ui: bool,
    start: F,
) -> anyhow::Result<RunCompleted>
where
    F: FnOnce(Deps) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<(uuid::Uuid, u64)>>,
{
    let memory = MemoryBus::new(config.bus.queue_capacity, config.bus.max_deliveries);
    let deps = Deps::open(config, Arc::new(memory.clone()) as BusRef).await?;
    let shutdown = CancellationToken::new();

    // Subscribe before anything is published, so no event is missed.
    let mut events = deps.bus.subscribe("#").await?;
    let bar = output::progress_bar(
        0,
        "{spinner} [{elapsed_precise}] [{bar:30}] {pos}/{len} tables  {msg}",
        progress,
    );
    let copies = {
        let bar = bar.clone();
        Arc::new(
            move |task: &replicator_proto::CloneTask, p: &replicator_lake::CloneProgress| {
                bar.set_message(format!(
                    "{}: {}/{} files, {}",
                    task.table,
                    p.files_done,
                    p.files_total,
                    output::bytes(p.bytes_done)
                ))
            },
        ) as replicator_cloner::ProgressSink
    };
    // The planner runs inline (its errors end the command), every other service as a task.
    let services: Vec<Service> = Service::ALL
        .into_iter()
        .filter(|s| *s != Service::Planner)
        .chain(ui.then_some(Service::Console))
        .collect();
    let handles = runtime::start(config, &deps, &services, Some(copies), &shutdown).await?;

    let finish = |handles: Vec<tokio::task::JoinHandle<()>>| {
        let (shutdown, memory) = (shutdown.clone(), memory.clone());
        async move {
            shutdown.cancel();
            for h in handles {
                let _ = h.await;
            }
            memory.close();
        }
    };

    let (run_id, tables) = match start(deps.clone()).await {
        Ok(started) => started,
        Err(e) => {
            finish(handles).await;
            return Err(e);
        }
    };
    bar.set_length(tables);
    let mut count = RunProgress::new(operation);
    let completed = loop {
        let next = tokio::select! {
            e = events.next() => e,
            _ = tokio::signal::ctrl_c() => {
                bar.abandon_with_message("interrupted");
                finish(handles).await;
                anyhow::bail!("interrupted: run {run_id} is incomplete; rerun to finish it (clones are incremental)");
            }
        };
        let Some((key, payload)) = next else {
            finish(handles).await;
            anyhow::bail!("the bus closed before run {run_id} completed");
        };
        if count.on_event(&key, RunProgress::task_of(&payload)) {
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
    if ui {
        // The console stays up (replay works: the services are still running).
        let s = &completed.summary;
        eprintln!(
            "run {} completed: {} succeeded, {} failed, {} mismatched; the console stays up until Ctrl-C",
            completed.header.run_id, s.succeeded, s.failed, s.mismatched
        );
        let _ = tokio::signal::ctrl_c().await;
    }
    finish(handles).await;
    // OpenLineage events still queued get a few seconds to leave (never more).
    deps.engines
        .lineage()
        .flush(std::time::Duration::from_secs(5))
        .await;
    Ok(completed)
}
