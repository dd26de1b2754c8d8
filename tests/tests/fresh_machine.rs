//! The README's two commands must work on a fresh machine of this project's kind: cargo, gcc,
//! make and python3, nothing installed by hand (no cmake, no -dev packages). These checks keep
//! the build from quietly depending on more again.

use std::path::Path;

fn repo_file(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every Cargo.toml of the workspace (the workspace's own and each member's).
fn manifests() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut out = vec!["Cargo.toml".to_owned()];
    for dir in ["crates", "services"] {
        for e in std::fs::read_dir(root.join(dir)).unwrap().flatten() {
            if e.path().join("Cargo.toml").exists() {
                out.push(format!(
                    "{dir}/{}/Cargo.toml",
                    e.file_name().to_string_lossy()
                ));
            }
        }
    }
    out.extend([
        "cli/Cargo.toml".into(),
        "proto/Cargo.toml".into(),
        "tests/Cargo.toml".into(),
    ]);
    out
}

#[test]
fn no_manifest_turns_on_a_cmake_build() {
    for m in manifests() {
        let text = repo_file(&m);
        for line in text.lines().filter(|l| l.contains("rdkafka")) {
            assert!(!line.contains("cmake"), "{m}: {line}");
        }
    }
}

#[test]
fn librdkafka_builds_without_cmake() {
    let manifest = repo_file("Cargo.toml");
    let rdkafka = manifest
        .lines()
        .find(|l| l.starts_with("rdkafka ="))
        .expect("the workspace declares rdkafka");
    assert!(
        !rdkafka.contains("cmake"),
        "rdkafka's cmake-build feature needs cmake, which a fresh machine lacks: {rdkafka}"
    );
    for feature in ["ssl", "gssapi", "curl", "zstd", "libz"] {
        assert!(
            !rdkafka.contains(&format!("\"{feature}")),
            "rdkafka feature `{feature}` needs a system library a fresh machine lacks: {rdkafka}"
        );
    }
}

/// The build needs nothing beyond cargo, gcc and make. The one Debian package a script
/// installs is a test tool, not a build dependency: the browser the console's test drives
/// (`chromium`, in `scripts/test-tools.sh`).
#[test]
fn ci_and_the_test_command_install_no_system_package_for_the_build() {
    for script in [".ci/run", "scripts/test", "scripts/test-tools.sh"] {
        let text = repo_file(script);
        for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
            let browser = script == "scripts/test-tools.sh"
                && line.contains("apt-get install -y --no-install-recommends chromium >/dev/null")
                && line.matches("apt-get install").count() == 1;
            assert!(
                (browser || !line.contains("apt-get install")) && !line.contains("cmake"),
                "{script} installs a build dependency the README's commands would lack: {line}"
            );
        }
    }
}
