//! OpenLineage events of a run (issue 18; docs/lineage.md): `replicator run` on the embedded
//! default with a `lineage` section sends, to a real HTTP server in this test, a START and a
//! COMPLETE per clone and per validation — each valid against the OpenLineage 2-0-2 core
//! spec (checked by Python's `jsonschema` against `tests/openlineage/OpenLineage-2-0-2.json`),
//! with the datasets named by the naming spec (`file` namespace, absolute paths), the parent
//! run facet naming the replication run, and the validation's row counts and assertions.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use replicator_cli::embedded::{RunOptions, RunOutput, run};
use replicator_common::Config;
use replicator_lake::{TableLocation, sample};
use serde_json::Value;

type Seen = Arc<Mutex<Vec<(String, Value)>>>;

async fn record(State(seen): State<Seen>, uri: axum::http::Uri, body: Bytes) -> StatusCode {
    let event = serde_json::from_slice(&body).unwrap_or(Value::Null);
    seen.lock().unwrap().push((uri.path().to_owned(), event));
    StatusCode::CREATED
}

/// The events, checked by the published schema (exit 0 of the validator, its lines if not).
fn assert_valid(events: &[Value]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/openlineage/validate.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(events).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "events not valid against OpenLineage 2-0-2:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_sends_valid_events_with_dataset_names_and_its_parent_run() {
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route("/api/v1/lineage", post(record))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    let orders = TableLocation::parse(&source.join("sales/orders").to_string_lossy()).unwrap();
    sample::create(&orders, &sample::orders(0, 40, "eu"), &[])
        .await
        .unwrap();
    let customers =
        TableLocation::parse(&source.join("sales/customers").to_string_lossy()).unwrap();
    sample::create(&customers, &sample::orders(100, 7, "us"), &[])
        .await
        .unwrap();
    let yaml = format!(
        "source: {{ root: {src} }}\ntarget: {{ root: {dst} }}\nstate: {{ url: \"sqlite://{state}\" }}\n\
         lineage: {{ url: \"http://127.0.0.1:{port}\", namespace: dr-prod }}\n",
        src = source.display(),
        dst = dir.path().join("target").display(),
        state = dir.path().join("state.db").display(),
    );
    let config = Config::from_yaml(&yaml, Vec::new(), &[]).unwrap();
    let RunOutput::Completed(done) = run(&config, &RunOptions::default()).await.unwrap() else {
        panic!("not a completed run")
    };
    assert!(done.summary.is_success(), "{:?}", done.summary);
    let run_id = done.header.run_id.to_string();

    // The run waited for its events to leave: the replication run's START and COMPLETE,
    // and two tables with a clone and a validation each, START and COMPLETE each.
    let seen = seen.lock().unwrap().clone();
    assert!(seen.iter().all(|(path, _)| path == "/api/v1/lineage"));
    let events: Vec<Value> = seen.into_iter().map(|(_, e)| e).collect();
    assert_eq!(events.len(), 10, "{events:#?}");
    assert_valid(&events);

    let (runs, tasks): (Vec<&Value>, Vec<&Value>) = events
        .iter()
        .partition(|e| e["job"]["name"] == "replication");
    let types: Vec<&str> = runs
        .iter()
        .map(|e| e["eventType"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["START", "COMPLETE"]);
    assert!(runs.iter().all(|e| e["run"]["runId"] == run_id.as_str()));
    assert_eq!(
        events[0]["job"]["name"], "replication",
        "the run starts before its tasks"
    );
    let mut by_job: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for e in tasks {
        assert_eq!(e["job"]["namespace"], "dr-prod");
        assert_eq!(
            e["run"]["facets"]["parent"]["run"]["runId"], run_id,
            "the parent run facet names the replication run"
        );
        by_job
            .entry(e["job"]["name"].as_str().unwrap().to_owned())
            .or_default()
            .push(e);
    }
    let jobs: Vec<&str> = by_job.keys().map(String::as_str).collect();
    assert_eq!(
        jobs,
        [
            "clone sales.customers",
            "clone sales.orders",
            "reconcile sales.customers",
            "reconcile sales.orders"
        ]
    );
    for (job, evs) in &by_job {
        let types: Vec<&str> = evs
            .iter()
            .map(|e| e["eventType"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["START", "COMPLETE"], "{job}");
        assert_eq!(evs[0]["run"]["runId"], evs[1]["run"]["runId"], "{job}");
    }
    // Datasets as the naming spec names local files: namespace `file`, the absolute path.
    let clone = by_job["clone sales.orders"][1];
    assert_eq!(clone["inputs"][0]["namespace"], "file");
    assert_eq!(
        clone["inputs"][0]["name"],
        source.join("sales/orders").display().to_string()
    );
    assert_eq!(clone["outputs"][0]["namespace"], "file");
    assert_eq!(
        clone["outputs"][0]["name"],
        dir.path().join("target/sales/orders").display().to_string()
    );
    assert!(
        clone["outputs"][0]["outputFacets"]["outputStatistics"]["fileCount"]
            .as_u64()
            .unwrap()
            >= 1,
        "{clone:#}"
    );
    // The schema facet: the replica's columns and their Delta types.
    let fields: Vec<(String, String)> = clone["outputs"][0]["facets"]["schema"]["fields"]
        .as_array()
        .unwrap_or_else(|| panic!("no schema facet: {clone:#}"))
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_owned(),
                f["type"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        fields,
        [
            ("id".to_owned(), "long".to_owned()),
            ("customer".to_owned(), "string".to_owned()),
            ("region".to_owned(), "string".to_owned()),
            ("amount".to_owned(), "double".to_owned()),
        ]
    );
    // The validation: both tables as inputs, their row counts, and the checks as assertions.
    let check = by_job["reconcile sales.orders"][1];
    assert_eq!(check["inputs"].as_array().unwrap().len(), 2);
    assert_eq!(
        check["inputs"][0]["inputFacets"]["dataQualityMetrics"]["rowCount"],
        40
    );
    assert_eq!(
        check["inputs"][1]["inputFacets"]["dataQualityMetrics"]["rowCount"],
        40
    );
    let assertions = check["inputs"][1]["inputFacets"]["dataQualityAssertions"]["assertions"]
        .as_array()
        .unwrap();
    assert!(
        assertions
            .iter()
            .any(|a| a["assertion"] == "row_count" && a["success"] == true),
        "{assertions:#?}"
    );
    assert_eq!(
        check["inputs"][1]["facets"]["schema"]["fields"][0]["name"], "id",
        "a validation's inputs carry the replica's schema: {check:#}"
    );
    assert_ne!(
        check["run"]["runId"], clone["run"]["runId"],
        "a validation is a lineage run of its own"
    );
}
