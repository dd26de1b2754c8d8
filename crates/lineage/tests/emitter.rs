//! The emitter against a real HTTP server (`common::server`). Tests run on tokio's current-thread
//! runtime: the background sender only runs when a test awaits, which makes a full queue
//! deterministic. Nothing here asserts on time: `flush`'s timeout is only a safety net.

mod common;

use std::time::Duration;

use common::{PATIENCE, config, server, task};
use replicator_lineage::{Emitter, PRODUCER, TaskMetrics};
use serde_json::Value;

/// Every facet object in an event (a map with `_producer`), wherever it is.
fn facets(v: &Value, out: &mut Vec<Value>) {
    match v {
        Value::Object(m) => {
            if m.contains_key("_producer") || m.contains_key("_schemaURL") {
                out.push(v.clone());
            }
            m.values().for_each(|x| facets(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| facets(x, out)),
        _ => {}
    }
}

#[tokio::test]
async fn start_then_complete_arrive_in_order_in_the_spec_shape() {
    let (url, capture) = server(&[]).await;
    let lineage = Emitter::new(&config(&url)).unwrap();
    let t = task();
    lineage.task_started(&t);
    lineage.task_completed(
        &t,
        &TaskMetrics {
            rows_written: Some(5),
            bytes_copied: Some(100),
            files_copied: Some(2),
            ..Default::default()
        },
    );
    assert!(lineage.flush(PATIENCE).await);
    assert_eq!(
        (lineage.sent(), lineage.failed(), lineage.dropped()),
        (2, 0, 0)
    );
    let seen = capture.seen();
    assert_eq!(seen.len(), 2);
    let types: Vec<_> = seen.iter().map(|s| s.body["eventType"].clone()).collect();
    assert_eq!(types, ["START", "COMPLETE"]);
    for s in &seen {
        assert_eq!(s.path, "/api/v1/lineage");
        assert_eq!(s.headers["content-type"], "application/json");
        assert!(s.headers.get("authorization").is_none());
        let e = &s.body;
        // What the spec requires of a RunEvent.
        assert_eq!(e["run"]["runId"], t.task_id.to_string());
        assert!(
            chrono::DateTime::parse_from_rfc3339(e["eventTime"].as_str().unwrap()).is_ok(),
            "{}",
            e["eventTime"]
        );
        assert_eq!(e["job"]["namespace"], "replicator");
        assert_eq!(e["job"]["name"], "clone sales.orders");
        assert_eq!(e["producer"], PRODUCER);
        assert_eq!(
            e["schemaURL"],
            "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
        );
        assert_eq!(e["inputs"][0]["namespace"], "s3://prod-lake");
        assert_eq!(e["inputs"][0]["name"], "sales/orders");
        assert_eq!(e["outputs"][0]["namespace"], "file");
        assert_eq!(e["outputs"][0]["name"], "/lake/replica/sales/orders");
        // The parent facet links the task to its replication run.
        let parent = &e["run"]["facets"]["parent"];
        assert_eq!(parent["run"]["runId"], t.run_id.to_string());
        assert_eq!(parent["job"]["name"], "replication");
        // Every facet names its producer and schema.
        let mut all = Vec::new();
        facets(e, &mut all);
        assert!(all.len() >= 3, "{e}");
        for f in all {
            assert_eq!(f["_producer"], PRODUCER, "{f}");
            let schema = f["_schemaURL"].as_str().unwrap();
            assert!(
                schema.starts_with("https://") && schema.contains(".json#/$defs/"),
                "{f}"
            );
        }
    }
    let done = &seen[1].body;
    assert_eq!(
        done["outputs"][0]["outputFacets"]["outputStatistics"]["rowCount"],
        5
    );
    assert_eq!(done["run"]["facets"]["replicator"]["bytesCopied"], 100);
}

#[tokio::test]
async fn a_server_answering_503_twice_gets_the_event_on_the_third_attempt() {
    let (url, capture) = server(&[503, 503]).await;
    let mut c = config(&url);
    c.endpoint = "/other/path".into();
    let lineage = Emitter::new(&c).unwrap();
    let t = task();
    lineage.task_started(&t);
    assert!(lineage.flush(PATIENCE).await);
    assert_eq!((lineage.sent(), lineage.failed()), (1, 0));
    let seen = capture.seen();
    assert_eq!(seen.len(), 3, "two refusals, then the accepted one");
    assert!(seen.iter().all(|s| s.path == "/other/path"));
    // The same event each time.
    assert!(seen.iter().all(|s| s.body == seen[0].body));
    assert_eq!(seen[0].body["eventType"], "START");
}

#[tokio::test]
async fn a_refusal_is_not_retried_and_the_next_event_still_goes() {
    let (url, capture) = server(&[400]).await;
    let lineage = Emitter::new(&config(&url)).unwrap();
    let t = task();
    lineage.task_started(&t);
    lineage.task_failed(&t, "boom");
    assert!(lineage.flush(PATIENCE).await);
    assert_eq!((lineage.sent(), lineage.failed()), (1, 1));
    let seen = capture.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].body["eventType"], "FAIL");
    assert_eq!(
        seen[1].body["run"]["facets"]["errorMessage"]["message"],
        "boom"
    );
}

#[tokio::test]
async fn a_server_that_is_down_costs_the_event_and_nothing_else() {
    // A port nobody listens on any more.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let mut c = config(&url);
    c.max_attempts = 2;
    let lineage = Emitter::new(&c).unwrap();
    // `emit` is not async: it returns without waiting for anything.
    lineage.task_started(&task());
    assert!(lineage.flush(PATIENCE).await, "given up counts as done");
    assert_eq!((lineage.sent(), lineage.failed()), (0, 1));

    // With retries far apart, `flush` gives up at its timeout and the event stays queued.
    let mut slow = config(&url);
    slow.base_delay_ms = 3_600_000;
    let lineage = Emitter::new(&slow).unwrap();
    lineage.task_started(&task());
    assert!(!lineage.flush(Duration::from_millis(50)).await);
    assert_eq!((lineage.sent(), lineage.failed()), (0, 0));
}

#[tokio::test]
async fn a_full_queue_drops_and_counts() {
    let (url, capture) = server(&[]).await;
    let mut c = config(&url);
    c.queue = 2;
    let lineage = Emitter::new(&c).unwrap();
    let t = task();
    // No await between these: the background task has not taken anything yet.
    for _ in 0..5 {
        lineage.task_started(&t);
    }
    assert_eq!(lineage.dropped(), 3);
    assert!(lineage.flush(PATIENCE).await);
    assert_eq!(lineage.sent(), 2);
    assert_eq!(capture.seen().len(), 2);
    // Room again once sent.
    lineage.task_started(&t);
    assert!(lineage.flush(PATIENCE).await);
    assert_eq!((lineage.sent(), lineage.dropped()), (3, 3));
}
