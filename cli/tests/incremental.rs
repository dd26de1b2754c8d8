//! Incremental deep clone through `replicator clone`: appends copy exactly the new files,
//! deletes and overwrites drop files from the target, an unchanged source commits nothing,
//! `--version N` clones that version, and every commit is a CLONE with its source.

mod common;

use std::path::Path;

use common::*;
use replicator_lake::TableLocation;
use replicator_lake::inspect::{log_facts, read_batches, sorted_rows};
use replicator_lake::sample;

fn loc(p: &Path) -> TableLocation {
    TableLocation::parse(p.to_str().unwrap()).unwrap()
}

async fn rows(p: &Path, version: Option<u64>) -> Vec<String> {
    sorted_rows(&read_batches(&loc(p), version).await.unwrap()).unwrap()
}

fn log_entries(table: &Path) -> usize {
    std::fs::read_dir(table.join("_delta_log"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "json")
        })
        .count()
}

fn last_commit_info(table: &Path) -> serde_json::Value {
    let mut logs: Vec<_> = std::fs::read_dir(table.join("_delta_log"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    logs.sort();
    let text = std::fs::read_to_string(logs.last().unwrap()).unwrap();
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    first["commitInfo"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_delete_overwrite_and_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    sample::create(&loc(&src), &sample::orders(0, 100, "emea"), &["region"])
        .await
        .unwrap();
    sample::append(&loc(&src), &sample::orders(100, 50, "amer"))
        .await
        .unwrap();

    // Full clone.
    let full = clone_json(&src, &dst, &[]).unwrap();
    assert_eq!(full["target_version"], 0);
    assert_eq!(full["metrics"]["num_copied_files"], 2);
    assert_eq!(full["metrics"]["source_num_of_files"], 2);
    assert_eq!(rows(&src, None).await, rows(&dst, None).await);
    let info = last_commit_info(&dst);
    assert_eq!(info["operation"], "CLONE");
    assert_eq!(info["operationParameters"]["sourceVersion"], "2");
    assert!(
        info["operationParameters"]["source"]
            .as_str()
            .unwrap()
            .ends_with("/src/"),
        "{info}"
    );
    assert_eq!(info["operationMetrics"]["numCopiedFiles"], "2");

    // Append: exactly the new files are copied.
    let before = log_facts(&loc(&src), None).await.unwrap().files;
    sample::append(&loc(&src), &sample::orders(150, 30, "apac"))
        .await
        .unwrap();
    sample::append(&loc(&src), &sample::orders(180, 30, "emea"))
        .await
        .unwrap();
    let after = log_facts(&loc(&src), None).await.unwrap().files;
    let new_files = after.keys().filter(|k| !before.contains_key(*k)).count();
    assert_eq!(new_files, 2);
    let inc = clone_json(&src, &dst, &[]).unwrap();
    assert_eq!(
        (
            inc["target_version"].as_u64(),
            inc["metrics"]["num_copied_files"].as_u64()
        ),
        (Some(1), Some(2))
    );
    assert_eq!(inc["metrics"]["num_removed_files"], 0);
    let new_bytes: i64 = after
        .iter()
        .filter(|(k, _)| !before.contains_key(*k))
        .map(|(_, (s, _))| s)
        .sum();
    assert_eq!(
        inc["metrics"]["copied_files_size"].as_i64(),
        Some(new_bytes)
    );
    assert_eq!(rows(&src, None).await, rows(&dst, None).await);

    // Unchanged: nothing copied, no commit.
    let entries = log_entries(&dst);
    let same = clone_json(&src, &dst, &[]).unwrap();
    assert_eq!(same["committed"], false);
    assert_eq!(same["metrics"]["num_copied_files"], 0);
    assert_eq!(
        log_entries(&dst),
        entries,
        "an unchanged source adds no commit"
    );

    // Delete: the removed file leaves the target.
    let (_, removed) = sample::delete_files(&loc(&src), |p| p.contains("region=amer"))
        .await
        .unwrap();
    assert_eq!(removed, 1);
    let del = clone_json(&src, &dst, &[]).unwrap();
    assert_eq!(del["metrics"]["num_removed_files"], 1);
    assert_eq!(del["metrics"]["num_copied_files"], 0);
    assert!(del["metrics"]["removed_files_size"].as_u64().unwrap() > 0);
    assert_eq!(
        log_facts(&loc(&src), None).await.unwrap().files,
        log_facts(&loc(&dst), None).await.unwrap().files
    );
    assert_eq!(rows(&src, None).await, rows(&dst, None).await);

    // Overwrite: every old file is removed, the new one copied.
    let active = log_facts(&loc(&dst), None).await.unwrap().files.len() as u64;
    sample::overwrite(&loc(&src), &sample::orders(1000, 10, "emea"))
        .await
        .unwrap();
    let ow = clone_json(&src, &dst, &[]).unwrap();
    assert_eq!(ow["metrics"]["num_removed_files"].as_u64(), Some(active));
    assert_eq!(ow["metrics"]["num_copied_files"], 1);
    assert_eq!(rows(&dst, None).await.len(), 10);
    assert_eq!(rows(&src, None).await, rows(&dst, None).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_as_of() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    sample::create(&loc(&src), &sample::orders(0, 10, "emea"), &[])
        .await
        .unwrap();
    sample::append(&loc(&src), &sample::orders(10, 10, "emea"))
        .await
        .unwrap();
    sample::append(&loc(&src), &sample::orders(20, 10, "emea"))
        .await
        .unwrap();

    let v1 = clone_json(&src, &dst, &["--version", "1"]).unwrap();
    assert_eq!(v1["source_version"], 1);
    assert_eq!(rows(&dst, None).await, rows(&src, Some(1)).await);
    assert_eq!(rows(&dst, None).await.len(), 10);

    // Forward to the latest, then back to version 2: the target follows.
    clone_json(&src, &dst, &[]).unwrap();
    assert_eq!(rows(&dst, None).await.len(), 30);
    let back = clone_json(&src, &dst, &["--version", "2"]).unwrap();
    assert_eq!(back["metrics"]["num_removed_files"], 1);
    assert_eq!(rows(&dst, None).await, rows(&src, Some(2)).await);

    let err = clone_json(&src, &dir.path().join("other"), &["--version", "99"]).unwrap_err();
    assert!(
        err.contains("version 99") && err.lines().count() == 1,
        "{err}"
    );
    assert!(!dir.path().join("other").join("_delta_log").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_to_clone_into_itself_or_from_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    sample::create(&loc(&src), &sample::orders(0, 5, "emea"), &[])
        .await
        .unwrap();
    let err = clone_json(&src, &src.join("inner"), &[]).unwrap_err();
    assert!(err.contains("overlap"), "{err}");
    let err = clone_json(&dir.path().join("nothing"), &dir.path().join("t"), &[]).unwrap_err();
    assert!(err.contains("no Delta table"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamp_as_of_picks_the_latest_version_at_or_before() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    sample::create(&loc(&src), &sample::orders(0, 10, "emea"), &[])
        .await
        .unwrap();
    for i in 1..3 {
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        sample::append(&loc(&src), &sample::orders(i * 10, 10, "emea"))
            .await
            .unwrap();
    }
    let stamps = replicator_lake::inspect::version_timestamps(&loc(&src))
        .await
        .unwrap();
    // Version 0 is the empty create and version 1 its first write, milliseconds apart; the
    // appends after it are 30 ms apart, so every instant below is unambiguous.
    assert_eq!(stamps.len(), 4, "{stamps:?}");
    let rfc = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    };
    for (i, (version, ts)) in stamps.iter().enumerate().skip(1) {
        // Exactly at a commit's timestamp: that version.
        let dst = dir.path().join(format!("exact{i}"));
        let r = clone_json(&src, &dst, &["--timestamp", &rfc(*ts)]).unwrap();
        assert_eq!(
            r["source_version"].as_u64(),
            Some(*version),
            "at {}",
            rfc(*ts)
        );
        assert_eq!(rows(&dst, None).await, rows(&src, Some(*version)).await);
        // Between this commit and the next: still this version.
        let dst = dir.path().join(format!("between{i}"));
        let r = clone_json(&src, &dst, &["--timestamp", &rfc(ts + 1)]).unwrap();
        assert_eq!(
            r["source_version"].as_u64(),
            Some(*version),
            "after {}",
            rfc(*ts)
        );
    }
    // Before the first commit: a clear error and no target.
    let dst = dir.path().join("before");
    let err = clone_json(&src, &dst, &["--timestamp", &rfc(stamps[0].1 - 60_000)]).unwrap_err();
    assert!(
        err.contains("no version at or before") && err.lines().count() == 1,
        "{err}"
    );
    assert!(!dst.exists());
    // Both --version and --timestamp: refused by the CLI.
    let err = clone_json(
        &src,
        &dir.path().join("x"),
        &["--version", "1", "--timestamp", "2026-01-01"],
    )
    .unwrap_err();
    assert!(err.contains("cannot be used with"), "{err}");
}
