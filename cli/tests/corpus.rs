//! Every table of the shared Delta corpus through `replicator clone`.
//!
//! Complete tables must clone, read back with identical rows (both sides read with delta-rs,
//! deletion vectors and column mapping applied) and carry the same active files, schema,
//! partition columns and configuration; a re-clone must be a no-op. Broken or log-only tables
//! must fail with a message naming the problem and leave no target behind.

mod common;

use common::*;
use replicator_lake::TableLocation;
use replicator_lake::inspect::{log_facts, read_batches, sorted_rows};

/// Corpus entries that are not complete tables, and what the error must mention.
const BROKEN: &[(&str, &str)] = &[
    ("checkpoint_with_partitions", "is missing"),
    ("checkpoints", "is missing"),
    ("checkpoints_tombstones", "no _delta_log"),
    ("checkpoints_vacuumed", "is missing"),
    ("golden", "no _delta_log"),
    ("latest_not_checkpointed", "is missing"),
    (
        "simple_table_features",
        "Reader features must not be present",
    ),
    ("spark-variant-stable-feature-checkpoint", "is missing"),
    ("table-with-domain-metadata", "is missing"),
    ("with_checkpoint_no_last_checkpoint", "is missing"),
];

fn tables() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(corpus())
        .expect("the shared delta corpus is beside the repository")
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert!(names.len() > 40, "corpus looks incomplete: {names:?}");
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_complete_table_clones_identically_and_broken_ones_fail_cleanly() {
    let out = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    let mut cloned = 0;
    for name in tables() {
        let src = corpus().join(&name);
        let dst = out.path().join(&name);
        let broken = BROKEN.iter().find(|(n, _)| *n == name);
        match (clone_json(&src, &dst, &[]), broken) {
            (Ok(json), None) => {
                cloned += 1;
                let (s, d) = (
                    TableLocation::parse(src.to_str().unwrap()).unwrap(),
                    TableLocation::parse(dst.to_str().unwrap()).unwrap(),
                );
                let version = json["source_version"].as_u64().unwrap();
                let src_rows =
                    sorted_rows(&read_batches(&s, Some(version)).await.unwrap()).unwrap();
                let dst_rows = sorted_rows(&read_batches(&d, None).await.unwrap()).unwrap();
                if src_rows != dst_rows {
                    failures.push(format!(
                        "{name}: rows differ ({} vs {})",
                        src_rows.len(),
                        dst_rows.len()
                    ));
                }
                let (sf, df) = (
                    log_facts(&s, Some(version)).await.unwrap(),
                    log_facts(&d, None).await.unwrap(),
                );
                if sf.files != df.files {
                    failures.push(format!("{name}: active files differ"));
                }
                if (&sf.schema_string, &sf.partition_columns, &sf.configuration)
                    != (&df.schema_string, &df.partition_columns, &df.configuration)
                {
                    failures.push(format!("{name}: metadata differs"));
                }
                let again = clone_json(&src, &dst, &[]).unwrap();
                if again["committed"] != serde_json::json!(false)
                    || again["metrics"]["num_copied_files"] != 0
                {
                    failures.push(format!("{name}: re-clone was not a no-op: {again}"));
                }
            }
            (Err(stderr), Some((_, expected))) => {
                if !stderr.contains(expected) || stderr.lines().count() != 1 {
                    failures.push(format!(
                        "{name}: expected a one-line error mentioning `{expected}`, got: {stderr}"
                    ));
                }
                if dst.join("_delta_log").exists() || !files_under(&dst).is_empty() {
                    failures.push(format!(
                        "{name}: a failed clone left files behind: {:?}",
                        files_under(&dst)
                    ));
                }
            }
            (Ok(_), Some(_)) => failures.push(format!("{name}: broken table cloned without error")),
            (Err(stderr), None) => failures.push(format!("{name}: clone failed: {stderr}")),
        }
    }
    assert!(
        failures.is_empty(),
        "corpus failures:\n{}",
        failures.join("\n")
    );
    assert!(cloned >= 35, "only {cloned} tables cloned");
}

#[test]
fn clone_reports_metrics_as_text_by_default() {
    let out = tempfile::tempdir().unwrap();
    let o = replicator(&[
        "clone",
        corpus().join("simple_table").to_str().unwrap(),
        out.path().join("t").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    for metric in [
        "source_table_size",
        "source_num_of_files",
        "num_copied_files",
        "copied_files_size",
        "num_removed_files",
        "removed_files_size",
    ] {
        assert!(text.contains(metric), "missing {metric} in:\n{text}");
    }
}

#[test]
fn unsupported_locations_fail_with_one_line() {
    let o = replicator(&["clone", "gs://bucket/t", "/tmp/x"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).starts_with("error: invalid table location"),
        "{}",
        stderr(&o)
    );
}

/// A damaged log gives one line in words, even with `RUST_BACKTRACE=1` (the kernel's errors
/// carry a backtrace) and for a missing commit (the kernel reports two struct dumps).
#[test]
fn damaged_logs_fail_with_one_line_in_words_even_with_backtraces_on() {
    let dir = tempfile::tempdir().unwrap();
    let truncated = dir.path().join("truncated");
    copy_dir(&corpus().join("simple_table"), &truncated);
    let last = truncated.join("_delta_log/00000000000000000004.json");
    let text = std::fs::read(&last).unwrap();
    std::fs::write(&last, &text[..100]).unwrap();
    let gap = dir.path().join("gap");
    copy_dir(&corpus().join("simple_table"), &gap);
    std::fs::remove_file(gap.join("_delta_log/00000000000000000002.json")).unwrap();

    for (src, expected) in [
        (&truncated, "Truncated record"),
        (
            &gap,
            "the log is not contiguous: commit 2 is missing (commit 1 is followed by commit 3)",
        ),
    ] {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_replicator"))
            .args([
                "clone",
                src.to_str().unwrap(),
                dir.path().join("out").to_str().unwrap(),
            ])
            .env("RUST_BACKTRACE", "1")
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(err.contains(expected), "{err}");
        assert!(err.len() < 400, "{err}");
        for noise in ["backtrace", "Backtrace", "ParsedLogPath", "FileMeta", " { "] {
            assert!(!err.contains(noise), "`{noise}` in: {err}");
        }
    }
}
