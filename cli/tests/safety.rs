//! Data safety through `replicator clone` (docs/safety.md): a clone never writes into its
//! source whatever the paths look like, never replaces a table it did not clone without
//! `--replace`, never reads a file the Delta log points to outside the table (unless that
//! root is allowed), and leaves no partial target when interrupted.

mod common;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use replicator_lake::TableLocation;
use replicator_lake::inspect::{read_batches, sorted_rows};
use replicator_lake::sample;

fn loc(p: &Path) -> TableLocation {
    TableLocation::parse(p.to_str().unwrap()).unwrap()
}

async fn rows(p: &Path) -> Vec<String> {
    sorted_rows(&read_batches(&loc(p), None).await.unwrap()).unwrap()
}

/// A two-version sample table at `p`.
async fn table(p: &Path, region: &str) {
    sample::create(&loc(p), &sample::orders(0, 20, region), &[])
        .await
        .unwrap();
    sample::append(&loc(p), &sample::orders(20, 10, region))
        .await
        .unwrap();
}

/// Every file under `dir` with its bytes: what "unchanged" means.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    files_under(dir)
        .into_iter()
        .map(|f| {
            let bytes = std::fs::read(dir.join(&f)).unwrap();
            (f, bytes)
        })
        .collect()
}

fn clone(args: &[&str]) -> std::process::Output {
    let mut all = vec!["clone"];
    all.extend_from_slice(args);
    replicator(&all)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A failure the user can read: one line, `error: ` and the words expected, no backtrace or
/// struct dump.
fn assert_one_line_error(out: &std::process::Output, code: i32, words: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.starts_with("error: "), "{err}");
    for w in words {
        assert!(err.contains(w), "`{w}` missing from: {err}");
    }
    for bad in ["panicked", "backtrace", "{ ", "Error {"] {
        assert!(!err.contains(bad), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlinked_target_is_the_source_and_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    table(&src, "emea").await;
    let link = dir.path().join("link");
    symlink(&src, &link).unwrap();
    let before = snapshot(&src);

    // `ln -s src link; replicator clone src link --version 0` rolled the source back.
    let out = clone(&[s(&src), s(&link), "--version", "0"]);
    assert_one_line_error(&out, 1, &["overlap"]);
    assert_eq!(snapshot(&src), before, "the source was modified");

    // The same through a symlinked parent, and with the link as the source.
    let alias = dir.path().join("alias");
    symlink(dir.path(), &alias).unwrap();
    for (a, b) in [
        (src.clone(), alias.join("src")),
        (link.clone(), src.clone()),
        (
            src.clone(),
            PathBuf::from(format!("file://{}/", alias.join("src").display())),
        ),
    ] {
        let out = clone(&[s(&a), s(&b)]);
        assert_one_line_error(&out, 1, &["overlap"]);
    }
    assert_eq!(snapshot(&src), before, "the source was modified");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_inside_the_source_through_a_symlinked_parent_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real");
    table(&real.join("src"), "emea").await;
    let alias = dir.path().join("alias");
    symlink(&real, &alias).unwrap();
    let before = snapshot(&real.join("src"));

    // `replicator clone real/src alias/src/sub`, and a source inside the target.
    for (a, b) in [
        (real.join("src"), alias.join("src/sub")),
        (alias.join("src"), real.join("src/deeper/sub")),
        (real.join("src"), alias.clone()),
    ] {
        let out = clone(&[s(&a), s(&b)]);
        assert_one_line_error(&out, 1, &["overlap"]);
    }
    assert_eq!(snapshot(&real.join("src")), before);
    assert!(!real.join("src/sub").exists() && !real.join("src/deeper").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unrelated_table_at_the_target_is_replaced_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let (src, other, dst) = (
        dir.path().join("src"),
        dir.path().join("other"),
        dir.path().join("dst"),
    );
    table(&src, "emea").await;
    table(&other, "amer").await;
    // An unrelated Delta table at the target.
    table(&dst, "apac").await;
    let before = snapshot(&dst);
    let out = clone(&[s(&src), s(&dst)]);
    assert_one_line_error(&out, 1, &["not cloned from", "--replace", s(&dst)]);
    assert_eq!(snapshot(&dst), before, "the target was modified");

    // `--replace` says so: the target becomes the source's replica.
    let replaced = clone_json(&src, &dst, &["--replace"]).unwrap();
    assert_eq!(replaced["committed"], true);
    assert_eq!(rows(&dst).await, rows(&src).await);
    // From then on it is the source's replica: no flag needed.
    sample::append(&loc(&src), &sample::orders(30, 5, "emea"))
        .await
        .unwrap();
    clone_json(&src, &dst, &[]).unwrap();
    assert_eq!(rows(&dst).await, rows(&src).await);
    // A commit of someone else on top of the replica does not make it foreign.
    sample::append(&loc(&dst), &sample::orders(99, 1, "emea"))
        .await
        .unwrap();
    clone_json(&src, &dst, &[]).unwrap();
    assert_eq!(rows(&dst).await, rows(&src).await);

    // A replica of another source is not this source's replica.
    let before = snapshot(&dst);
    let out = clone(&[s(&other), s(&dst)]);
    assert_one_line_error(&out, 1, &["not cloned from", "--replace"]);
    assert_eq!(snapshot(&dst), before);

    // The same source under another spelling (a link to it) is the same source.
    let link = dir.path().join("link");
    symlink(&src, &link).unwrap();
    let again = clone_json(&link, &dst, &[]).unwrap();
    assert_eq!(again["committed"], false, "{again}");

    // A copy of the source (the same log) is refused even with --replace: it may be the
    // source itself behind a path we cannot see through (a bind mount, another NFS mount).
    let copy = dir.path().join("copy");
    copy_dir(&src, &copy);
    let out = clone(&[s(&src), s(&copy), "--replace"]);
    assert_one_line_error(&out, 1, &["holds the Delta log of source"]);
}

/// Append a commit holding `actions` (JSON lines) to the table at `t`.
fn commit(t: &Path, actions: &[serde_json::Value]) {
    let log = t.join("_delta_log");
    let next = std::fs::read_dir(&log)
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_suffix(".json")?.parse::<u64>().ok()
        })
        .max()
        .map_or(0, |v| v + 1);
    let body: String = actions.iter().map(|a| format!("{a}\n")).collect();
    std::fs::write(log.join(format!("{next:020}.json")), body).unwrap();
}

fn add(path: &str, size: u64) -> serde_json::Value {
    serde_json::json!({"add": {"path": path, "partitionValues": {}, "size": size,
        "modificationTime": 0, "dataChange": true}})
}

fn file_url(p: &Path) -> String {
    format!("file://{}", p.display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_cannot_make_the_clone_read_files_outside_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    table(&base, "emea").await;
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.parquet"), b"not for the target").unwrap();
    // Inside the table, a link to the outside directory and a link to a file outside.
    let hostname = std::fs::metadata("/etc/hostname").map(|m| m.len()).ok();

    let escaping: Vec<(&str, serde_json::Value)> = vec![
        // The issue's repro: a file of this machine, with its real size.
        (
            "file:///etc/hostname",
            add("file:///etc/hostname", hostname.unwrap_or(1)),
        ),
        (
            "outside",
            add(&file_url(&outside.join("secret.parquet")), 18),
        ),
        ("escapes", add("../outside/secret.parquet", 18)),
        ("escapes", add("a/../../outside/secret.parquet", 18)),
        ("another store", add("s3://bucket/secret.parquet", 18)),
        ("symbolic link", add("linked/secret.parquet", 18)),
        ("symbolic link", add("file-link.parquet", 18)),
    ];
    for (i, (what, action)) in escaping.into_iter().enumerate() {
        let t = dir.path().join(format!("t{i}"));
        copy_dir(&base, &t);
        symlink(&outside, t.join("linked")).unwrap();
        symlink(outside.join("secret.parquet"), t.join("file-link.parquet")).unwrap();
        commit(&t, &[action]);
        let d = dir.path().join(format!("d{i}"));
        let out = clone(&[s(&t), s(&d)]);
        assert_eq!(out.status.code(), Some(1), "{what}: {}", stderr(&out));
        assert_eq!(
            stderr(&out).trim_end().lines().count(),
            1,
            "{}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains("outside the table root")
                || stderr(&out).contains("escapes the table root"),
            "{what}: {}",
            stderr(&out)
        );
        assert!(files_under(&d).is_empty(), "{what}: {:?}", files_under(&d));
    }

    // An allowed root: its files are copied into the target (and rewritten relative).
    let t = dir.path().join("allowed");
    copy_dir(&base, &t);
    commit(&t, &[add(&file_url(&outside.join("secret.parquet")), 18)]);
    let d = dir.path().join("allowed-copy");
    let out = clone(&[s(&t), s(&d), "--allow-external-root", s(&outside)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(d.join("secret.parquet")).unwrap(),
        b"not for the target"
    );
    // An allowed root does not let a link inside it lead elsewhere.
    symlink("/etc/hostname", outside.join("hostname")).unwrap();
    let t2 = dir.path().join("allowed-link");
    copy_dir(&base, &t2);
    commit(
        &t2,
        &[add(
            &file_url(&outside.join("hostname")),
            hostname.unwrap_or(1),
        )],
    );
    let out = clone(&[
        s(&t2),
        s(&dir.path().join("allowed-link-copy")),
        "--allow-external-root",
        s(&outside),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("outside"), "{}", stderr(&out));

    // An absolute path into the table itself, spelled through a link, is the table's file.
    let t3 = dir.path().join("self");
    copy_dir(&base, &t3);
    let alias = dir.path().join("self-alias");
    symlink(&t3, &alias).unwrap();
    let some_file = files_under(&t3)
        .into_iter()
        .find(|f| f.ends_with(".parquet"))
        .unwrap();
    std::fs::copy(t3.join(&some_file), t3.join("again.parquet")).unwrap();
    let size = std::fs::metadata(t3.join("again.parquet")).unwrap().len();
    commit(&t3, &[add(&file_url(&alias.join("again.parquet")), size)]);
    let d3 = dir.path().join("self-copy");
    let out = clone(&[s(&t3), s(&d3)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(d3.join("again.parquet").is_file());
}

/// The corpus's deletion-vector table with its deletion vector moved to `dv` (an absolute
/// path), at `t`.
fn dv_table(t: &Path, dv: &Path) {
    let corpus = corpus().join("table-with-dv-small");
    copy_dir(&corpus, t);
    let name = "deletion_vector_61d16c75-6994-46b7-a15b-8b538852e50e.bin";
    if dv != Path::new("/etc/hostname") {
        std::fs::create_dir_all(dv.parent().unwrap()).unwrap();
        std::fs::rename(t.join(name), dv).unwrap();
    } else {
        std::fs::remove_file(t.join(name)).unwrap();
    }
    let log = t.join("_delta_log/00000000000000000001.json");
    let text = std::fs::read_to_string(&log).unwrap();
    let text = text.replace(
        r#""storageType":"u","pathOrInlineDv":"vBn[lx{q8@P<9BNH/isA""#,
        &format!(r#""storageType":"p","pathOrInlineDv":"{}""#, file_url(dv)),
    );
    assert!(text.contains(r#""storageType":"p""#));
    std::fs::write(&log, text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_vectors_outside_the_table_follow_the_same_rule() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");

    // A deletion vector at a file of this machine (no size needed in the log).
    let t = dir.path().join("etc");
    dv_table(&t, Path::new("/etc/hostname"));
    let d = dir.path().join("etc-copy");
    let out = clone(&[s(&t), s(&d)]);
    assert_one_line_error(&out, 1, &["/etc/hostname", "outside the table root"]);
    assert!(files_under(&d).is_empty());

    // Outside the table: refused unless the root is allowed; then copied and repointed.
    let t = dir.path().join("dv");
    dv_table(&t, &outside.join("dv.bin"));
    let d = dir.path().join("dv-copy");
    let out = clone(&[s(&t), s(&d)]);
    assert_one_line_error(
        &out,
        1,
        &["outside the table root", "allowed external root"],
    );
    assert!(files_under(&d).is_empty());
    let out = clone(&[s(&t), s(&d), "--allow-external-root", s(&outside)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(d.join("dv.bin").is_file());
    assert_eq!(rows(&d).await, rows(&t).await);
    assert_eq!(rows(&d).await.len(), 8);

    // Too small for the deletion vector the log describes: refused before copying.
    let t = dir.path().join("short");
    dv_table(&t, &outside.join("short/dv.bin"));
    std::fs::write(outside.join("short/dv.bin"), b"\x01abc").unwrap();
    let d = dir.path().join("short-copy");
    let out = clone(&[s(&t), s(&d), "--allow-external-root", s(&outside)]);
    assert_one_line_error(&out, 1, &["deletion vector", "dv.bin"]);
    assert!(files_under(&d).is_empty());
}

/// A table of `n` small files (written directly: the clone never reads their contents).
fn many_files(t: &Path, n: usize) {
    std::fs::create_dir_all(t.join("_delta_log")).unwrap();
    let mut actions = vec![
        serde_json::json!({"protocol": {"minReaderVersion": 1, "minWriterVersion": 2}}),
        serde_json::json!({"metaData": {"id": "many", "format": {"provider": "parquet", "options": {}},
            "schemaString": "{\"type\":\"struct\",\"fields\":[{\"name\":\"id\",\"type\":\"long\",\"nullable\":true,\"metadata\":{}}]}",
            "partitionColumns": [], "configuration": {}, "createdTime": 0}}),
    ];
    let data = vec![7u8; 4096];
    for i in 0..n {
        let name = format!("part-{i:05}.parquet");
        std::fs::write(t.join(&name), &data).unwrap();
        actions.push(add(&name, data.len() as u64));
    }
    commit(t, &actions);
}

/// Start `replicator clone SRC DST --parallelism 1`, and once a file has arrived in DST,
/// send it `signal`; returns the finished process's output.
fn interrupt_clone(src: &Path, dst: &Path, signal: &str) -> std::process::Output {
    let child = Command::new(env!("CARGO_BIN_EXE_replicator"))
        .args(["clone", s(src), s(dst), "--parallelism", "1"])
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !files_under(dst).iter().any(|f| f.ends_with(".parquet")) {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no file was copied"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let kill = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    child.wait_with_output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_during_a_first_clone_leaves_no_target() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    many_files(&src, 20_000);
    let out = interrupt_clone(&src, &dst, "-INT");
    assert_one_line_error(
        &out,
        130,
        &["interrupted", "nothing was committed", "removed"],
    );
    assert!(
        files_under(&dst).is_empty(),
        "left behind: {:?}",
        &files_under(&dst)[..files_under(&dst).len().min(5)]
    );
    // SIGTERM too.
    let out = interrupt_clone(&src, &dst, "-TERM");
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(files_under(&dst).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_killed_clone_staged_is_removed_by_the_next_clone() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    many_files(&src, 5_000);
    // kill -9: no cleanup at all.
    let out = interrupt_clone(&src, &dst, "-KILL");
    assert_eq!(out.status.code(), None, "killed by the signal");
    // What a killed process may leave besides the copies: staged files and a staged commit.
    std::fs::create_dir_all(dst.join("_replicator_staging")).unwrap();
    std::fs::write(
        dst.join("_replicator_staging/part-00001.parquet.0123456789abcdef0123456789abcdef.replicator-tmp"),
        b"half",
    )
    .unwrap();
    std::fs::create_dir_all(dst.join("_delta_log")).unwrap();
    std::fs::write(dst.join("_delta_log/00000000000000000000.json#1"), b"{}").unwrap();

    let done = clone_json(&src, &dst, &[]).unwrap();
    assert_eq!(done["committed"], true);
    let left: Vec<String> = files_under(&dst)
        .into_iter()
        .filter(|f| !f.ends_with(".parquet") && f != "_delta_log/00000000000000000000.json")
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert_eq!(files_under(&dst).len(), 5_001);
}

#[test]
fn a_run_fails_a_foreign_target_permanently_unless_clone_replace() {
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("d");
    assert!(
        replicator(&["demo", "--dir", s(&demo), "--no-run"])
            .status
            .success()
    );
    let config = demo.join("replicator.yaml");
    // Another job's table where sales.orders's replica goes.
    let foreign = demo.join("lake/target/sales/orders");
    copy_dir(&demo.join("lake/source/sales/customers"), &foreign);
    let before = snapshot(&foreign);

    let out = replicator(&["run", s(&config), "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let done: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(done["summary"]["succeeded"], 3, "{done}");
    let orders = done["summary"]["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "sales.orders")
        .unwrap();
    assert_eq!(orders["status"], "failed", "{orders}");
    let error = orders["error"].as_str().unwrap();
    assert!(
        error.contains("is a Delta table not cloned from") && error.contains("clone.replace"),
        "{error}"
    );
    assert_eq!(snapshot(&foreign), before, "the foreign table was modified");

    // The run says replace: the table becomes the replica.
    let out = replicator(&["run", s(&config), "--set", "clone.replace=true"]);
    assert!(out.status.success(), "{}", stdout(&out));
    // And stays one without the setting.
    let out = replicator(&["run", s(&config)]);
    assert!(out.status.success(), "{}", stdout(&out));
}
