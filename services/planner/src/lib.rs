//! The planner turns a [`ReplicationRequest`] into a run: it discovers the tables under the
//! source root, records the run and one task per table in the store, publishes one task per
//! table (`tasks.clone`, or `tasks.reconcile` for reconciliation-only runs) and announces the
//! run on the events topic (`run.planned`).
//!
//! Requests arrive on the `requests` queue ([`spawn`]) or directly ([`submit`], used by the
//! embedded `replicator run`). A request is acked only after its run is recorded and every
//! task is published; a request that cannot be planned (bad root, bad pattern) is
//! dead-lettered with the reason. [`plan`] with `dry_run` works out what each clone would
//! copy and writes nothing. The expansion itself is the engine's ([`replicator_engine`]).

use std::time::Instant;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use replicator_bus::{BusRef, typed};
use replicator_common::shutdown::CancellationToken;
use replicator_engine::{Applied, Engine, EngineError, Engines, ObjectContext};
use replicator_proto::{
    CatalogTask, CloneTask, EngineKind, Header, ObjectKind, Operation, PlannedTable, ReconcileTask,
    ReplicationRequest, RunPlanned, names,
};
use replicator_store::{NewTask, Store};
use tokio::task::JoinHandle;
use uuid::Uuid;

pub use replicator_engine::{PlannedItem, PlannedObject};

pub mod sync;

/// Why a request could not be planned.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("state store: {0}")]
    Store(#[from] replicator_store::StoreError),
    #[error("bus: {0}")]
    Bus(#[from] replicator_bus::BusError),
}

/// A planned run: one item per table.
#[derive(Clone, Debug)]
pub struct RunPlan {
    pub run_id: Uuid,
    pub operation: Operation,
    pub items: Vec<PlannedItem>,
    /// The catalog objects besides tables (a request with `catalog`; docs/catalog.md).
    pub objects: Vec<PlannedObject>,
    /// Dry runs: per object (same order), what applying it would do, or why it cannot.
    pub would_apply: Vec<Result<Applied, String>>,
}

impl RunPlan {
    /// Tasks in the plan: tables and catalog objects.
    pub fn tasks(&self) -> u64 {
        (self.items.len() + self.objects.len()) as u64
    }
}

/// Expand the request into its tables with the engine it names. With `dry_run`, also work
/// out, per table, the source version and what a clone would copy and remove (reads only,
/// `parallelism` tables at once).
pub async fn plan(
    request: &ReplicationRequest,
    engines: &Engines,
    dry_run: bool,
    parallelism: usize,
) -> Result<RunPlan, PlanError> {
    let engine = engines.get_for(request.engine, &request.source_root)?;
    // A request that only ingests (docs/ingest.md) or only mirrors (docs/snowflake.md) has no
    // source root to expand.
    let mut items = if request.source_root.trim().is_empty()
        && (!request.ingest.is_empty() || request.mirror)
    {
        Vec::new()
    } else {
        engine.plan(request, dry_run, parallelism).await?
    };
    if !request.ingest.is_empty() {
        if request.engine != EngineKind::Native {
            return Err(EngineError::NotConfigured(
                "ingestion writes Delta tables with the native engine under `target.root`; a Databricks-engine run cannot carry `ingest` sources".into(),
            )
            .into());
        }
        let target_root = engines
            .native_engine()
            .resolve(&request.target_root)
            .map_err(EngineError::from)?;
        for src in &request.ingest {
            let mut item = PlannedItem::ingestion(src, &target_root)?;
            if dry_run {
                // Reachable, with columns ingestion carries; a full load or a merge.
                let native = engines.native_engine();
                if let Err(e) = native.probe_ingest(src).await {
                    item.problem = Some(format!("{e:#}"));
                }
                item.target_version = native.table_version(&item.target).await.ok();
            }
            if let Some(other) = items.iter().find(|i| i.target == item.target) {
                return Err(EngineError::NotConfigured(format!(
                    "ingest {}: its target {} is also the target of {}",
                    src.name, item.table, other.source
                ))
                .into());
            }
            items.push(item);
        }
    }
    let settings = engines.catalog_settings();
    let mut objects = if request.catalog && request.operation.clones() {
        engine.plan_objects(request, settings).await?
    } else {
        Vec::new()
    };
    // The inventory check goes last: it waits for the objects before it to settle, then
    // diffs the whole scope (docs/catalog.md, "Catalog reconciliation"). A dry run prints
    // what would be applied instead.
    if request.catalog && request.operation.clones() && settings.inventory && !dry_run {
        objects.push(PlannedObject::new(
            ObjectKind::Inventory,
            request.source_root.clone(),
            request.source_root.clone(),
            request.target_root.clone(),
        ));
    }
    // The Snowflake mirror goes last too: it exposes the run's tables as they end up
    // (docs/snowflake.md). Only a worker whose config has the `snowflake` section runs it.
    if request.mirror && request.operation.clones() {
        let mirror = engines.mirror().ok_or_else(|| {
            EngineError::NotConfigured(
                "the request asks for a Snowflake mirror, but the planner's config has no `snowflake` section".into(),
            )
        })?;
        objects.push(PlannedObject::new(
            ObjectKind::Mirror,
            "snowflake".into(),
            request.source_root.clone(),
            mirror.target(),
        ));
    }
    let mut would_apply = Vec::new();
    if dry_run {
        let ctx = ObjectContext {
            dry_run: true,
            settings: settings.clone(),
            parallelism,
        };
        for o in &objects {
            let task = catalog_task(request, o);
            would_apply.push(engines.apply_object(&task, &ctx).await.map_err(|f| {
                if f.waits {
                    format!("after this run's tables: {f}")
                } else {
                    f.to_string()
                }
            }));
        }
    }
    Ok(RunPlan {
        run_id: request.header.run_id,
        operation: request.operation,
        items,
        objects,
        would_apply,
    })
}

/// How a catalog object is named in the run's tasks and summaries: `view prod.sales.v`,
/// `volume raw.drops (part 2/4)`.
pub fn object_label(o: &PlannedObject) -> String {
    if o.kind == ObjectKind::Inventory {
        return format!("inventory {} → {}", o.source, o.target);
    }
    let mut label = format!("{} {}", o.kind, o.name);
    if let Some(s) = &o.securable {
        label = format!("grants on {} {}", s.to_lowercase(), o.name);
    }
    if let Some(s) = o.shard {
        label.push_str(&format!(" (part {}/{})", s.index + 1, s.count));
    }
    label
}

/// The task message of a planned catalog object.
fn catalog_task(request: &ReplicationRequest, o: &PlannedObject) -> CatalogTask {
    CatalogTask {
        header: Header::new(request.header.run_id),
        task_id: o.task_id,
        attempt: 1,
        kind: o.kind,
        name: o.name.clone(),
        source: o.source.clone(),
        target: o.target.clone(),
        securable: o.securable.clone(),
        shard: o.shard,
        loose: o.loose,
        engine: request.engine,
    }
}

/// Plan a request, record the run and its tasks, publish the tasks and `run.planned`.
/// Idempotent for a redelivered request: a run that is already recorded is not planned twice.
pub async fn submit(
    request: &ReplicationRequest,
    engines: &Engines,
    bus: &BusRef,
    store: &Store,
) -> Result<RunPlan, PlanError> {
    let run_id = request.header.run_id;
    if store.run(run_id).await?.is_some() {
        tracing::info!(%run_id, "run already planned; ignoring the repeated request");
        return Ok(RunPlan {
            run_id,
            operation: request.operation,
            items: Vec::new(),
            objects: Vec::new(),
            would_apply: Vec::new(),
        });
    }
    let started = Instant::now();
    let plan = plan(request, engines, false, 1).await?;
    let expanded = started.elapsed();
    // The replication run's lineage START: the parent its tasks' events name.
    engines
        .lineage()
        .run_started(&replicator_lineage::RunLineage::new(run_id));
    let plan = publish_plan(request, plan, bus, store).await?;
    tracing::info!(
        %run_id,
        tasks = plan.tasks(),
        expand_ms = expanded.as_millis() as u64,
        total_ms = started.elapsed().as_millis() as u64,
        "planning done"
    );
    Ok(plan)
}

/// Record the run and the tasks of a plan made for `request`, publish the tasks and
/// `run.planned`.
pub async fn publish_plan(
    request: &ReplicationRequest,
    plan: RunPlan,
    bus: &BusRef,
    store: &Store,
) -> Result<RunPlan, PlanError> {
    let run_id = request.header.run_id;
    let started = Instant::now();
    // The task rows are made a batch at a time as they are inserted; all of them in one
    // transaction, so no worker sees a run with only some of its tasks (the notifier would
    // complete it early).
    let mut run = store.begin_run(request).await?;
    for batch in plan.items.chunks(BATCH) {
        let tasks: Vec<NewTask> = batch
            .iter()
            .map(|i| NewTask {
                task_id: i.task_id,
                kind: None,
                table: i.table.clone(),
                source: i.source.clone(),
                target: i.target.clone(),
                source_version: i.source_version,
            })
            .collect();
        run.add_tasks(&tasks).await?;
    }
    let objects: Vec<NewTask> = plan
        .objects
        .iter()
        .map(|o| NewTask {
            task_id: o.task_id,
            kind: Some(o.kind),
            table: object_label(o),
            source: o.source.clone(),
            target: o.target.clone(),
            source_version: None,
        })
        .collect();
    run.add_tasks(&objects).await?;
    run.commit().await?;
    let recorded = started.elapsed();
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
            .chain(plan.objects.iter().map(|o| PlannedTable {
                task_id: o.task_id,
                table: object_label(o),
                source_version: None,
            }))
            .collect(),
    };
    typed::publish_event(bus.as_ref(), names::events::RUN_PLANNED, &planned).await?;
    // Publishes wait for the broker's confirm; many at once keep a large plan fast. Each
    // message is encoded when there is room for it: a run of 100,000 tables never holds them
    // all, and the pipeline never drains before the last one.
    let messages = plan
        .items
        .iter()
        .map(|item| task_message(request, item))
        .chain(plan.objects.iter().map(|o| {
            let task = catalog_task(request, o);
            (names::CATALOG_TASKS, replicator_proto::encode(&task).into())
        }));
    publish_all(bus, messages).await?;
    tracing::info!(
        %run_id,
        tables = plan.items.len(),
        objects = plan.objects.len(),
        operation = %request.operation,
        record_ms = recorded.as_millis() as u64,
        publish_ms = (started.elapsed() - recorded).as_millis() as u64,
        "run planned"
    );
    Ok(plan)
}

/// Task publishes in flight at once while planning. 100,000 tables to RabbitMQ with
/// confirms: 7.1 s at 32, 4.7 s at 256, 4.2 s at 1,000 (bench/RESULTS.md, "Scale").
const PUBLISH_CONCURRENCY: usize = 256;

/// Task rows made and inserted at a time while planning.
const BATCH: usize = 1000;

/// The task message of a planned table: its clone, or its validation for a
/// reconciliation-only run.
fn task_message(request: &ReplicationRequest, item: &PlannedItem) -> (&'static str, bytes::Bytes) {
    let run_id = request.header.run_id;
    // Ingestions write Delta tables with the native engine, whatever the run's.
    let engine = if item.ingest.is_some() {
        EngineKind::Native
    } else {
        request.engine
    };
    if request.operation.clones() {
        let task = CloneTask {
            ingest: item.ingest.clone(),
            header: Header::new(run_id),
            task_id: item.task_id,
            attempt: 1,
            table: item.table.clone(),
            source: item.source.clone(),
            target: item.target.clone(),
            version: request.version,
            operation: request.operation,
            engine,
            replace: request.replace,
            external_roots: request.external_roots.clone(),
            as_of: request.as_of,
        };
        (names::CLONE_TASKS, replicator_proto::encode(&task).into())
    } else {
        let task = ReconcileTask {
            ingest: item.ingest.clone(),
            header: Header::new(run_id),
            task_id: item.task_id,
            attempt: 1,
            table: item.table.clone(),
            source: item.source.clone(),
            target: item.target.clone(),
            source_version: request.version,
            engine,
            // A reconciliation-only run has no clone to undo.
            rollback_to: None,
        };
        (
            names::RECONCILE_TASKS,
            replicator_proto::encode(&task).into(),
        )
    }
}

/// Publish messages, PUBLISH_CONCURRENCY in flight; the next one is made when one is
/// confirmed. The futures own their messages (a spawned planner needs them `'static`).
async fn publish_all(
    bus: &BusRef,
    messages: impl Iterator<Item = (&'static str, bytes::Bytes)>,
) -> Result<(), replicator_bus::BusError> {
    let mut in_flight = FuturesUnordered::new();
    for (queue, payload) in messages {
        if in_flight.len() >= PUBLISH_CONCURRENCY
            && let Some(done) = in_flight.next().await
        {
            done?;
        }
        let bus = bus.clone();
        in_flight.push(async move { bus.publish(queue, payload).await });
    }
    while let Some(done) = in_flight.next().await {
        done?;
    }
    Ok(())
}

/// Serve the `requests` queue until `shutdown` fires. The consumer is attached before this
/// returns.
pub async fn spawn(
    bus: BusRef,
    store: Store,
    engines: Engines,
    shutdown: CancellationToken,
) -> anyhow::Result<JoinHandle<()>> {
    let mut consumer = bus.consume(names::REQUESTS, 1).await?;
    Ok(tokio::spawn(async move {
        loop {
            let delivery = tokio::select! {
                _ = shutdown.cancelled() => break,
                d = consumer.next() => match d { Some(d) => d, None => break },
            };
            let Some((mut request, delivery)) = typed::accept::<ReplicationRequest>(delivery)
            else {
                continue;
            };
            let run_id = request.header.run_id;
            // A request for a sync group (from `sync trigger`, the scheduler, or any client)
            // is that group's sync as of its instant (now when it names none).
            if let Err(e) = sync::record_group_request(&mut request, &store).await {
                tracing::warn!(%run_id, error = %e, "cannot record the group's sync; the request will be redelivered");
                delivery.nack(&e.to_string());
                continue;
            }
            match submit(&request, &engines, &bus, &store).await {
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
