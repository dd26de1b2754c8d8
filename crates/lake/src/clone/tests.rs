//! The clone end to end (target rules, cancellation, staging) and its planning: the
//! [`ClonePlan`] for a new target, a target that already matches, and incremental adds and
//! removes on both planning paths.

use std::sync::Arc;

use replicator_common::shutdown::CancellationToken;

use super::*;

async fn table(loc: &TableLocation, region: &str) {
    crate::sample::create(loc, &crate::sample::orders(0, 10, region), &[])
        .await
        .unwrap();
}

fn at(p: std::path::PathBuf) -> TableLocation {
    TableLocation::parse(p.to_str().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_not_cloned_from_the_source_is_replaced_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let (src, other, dst) = (
        at(dir.path().join("src")),
        at(dir.path().join("other")),
        at(dir.path().join("dst")),
    );
    table(&src, "emea").await;
    table(&other, "amer").await;
    table(&dst, "apac").await;
    let replace = CloneOptions {
        replace: true,
        ..Default::default()
    };
    let err = deep_clone(&src, &dst, &Default::default())
        .await
        .unwrap_err();
    assert!(matches!(err, LakeError::NotAReplica { .. }), "{err}");
    assert!(!err.is_transient());
    deep_clone(&src, &dst, &replace).await.unwrap();
    // Now a replica of src, whichever way src is spelled.
    let again = at(dir.path().join("./src/"));
    assert!(
        !deep_clone(&again, &dst, &Default::default())
            .await
            .unwrap()
            .committed
    );
    let err = deep_clone(&other, &dst, &Default::default())
        .await
        .unwrap_err();
    assert!(matches!(err, LakeError::NotAReplica { .. }), "{err}");
    // The source's own log under another path: never, even with replace.
    let copy = dir.path().join("copy");
    std::fs::create_dir_all(copy.join("_delta_log")).unwrap();
    for e in std::fs::read_dir(dir.path().join("src/_delta_log")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), copy.join("_delta_log").join(e.file_name())).unwrap();
    }
    let err = deep_clone(&src, &at(copy), &replace).await.unwrap_err();
    assert!(
        err.to_string().contains("holds the Delta log of source"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_first_clone_removes_what_it_copied() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (at(dir.path().join("src")), at(dir.path().join("dst")));
    table(&src, "emea").await;
    for i in 1..6 {
        crate::sample::append(&src, &crate::sample::orders(i * 10, 10, "emea"))
            .await
            .unwrap();
    }
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    let options = CloneOptions {
        parallelism: 1,
        cancel: Some(cancel),
        // Cancelled once the first file is in.
        progress: Some(Arc::new(move |p: &CloneProgress| {
            if p.files_done == 1 {
                c.cancel();
            }
        })),
        ..Default::default()
    };
    let err = deep_clone(&src, &dst, &options).await.unwrap_err();
    assert!(err.to_string().contains("interrupted"), "{err}");
    assert!(
        !dir.path().join("dst").exists(),
        "the first clone left a target"
    );
    // An incremental clone keeps its target's version.
    deep_clone(&src, &dst, &Default::default()).await.unwrap();
    crate::sample::append(&src, &crate::sample::orders(100, 10, "emea"))
        .await
        .unwrap();
    let cancel = CancellationToken::new();
    cancel.cancel();
    let options = CloneOptions {
        cancel: Some(cancel),
        ..Default::default()
    };
    let err = deep_clone(&src, &dst, &options).await.unwrap_err();
    assert!(err.to_string().contains("previous version"), "{err}");
    assert!(
        deep_clone(&src, &dst, &Default::default())
            .await
            .unwrap()
            .committed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staging_left_by_killed_clones_is_swept() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (at(dir.path().join("src")), at(dir.path().join("dst")));
    table(&src, "emea").await;
    deep_clone(&src, &dst, &Default::default()).await.unwrap();
    let staging = dir.path().join("dst").join(STAGING_DIR);
    let log = dir.path().join("dst/_delta_log");
    let leave = |name: &str, age: u64| {
        let p = if name.contains('#') {
            log.join(name)
        } else {
            staging.join(name)
        };
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let f = std::fs::File::create(&p).unwrap();
        f.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(age))
            .unwrap();
        p
    };
    // Another clone of the target is running (holds the shared lock): only old files go.
    let running = std::fs::File::open(dir.path().join("dst")).unwrap();
    running.lock_shared().unwrap();
    let fresh = leave("a.parquet.1.replicator-tmp", 0);
    let old = leave("b.parquet.2.replicator-tmp", 3600);
    let old_commit = leave("00000000000000000001.json#1", 3600);
    let fresh_commit = leave("00000000000000000001.json#2", 0);
    let r = deep_clone(&src, &dst, &Default::default()).await.unwrap();
    assert!(!r.committed);
    assert!(fresh.exists() && fresh_commit.exists());
    assert!(!old.exists() && !old_commit.exists());
    // Alone, the next clone removes everything staged, however recent.
    drop(running);
    deep_clone(&src, &dst, &Default::default()).await.unwrap();
    assert!(!fresh.exists() && !fresh_commit.exists());
    assert!(!staging.exists());
}

/// The adds and removes of a plan's actions, by path, sorted.
fn files_of(plan: &ClonePlan) -> (Vec<String>, Vec<String>) {
    let (mut adds, mut removes) = (Vec::new(), Vec::new());
    for a in plan.actions() {
        if let Some(add) = a.get("add") {
            adds.push(add["path"].as_str().unwrap().to_owned());
        }
        if let Some(remove) = a.get("remove") {
            removes.push(remove["path"].as_str().unwrap().to_owned());
        }
    }
    adds.sort();
    removes.sort();
    (adds, removes)
}

/// The kinds of a plan's actions, in order (`protocol`, `metaData`, `add`, …).
fn kinds(plan: &ClonePlan) -> Vec<String> {
    plan.actions()
        .iter()
        .map(|a| a.as_object().unwrap().keys().next().unwrap().clone())
        .collect()
}

/// Plan with the full snapshot diff: the log tail declines a `TIMESTAMP AS OF` clone.
fn full_diff() -> CloneOptions {
    CloneOptions {
        timestamp: Some(chrono::Utc::now() + chrono::Duration::hours(1)),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_target_is_planned_whole_and_planning_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (at(dir.path().join("src")), at(dir.path().join("dst")));
    table(&src, "emea").await;
    crate::sample::append(&src, &crate::sample::orders(10, 10, "amer"))
        .await
        .unwrap();
    let plan = plan_clone(&src, &dst, &Default::default()).await.unwrap();
    assert_eq!(plan.source_version(), 2);
    assert_eq!(plan.target_version(), None);
    assert!(!plan.log_tail() && !plan.is_empty());
    assert!(
        !dir.path().join("dst").exists(),
        "planning wrote the target"
    );
    // Every source file is copied and added; the table's protocol and metadata come first.
    let copies: Vec<(String, u64)> = plan
        .files_to_copy()
        .map(|(p, s)| (p.to_owned(), s))
        .collect();
    assert_eq!(copies.len(), 2);
    assert_eq!(plan.files_to_remove().count(), 0);
    assert_eq!(kinds(&plan), ["protocol", "metaData", "add", "add"]);
    let (adds, removes) = files_of(&plan);
    let mut copied: Vec<String> = copies.iter().map(|(p, _)| p.clone()).collect();
    copied.sort();
    assert_eq!(adds, copied);
    assert!(removes.is_empty());
    let m = plan.metrics();
    assert_eq!((m.source_num_of_files, m.num_copied_files), (2, 2));
    assert_eq!(
        m.copied_files_size,
        copies.iter().map(|(_, s)| s).sum::<u64>()
    );
    assert_eq!(m.source_table_size, m.copied_files_size);
    assert_eq!((m.num_removed_files, m.removed_files_size), (0, 0));

    // A dry run reports the plan; executing it commits version 0 with the same metrics.
    let dry = deep_clone(
        &src,
        &dst,
        &CloneOptions {
            dry_run: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(!dry.committed && !dir.path().join("dst").exists());
    assert_eq!(dry.metrics, *plan.metrics());
    let planned = plan.metrics().clone();
    let report = execute(plan, &Default::default()).await.unwrap();
    assert!(report.committed);
    assert_eq!((report.source_version, report.target_version), (2, 0));
    assert_eq!(report.metrics, planned);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_matches_gets_an_empty_plan_on_both_paths() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (at(dir.path().join("src")), at(dir.path().join("dst")));
    table(&src, "emea").await;
    deep_clone(&src, &dst, &Default::default()).await.unwrap();
    for (options, tail) in [(CloneOptions::default(), true), (full_diff(), false)] {
        let plan = plan_clone(&src, &dst, &options).await.unwrap();
        assert_eq!(plan.log_tail(), tail);
        assert!(plan.is_empty(), "tail {tail}: {:?}", plan.actions());
        assert!(plan.actions().is_empty());
        assert_eq!(plan.files_to_copy().count(), 0);
        assert_eq!(plan.files_to_remove().count(), 0);
        assert_eq!((plan.source_version(), plan.target_version()), (1, Some(0)));
        let m = plan.metrics();
        assert_eq!((m.source_num_of_files, m.num_copied_files), (1, 0));
        // Executing an empty plan commits nothing.
        let report = execute(plan, &Default::default()).await.unwrap();
        assert!(!report.committed);
        assert_eq!(report.target_version, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incremental_plan_adds_and_removes_the_same_on_both_paths() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (at(dir.path().join("src")), at(dir.path().join("dst")));
    table(&src, "emea").await;
    crate::sample::append(&src, &crate::sample::orders(10, 10, "amer"))
        .await
        .unwrap();
    deep_clone(&src, &dst, &Default::default()).await.unwrap();
    // Since the clone: one file removed, one added (source versions 3 and 4).
    let before = crate::inspect::log_facts(&src, None).await.unwrap().files;
    let (victim, (victim_size, _)) = before.iter().next().unwrap();
    let (victim, victim_size) = (victim.clone(), *victim_size as u64);
    let (_, n) = crate::sample::delete_files(&src, |p| p == victim)
        .await
        .unwrap();
    assert_eq!(n, 1);
    crate::sample::append(&src, &crate::sample::orders(20, 10, "apac"))
        .await
        .unwrap();
    let after = crate::inspect::log_facts(&src, None).await.unwrap().files;
    let added: Vec<(String, u64)> = after
        .iter()
        .filter(|(p, _)| !before.contains_key(*p))
        .map(|(p, (size, _))| (p.clone(), *size as u64))
        .collect();
    assert_eq!(added.len(), 1);

    let tail = plan_clone(&src, &dst, &Default::default()).await.unwrap();
    let full = plan_clone(&src, &dst, &full_diff()).await.unwrap();
    assert!(tail.log_tail() && !full.log_tail());
    for plan in [&tail, &full] {
        assert_eq!((plan.source_version(), plan.target_version()), (4, Some(0)));
        let copies: Vec<(String, u64)> = plan
            .files_to_copy()
            .map(|(p, s)| (p.to_owned(), s))
            .collect();
        assert_eq!(copies, added);
        let removes: Vec<(String, u64)> = plan
            .files_to_remove()
            .map(|(p, s)| (p.to_owned(), s))
            .collect();
        assert_eq!(removes, [(victim.clone(), victim_size)]);
        assert_eq!(
            files_of(plan),
            (vec![added[0].0.clone()], vec![victim.clone()])
        );
        // Nothing but the files changed: no protocol, metadata or domain action.
        assert_eq!(kinds(plan), ["remove", "add"]);
    }
    // Both paths count the same.
    assert_eq!(tail.metrics(), full.metrics());
    let m = tail.metrics();
    assert_eq!((m.source_num_of_files, m.num_copied_files), (2, 1));
    assert_eq!(
        (m.num_removed_files, m.removed_files_size),
        (1, victim_size)
    );
    assert_eq!(m.copied_files_size, added[0].1);

    // Executed, the plan brings the target to the source.
    let report = execute(tail, &Default::default()).await.unwrap();
    assert!(report.committed && report.log_tail);
    assert_eq!(report.target_version, 1);
    let (s, t) = (
        crate::inspect::log_facts(&src, None).await.unwrap().files,
        crate::inspect::log_facts(&dst, None).await.unwrap().files,
    );
    assert_eq!(s.keys().collect::<Vec<_>>(), t.keys().collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_overtaken_by_another_commit_is_a_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (at(dir.path().join("src")), at(dir.path().join("dst")));
    table(&src, "emea").await;
    deep_clone(&src, &dst, &Default::default()).await.unwrap();
    crate::sample::append(&src, &crate::sample::orders(10, 10, "amer"))
        .await
        .unwrap();
    let stale = plan_clone(&src, &dst, &Default::default()).await.unwrap();
    assert_eq!(stale.target_version(), Some(0));
    // Another clone commits version 1 first.
    let other = deep_clone(&src, &dst, &Default::default()).await.unwrap();
    assert_eq!(other.target_version, 1);
    let err = execute(stale, &Default::default()).await.unwrap_err();
    assert!(
        matches!(err, LakeError::CommitConflict { version: 1, .. }),
        "{err}"
    );
}
