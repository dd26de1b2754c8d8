//! `replicator sync import`: the DR sync job's JSON file (the seed's, verbatim) as a config,
//! and a group that fails validation reported by name and skipped.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use replicator_common::Config;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name)
}

fn load(yaml: &str) -> Config {
    Config::from_yaml(yaml, Vec::new(), &[]).expect("the imported YAML loads as a config")
}

#[test]
fn the_seed_file_imports_as_a_config_with_its_three_groups() {
    let seed = fixture("seed_002_sync.json");
    let out = replicator(&["sync", "import", seed.to_str().unwrap()]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let config = load(&stdout(&out));
    let sync = config.sync.as_ref().expect("a sync section");
    let names: Vec<&str> = sync.groups.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["core_product", "example_group_1", "scheduled_sync"]);
    assert_eq!(sync.valid_groups().len(), 3);
    assert_eq!(sync.default_schedule.as_deref(), Some("0 */12 * * *"));
    assert_eq!(sync.max_retries, 3);
    // One line per group found, one per field not mapped; nothing invalid.
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines[..3],
        [
            "group core_product: 4 tables, workflow core_product_job",
            "group example_group_1: 1 table, workflow example_workflow_1",
            "group scheduled_sync: 3 tables",
        ]
    );
    assert!(
        lines[3..].iter().all(|l| l.starts_with("not mapped: ")),
        "{err}"
    );
    for field in [
        "workspace_name",
        "workspace_instance_url",
        "workspace_pat_key",
    ] {
        assert!(
            err.contains(&format!("not mapped: workspaces[0].{field}")),
            "{err}"
        );
    }
    assert!(!err.contains("invalid"), "{err}");
    // The same file is a config as it is.
    let direct = Config::load(&seed, &[]).unwrap();
    assert_eq!(direct.sync, config.sync);
}

#[test]
fn a_bad_group_is_reported_by_name_and_skipped() {
    let file = fixture("seed_002_sync_bad_group.json");
    let out = replicator(&["sync", "import", file.to_str().unwrap()]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("group no_tables: invalid, skipped when syncing: sync.groups[3].tables: list at least one table"),
        "{err}"
    );
    assert_eq!(err.matches("invalid").count(), 1, "{err}");
    let config = load(&stdout(&out));
    let sync = config.sync.unwrap();
    assert_eq!(sync.groups.len(), 4);
    let valid: Vec<&str> = sync
        .valid_groups()
        .iter()
        .map(|g| g.name.as_str())
        .collect();
    assert_eq!(valid, ["core_product", "example_group_1", "scheduled_sync"]);
    // Loaded directly, the file is accepted: the bad group does not refuse it.
    let direct = Config::load(&file, &[]).unwrap();
    assert_eq!(direct.sync.unwrap().valid_groups().len(), 3);
}

#[test]
fn what_is_not_the_seed_shape_is_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    for (text, words) in [
        ("{ \"workspaces\": [] }", "`workspaces` is empty"),
        ("source: { root: /a }", "is not JSON"),
        ("{ \"source\": {} }", "expected a `workspaces` list"),
    ] {
        let f = dir.path().join("in.json");
        std::fs::write(&f, text).unwrap();
        let out = replicator(&["sync", "import", f.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{text}");
        let err = stderr(&out);
        assert!(err.starts_with("error: ") && err.contains(words), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(stdout(&out).is_empty());
    }
    let out = replicator(&["sync", "import", "/nonexistent/x.json"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).starts_with("error: cannot read"));
}
