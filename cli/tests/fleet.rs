//! The fleet: every service in its own `replicator serve` process, over the machine's real
//! RabbitMQ (127.0.0.1:5672) with state in its real PostgreSQL (127.0.0.1:5432). Each test
//! has its own queue/exchange prefix and its own database, so tests run in parallel.

mod common;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use replicator_lake::inspect::{read_batches, sorted_rows};
use replicator_lake::{TableLocation, sample};
use replicator_store::Store;
use sqlx::Connection;
use uuid::Uuid;

const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";

struct Proc {
    service: String,
    child: Child,
    port: u16,
    log: PathBuf,
}

struct Fleet {
    dir: tempfile::TempDir,
    config: PathBuf,
    prefix: String,
    db: String,
    tables: Vec<String>,
    procs: Vec<Proc>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` on 127.0.0.1:port: (status code, body).
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((code, body))
}

impl Fleet {
    /// `n` tables of one or more commits each, a config for this test's prefix and database.
    async fn new(n: usize, extra: &str) -> Fleet {
        Self::with_bus(n, extra, |prefix| {
            format!("{{ backend: rabbitmq, prefix: {prefix}, retry_delays_ms: [200, 500, 1000] }}")
        })
        .await
    }

    /// Like [`Fleet::new`], with the `bus` section `bus(prefix)`.
    async fn with_bus(n: usize, extra: &str, bus: impl Fn(&str) -> String) -> Fleet {
        let dir = tempfile::tempdir().unwrap();
        let id = &Uuid::new_v4().simple().to_string()[..12];
        let (prefix, db) = (format!("fleet-{id}"), format!("replicator_fleet_{id}"));
        let mut admin = sqlx::PgConnection::connect(PG_ADMIN)
            .await
            .expect("PostgreSQL on 127.0.0.1:5432");
        sqlx::query(&format!("CREATE DATABASE \"{db}\""))
            .execute(&mut admin)
            .await
            .unwrap();
        let source = dir.path().join("lake/source");
        let mut tables = Vec::new();
        for i in 0..n {
            let name = format!("s{}.t{i:03}", i % 5);
            let path = source.join(format!("s{}/t{i:03}", i % 5));
            let loc = TableLocation::parse(path.to_str().unwrap()).unwrap();
            sample::create(&loc, &sample::orders(i as i64 * 1000, 200, "eu"), &[])
                .await
                .unwrap();
            if i % 3 == 0 {
                sample::append(&loc, &sample::orders(i as i64 * 1000 + 500, 50, "us"))
                    .await
                    .unwrap();
            }
            tables.push(name);
        }
        let config = dir.path().join("replicator.yaml");
        std::fs::write(
            &config,
            format!(
                "source: {{ root: ./lake/source }}\n\
                 target: {{ root: ./lake/target }}\n\
                 operation: all\n\
                 bus: {bus}\n\
                 state: {{ url: \"postgres://postgres@127.0.0.1:5432/{db}\" }}\n\
                 concurrency: {{ cloners: 3, reconcilers: 3, lease_ttl_ms: 3000 }}\n\
                 retry: {{ max_attempts: 2, base_delay_ms: 50, max_delay_ms: 200 }}\n\
                 log: {{ level: info }}\n{extra}",
                bus = bus(&prefix),
            ),
        )
        .unwrap();
        Fleet {
            dir,
            config,
            prefix,
            db,
            tables,
            procs: Vec::new(),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Start `replicator serve SERVICE` and wait until it is ready; returns its index.
    fn start(&mut self, service: &str) -> usize {
        let port = free_port();
        let log = self.path(&format!("{service}-{}.log", self.procs.len()));
        let child = Command::new(env!("CARGO_BIN_EXE_replicator"))
            .args(["serve", service, "--config"])
            .arg(&self.config)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        self.procs.push(Proc {
            service: service.into(),
            child,
            port,
            log,
        });
        let i = self.procs.len() - 1;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some((200, _)) = http_get(port, "/readyz") {
                return i;
            }
            if let Ok(Some(status)) = self.procs[i].child.try_wait() {
                panic!("{service} exited with {status}:\n{}", self.logs());
            }
            assert!(
                Instant::now() < deadline,
                "{service} not ready:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn start_all(&mut self) {
        for s in ["planner", "cloner", "cloner", "reconciler", "notifier"] {
            self.start(s);
        }
    }

    fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_replicator"))
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    }

    fn submit(&self) -> Uuid {
        let out = Command::new(env!("CARGO_BIN_EXE_replicator"))
            .arg("submit")
            .arg(&self.config)
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
            .trim()
            .parse()
            .expect("submit prints the run ID")
    }

    /// `replicator watch RUN --json`: exit code and the summary.
    fn watch(&self, run: Uuid) -> (i32, serde_json::Value) {
        let out = self.cli(&["watch", &run.to_string(), "--json"]);
        let summary = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
            panic!(
                "watch printed no summary: {}\n{}",
                stderr(&out),
                self.logs()
            )
        });
        (out.status.code().unwrap_or(-1), summary)
    }

    async fn store(&self) -> Store {
        Store::open(&format!("postgres://postgres@127.0.0.1:5432/{}", self.db))
            .await
            .unwrap()
    }

    fn logs(&self) -> String {
        self.procs
            .iter()
            .map(|p| {
                let text = std::fs::read_to_string(&p.log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                format!(
                    "--- {} ({}) ---\n{}",
                    p.service,
                    p.log.display(),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Every target reads back with the source's rows.
    async fn verify_targets(&self) {
        for t in &self.tables {
            let rel = t.replace('.', "/");
            let src =
                TableLocation::parse(self.path(&format!("lake/source/{rel}")).to_str().unwrap())
                    .unwrap();
            let dst =
                TableLocation::parse(self.path(&format!("lake/target/{rel}")).to_str().unwrap())
                    .unwrap();
            let a = sorted_rows(&read_batches(&src, None).await.unwrap()).unwrap();
            let b = sorted_rows(&read_batches(&dst, None).await.unwrap()).unwrap();
            assert_eq!(a, b, "{t}");
        }
    }

    /// No two clone attempts of one target ran at the same time, whoever ran them: two
    /// workers, or two deliveries of one task on the same worker.
    async fn assert_no_overlapping_clones(&self, run: Uuid) {
        let log = self.store().await.attempt_log(run).await.unwrap();
        let clones: Vec<_> = log.iter().filter(|a| a.stage == "clone").collect();
        for (i, a) in clones.iter().enumerate() {
            for b in &clones[i + 1..] {
                if a.target != b.target {
                    continue;
                }
                let (first, second) = if a.started_at <= b.started_at {
                    (a, b)
                } else {
                    (b, a)
                };
                // A finished first attempt must have finished before the second started.
                if let Some(end) = first.finished_at {
                    assert!(
                        end <= second.started_at,
                        "{} cloned by {:?} and {:?} at once",
                        first.target,
                        first.worker,
                        second.worker
                    );
                }
            }
        }
    }

    /// Every task of the run has exactly one recorded result per stage.
    async fn assert_results_recorded_once(&self, run: Uuid) {
        let store = self.store().await;
        let tasks = store.tasks(run).await.unwrap();
        let results = store.outcomes(run).await.unwrap();
        for stage in ["clone", "reconcile"] {
            let n = results.iter().filter(|(s, _, _)| s == stage).count();
            assert_eq!(n, tasks.len(), "{stage} results: {results:?}");
        }
    }

    /// SIGTERM every process; each must exit 0 (in-flight work finished, nothing lost).
    fn stop_all(&mut self) {
        for p in &self.procs {
            let _ = Command::new("kill")
                .args(["-TERM", &p.child.id().to_string()])
                .status();
        }
        let logs = self.logs();
        for p in &mut self.procs {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Some(status) = p.child.try_wait().unwrap() {
                    assert!(
                        status.success(),
                        "{} exited with {status} on SIGTERM:\n{logs}",
                        p.service
                    );
                    break;
                }
                assert!(Instant::now() < deadline, "{} ignored SIGTERM", p.service);
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        self.procs.clear();
    }

    async fn drop_database(&self) {
        let mut admin = sqlx::PgConnection::connect(PG_ADMIN).await.unwrap();
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            self.db
        ))
        .execute(&mut admin)
        .await
        .unwrap();
    }

    /// Drop the test's queues, exchanges and database.
    async fn cleanup(mut self) {
        self.stop_all();
        let mut settings =
            replicator_bus::AmqpSettings::new("amqp://127.0.0.1:5672/%2f", &self.prefix);
        settings.retry_delays = [200, 500, 1000].map(Duration::from_millis).to_vec();
        let bus = replicator_bus::AmqpBus::connect(settings).await.unwrap();
        for q in ["requests", "tasks.clone", "tasks.reconcile"] {
            let _ = replicator_bus::Bus::depth(&bus, q).await;
        }
        bus.delete_topology().await.unwrap();
        replicator_bus::Bus::close(&bus).await;
        self.drop_database().await;
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for p in &mut self.procs {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }
}

/// Connections of this test's processes, by RabbitMQ connection pid.
fn broker_connections(prefix: &str) -> Vec<String> {
    let out = Command::new("rabbitmqctl")
        .args([
            "list_connections",
            "pid",
            "client_properties",
            "-q",
            "--no-table-headers",
        ])
        .output()
        .expect("rabbitmqctl");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&format!(" {prefix} pid ")))
        .filter_map(|l| l.split('\t').next().map(str::to_owned))
        .collect()
}

async fn wait_terminal(store: &Store, run: Uuid, at_least: u64) -> replicator_store::RunProgress {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(p) = store.run_progress(run).await
            && p.total > 0
            && p.terminal >= at_least
        {
            return p;
        }
        assert!(Instant::now() < deadline, "run {run} made no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_tables_through_separate_processes() {
    let mut fleet = Fleet::new(50, "").await;
    fleet.start_all();
    let run = fleet.submit();
    let (code, summary) = fleet.watch(run);
    assert_eq!(code, 0, "{summary}\n{}", fleet.logs());
    assert_eq!(summary["total"], 50, "{summary}");
    assert_eq!(summary["succeeded"], 50, "{summary}");
    fleet.verify_targets().await;
    fleet.assert_no_overlapping_clones(run).await;

    // Both cloners took work, and their metrics say so.
    let store = fleet.store().await;
    let workers: std::collections::HashSet<_> = store
        .attempt_log(run)
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.stage == "clone")
        .filter_map(|a| a.worker)
        .collect();
    assert_eq!(workers.len(), 2, "{workers:?}");
    let cloner = fleet.procs.iter().find(|p| p.service == "cloner").unwrap();
    let (code, metrics) = http_get(cloner.port, "/metrics").unwrap();
    assert_eq!(code, 200);
    assert!(
        metrics.contains("replicator_tasks_total{outcome=\"succeeded\",service=\"cloner\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("replicator_queue_depth{queue=\"tasks.clone\"}"),
        "{metrics}"
    );
    assert_eq!(http_get(cloner.port, "/healthz").unwrap().0, 200);

    // `status` reads the same run back from PostgreSQL.
    let out = fleet.cli(&["status", &run.to_string(), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["status"], "succeeded");
    assert_eq!(status["tasks"].as_array().unwrap().len(), 50);
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloner_killed_mid_run_loses_nothing() {
    let mut fleet = Fleet::new(50, "").await;
    fleet.start_all();
    let store = fleet.store().await;
    let run = fleet.submit();
    let progress = wait_terminal(&store, run, 3).await;
    let victim = fleet
        .procs
        .iter_mut()
        .find(|p| p.service == "cloner")
        .unwrap();
    victim.child.kill().unwrap(); // SIGKILL
    victim.child.wait().unwrap();
    assert!(
        progress.terminal < 50,
        "the run finished before the kill; the test proves nothing"
    );
    let killed = fleet
        .procs
        .iter()
        .position(|p| p.service == "cloner")
        .unwrap();
    fleet.procs.remove(killed);
    let (code, summary) = fleet.watch(run);
    assert_eq!(code, 0, "{summary}\n{}", fleet.logs());
    assert_eq!(summary["succeeded"], 50, "{summary}");
    fleet.verify_targets().await;
    fleet.assert_no_overlapping_clones(run).await;
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloner_stopped_with_sigterm_mid_run_finishes_or_hands_back_its_work() {
    let mut fleet = Fleet::new(50, "").await;
    fleet.start_all();
    let store = fleet.store().await;
    let run = fleet.submit();
    let progress = wait_terminal(&store, run, 3).await;
    let i = fleet
        .procs
        .iter()
        .position(|p| p.service == "cloner")
        .unwrap();
    let mut stopped = fleet.procs.remove(i);
    Command::new("kill")
        .args(["-TERM", &stopped.child.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = stopped.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the cloner ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "SIGTERM exit: {status}");
    assert!(
        progress.terminal < 50,
        "the run finished before the stop; the test proves nothing"
    );
    let log = std::fs::read_to_string(&stopped.log).unwrap();
    assert!(
        log.contains("finishing in-flight tasks") && log.contains("stopped"),
        "{log}"
    );
    // Nothing it held was lost: the other cloner completes the run, every table once.
    let (code, summary) = fleet.watch(run);
    assert_eq!(code, 0, "{summary}\n{}", fleet.logs());
    assert_eq!(summary["succeeded"], 50, "{summary}");
    fleet.verify_targets().await;
    fleet.assert_no_overlapping_clones(run).await;
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_reconnect_when_the_broker_drops_their_connections() {
    let mut fleet = Fleet::new(30, "").await;
    fleet.start_all();
    let store = fleet.store().await;
    let run = fleet.submit();
    wait_terminal(&store, run, 2).await;
    let conns = broker_connections(&fleet.prefix);
    assert!(conns.len() >= 5, "{conns:?}");
    for c in &conns {
        let out = Command::new("rabbitmqctl")
            .args(["close_connection", c, "closed by the reconnect test"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let (code, summary) = fleet.watch(run);
    assert_eq!(code, 0, "{summary}\n{}", fleet.logs());
    assert_eq!(summary["succeeded"], 30, "{summary}");
    fleet.verify_targets().await;
    // Every process is still up and serving.
    for p in &mut fleet.procs {
        assert!(p.child.try_wait().unwrap().is_none(), "{} died", p.service);
    }
    let logs = fleet.logs();
    assert!(logs.contains("reconnecting"), "{logs}");
    // Every worker consumes again on its new connection: a second run goes through.
    let again = fleet.submit();
    let (code, summary) = fleet.watch(again);
    assert_eq!(code, 0, "{summary}\n{}", fleet.logs());
    assert_eq!(summary["succeeded"], 30, "{summary}");
    fleet.cleanup().await;
}

/// Three cloners, one killed with SIGKILL mid-run and every connection of the fleet closed
/// by the broker, so unacked tasks are redelivered — some to the very worker still cloning
/// them. One clone of a table at a time still holds (per delivery, not per worker), and
/// each task's first result stands: one result per task and stage, and the summary counts
/// the first results' files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivered_tasks_after_a_kill_and_dropped_connections_are_cloned_once_at_a_time() {
    let mut fleet = Fleet::new(40, "").await;
    for s in [
        "planner",
        "cloner",
        "cloner",
        "cloner",
        "reconciler",
        "notifier",
    ] {
        fleet.start(s);
    }
    let store = fleet.store().await;
    let run = fleet.submit();
    wait_terminal(&store, run, 2).await;
    let victim = fleet
        .procs
        .iter()
        .position(|p| p.service == "cloner")
        .unwrap();
    let mut killed = fleet.procs.remove(victim);
    killed.child.kill().unwrap(); // SIGKILL
    killed.child.wait().unwrap();
    for c in broker_connections(&fleet.prefix) {
        let _ = Command::new("rabbitmqctl")
            .args(["close_connection", &c, "closed by the redelivery test"])
            .output();
    }
    let (code, summary) = fleet.watch(run);
    assert_eq!(code, 0, "{summary}\n{}", fleet.logs());
    assert_eq!(summary["succeeded"], 40, "{summary}");
    fleet.verify_targets().await;
    fleet.assert_no_overlapping_clones(run).await;
    fleet.assert_results_recorded_once(run).await;
    // The summary counts each task's first clone result, never a later delivery's no-op.
    // (A table the killed cloner committed but never recorded is recorded by the delivery
    // that found it done: no files; the store cannot know what a dead process copied.)
    let store = fleet.store().await;
    let first: std::collections::HashMap<String, u64> = store
        .outcomes(run)
        .await
        .unwrap()
        .into_iter()
        .filter(|(stage, _, _)| stage == "clone")
        .map(|(_, _, r)| {
            (
                r["table"].as_str().unwrap().to_owned(),
                r["metrics"]["num_copied_files"].as_u64().unwrap(),
            )
        })
        .collect();
    for t in summary["tables"].as_array().unwrap() {
        let table = t["table"].as_str().unwrap();
        assert_eq!(t["copied_files"], first[table], "{table}: {summary}");
    }
    let files: u64 = first.values().sum();
    assert_eq!(summary["files_copied"], files, "{summary}");
    let attempts = store.attempt_log(run).await.unwrap();
    eprintln!(
        "{} clone attempts for 40 tables",
        attempts.iter().filter(|a| a.stage == "clone").count()
    );
    fleet.cleanup().await;
}

/// Wrong credentials are not an outage: `submit` and `serve` stop at once with one line that
/// names the broker or database, never the password, and exit non-zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_fail_at_once_with_one_line_naming_the_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("fleet.yaml");
    let prefix = format!("refused-{}", Uuid::new_v4().simple());
    let write = |state: &str| {
        std::fs::write(
            &config,
            format!(
                "source: {{ root: ./lake/source }}\ntarget: {{ root: ./lake/target }}\n\
                 bus: {{ backend: rabbitmq, url: {{ env: AMQP_URL }}, prefix: {prefix} }}\n\
                 state: {{ url: \"{state}\" }}\n"
            ),
        )
        .unwrap()
    };
    let run = |args: &[&str], amqp: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_replicator"))
            .args(args)
            .env("AMQP_URL", amqp)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let started = Instant::now();
        loop {
            if child.try_wait().unwrap().is_some() {
                break child.wait_with_output().unwrap();
            }
            if started.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                panic!("`{}` still retrying after 20 s", args.join(" "));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let wrong = "amqp://guest:wrong-password@127.0.0.1:5672/%2f";
    write("postgres://postgres@127.0.0.1:5432/postgres");
    let cfg = config.to_str().unwrap();
    let port = free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    for args in [
        vec!["submit", cfg],
        vec!["serve", "cloner", "--config", cfg, "--listen", &listen],
    ] {
        let out = run(&args, wrong);
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let err = stderr(&out);
        // One line: no retry warnings, no library's struct dump.
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(
            err.starts_with("error: ")
                && err.contains("RabbitMQ at amqp://guest@127.0.0.1:5672/%2f refused access"),
            "{err}"
        );
        assert!(!err.contains("wrong-password"), "{err}");
    }
    // The broker lets it in, the database does not.
    write("postgres://no_such_role_r@127.0.0.1:5432/postgres");
    let out = run(
        &["serve", "cloner", "--config", cfg, "--listen", &listen],
        "amqp://guest:guest@127.0.0.1:5672/%2f",
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains(
            "PostgreSQL at postgres://no_such_role_r@127.0.0.1:5432/postgres refused access"
        ),
        "{err}"
    );
    // The exchanges that `serve` declared before the store refused it.
    let bus = replicator_bus::AmqpBus::connect(replicator_bus::AmqpSettings::new(
        "amqp://127.0.0.1:5672/%2f",
        &prefix,
    ))
    .await
    .unwrap();
    bus.delete_topology().await.unwrap();
    replicator_bus::Bus::close(&bus).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_are_dead_lettered_and_replay_retries_a_fixed_task() {
    let mut fleet = Fleet::new(3, "").await;
    fleet.start_all();
    let mut settings =
        replicator_bus::AmqpSettings::new("amqp://127.0.0.1:5672/%2f", &fleet.prefix);
    settings.retry_delays = [200, 500, 1000].map(Duration::from_millis).to_vec();
    let bus = replicator_bus::AmqpBus::connect(settings).await.unwrap();
    use replicator_bus::Bus;

    // A malformed message and one from a newer protocol: dead letters with the reason.
    bus.publish("tasks.clone", bytes::Bytes::from_static(b"{not json"))
        .await
        .unwrap();
    let future = serde_json::json!({"schema_version": 999, "message_id": Uuid::now_v7(),
        "run_id": Uuid::now_v7(), "created_at": "2026-11-21T00:00:00Z"});
    bus.publish("tasks.clone", bytes::Bytes::from(future.to_string()))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let dead = loop {
        let dead = bus.dead_letters("tasks.clone").await.unwrap();
        if dead.len() >= 2 {
            break dead;
        }
        assert!(Instant::now() < deadline, "{dead:?}\n{}", fleet.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(dead.iter().any(|d| d.payload == "{not json"), "{dead:?}");
    assert!(
        dead.iter()
            .any(|d| d.reason.contains("schema_version 999") || d.reason.contains("999")),
        "{dead:?}"
    );

    // The cloners keep serving: break one table, run, see it fail and get dead-lettered.
    let victim = fleet.path("lake/source/s1/t001");
    let data = std::fs::read_dir(&victim)
        .unwrap()
        .flatten()
        .find(|e| e.path().extension().is_some_and(|x| x == "parquet"))
        .unwrap()
        .path();
    let hidden = fleet.path("hidden.parquet");
    std::fs::rename(&data, &hidden).unwrap();
    let run = fleet.submit();
    let (code, summary) = fleet.watch(run);
    assert_eq!(code, 1, "{summary}");
    assert_eq!(summary["failed"], 1, "{summary}");
    assert_eq!(summary["succeeded"], 2, "{summary}");

    // Fix the cause, replay the run's dead letters: the task succeeds and the run completes
    // again, now successfully.
    std::fs::rename(&hidden, &data).unwrap();
    let out = fleet.cli(&["replay", &run.to_string()]);
    assert!(out.status.success(), "{}\n{}", stderr(&out), fleet.logs());
    assert!(stdout(&out).contains("replayed 1 task"), "{}", stdout(&out));
    let (code, summary) = fleet.watch(run);
    assert_eq!(code, 0, "{summary}\n{}", fleet.logs());
    assert_eq!(summary["succeeded"], 3, "{summary}");
    fleet.verify_targets().await;
    // Replay again: nothing left to replay.
    let out = fleet.cli(&["replay", &run.to_string()]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    bus.close().await;
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_pipeline_on_kafka() {
    // librdkafka's mock cluster speaks the Kafka protocol on real TCP ports, so the service
    // processes reach it like a broker. Its admin API cannot create topics: they are
    // provisioned here, as a platform team would, and the fleet runs with create_topics off.
    // With REPLICATOR_KAFKA_BROKERS (a real broker, `scripts/kafka-broker.sh`) the fleet
    // creates its own topics through the admin API instead.
    let real = std::env::var("REPLICATOR_KAFKA_BROKERS")
        .ok()
        .filter(|b| !b.is_empty());
    let cluster = match real {
        Some(_) => None,
        None => Some(rdkafka::mocking::MockCluster::new(3).expect("mock cluster")),
    };
    let brokers = match (&real, &cluster) {
        (Some(b), _) => b.clone(),
        (None, Some(c)) => c.bootstrap_servers(),
        (None, None) => unreachable!("a broker or a mock cluster"),
    };
    let mut fleet = Fleet::with_bus(20, "", |prefix| {
        if let Some(cluster) = &cluster {
            for t in replicator_bus::KafkaBus::topic_names(
                prefix,
                &["requests", "tasks.clone", "tasks.reconcile"],
            ) {
                cluster.create_topic(&t, 4, 1).expect("topic");
            }
        }
        format!(
            "{{ backend: kafka, url: \"{brokers}\", prefix: {prefix}, create_topics: {}, \
             retry_delays_ms: [200, 500, 1000] }}",
            cluster.is_none()
        )
    })
    .await;
    fleet.start_all();
    let run = fleet.submit();
    let (code, summary) = fleet.watch(run);
    assert_eq!(code, 0, "{summary}\n{}", fleet.logs());
    assert_eq!(summary["succeeded"], 20, "{summary}");
    fleet.verify_targets().await;
    fleet.assert_no_overlapping_clones(run).await;
    // A second run is incremental: nothing to copy.
    let again = fleet.submit();
    let (code, summary) = fleet.watch(again);
    assert_eq!(code, 0, "{summary}\n{}", fleet.logs());
    assert_eq!(summary["files_copied"], 0, "{summary}");
    fleet.stop_all();
    fleet.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_published_from_python_runs_like_submit() {
    let mut fleet = Fleet::new(4, "").await;
    fleet.start("planner");
    fleet.start("cloner");
    fleet.start("reconciler");
    fleet.start("notifier");
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/examples/submit_request.py");
    let out = Command::new("python3")
        .arg(&script)
        .args(["--prefix", &fleet.prefix])
        .arg(fleet.path("lake/source"))
        .arg(fleet.path("lake/target"))
        .env("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
        .output()
        .expect("python3 (scripts/test-tools.sh installs pika)");
    assert!(out.status.success(), "{}", stderr(&out));
    let run: Uuid = stdout(&out).trim().parse().unwrap();
    let (code, summary) = fleet.watch(run);
    assert_eq!(code, 0, "{summary}\n{}", fleet.logs());
    assert_eq!(summary["succeeded"], 4, "{summary}");
    fleet.verify_targets().await;
    fleet.cleanup().await;
}
