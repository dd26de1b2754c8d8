//! The planner serving the `requests` queue: a good request becomes a run with one task per
//! table; a malformed request, one with an unknown schema version, and one that cannot be
//! planned (a bad root; an ingest source whose target would leave the target root) are
//! dead-lettered with the reason while the planner keeps serving.

use std::sync::Arc;

use bytes::Bytes;
use replicator_bus::{BusRef, MemoryBus, typed};
use replicator_common::shutdown::CancellationToken;
use replicator_lake::{TableLocation, sample};
use replicator_proto::{CloneTask, Header, Operation, ReplicationRequest, TableFilter, names};
use replicator_store::Store;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_become_tasks_and_bad_requests_become_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let root = TableLocation::parse(dir.path().join("src").to_str().unwrap()).unwrap();
    sample::demo_estate(&root).await.unwrap();
    let memory = MemoryBus::new(64, 3);
    let bus: BusRef = Arc::new(memory.clone());
    let store = Store::open("sqlite::memory:").await.unwrap();
    let shutdown = CancellationToken::new();
    let planner = replicator_planner::spawn(
        bus.clone(),
        store.clone(),
        Default::default(),
        shutdown.clone(),
    )
    .await
    .unwrap();

    let request = |root: &str| ReplicationRequest {
        ingest: Vec::new(),
        header: Header::new(uuid::Uuid::now_v7()),
        operation: Operation::All,
        source_root: root.into(),
        target_root: dir.path().join("dst").to_string_lossy().into_owned(),
        tables: TableFilter {
            include: vec!["sales.*".into()],
            exclude: vec![],
        },
        version: None,
        requested_by: Some("test".into()),
        engine: Default::default(),
        replace: false,
        external_roots: Vec::new(),
        as_of: None,
        group: None,
        catalog: false,
        mirror: false,
    };
    bus.publish(names::REQUESTS, Bytes::from_static(b"{definitely not json"))
        .await
        .unwrap();
    let mut future = serde_json::to_value(request("/x")).unwrap();
    future["schema_version"] = serde_json::json!(7);
    bus.publish(names::REQUESTS, Bytes::from(future.to_string()))
        .await
        .unwrap();
    typed::publish(bus.as_ref(), names::REQUESTS, &request("/does/not/exist"))
        .await
        .unwrap();
    // An ingest source whose target would leave the target root (docs/ingest.md).
    let mut escaping = request(dir.path().join("src").to_str().unwrap());
    escaping.ingest = vec![replicator_proto::IngestSource {
        name: "postgres public.orders".into(),
        definition: serde_json::json!({
            "type": "postgres", "connection": "env:ORDERS_DB", "table": "public.orders",
            "primary_key": ["id"], "target": "../../etc",
        }),
        files_root: None,
        validate: true,
    }];
    typed::publish(bus.as_ref(), names::REQUESTS, &escaping)
        .await
        .unwrap();
    let good = request(dir.path().join("src").to_str().unwrap());
    typed::publish(bus.as_ref(), names::REQUESTS, &good)
        .await
        .unwrap();
    // The same request again (a redelivery) is not planned twice.
    typed::publish(bus.as_ref(), names::REQUESTS, &good)
        .await
        .unwrap();

    let mut tasks = bus.consume(names::CLONE_TASKS, 1).await.unwrap();
    let mut tables = Vec::new();
    for _ in 0..2 {
        let d = tokio::time::timeout(std::time::Duration::from_secs(30), tasks.next())
            .await
            .unwrap()
            .unwrap();
        let (t, d) = typed::accept::<CloneTask>(d).unwrap();
        assert_eq!(t.header.run_id, good.header.run_id);
        tables.push(t.table);
        d.ack();
    }
    tables.sort();
    assert_eq!(tables, ["sales.customers", "sales.orders"]);
    assert_eq!(
        store.run_progress(good.header.run_id).await.unwrap().total,
        2
    );

    // Wait until the planner has handled all five requests.
    for _ in 0..100 {
        if memory.depth(names::REQUESTS) == 0
            && bus.dead_letters(names::REQUESTS).await.unwrap().len() == 4
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let dead = bus.dead_letters(names::REQUESTS).await.unwrap();
    let reasons: Vec<&str> = dead.iter().map(|d| d.reason.as_str()).collect();
    assert_eq!(dead.len(), 4, "{reasons:?}");
    assert!(reasons[0].starts_with("malformed message"), "{reasons:?}");
    assert!(
        reasons[1].contains("unsupported schema_version 7"),
        "{reasons:?}"
    );
    assert!(
        reasons[2].contains("source root does not exist"),
        "{reasons:?}"
    );
    assert!(
        reasons[3].contains("ingest postgres public.orders")
            && reasons[3].contains("target")
            && reasons[3].contains("must be a relative path"),
        "{reasons:?}"
    );
    assert!(
        store.run(escaping.header.run_id).await.unwrap().is_none(),
        "nothing of the refused request is recorded"
    );
    assert_eq!(
        memory.depth(names::CLONE_TASKS),
        0,
        "the repeated request added no tasks"
    );
    shutdown.cancel();
    planner.await.unwrap();
}
