//! The fleet harness: every service in its own `replicator serve` process, over the
//! machine's real RabbitMQ (127.0.0.1:5672) with state in its real PostgreSQL
//! (127.0.0.1:5432). Each [`Fleet`] has its own queue/exchange prefix and its own database,
//! so tests run in parallel.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use replicator_lake::inspect::{read_batches, sorted_rows};
use replicator_lake::{TableLocation, sample};
use replicator_store::Store;
use sqlx::Connection;
use uuid::Uuid;

use super::{stderr, stdout};

pub const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";

pub struct Proc {
    pub service: String,
    pub child: Child,
    pub port: u16,
    pub log: PathBuf,
}

pub struct Fleet {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub prefix: String,
    pub db: String,
    pub tables: Vec<String>,
    pub procs: Vec<Proc>,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` on 127.0.0.1:port: (status code, body).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
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
    pub async fn new(n: usize, extra: &str) -> Fleet {
        Self::with_bus(n, extra, |prefix| {
            format!("{{ backend: rabbitmq, prefix: {prefix}, retry_delays_ms: [200, 500, 1000] }}")
        })
        .await
    }

    /// Like [`Fleet::new`], with the `bus` section `bus(prefix)`.
    pub async fn with_bus(n: usize, extra: &str, bus: impl Fn(&str) -> String) -> Fleet {
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

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Start `replicator serve SERVICE` and wait until it is ready; returns its index.
    pub fn start(&mut self, service: &str) -> usize {
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

    pub fn start_all(&mut self) {
        for s in ["planner", "cloner", "cloner", "reconciler", "notifier"] {
            self.start(s);
        }
    }

    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_replicator"))
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    }

    pub fn submit(&self) -> Uuid {
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
    pub fn watch(&self, run: Uuid) -> (i32, serde_json::Value) {
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

    pub async fn store(&self) -> Store {
        Store::open(&format!("postgres://postgres@127.0.0.1:5432/{}", self.db))
            .await
            .unwrap()
    }

    pub fn logs(&self) -> String {
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
    pub async fn verify_targets(&self) {
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
    pub async fn assert_no_overlapping_clones(&self, run: Uuid) {
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
    pub async fn assert_results_recorded_once(&self, run: Uuid) {
        let store = self.store().await;
        let tasks = store.tasks(run).await.unwrap();
        let results = store.outcomes(run).await.unwrap();
        for stage in ["clone", "reconcile"] {
            let n = results.iter().filter(|(s, _, _)| s == stage).count();
            assert_eq!(n, tasks.len(), "{stage} results: {results:?}");
        }
    }

    /// SIGTERM every process; each must exit 0 (in-flight work finished, nothing lost).
    pub fn stop_all(&mut self) {
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

    pub async fn drop_database(&self) {
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
    pub async fn cleanup(mut self) {
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
pub fn broker_connections(prefix: &str) -> Vec<String> {
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

pub async fn wait_terminal(
    store: &Store,
    run: Uuid,
    at_least: u64,
) -> replicator_store::RunProgress {
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
