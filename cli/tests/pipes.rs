//! A closed stdout (`replicator validate cfg | head -0`) ends a command quietly: no panic,
//! no "Broken pipe" message, no exit code 101. Each command runs with its stdout a real pipe
//! whose reading end is closed before the command prints.

mod common;

use std::process::{Command, Output, Stdio};

use common::*;

/// `replicator ARGS` with stdout a pipe nobody reads any more.
fn with_closed_stdout(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_replicator"))
        .args(args)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("replicator binary runs");
    // Closing the only reading end: the command's first write to stdout meets a closed pipe.
    drop(child.stdout.take());
    child.wait_with_output().expect("replicator ends")
}

fn assert_quiet(args: &[&str], out: &Output) {
    let err = stderr(out);
    assert!(
        !err.contains("panicked") && !err.contains("Broken pipe"),
        "{args:?}: {err}"
    );
    assert_ne!(out.status.code(), Some(101), "{args:?}: {err}");
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        const SIGPIPE: i32 = 13;
        assert!(
            out.status.success() || out.status.signal() == Some(SIGPIPE),
            "{args:?}: {:?} {err}",
            out.status
        );
    }
}

#[test]
fn a_closed_stdout_ends_every_printing_command_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo");
    let out = replicator(&["demo", "--dir", demo.to_str().unwrap(), "--no-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let config = demo.join("replicator.yaml");
    let config = config.to_str().unwrap();
    let src = demo.join("lake/source/sales/orders");
    let src = src.to_str().unwrap();
    let run = replicator(&["run", config, "--json"]);
    assert!(run.status.success(), "{}", stderr(&run));
    let run: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    let run_id = run["run_id"].as_str().unwrap().to_owned();
    let clone_dst = dir.path().join("clone");
    let clone_json_dst = dir.path().join("clone-json");
    let demo2 = dir.path().join("demo2");
    let commands: Vec<Vec<&str>> = vec![
        vec!["validate", config],
        vec!["run", config],
        vec!["run", config, "--json"],
        vec!["run", config, "--dry-run"],
        vec!["clone", src, clone_dst.to_str().unwrap()],
        vec!["clone", src, clone_json_dst.to_str().unwrap(), "--json"],
        vec!["reconcile", src, clone_dst.to_str().unwrap(), "--key", "id"],
        vec!["status", &run_id, "--config", config],
        vec!["status", &run_id, "--config", config, "--json"],
        vec!["demo", "--dir", demo2.to_str().unwrap(), "--no-run"],
    ];
    for args in &commands {
        let out = with_closed_stdout(args);
        assert_quiet(args, &out);
    }
    // The work was done before the output was lost.
    for d in [&clone_dst, &clone_json_dst] {
        assert!(d.join("_delta_log").is_dir(), "{}", d.display());
    }
}
