//! The incremental fast path of the native clone (read only the source's commits after the
//! target's last clone) must give exactly what the full snapshot diff gives, and must step
//! aside when it cannot be sure.

use std::path::{Path, PathBuf};

use replicator_lake::inspect::{log_facts, read_batches, sorted_rows};
use replicator_lake::{CloneOptions, TableLocation, deep_clone, sample};

fn corpus() -> PathBuf {
    std::env::var_os("REPLICATOR_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/delta-corpus"))
}

fn loc(p: &Path) -> TableLocation {
    TableLocation::parse(p.to_str().unwrap()).unwrap()
}

fn at(version: u64) -> CloneOptions {
    CloneOptions {
        version: Some(version),
        ..Default::default()
    }
}

/// Assert the target holds the source's snapshot at `version`: the same active files (path,
/// size, deletion-vector cardinality), metadata and rows.
async fn assert_same(src: &Path, version: u64, dst: &Path, what: &str) {
    let (s, d) = (
        log_facts(&loc(src), Some(version)).await.unwrap(),
        log_facts(&loc(dst), None).await.unwrap(),
    );
    assert_eq!(s.files, d.files, "{what}: active files");
    assert_eq!(
        (&s.schema_string, &s.partition_columns, &s.configuration),
        (&d.schema_string, &d.partition_columns, &d.configuration),
        "{what}: metadata"
    );
    let rows = |p: PathBuf, v: Option<u64>| async move {
        sorted_rows(&read_batches(&loc(&p), v).await.unwrap()).unwrap()
    };
    assert_eq!(
        rows(src.to_path_buf(), Some(version)).await,
        rows(dst.to_path_buf(), None).await,
        "{what}: rows"
    );
}

/// Step a clone through every version of every corpus table that has history: each step
/// after the first may take the fast path, and every step must leave the target equal to
/// the source at that version. Covers deletion vectors added to existing files, change data
/// files, checkpoints in the range, column mapping and partitioned tables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stepping_through_corpus_history_matches_the_source_at_every_version() {
    let out = tempfile::tempdir().unwrap();
    let mut names: Vec<String> = std::fs::read_dir(corpus())
        .unwrap()
        .flatten()
        .filter(|e| e.path().join("_delta_log").is_dir())
        .map(|e| e.file_name().into_string().unwrap())
        .collect();
    names.sort();
    let (mut tail_steps, mut full_steps, mut tables) = (0, 0, Vec::new());
    for name in names {
        let src = corpus().join(&name);
        // Only complete tables: the latest version must clone (broken tables are covered by
        // the corpus test).
        let Ok(latest) = deep_clone(
            &loc(&src),
            &loc(&out.path().join(format!("{name}-probe"))),
            &CloneOptions {
                dry_run: true,
                ..Default::default()
            },
        )
        .await
        .map(|r| r.source_version) else {
            continue;
        };
        if latest == 0 {
            continue;
        }
        let dst = out.path().join(&name);
        let mut cloned_any = false;
        for v in 0..=latest {
            match deep_clone(&loc(&src), &loc(&dst), &at(v)).await {
                Ok(r) => {
                    assert_eq!(r.source_version, v, "{name}@{v}");
                    if cloned_any {
                        if r.log_tail {
                            tail_steps += 1;
                        } else {
                            full_steps += 1;
                        }
                    }
                    cloned_any = true;
                    let facts = log_facts(&loc(&src), Some(v)).await.unwrap();
                    let size: i64 = facts.files.values().map(|(s, _)| s).sum();
                    assert_eq!(
                        (r.metrics.source_num_of_files, r.metrics.source_table_size),
                        (facts.files.len() as u64, size as u64),
                        "{name}@{v}: source metrics (log_tail={})",
                        r.log_tail
                    );
                    let d = log_facts(&loc(&dst), None).await.unwrap();
                    assert_eq!(facts.files, d.files, "{name}@{v}: active files");
                }
                // Early versions whose commits were cleaned up cannot be cloned.
                Err(e) => assert!(!cloned_any, "{name}@{v}: {e}"),
            }
        }
        assert_same(&src, latest, &dst, &name).await;
        tables.push(name);
    }
    assert!(tables.len() >= 15, "stepped through {tables:?}");
    assert!(
        tail_steps >= 40,
        "the fast path ran {tail_steps} times, the full diff {full_steps} times"
    );
}

/// Appends and file removals go through the fast path; a schema change, a target written
/// by someone else, and a gap in the source log make it step aside, and the full diff
/// still converges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_path_steps_aside_when_it_cannot_be_sure() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    let (s, d) = (loc(&src), loc(&dst));
    sample::create(&s, &sample::orders(0, 100, "emea"), &["region"])
        .await
        .unwrap();
    let first = deep_clone(&s, &d, &CloneOptions::default()).await.unwrap();
    assert!(!first.log_tail, "a first clone diffs snapshots");

    // Unchanged: answered from the two logs' tails, no commit.
    let same = deep_clone(&s, &d, &CloneOptions::default()).await.unwrap();
    assert!(same.log_tail && !same.committed);
    assert_eq!(same.metrics.source_num_of_files, 1);

    // Appends and a removal.
    sample::append(&s, &sample::orders(100, 50, "amer"))
        .await
        .unwrap();
    sample::append(&s, &sample::orders(150, 50, "apac"))
        .await
        .unwrap();
    sample::delete_files(&s, |p| p.contains("region=emea"))
        .await
        .unwrap();
    let inc = deep_clone(&s, &d, &CloneOptions::default()).await.unwrap();
    assert!(inc.log_tail && inc.committed);
    assert_eq!(
        (inc.metrics.num_copied_files, inc.metrics.num_removed_files),
        (2, 1)
    );
    let v = inc.source_version;
    assert_same(&src, v, &dst, "after appends and a removal").await;

    // Someone else writes to the target: its last commit is no clone, so the full diff
    // runs and undoes the stray write.
    sample::append(&d, &sample::orders(9000, 5, "emea"))
        .await
        .unwrap();
    let repaired = deep_clone(&s, &d, &CloneOptions::default()).await.unwrap();
    assert!(!repaired.log_tail && repaired.committed);
    assert_eq!(repaired.metrics.num_removed_files, 1);
    assert_same(
        &src,
        repaired.source_version,
        &dst,
        "after a stray target write",
    )
    .await;

    // A missing commit in the range (log cleanup after a checkpoint): the fast path cannot
    // replay it and steps aside.
    sample::append(&s, &sample::orders(300, 10, "amer"))
        .await
        .unwrap();
    sample::append(&s, &sample::orders(310, 10, "amer"))
        .await
        .unwrap();
    let latest = log_facts(&s, None).await.unwrap().version;
    deltalake_checkpoint(&src, latest).await;
    std::fs::remove_file(src.join(format!("_delta_log/{:020}.json", latest - 1))).unwrap();
    let gap = deep_clone(&s, &d, &CloneOptions::default()).await.unwrap();
    assert!(!gap.log_tail && gap.committed);
    assert_same(&src, latest, &dst, "across a log gap").await;

    // Schema change in the range: the full diff carries the new metadata.
    sample::add_string_column(&s, "note").await.unwrap();
    let evolved = deep_clone(&s, &d, &CloneOptions::default()).await.unwrap();
    assert!(!evolved.log_tail && evolved.committed);
    assert_same(&src, evolved.source_version, &dst, "after a schema change").await;
}

/// Write a checkpoint of `table` at `version` (so older commits may go).
async fn deltalake_checkpoint(table: &Path, version: u64) {
    sample::checkpoint(&loc(table), version).await.unwrap();
}

/// Partition values that need escaping in paths (space, `%`, `&`, `=`, `:`): the fast path
/// keys files exactly as the snapshot does, so adds copy the right files and removes remove
/// them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escaped_partition_paths_replay_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    let (s, d) = (loc(&src), loc(&dst));
    sample::create(&s, &sample::orders(0, 10, "a b%20c&d=e:f"), &["region"])
        .await
        .unwrap();
    deep_clone(&s, &d, &CloneOptions::default()).await.unwrap();
    sample::append(&s, &sample::orders(10, 10, "x%y & z"))
        .await
        .unwrap();
    let inc = deep_clone(&s, &d, &CloneOptions::default()).await.unwrap();
    assert!(inc.log_tail && inc.committed);
    assert_eq!(inc.metrics.num_copied_files, 1);
    assert_same(&src, inc.source_version, &dst, "after an escaped append").await;
    let (_, removed) = sample::delete_files(&s, |p| !p.contains('x'))
        .await
        .unwrap();
    assert_eq!(removed, 1);
    let del = deep_clone(&s, &d, &CloneOptions::default()).await.unwrap();
    assert!(del.log_tail && del.committed);
    assert_eq!(del.metrics.num_removed_files, 1);
    assert_same(&src, del.source_version, &dst, "after an escaped delete").await;
}

/// A source that is gone, or was recreated with fewer versions, is not "unchanged".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_source_is_not_reported_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    let (s, d) = (loc(&src), loc(&dst));
    sample::create(&s, &sample::orders(0, 10, "emea"), &[])
        .await
        .unwrap();
    deep_clone(&s, &d, &CloneOptions::default()).await.unwrap();
    std::fs::remove_dir_all(&src).unwrap();
    assert!(deep_clone(&s, &d, &CloneOptions::default()).await.is_err());
    // Recreated: version 0 only, where the target was cloned from version 1.
    sample::create(&s, &sample::orders(100, 5, "amer"), &[])
        .await
        .unwrap();
    let again = deep_clone(&s, &d, &CloneOptions::default()).await.unwrap();
    assert!(!again.log_tail && again.committed);
    assert_same(
        &src,
        again.source_version,
        &dst,
        "after the source was recreated",
    )
    .await;
}
