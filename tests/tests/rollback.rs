//! `reconciliation.on_mismatch: rollback` (issue 18): a clone whose validation finds changed
//! keys is rolled back to the target's version before the clone, with a new commit (history
//! kept), and the result says so. The cloner and the reconciler run as the fleet runs them,
//! over the memory bus and a SQLite store; between the clone and its validation a stray
//! writer changes rows of the replica (what a bad copy would leave), so the key comparison
//! finds them.

use std::sync::Arc;
use std::time::Duration;

use replicator_bus::{BusRef, MemoryBus, typed};
use replicator_cloner::ClonerConfig;
use replicator_common::config::{OnMismatch, Reconciliation, TableReconciliation};
use replicator_common::retry::RetryPolicy;
use replicator_common::shutdown::CancellationToken;
use replicator_lake::inspect::{read_batches, sorted_rows};
use replicator_lake::{CloneOptions, TableLocation, deep_clone, sample};
use replicator_proto::{
    CloneTask, EngineKind, Header, Operation, ReconcileResult, ReplicationRequest, TableFilter,
    Validation, names,
};
use replicator_reconciler::ReconcilerConfig;
use replicator_store::{NewTask, Store};
use uuid::Uuid;

fn loc(p: &std::path::Path) -> TableLocation {
    TableLocation::parse(p.to_str().unwrap()).unwrap()
}

async fn rows(t: &TableLocation, version: Option<u64>) -> Vec<String> {
    sorted_rows(&read_batches(t, version).await.unwrap()).unwrap()
}

/// The payload of the next event whose key starts with `key`.
async fn next(events: &mut Box<dyn replicator_bus::Subscription>, key: &str) -> Vec<u8> {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let (k, payload) = events.next().await.expect("the bus is open");
            if k.starts_with(key) {
                return payload.to_vec();
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {key} event within 30 s"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clone_that_fails_validation_is_rolled_back_to_the_version_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let (source, target) = (
        dir.path().join("source/orders"),
        dir.path().join("target/orders"),
    );
    let (src, dst) = (loc(&source), loc(&target));
    sample::create(&src, &sample::orders(0, 50, "eu"), &[])
        .await
        .unwrap();
    // The replica as the last good run left it: the source's first 50 rows.
    deep_clone(&src, &dst, &CloneOptions::default())
        .await
        .unwrap();
    let before = replicator_lake::inspect::table_info(&dst, None)
        .await
        .unwrap()
        .version;
    let good = rows(&dst, None).await;
    sample::append(&src, &sample::orders(50, 30, "us"))
        .await
        .unwrap();

    let store = Store::open(&format!("sqlite://{}/state.db", dir.path().display()))
        .await
        .unwrap();
    let run_id = Uuid::now_v7();
    let request = ReplicationRequest {
        ingest: Vec::new(),
        header: Header::new(run_id),
        operation: Operation::All,
        source_root: dir.path().join("source").display().to_string(),
        target_root: dir.path().join("target").display().to_string(),
        tables: TableFilter::default(),
        version: None,
        requested_by: None,
        engine: EngineKind::Native,
        replace: false,
        external_roots: Vec::new(),
        as_of: None,
        group: None,
        catalog: false,
        mirror: false,
    };
    let task = CloneTask {
        ingest: None,
        header: Header::new(run_id),
        task_id: Uuid::now_v7(),
        attempt: 1,
        table: "orders".into(),
        source: source.display().to_string(),
        target: target.display().to_string(),
        version: None,
        operation: Operation::All,
        engine: EngineKind::Native,
        replace: false,
        external_roots: Vec::new(),
        as_of: None,
    };
    let new = NewTask {
        task_id: task.task_id,
        kind: None,
        table: task.table.clone(),
        source: task.source.clone(),
        target: task.target.clone(),
        source_version: None,
    };
    store.create_run(&request, &[new]).await.unwrap();
    let memory = MemoryBus::new(16, 3);
    let bus: BusRef = Arc::new(memory.clone());
    let mut events = bus.subscribe("#").await.unwrap();
    let shutdown = CancellationToken::new();

    // The clone.
    let cloner = replicator_cloner::spawn(
        bus.clone(),
        store.clone(),
        Default::default(),
        ClonerConfig {
            concurrency: 1,
            copy_parallelism: 2,
            retry: RetryPolicy::for_test(),
            worker: "cloner-1".into(),
            lease_ttl: Duration::from_secs(30),
        },
        None,
        shutdown.clone(),
    )
    .await
    .unwrap();
    typed::publish(bus.as_ref(), names::CLONE_TASKS, &task)
        .await
        .unwrap();
    next(&mut events, "clone.").await;
    let cloned = replicator_lake::inspect::table_info(&dst, None)
        .await
        .unwrap()
        .version;
    assert_eq!(cloned, before + 1, "one commit per clone");
    // A stray writer changes ten rows of the replica before the validation reads it.
    let changed = sample::orders(0, 10, "eu");
    let mut columns = changed.columns().to_vec();
    columns[3] = Arc::new(arrow::array::Float64Array::from(vec![-1.0; 10]));
    let changed = arrow::array::RecordBatch::try_new(changed.schema(), columns).unwrap();
    sample::append(&dst, &changed).await.unwrap();

    // The validation, with keys compared and rollback on.
    let reconciler = replicator_reconciler::spawn(
        bus.clone(),
        store.clone(),
        Default::default(),
        ReconcilerConfig {
            concurrency: 1,
            checks: Reconciliation {
                tables: vec![TableReconciliation {
                    tables: vec!["*".into()],
                    primary_key: vec!["id".into()],
                    ..Default::default()
                }],
                on_mismatch: OnMismatch::Rollback,
                deep_every: replicator_common::config::Period(Duration::ZERO),
                ..Default::default()
            },
            retry: RetryPolicy::for_test(),
            worker: "reconciler-1".into(),
        },
        shutdown.clone(),
    )
    .await
    .unwrap();
    let payload = next(&mut events, "reconcile.").await;
    let result: ReconcileResult = replicator_proto::decode(&payload).unwrap();
    assert_eq!(result.outcome, Validation::Mismatched);
    assert_eq!(result.rolled_back_to, Some(before));
    let keys = result.keys.as_ref().expect("keys were compared");
    assert!(
        keys.changed + keys.duplicate_target + keys.extra > 0,
        "{keys:?}"
    );
    let rollback = result
        .checks
        .iter()
        .find(|c| c.name == "rollback")
        .expect("a rollback check");
    assert!(rollback.passed, "{rollback:?}");
    assert!(
        rollback.detail.starts_with(&format!(
            "rolled back to version {before} with a new commit"
        )),
        "{}",
        rollback.detail
    );
    // The target's latest version reads like the one before the clone, row for row, and
    // the history is kept.
    let latest = replicator_lake::inspect::table_info(&dst, None)
        .await
        .unwrap()
        .version;
    assert!(latest > cloned + 1, "a new commit, history kept ({latest})");
    assert_eq!(rows(&dst, None).await, good);
    assert_eq!(rows(&dst, Some(before)).await, good);
    // The run's summary says so too (what the digest and `status` print).
    let tasks = store.tasks(run_id).await.unwrap();
    let error = tasks[0].error.clone().unwrap_or_default();
    assert!(
        error.contains("rollback: rolled back to version"),
        "{error}"
    );

    shutdown.cancel();
    let _ = cloner.await;
    let _ = reconciler.await;
    memory.close();
}
