//! Helpers shared by the CLI tests: run the real `replicator` binary; [`fleet`] runs it as
//! a fleet of `replicator serve` processes over a real broker and database.
#![allow(dead_code)]

pub mod fleet;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn replicator(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_replicator"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("replicator binary runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `replicator clone SRC DST --json [extra]`, returning the parsed JSON on success.
pub fn clone_json(src: &Path, dst: &Path, extra: &[&str]) -> Result<serde_json::Value, String> {
    let mut args = vec![
        "clone",
        src.to_str().unwrap(),
        dst.to_str().unwrap(),
        "--json",
    ];
    args.extend_from_slice(extra);
    let out = replicator(&args);
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).expect("clone --json prints JSON"))
    } else {
        Err(stderr(&out))
    }
}

/// The shared corpus of real Delta tables (read-only).
/// `REPLICATOR_CORPUS` overrides the default `../shared/delta-corpus` beside the repository.
pub fn corpus() -> PathBuf {
    std::env::var_os("REPLICATOR_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/delta-corpus"))
}

/// Copy a directory tree (so tests can modify a corpus table).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

/// Every file under `dir` (relative paths), sorted.
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(base, &p, out);
                } else {
                    out.push(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
                }
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}
