//! `replicator audit export` and `replicator reconcile` as a user runs them.

mod common;

use common::*;
use replicator_lake::TableLocation;
use replicator_lake::inspect::{read_batches, sorted_rows};

async fn table_rows(p: &std::path::Path) -> Vec<String> {
    let loc = TableLocation::parse(p.to_str().unwrap()).unwrap();
    sorted_rows(&read_batches(&loc, None).await.unwrap()).unwrap()
}

fn run_json(config: &std::path::Path) -> serde_json::Value {
    let out = replicator(&["run", config.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_export_of_one_run_and_of_all_runs_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo");
    let out = replicator(&["demo", "--dir", demo.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let config = demo.join("replicator.yaml");
    let second = run_json(&config);
    let run_id = second["run_id"].as_str().unwrap().to_owned();
    let audit = dir.path().join("audit");
    let export = |args: &[&str]| {
        let mut all = vec!["audit", "export"];
        all.extend_from_slice(args);
        all.extend_from_slice(&[audit.to_str().unwrap(), "-c", config.to_str().unwrap()]);
        let out = replicator(&all);
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    };

    // One run: its run row, its four tasks, their attempts and results.
    let text = export(&[&run_id]);
    assert!(text.contains("runs") && text.contains("tasks"), "{text}");
    let runs = table_rows(&audit.join("runs")).await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert!(runs[0].contains(&format!("run_id={run_id}")), "{}", runs[0]);
    let tasks = table_rows(&audit.join("tasks")).await;
    assert_eq!(tasks.len(), 4);
    assert!(
        tasks.iter().all(|t| t.contains("status=succeeded")),
        "{tasks:?}"
    );
    assert!(table_rows(&audit.join("attempts")).await.len() >= 8);
    let results = table_rows(&audit.join("results")).await;
    assert!(results.len() >= 8, "{results:?}");
    assert!(
        results
            .iter()
            .any(|r| r.contains("\"outcome\":\"matched\""))
    );

    // Again: the run's partition is replaced, not appended to.
    export(&[&run_id]);
    assert_eq!(table_rows(&audit.join("tasks")).await.len(), 4);

    // Everything: both runs (the demo's and the second).
    export(&["--all"]);
    let runs = table_rows(&audit.join("runs")).await;
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(table_rows(&audit.join("tasks")).await.len(), 8);
    export(&["--all"]);
    assert_eq!(table_rows(&audit.join("tasks")).await.len(), 8);

    // Wrong arguments and unknown runs fail clearly.
    let out = replicator(&[
        "audit",
        "export",
        "not-a-uuid",
        "x",
        "-c",
        config.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("is not a run ID"), "{}", stderr(&out));
    let missing = uuid::Uuid::new_v4().to_string();
    let out = replicator(&[
        "audit",
        "export",
        &missing,
        audit.to_str().unwrap(),
        "-c",
        config.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("is not in the state store"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_command_reports_keys_and_exits_by_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    let loc = |p: &std::path::Path| TableLocation::parse(p.to_str().unwrap()).unwrap();
    replicator_lake::sample::create(
        &loc(&src),
        &replicator_lake::sample::orders(0, 100, "emea"),
        &[],
    )
    .await
    .unwrap();
    clone_json(&src, &dst, &[]).unwrap();
    let reconcile = |extra: &[&str]| {
        let mut args = vec!["reconcile", src.to_str().unwrap(), dst.to_str().unwrap()];
        args.extend_from_slice(extra);
        replicator(&args)
    };
    let out = reconcile(&["--key", "id", "--partition-checksums"]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(stdout(&out).starts_with("MATCH"), "{}", stdout(&out));

    // Rows 100..105 appear in the target only.
    replicator_lake::sample::append(&loc(&dst), &replicator_lake::sample::orders(100, 5, "emea"))
        .await
        .unwrap();
    let out = reconcile(&["--key", "id", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["matched"], false);
    assert_eq!(v["keys"]["extra"], 5);
    assert_eq!(v["keys"]["extra_sample"][0], "id=100");
    assert_eq!(v["keys"]["missing"], 0);
}
