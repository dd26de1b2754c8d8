//! Whole-catalog DR on the native engine as a user runs it (docs/catalog.md): a root holding
//! Delta tables and plain file trees; `replicator run` with a `catalog` section carries the
//! trees as volumes (catalog tasks on the embedded fleet) beside the tables; files added,
//! changed and deleted between runs; extra files reported, deleted only when asked;
//! `reconcile --catalog` exits 1 on a difference and 0 once the target matches; a dry run
//! lists what it would copy and writes nothing.

mod common;

use std::path::Path;

use common::*;

fn write(path: &Path, body: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, body).unwrap();
}

/// Date the files under `dir` `secs` seconds back: a file written within the last two
/// seconds is copied again by the next sync (its timestamp could hide a second write), which
/// a test that writes and syncs at once would otherwise see.
fn age(path: &Path, secs: u64) {
    if path.is_dir() {
        for e in std::fs::read_dir(path).unwrap() {
            age(&e.unwrap().path(), secs);
        }
        return;
    }
    let when = std::time::SystemTime::now() - std::time::Duration::from_secs(secs);
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(when)
        .unwrap();
}

/// The summary rows of the run's volumes, by name.
fn volumes(done: &serde_json::Value) -> Vec<(String, String, String)> {
    done["summary"]["tables"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["kind"] == "volume")
        .map(|t| {
            (
                t["table"].as_str().unwrap().to_owned(),
                t["status"].as_str().unwrap().to_owned(),
                t["detail"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

fn run_json(config: &Path, extra: &[&str]) -> serde_json::Value {
    let (done, ok) = run_json_status(config, extra);
    assert!(ok, "{done}");
    done
}

/// A run's output, and whether it exited 0.
fn run_json_status(config: &Path, extra: &[&str]) -> (serde_json::Value, bool) {
    let mut args = vec!["run", config.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    let out = replicator(&args);
    let done = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(&out), stderr(&out)));
    (done, out.status.success())
}

/// The run's inventory check: its status and its error (the differences), if any.
fn inventory(done: &serde_json::Value) -> (String, String) {
    let rows: Vec<&serde_json::Value> = done["summary"]["tables"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["kind"] == "inventory")
        .collect();
    assert_eq!(rows.len(), 1, "one inventory check per run: {done}");
    (
        rows[0]["status"].as_str().unwrap().to_owned(),
        rows[0]["error"].as_str().unwrap_or("").to_owned(),
    )
}

#[test]
fn plain_file_trees_beside_tables_are_carried_as_volumes_incrementally() {
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("d");
    assert!(
        replicator(&["demo", "--dir", demo.to_str().unwrap(), "--no-run"])
            .status
            .success()
    );
    let src = demo.join("lake/source");
    let dst = demo.join("lake/target");
    // Two trees without tables, and a loose file beside the `sales` tables.
    write(
        &src.join("landing/csv/2026/11/orders.csv"),
        b"id,amount\n1,10\n",
    );
    write(
        &src.join("landing/csv/it's a \"quoted\" `name`.csv"),
        b"a,b\n",
    );
    write(&src.join("models/churn/model.bin"), &vec![7u8; 300_000]);
    write(&src.join("models/churn/meta.json"), b"{}");
    write(&src.join("sales/README.txt"), b"the sales tables\n");
    for p in ["landing", "models", "sales/README.txt"] {
        age(&src.join(p), 120);
    }
    let config = demo.join("replicator.yaml");
    let mut yaml = std::fs::read_to_string(&config).unwrap();
    yaml.push_str("catalog: { objects: [volume] }\n");
    std::fs::write(&config, yaml).unwrap();

    // A dry run lists the volumes and what it would copy, and writes nothing.
    let out = replicator(&["run", config.to_str().unwrap(), "--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("catalog objects"), "{text}");
    assert!(
        text.contains("volume landing") && text.contains("volume models"),
        "{text}"
    );
    assert!(
        text.contains("volume sales"),
        "the loose file's volume: {text}"
    );
    assert!(!dst.exists(), "a dry run writes nothing");

    let done = run_json(&config, &[]);
    let vols = volumes(&done);
    assert_eq!(vols.len(), 3, "{vols:?}");
    assert!(vols.iter().all(|(_, s, _)| s == "succeeded"), "{vols:?}");
    for f in [
        "landing/csv/2026/11/orders.csv",
        "landing/csv/it's a \"quoted\" `name`.csv",
        "models/churn/model.bin",
        "sales/README.txt",
    ] {
        assert_eq!(
            std::fs::read(src.join(f)).unwrap(),
            std::fs::read(dst.join(f)).unwrap(),
            "{f}"
        );
    }
    // The tables were cloned as before.
    assert!(dst.join("sales/orders/_delta_log").is_dir());
    // The run checked the inventory last, and found the catalogs equal.
    assert_eq!(inventory(&done).0, "succeeded", "{done}");
    let out = replicator(&["reconcile", "--catalog", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("MATCH"), "{}", stdout(&out));

    // Added, changed (same size) and deleted between runs.
    write(&src.join("landing/csv/2026/11/more.csv"), b"id\n2\n");
    write(
        &src.join("landing/csv/2026/11/orders.csv"),
        b"id,amount\n1,99\n",
    );
    std::fs::remove_file(src.join("models/churn/model.bin")).unwrap();
    for p in [
        "landing/csv/2026/11/more.csv",
        "landing/csv/2026/11/orders.csv",
    ] {
        age(&src.join(p), 60);
    }
    let out = replicator(&["reconcile", "--catalog", config.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let diff: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = diff["differences"].to_string();
    assert!(
        text.contains("landing") && text.contains("models"),
        "{text}"
    );

    // The run copies what changed; the deleted file stays on the target (deletions are
    // propagated only when asked), so the run's inventory check finds it and the run is
    // mismatched, saying which file.
    let (done, ok) = run_json_status(&config, &[]);
    assert!(!ok, "a run whose inventory differs exits 1: {done}");
    let (status, why) = inventory(&done);
    assert_eq!(status, "mismatched", "{done}");
    assert!(
        why.contains("volume models: different (1 extra: churn/model.bin)"),
        "{why}"
    );
    let vols = volumes(&done);
    let line = |name: &str| {
        vols.iter()
            .find(|(n, _, _)| n == &format!("volume {name}"))
            .map(|(_, _, d)| d.clone())
            .unwrap_or_else(|| panic!("no volume {name}: {vols:?}"))
    };
    assert!(line("landing").contains("2 file(s) copied"), "{vols:?}");
    assert!(
        line("models").contains("reported"),
        "kept, reported: {vols:?}"
    );
    assert_eq!(
        std::fs::read(dst.join("landing/csv/2026/11/orders.csv")).unwrap(),
        b"id,amount\n1,99\n"
    );
    assert!(
        dst.join("models/churn/model.bin").exists(),
        "not deleted unless asked"
    );

    // Deleted only when asked; then the catalogs match and a further run copies nothing.
    let done = run_json(&config, &["--set", "catalog.volumes.delete_extra=true"]);
    assert!(
        volumes(&done)
            .iter()
            .any(|(n, _, d)| n == "volume models" && d.contains("1 deleted")),
        "{:?}",
        volumes(&done)
    );
    assert!(!dst.join("models/churn/model.bin").exists());
    assert_eq!(inventory(&done).0, "succeeded", "{done}");
    let out = replicator(&["reconcile", "--catalog", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stdout(&out));
    let done = run_json(&config, &[]);
    assert!(
        volumes(&done)
            .iter()
            .all(|(_, _, d)| d.starts_with("unchanged")),
        "{:?}",
        volumes(&done)
    );

    // A whole volume removed from the source: kept on the target (reported by the
    // inventory) unless deletions are asked for; then its files go, and the catalogs match.
    std::fs::remove_dir_all(src.join("landing")).unwrap();
    let (done, ok) = run_json_status(&config, &[]);
    assert!(!ok, "{done}");
    let (status, why) = inventory(&done);
    assert_eq!(status, "mismatched", "{done}");
    assert!(why.contains("volume landing: extra on the target"), "{why}");
    assert!(dst.join("landing/csv/2026/11/orders.csv").exists());
    let done = run_json(&config, &["--set", "catalog.volumes.delete_extra=true"]);
    let vols = volumes(&done);
    assert!(
        vols.iter()
            .any(|(n, _, d)| n == "volume landing" && d.contains("3 deleted")),
        "{vols:?}"
    );
    assert!(!dst.join("landing/csv/2026/11/orders.csv").exists());
    assert!(!dst.join("landing/csv/2026/11/more.csv").exists());
    assert_eq!(inventory(&done).0, "succeeded", "{done}");
    // Nothing left to delete: no task for it any more.
    let done = run_json(&config, &["--set", "catalog.volumes.delete_extra=true"]);
    assert!(
        volumes(&done).iter().all(|(n, _, _)| n != "volume landing"),
        "{:?}",
        volumes(&done)
    );
}
