//! Sync groups on the embedded default, black box: `replicator sync trigger` runs a group's
//! sync in its own process (memory bus, SQLite), `sync status --json` shows the cut, and
//! `sync failover` (dry run) finds every table at the cut; an unknown group is one line.

mod common;

use common::*;

#[test]
fn a_group_synced_on_the_embedded_default_is_at_its_cut() {
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo");
    let out = replicator(&["demo", "--no-run", "--dir", demo.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let config = demo.join("replicator.yaml");
    let mut yaml = std::fs::read_to_string(&config).unwrap();
    yaml.push_str(
        "sync:\n  default_schedule: \"0 */12 * * *\"\n  groups:\n    - name: sales\n      owner: [sales@example.com]\n      tables: [sales.orders, sales.customers]\n    - name: marketing\n      owner: [mkt@example.com]\n      tables: [\"marketing.*\"]\n",
    );
    std::fs::write(&config, yaml).unwrap();
    let cfg = config.to_str().unwrap();

    let out = replicator(&["sync", "trigger", "sales", "--config", cfg]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).starts_with("sync of sales as of "),
        "{}",
        stdout(&out)
    );

    let out = replicator(&["sync", "status", "--config", cfg, "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let groups: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let by = |name: &str| {
        groups
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["group"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(by("sales")["status"], "success", "{groups}");
    assert!(by("sales")["last_cut"].is_string(), "{groups}");
    assert_eq!(by("sales")["tables"].as_array().unwrap().len(), 2);
    assert_eq!(by("marketing")["status"], "never", "{groups}");

    let out = replicator(&["sync", "failover", "sales", "--config", cfg]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("dry run"), "{text}");
    assert_eq!(text.matches("at the cut").count(), 2, "{text}");

    let out = replicator(&["sync", "trigger", "nope", "--config", cfg]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("no sync group `nope`"), "{err}");
}
