//! `replicator run`, `validate` and `demo` as a user runs them.

mod common;

use common::*;

fn write_config(dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
    let path = dir.join("replicator.yaml");
    std::fs::write(
        &path,
        format!("source: {{ root: ./lake/source }}\ntarget: {{ root: ./lake/target }}\ntables: {{ include: [\"*\"], exclude: [] }}\n{extra}"),
    )
    .unwrap();
    path
}

#[test]
fn demo_then_run_is_incremental_and_exit_codes_tell_the_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let demo_dir = dir.path().join("demo");
    let out = replicator(&["demo", "--dir", demo_dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("4 tables: 4 succeeded, 0 failed, 0 mismatched"),
        "{text}"
    );
    assert!(text.contains("sales.orders"), "{text}");
    let config = demo_dir.join("replicator.yaml");

    let out = replicator(&["run", config.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let done: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        done["summary"]["files_copied"], 0,
        "second run copies nothing"
    );

    // Break a table: the run still covers the others and exits non-zero.
    let victim = demo_dir.join("lake/source/sales/customers");
    let data = std::fs::read_dir(&victim)
        .unwrap()
        .flatten()
        .find(|e| e.path().extension().is_some_and(|x| x == "parquet"))
        .unwrap();
    std::fs::remove_file(data.path()).unwrap();
    std::fs::remove_dir_all(demo_dir.join("lake/target/sales/customers")).unwrap();
    let out = replicator(&["run", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(text.contains("3 succeeded, 1 failed"), "{text}");
    assert!(
        text.contains("FAILED") && text.contains("is missing"),
        "{text}"
    );
}

#[test]
fn dry_run_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let demo_dir = dir.path().join("d");
    assert!(
        replicator(&["demo", "--dir", demo_dir.to_str().unwrap(), "--no-run"])
            .status
            .success()
    );
    let config = demo_dir.join("replicator.yaml");
    let out = replicator(&["run", config.to_str().unwrap(), "--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("dry run (all): 4 tables"), "{text}");
    assert!(
        text.contains("sales.orders")
            && text.contains("source v3")
            && text.contains("copy 3 files"),
        "{text}"
    );
    assert!(!demo_dir.join("lake/target").exists());
    assert!(!demo_dir.join(".replicator").exists());
}

#[test]
fn validate_only_reports_a_bad_key_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "concurrency: { colners: 4 }\n");
    for args in [
        vec!["run", config.to_str().unwrap(), "--validate-only"],
        vec!["validate", config.to_str().unwrap()],
    ] {
        let out = replicator(&args);
        assert_eq!(out.status.code(), Some(2));
        let err = stderr(&out);
        assert!(
            err.contains("concurrency.colners") && err.contains("unknown field"),
            "{err}"
        );
    }
    // A good config with a missing source root is reported too.
    let config = write_config(dir.path(), "");
    let out = replicator(&["validate", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("source root does not exist"),
        "{}",
        stderr(&out)
    );
    // Environment and --set overrides are applied (and validated).
    let out = replicator(&[
        "validate",
        config.to_str().unwrap(),
        "--set",
        "concurrency.cloners=0",
    ]);
    assert!(
        stderr(&out).contains("config key `concurrency.cloners`: must be at least 1"),
        "{}",
        stderr(&out)
    );
}

/// `log: { format: json }` in the config makes every log line JSON, as `--log-json` does;
/// without it the same lines are text.
#[test]
fn the_config_log_format_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let demo_dir = dir.path().join("demo");
    let out = replicator(&["demo", "--dir", demo_dir.to_str().unwrap(), "--no-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let config = demo_dir.join("replicator.yaml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("{text}log: {{ format: json, level: info }}\n"),
    )
    .unwrap();
    let out = replicator(&["run", config.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let logs = stderr(&out);
    let lines: Vec<&str> = logs.lines().collect();
    assert!(!lines.is_empty(), "info-level logs expected");
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}\n{logs}"));
        assert!(v.get("level").is_some(), "{line}");
    }
    // `serve` reads the same section (it fails later: the memory bus cannot serve).
    let out = replicator(&[
        "serve",
        "planner",
        "--config",
        config.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    let logs = stderr(&out);
    let first = logs.lines().next().unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(first)
        .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {first}\n{logs}"));
    assert_eq!(
        v["fields"]["message"], "health and metrics endpoints up",
        "{logs}"
    );
    // Text stays the default.
    std::fs::write(&config, format!("{text}log: {{ level: info }}\n")).unwrap();
    let out = replicator(&["run", config.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let logs = stderr(&out);
    assert!(
        logs.lines().all(|l| !l.starts_with('{')),
        "text expected:\n{logs}"
    );
}

/// `replicator mirror snowflake` on a config without a `snowflake` section is a usage
/// error (exit 2) that names the file, and does nothing.
#[test]
fn mirroring_without_a_snowflake_section_is_refused_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("replicator.yaml");
    std::fs::write(
        &config,
        format!(
            "source: {{ root: {} }}\ntarget: {{ root: {} }}\n",
            dir.path().join("s").display(),
            dir.path().join("t").display()
        ),
    )
    .unwrap();
    let out = replicator(&["mirror", "snowflake", "-c", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(
        stderr(&out).trim(),
        format!(
            "error: {}: the config has no `snowflake` section: nothing to mirror (docs/snowflake.md)",
            config.display()
        )
    );
    assert!(!dir.path().join("t").exists());
}
