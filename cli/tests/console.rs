//! The operator console in a browser (issue 18; docs/console.md): `replicator run --ui` on
//! the embedded default, driven in headless Chromium by `console/browser.cjs`
//! (playwright-core and Debian's chromium, installed by `scripts/test-tools.sh`):
//!
//! - the run shows up in the list and its page follows it without reloading: `sales.orders`
//!   is held (this test holds its target's lease) and turns to `succeeded` once released;
//! - `sales.broken` (a data file missing from its source) fails; its details give the reason;
//! - replay without the operator token is refused; once the file is back, replay with the
//!   token sends the task again and the table turns to `succeeded`, in the same page load;
//! - sync group `sales` is synced from the console (its cut arrives on the page), and a
//!   failover dry run says its table is at the cut.
//!
//! Screenshots of the pages go to a temporary directory, or to `$REPLICATOR_SCREENSHOTS`
//! (the ones in `docs/console/` were made that way).

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use replicator_lake::{TableLocation, sample};
use replicator_store::{LeaseToken, Store};

const TOKEN: &str = "op-token-7f3a9c";

fn wait_for_file(path: &Path, what: &str) {
    let end = Instant::now() + Duration::from_secs(120);
    while !path.exists() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A data file of the table at `dir` (not its log).
fn data_file(dir: &Path) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "parquet"))
        .expect("a data file")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_watches_a_run_reads_a_failure_and_replays_it() {
    let tools = PathBuf::from(
        std::env::var("REPLICATOR_TOOLS").unwrap_or_else(|_| "/var/tmp/replicator-tools".into()),
    );
    let playwright = tools.join("node_modules/playwright-core");
    assert!(
        playwright.is_dir(),
        "playwright-core is missing: run scripts/test-tools.sh"
    );
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let source = root.join("source");
    let loc = |p: &Path| TableLocation::parse(&p.to_string_lossy()).unwrap();
    sample::create(
        &loc(&source.join("sales/orders")),
        &sample::orders(0, 30, "eu"),
        &[],
    )
    .await
    .unwrap();
    let broken = source.join("sales/broken");
    sample::create(&loc(&broken), &sample::orders(100, 10, "us"), &[])
        .await
        .unwrap();
    let missing = data_file(&broken);
    let aside = missing.with_extension("aside");
    std::fs::rename(&missing, &aside).unwrap();
    std::fs::write(root.join("token"), TOKEN).unwrap();
    let state = root.join("state.db");
    let config = root.join("replicator.yaml");
    std::fs::write(
        &config,
        format!(
            "source: {{ root: {src} }}\ntarget: {{ root: {dst} }}\nstate: {{ url: \"sqlite://{state}\" }}\n\
             retry: {{ max_attempts: 2, base_delay_ms: 1, max_delay_ms: 5 }}\n\
             console: {{ listen: \"127.0.0.1:0\", operator_token: {{ file: {token} }} }}\n\
             sync: {{ groups: [ {{ name: sales, owner: [ops@example.com], tables: [sales.orders], rpo: 1h }} ] }}\n",
            src = source.display(),
            dst = root.join("target").display(),
            state = state.display(),
            token = root.join("token").display(),
        ),
    )
    .unwrap();

    // Hold sales.orders: its clone waits until the browser watches it.
    let store = Store::open(&format!("sqlite://{}", state.display()))
        .await
        .unwrap();
    let orders_target = format!("file://{}/sales/orders/", root.join("target").display());
    let lease = LeaseToken::new("console-test");
    assert!(
        store
            .acquire_lease(
                &orders_target,
                &lease,
                uuid::Uuid::nil(),
                Duration::from_secs(300)
            )
            .await
            .unwrap()
    );

    let mut replicator = Command::new(env!("CARGO_BIN_EXE_replicator"))
        .args(["run", config.to_str().unwrap(), "--ui"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(replicator.stderr.take().unwrap()).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("the console's address on stderr")
            .unwrap();
        if let Some(u) = line.strip_prefix("console: ") {
            break u.trim().to_owned();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));

    let shots = root.join("hands");
    std::fs::create_dir_all(&shots).unwrap();
    let browser = Command::new("node")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/console/browser.cjs"
        ))
        .args([url.as_str(), TOKEN, shots.to_str().unwrap()])
        .env("PLAYWRIGHT_CORE", &playwright)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    wait_for_file(&shots.join("watching"), "the browser to watch sales.orders");
    store.release_lease(&orders_target, &lease).await.unwrap();
    wait_for_file(&shots.join("refused"), "the refused replay");
    std::fs::rename(&aside, &missing).unwrap();
    std::fs::write(shots.join("fixed"), "").unwrap();

    let out = browser.wait_with_output().unwrap();
    let _ = replicator.kill();
    let _ = replicator.wait();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let saw: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap();
    let orders: Vec<&str> = saw["seen"]["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_ne!(orders[0], "succeeded", "{saw}");
    assert_eq!(orders.last(), Some(&"succeeded"), "{saw}");
    let broken_seen: Vec<&str> = saw["seen"]["broken"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    let failed_at = broken_seen.iter().position(|s| *s == "failed").unwrap();
    assert_eq!(broken_seen.last(), Some(&"succeeded"), "{saw}");
    assert!(failed_at < broken_seen.len() - 1, "{saw}");
    let reason = saw["reason"].as_str().unwrap();
    assert!(reason.starts_with("Reason: "), "{reason}");
    assert!(
        reason.contains(missing.file_name().unwrap().to_str().unwrap()),
        "the reason names the missing file: {reason}"
    );
    assert_eq!(
        saw["refused"],
        "refused: this action needs the operator token"
    );
    assert_eq!(saw["brokenAfterRefusal"], "failed");
    assert!(
        saw["replayed"]
            .as_str()
            .unwrap()
            .starts_with("replayed 1 task(s)"),
        "{saw}"
    );
    assert_eq!(saw["noReload"], true);
    // The sync group: synced from the console, then a failover dry run says the table is
    // at the cut.
    assert!(
        saw["synced"]
            .as_str()
            .unwrap()
            .starts_with("sync of group sales started: run "),
        "{saw}"
    );
    assert_eq!(saw["groupStatus"], "success");
    let failover = saw["failover"].as_str().unwrap();
    assert!(
        failover.starts_with("failover of sales (dry run): sales.orders: at the cut (version "),
        "{failover}"
    );
    for shot in [
        "console-runs.png",
        "console-run.png",
        "console-task.png",
        "console-groups.png",
    ] {
        let path = std::env::var("REPLICATOR_SCREENSHOTS")
            .map(PathBuf::from)
            .unwrap_or_else(|_| shots.clone())
            .join(shot);
        assert!(path.is_file(), "{}", path.display());
    }
}
