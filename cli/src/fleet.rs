//! Fleet mode: each service in its own process over a broker (`replicator serve`), and the
//! commands fleet users run against it (`submit`, `watch`, `status`, `replay`).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use replicator_bus::{BusRef, BusSettings, typed};
use replicator_common::Config;
use replicator_common::health::{self, Readiness};
use replicator_common::shutdown::CancellationToken;
use replicator_proto::{Operation, RunCompleted, RunSummary, names};
use replicator_store::Store;
use uuid::Uuid;

use crate::progress::RunProgress;
pub use crate::runtime::Service;
use crate::runtime::{self, Deps, open_store};

/// The bus settings of a config.
pub fn bus_settings(config: &Config) -> anyhow::Result<BusSettings> {
    Ok(BusSettings {
        backend: config.bus.backend.to_string(),
        url: config.bus.resolved_url().context("bus.url")?,
        prefix: config.bus.prefix.clone(),
        quorum: config.bus.quorum,
        retry_delays: config
            .bus
            .retry_delays_ms
            .iter()
            .map(|ms| Duration::from_millis(*ms))
            .collect(),
        max_deliveries: config.bus.max_deliveries,
        partitions: config.bus.partitions,
        create_topics: config.bus.create_topics,
    })
}

/// Connect to the configured broker.
pub async fn connect_bus(config: &Config) -> anyhow::Result<BusRef> {
    replicator_bus::connect(&bus_settings(config)?)
        .await
        .with_context(|| format!("connecting to the {} bus", config.bus.backend))
}

/// Run `services` in this process until `shutdown` fires, with `/healthz`, `/readyz` and
/// `/metrics` on `listen`. On shutdown: readiness drops, consumers stop taking work,
/// in-flight tasks finish and are settled, then the broker connection closes.
pub async fn serve(
    config: &Config,
    services: &[Service],
    listen: SocketAddr,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    anyhow::ensure!(!services.is_empty(), "name at least one service to serve");
    let ready = Readiness::default();
    let (bound, http) = health::serve(listen, ready.clone(), shutdown.clone())
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(%bound, services = ?services, "health and metrics endpoints up");
    let engines = replicator_engine::Engines::from_config(config)?;
    let bus = connect_bus(config).await?;
    let deps = Deps {
        store: open_store(config).await?,
        bus: bus.clone(),
        engines,
    };
    let mut handles = runtime::start(config, &deps, services, None, &shutdown).await?;
    for s in services {
        replicator_common::metrics::set_up(s.name(), true);
    }
    // Queue depth for dashboards and autoscalers that read Prometheus.
    let depth = {
        let (bus, shutdown) = (bus.clone(), shutdown.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => {}
                }
                for q in [
                    names::REQUESTS,
                    names::CLONE_TASKS,
                    names::RECONCILE_TASKS,
                    names::CATALOG_TASKS,
                ] {
                    if let Some(d) = bus.depth(q).await {
                        replicator_common::metrics::queue_depth(q, d);
                    }
                }
            }
        })
    };
    ready.set(true);
    tracing::info!(services = ?services, "serving");
    // A service that stops by itself (its broker gone for longer than the reconnect
    // timeout) takes the process down with an error, for the supervisor to restart it.
    let (mut failed, mut finished) = (None, None);
    tokio::select! {
        _ = shutdown.cancelled() => {}
        (_, i, rest) = futures::future::select_all(handles.iter_mut()) => {
            drop(rest);
            finished = Some(i);
            if !shutdown.is_cancelled() {
                failed = Some(services[i].name());
                shutdown.cancel();
            }
        }
    }
    ready.set(false);
    tracing::info!("shutting down: finishing in-flight tasks");
    for (i, h) in handles.into_iter().enumerate() {
        if Some(i) != finished {
            let _ = h.await;
        }
    }
    for s in services {
        replicator_common::metrics::set_up(s.name(), false);
    }
    depth.abort();
    // OpenLineage events still queued get a few seconds to leave (never more).
    deps.engines
        .lineage()
        .flush(std::time::Duration::from_secs(5))
        .await;
    bus.close().await;
    let _ = http.await;
    if let Some(name) = failed {
        anyhow::bail!("the {name} stopped unexpectedly (see the log above)");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Publish the request a config describes on the `requests` queue; returns its run ID.
pub async fn submit(config: &Config, operation: Option<Operation>) -> anyhow::Result<Uuid> {
    let request = crate::embedded::request_from(config, operation)?;
    let bus = connect_bus(config).await?;
    typed::publish(bus.as_ref(), names::REQUESTS, &request)
        .await
        .context("publishing the request")?;
    bus.close().await;
    Ok(request.header.run_id)
}

/// Follow a run's events until it completes; `on_event` sees each task event of the run
/// with the run's progress after it. Returns the completed run. The store is consulted too, so a run that completed before
/// `watch` started (or whose completion event was missed) is still reported.
pub async fn watch(
    config: &Config,
    run_id: Uuid,
    mut on_event: impl FnMut(&str, &serde_json::Value, &RunProgress),
) -> anyhow::Result<RunSummary> {
    let bus = connect_bus(config).await?;
    let store = open_store(config).await?;
    let mut events = bus.subscribe("#").await?;
    let run = match store.run(run_id).await? {
        Some(run) => Some(run),
        None => wait_for_plan(&store, run_id).await,
    };
    let Some(run) = run else {
        anyhow::bail!(
            "run {run_id} not found in the state store (was it submitted to this fleet?)"
        );
    };
    // Tasks that finished before `watch` subscribed count too.
    let tasks = store.tasks(run_id).await?;
    let mut progress =
        RunProgress::from_statuses(run.operation, tasks.iter().map(|t| (t.task_id, t.status)));
    let mut poll = tokio::time::interval(Duration::from_secs(2));
    let summary = loop {
        tokio::select! {
            _ = poll.tick() => {
                if let Some(run) = store.run(run_id).await?
                    && let Some(summary) = run.summary.filter(|_| run.completed_at.is_some())
                {
                    break summary;
                }
            }
            e = events.next() => {
                let Some((key, payload)) = e else {
                    anyhow::bail!("the bus closed before run {run_id} completed");
                };
                let Ok(value) = serde_json::from_slice::<serde_json::Value>(&payload) else {
                    continue;
                };
                if value.get("run_id").and_then(|v| v.as_str()) != Some(&run_id.to_string()) {
                    continue;
                }
                if key == names::events::RUN_COMPLETED {
                    let done: RunCompleted = serde_json::from_value(value)?;
                    break done.summary;
                }
                progress.on_event(&key, RunProgress::task_of(&payload));
                on_event(&key, &value, &progress);
            }
        }
    };
    bus.close().await;
    Ok(summary)
}

/// A just-submitted run appears in the store once a planner took it: wait a little.
async fn wait_for_plan(store: &Store, run_id: Uuid) -> Option<replicator_store::RunRecord> {
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Ok(Some(run)) = store.run(run_id).await {
            return Some(run);
        }
    }
    None
}

/// Dead-lettered tasks of a run (optionally one task) go back to work; their tasks are
/// reopened in the store. Returns how many messages moved.
pub async fn replay(config: &Config, run_id: Uuid, task: Option<Uuid>) -> anyhow::Result<usize> {
    let bus = connect_bus(config).await?;
    let store = open_store(config).await?;
    let moved = replay_with(&bus, &store, run_id, task).await;
    bus.close().await;
    moved
}

/// [`replay`] over an open bus and store (the console's replay action).
pub async fn replay_with(
    bus: &replicator_bus::BusRef,
    store: &replicator_store::Store,
    run_id: Uuid,
    task: Option<Uuid>,
) -> anyhow::Result<usize> {
    let matches = |letter: &replicator_proto::DeadLetter| {
        let v: serde_json::Value = serde_json::from_str(&letter.payload).unwrap_or_default();
        let same_run = v.get("run_id").and_then(|r| r.as_str()) == Some(&run_id.to_string());
        let same_task =
            task.is_none_or(|t| v.get("task_id").and_then(|x| x.as_str()) == Some(&t.to_string()));
        same_run && same_task
    };
    let mut moved = 0;
    for queue in [
        names::CLONE_TASKS,
        names::RECONCILE_TASKS,
        names::CATALOG_TASKS,
    ] {
        // Reopen the tasks first, so their results are recorded against a live task.
        for letter in bus.dead_letters(queue).await? {
            if matches(&letter)
                && let Some(task_id) = serde_json::from_str::<serde_json::Value>(&letter.payload)
                    .ok()
                    .and_then(|v| v.get("task_id")?.as_str()?.parse::<Uuid>().ok())
            {
                store.requeue_task(task_id).await?;
            }
        }
        moved += bus.replay(queue, &matches).await?;
    }
    Ok(moved)
}

/// The stored state of a run: the run record and its tasks.
pub async fn status(
    config: &Config,
    run_id: Uuid,
) -> anyhow::Result<(
    replicator_store::RunRecord,
    Vec<replicator_store::TaskRecord>,
)> {
    let store = open_store(config).await?;
    let run = store
        .run(run_id)
        .await?
        .with_context(|| format!("run {run_id} not found"))?;
    Ok((run, store.tasks(run_id).await?))
}
