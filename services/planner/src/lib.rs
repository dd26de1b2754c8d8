//! The planner turns a [`ReplicationRequest`] into a run: it discovers the tables under the
//! source root, records the run and one task per table in the store, publishes one task per
//! table (`tasks.clone`, or `tasks.reconcile` for reconciliation-only runs) and announces the
//! run on the events topic (`run.planned`).
//!
//! Requests arrive on the `requests` queue ([`spawn`]) or directly ([`submit`], used by the
//! embedded `replicator run`). A request is acked only after its run is recorded and every
//! task is published; a request that cannot be planned (bad root, bad pattern) is
//! dead-lettered with the reason. [`plan`] with `dry_run` works out what each clone would
//! copy and writes nothing.

use futures::{StreamExt, TryStreamExt, stream};
use replicator_bus::{BusRef, typed};
use replicator_common::shutdown::CancellationToken;
use replicator_lake::{CloneOptions, LakeError, TableLocation, deep_clone, discover};
use replicator_proto::{
    CloneMetrics, CloneTask, Header, Operation, PlannedTable, ReconcileTask, ReplicationRequest,
    RunPlanned, names,
};
use replicator_store::{NewTask, Store};
use tokio::task::JoinHandle;
use uuid::Uuid;

mod databricks;

/// Why a request could not be planned.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error("state store: {0}")]
    Store(#[from] replicator_store::StoreError),
    #[error("bus: {0}")]
    Bus(#[from] replicator_bus::BusError),
    #[error("a pinned version needs exactly one table, but {0} matched")]
    PinnedVersion(usize),
    #[error("databricks: {0}")]
    Databricks(#[from] replicator_databricks::DatabricksError),
}

/// One table of a plan.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedItem {
    pub task_id: Uuid,
    pub table: String,
    pub source: String,
    pub target: String,
    /// Filled by dry runs: the source version and what the clone would do.
    pub source_version: Option<u64>,
    pub would: Option<CloneMetrics>,
    /// Filled by dry runs when the table cannot be cloned.
    pub problem: Option<String>,
}

/// A planned run.
#[derive(Clone, Debug)]
pub struct Plan {
    pub run_id: Uuid,
    pub operation: Operation,
    pub items: Vec<PlannedItem>,
}

/// Discover the request's tables. With `dry_run`, also work out, per table, the source version
/// and what a clone would copy and remove (reads only, in parallel).
pub async fn plan(
    request: &ReplicationRequest,
    dry_run: bool,
    parallelism: usize,
) -> Result<Plan, PlanError> {
    if request.engine == replicator_proto::Engine::Databricks {
        return databricks::plan(request, dry_run).await;
    }
    let source_root = TableLocation::parse(&request.source_root)?;
    let target_root = TableLocation::parse(&request.target_root)?;
    let external_roots = request
        .external_roots
        .iter()
        .map(String::as_str)
        .map(TableLocation::parse)
        .collect::<Result<Vec<_>, _>>()?;
    if source_root.overlaps(&target_root) {
        return Err(LakeError::Invalid(format!(
            "source root {source_root} and target root {target_root} overlap"
        ))
        .into());
    }
    let tables = discover(&source_root, &request.tables).await?;
    if request.version.is_some() && tables.len() != 1 {
        return Err(PlanError::PinnedVersion(tables.len()));
    }
    let mut items = Vec::with_capacity(tables.len());
    for t in &tables {
        items.push(PlannedItem {
            task_id: Uuid::now_v7(),
            table: t.name.clone(),
            source: source_root.child(&t.relative)?.url().to_string(),
            target: target_root.child(&t.relative)?.url().to_string(),
            source_version: None,
            would: None,
            problem: None,
        });
    }
    if dry_run {
        let version = request.version;
        let (replace, external_roots) = (request.replace, &external_roots);
        items = stream::iter(items.into_iter().map(|mut item| async move {
            let options = CloneOptions {
                version,
                dry_run: true,
                parallelism: 8,
                replace,
                external_roots: external_roots.clone(),
                ..Default::default()
            };
            let src = TableLocation::parse(&item.source)?;
            let dst = TableLocation::parse(&item.target)?;
            match deep_clone(&src, &dst, &options).await {
                Ok(r) => {
                    item.source_version = Some(r.source_version);
                    item.would = Some(r.metrics);
                }
                Err(e) => item.problem = Some(e.to_string()),
            }
            Ok::<_, PlanError>(item)
        }))
        .buffered(parallelism.max(1))
        .try_collect()
        .await?;
    }
    Ok(Plan {
        run_id: request.header.run_id,
        operation: request.operation,
        items,
    })
}

/// Plan a request, record the run and its tasks, publish the tasks and `run.planned`.
/// Idempotent for a redelivered request: a run that is already recorded is not planned twice.
pub async fn submit(
    request: &ReplicationRequest,
    bus: &BusRef,
    store: &Store,
) -> Result<Plan, PlanError> {
    let run_id = request.header.run_id;
    if store.run(run_id).await?.is_some() {
        tracing::info!(%run_id, "run already planned; ignoring the repeated request");
        return Ok(Plan {
            run_id,
            operation: request.operation,
            items: Vec::new(),
        });
    }
    let plan = plan(request, false, 1).await?;
    let tasks: Vec<NewTask> = plan
        .items
        .iter()
        .map(|i| NewTask {
            task_id: i.task_id,
            table: i.table.clone(),
            source: i.source.clone(),
            target: i.target.clone(),
            source_version: i.source_version,
        })
        .collect();
    store.create_run(request, &tasks).await?;
    let planned = RunPlanned {
        header: Header::new(run_id),
        operation: request.operation,
        source_root: request.source_root.clone(),
        target_root: request.target_root.clone(),
        tables: plan
            .items
            .iter()
            .map(|i| PlannedTable {
                task_id: i.task_id,
                table: i.table.clone(),
                source_version: i.source_version,
            })
            .collect(),
    };
    typed::publish_event(bus.as_ref(), names::events::RUN_PLANNED, &planned).await?;
    // Publishes wait for the broker's confirm; a few at once keep a large plan fast. The
    // futures own their messages (a spawned planner needs them `'static`).
    let messages: Vec<(&'static str, bytes::Bytes)> = plan
        .items
        .iter()
        .map(|item| {
            if request.operation.clones() {
                let task = CloneTask {
                    header: Header::new(run_id),
                    task_id: item.task_id,
                    attempt: 1,
                    table: item.table.clone(),
                    source: item.source.clone(),
                    target: item.target.clone(),
                    version: request.version,
                    operation: request.operation,
                    engine: request.engine,
                    replace: request.replace,
                    external_roots: request.external_roots.clone(),
                };
                (names::CLONE_TASKS, replicator_proto::encode(&task).into())
            } else {
                let task = ReconcileTask {
                    header: Header::new(run_id),
                    task_id: item.task_id,
                    attempt: 1,
                    table: item.table.clone(),
                    source: item.source.clone(),
                    target: item.target.clone(),
                    source_version: request.version,
                    engine: request.engine,
                };
                (
                    names::RECONCILE_TASKS,
                    replicator_proto::encode(&task).into(),
                )
            }
        })
        .collect();
    let mut publishes = Vec::with_capacity(messages.len());
    for (queue, payload) in messages {
        let bus = bus.clone();
        publishes.push(async move { bus.publish(queue, payload).await });
    }
    stream::iter(publishes)
        .buffer_unordered(PUBLISH_CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    tracing::info!(%run_id, tables = plan.items.len(), operation = %request.operation, "run planned");
    Ok(plan)
}

/// Task publishes in flight at once while planning.
const PUBLISH_CONCURRENCY: usize = 32;

/// Serve the `requests` queue until `shutdown` fires. The consumer is attached before this
/// returns.
pub async fn spawn(
    bus: BusRef,
    store: Store,
    shutdown: CancellationToken,
) -> anyhow::Result<JoinHandle<()>> {
    let mut consumer = bus.consume(names::REQUESTS, 1).await?;
    Ok(tokio::spawn(async move {
        loop {
            let delivery = tokio::select! {
                _ = shutdown.cancelled() => break,
                d = consumer.next() => match d { Some(d) => d, None => break },
            };
            let Some((request, delivery)) = typed::accept::<ReplicationRequest>(delivery) else {
                continue;
            };
            let run_id = request.header.run_id;
            match submit(&request, &bus, &store).await {
                Ok(_) => delivery.ack(),
                Err(e @ (PlanError::Store(_) | PlanError::Bus(_))) => {
                    tracing::warn!(%run_id, error = %e, "planning interrupted; the request will be redelivered");
                    delivery.nack(&e.to_string());
                }
                Err(e) => {
                    tracing::error!(%run_id, error = %e, "request cannot be planned");
                    delivery.dead_letter(&e.to_string());
                }
            }
        }
    }))
}
