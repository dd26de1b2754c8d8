//! `replicator run` end to end on the embedded default: the four services in one process over
//! the memory bus, run state in SQLite, the summary posted to a webhook served by the test.

use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use replicator_cli::embedded::{self, RunOptions, RunOutput};
use replicator_common::Config;
use replicator_lake::inspect::{read_batches, sorted_rows};
use replicator_lake::{TableLocation, sample};
use replicator_proto::{Operation, TableStatus};
use replicator_store::Store;

#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<(HeaderMap, serde_json::Value)>>>);

/// A webhook receiver on 127.0.0.1:0 that fails the first `fail_first` requests with 500.
async fn webhook(fail_first: usize) -> (String, Received) {
    let received = Received::default();
    let failures = Arc::new(Mutex::new(fail_first));
    let app = axum::Router::new()
        .route(
            "/hook",
            post(
                move |State(r): State<Received>,
                      headers: HeaderMap,
                      Json(body): Json<serde_json::Value>| {
                    let failures = failures.clone();
                    async move {
                        let mut left = failures.lock().unwrap();
                        if *left > 0 {
                            *left -= 1;
                            return StatusCode::INTERNAL_SERVER_ERROR;
                        }
                        r.0.lock().unwrap().push((headers, body));
                        StatusCode::OK
                    }
                },
            ),
        )
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hook"), received)
}

fn config(dir: &Path, hook: &str, extra: &str) -> Config {
    let yaml = format!(
        "source: {{ root: {src} }}\ntarget: {{ root: {dst} }}\ntables: {{ include: [\"*\"], exclude: [] }}\n\
         state: {{ url: \"sqlite://{state}\" }}\nretry: {{ max_attempts: 3, base_delay_ms: 1, max_delay_ms: 5 }}\n\
         notifications: {{ webhooks: [ {{ url: \"{hook}\" }} ] }}\n{extra}",
        src = dir.join("source").display(),
        dst = dir.join("target").display(),
        state = dir.join("state.db").display(),
    );
    Config::from_yaml(&yaml, Vec::new(), &[]).unwrap()
}

async fn rows(p: &Path) -> Vec<String> {
    sorted_rows(
        &read_batches(&TableLocation::parse(p.to_str().unwrap()).unwrap(), None)
            .await
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_replicates_validates_records_and_notifies() {
    let dir = tempfile::tempdir().unwrap();
    let root = TableLocation::parse(dir.path().join("source").to_str().unwrap()).unwrap();
    let tables = sample::demo_estate(&root).await.unwrap();
    assert_eq!(tables.len(), 4);
    let (hook, received) = webhook(2).await;
    let cfg = config(dir.path(), &hook, "");

    let RunOutput::Completed(done) = embedded::run(&cfg, &RunOptions::default()).await.unwrap()
    else {
        panic!("expected a completed run")
    };
    let s = &done.summary;
    assert_eq!(
        (s.total, s.succeeded, s.failed, s.mismatched),
        (4, 4, 0, 0),
        "{s:#?}"
    );
    assert!(s.bytes_copied > 0 && s.files_copied == 7, "{s:#?}");
    for t in &s.tables {
        assert_eq!(t.status, TableStatus::Succeeded);
        assert_eq!(t.source_rows, t.target_rows);
        let rel = t.table.replace('.', "/");
        assert_eq!(
            rows(&dir.path().join("source").join(&rel)).await,
            rows(&dir.path().join("target").join(&rel)).await
        );
    }

    // The webhook got exactly one summary, after two 500s were retried.
    let got = received.0.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    let (headers, body) = &got[0];
    assert_eq!(body["run_id"], done.header.run_id.to_string());
    assert_eq!(
        headers["x-replicator-run-id"],
        done.header.run_id.to_string()
    );
    assert_eq!(body["summary"]["succeeded"], 4);

    // The run, its tasks and attempts are in SQLite.
    let store = Store::open(&cfg.state.url).await.unwrap();
    let run = store.run(done.header.run_id).await.unwrap().unwrap();
    assert_eq!(run.status, "succeeded");
    assert_eq!(run.summary.as_ref().unwrap().total, 4);
    let attempts = store.attempts(done.header.run_id).await.unwrap();
    assert_eq!(
        attempts.len(),
        8,
        "one clone and one reconcile attempt per table: {attempts:#?}"
    );
    let orders = dir.path().join("source/sales/orders");
    let orders_url = TableLocation::parse(orders.to_str().unwrap())
        .unwrap()
        .url()
        .to_string();
    let orders_target =
        TableLocation::parse(dir.path().join("target/sales/orders").to_str().unwrap()).unwrap();
    assert_eq!(
        store
            .last_source_version(&orders_url, orders_target.url().as_str())
            .await
            .unwrap(),
        Some(3)
    );

    // A second run is incremental: nothing to copy.
    let RunOutput::Completed(again) = embedded::run(&cfg, &RunOptions::default()).await.unwrap()
    else {
        panic!()
    };
    assert_eq!(
        (again.summary.succeeded, again.summary.files_copied),
        (4, 0)
    );
    assert_eq!(received.0.lock().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_table_does_not_stop_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let root = TableLocation::parse(dir.path().join("source").to_str().unwrap()).unwrap();
    sample::demo_estate(&root).await.unwrap();
    // Break one table: delete a data file its log references.
    let victim = dir.path().join("source/marketing/campaigns");
    let data = std::fs::read_dir(&victim)
        .unwrap()
        .flatten()
        .find(|e| e.path().extension().is_some_and(|x| x == "parquet"))
        .unwrap();
    std::fs::remove_file(data.path()).unwrap();
    let (hook, received) = webhook(0).await;
    let cfg = config(dir.path(), &hook, "");
    let RunOutput::Completed(done) = embedded::run(&cfg, &RunOptions::default()).await.unwrap()
    else {
        panic!()
    };
    let s = &done.summary;
    assert_eq!((s.total, s.succeeded, s.failed), (4, 3, 1), "{s:#?}");
    let failed = s
        .tables
        .iter()
        .find(|t| t.status == TableStatus::Failed)
        .unwrap();
    assert_eq!(failed.table, "marketing.campaigns");
    assert!(
        failed.error.as_deref().unwrap().contains("is missing"),
        "{failed:?}"
    );
    assert!(
        !dir.path()
            .join("target/marketing/campaigns/_delta_log")
            .exists()
    );
    assert_eq!(received.0.lock().unwrap()[0].1["summary"]["failed"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciliation_only_finds_a_tampered_target() {
    let dir = tempfile::tempdir().unwrap();
    let root = TableLocation::parse(dir.path().join("source").to_str().unwrap()).unwrap();
    sample::demo_estate(&root).await.unwrap();
    let (hook, _received) = webhook(0).await;
    let mut cfg = config(dir.path(), &hook, "");
    cfg.tables.include = vec!["sales.*".into()];
    let opts = RunOptions {
        operation: Some(Operation::Replication),
        ..Default::default()
    };
    let RunOutput::Completed(first) = embedded::run(&cfg, &opts).await.unwrap() else {
        panic!()
    };
    assert_eq!(first.summary.total, 2);
    assert!(
        first.summary.tables.iter().all(|t| t.source_rows.is_none()),
        "replication only: no validation"
    );
    // Tamper with one target: append rows to it directly.
    let target =
        TableLocation::parse(dir.path().join("target/sales/orders").to_str().unwrap()).unwrap();
    sample::append(&target, &sample::orders(5000, 7, "emea"))
        .await
        .unwrap();
    let opts = RunOptions {
        operation: Some(Operation::Reconciliation),
        ..Default::default()
    };
    let RunOutput::Completed(check) = embedded::run(&cfg, &opts).await.unwrap() else {
        panic!()
    };
    assert_eq!(
        (check.summary.succeeded, check.summary.mismatched),
        (1, 1),
        "{:#?}",
        check.summary
    );
    let bad = check
        .summary
        .tables
        .iter()
        .find(|t| t.status == TableStatus::Mismatched)
        .unwrap();
    assert_eq!((bad.source_rows, bad.target_rows), (Some(1000), Some(1007)));
    assert!(
        bad.error.as_deref().unwrap().contains("row_count"),
        "{bad:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_and_validate_only_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = TableLocation::parse(dir.path().join("source").to_str().unwrap()).unwrap();
    sample::demo_estate(&root).await.unwrap();
    let cfg = config(dir.path(), "http://127.0.0.1:9/unused", "");
    let RunOutput::Planned(plan) = embedded::run(
        &cfg,
        &RunOptions {
            dry_run: true,
            ..Default::default()
        },
    )
    .await
    .unwrap() else {
        panic!()
    };
    assert_eq!(plan.items.len(), 4);
    let orders = plan
        .items
        .iter()
        .find(|i| i.table == "sales.orders")
        .unwrap();
    assert_eq!(orders.source_version, Some(3));
    assert_eq!(orders.would.as_ref().unwrap().num_copied_files, 3);
    let RunOutput::Validated { tables } = embedded::run(
        &cfg,
        &RunOptions {
            validate_only: true,
            ..Default::default()
        },
    )
    .await
    .unwrap() else {
        panic!()
    };
    assert_eq!(
        tables,
        [
            "marketing.campaigns",
            "marketing.events",
            "sales.customers",
            "sales.orders"
        ]
    );
    assert!(
        !dir.path().join("target").exists(),
        "dry run wrote a target"
    );
    assert!(
        !dir.path().join("state.db").exists(),
        "dry run created the state store"
    );
}
