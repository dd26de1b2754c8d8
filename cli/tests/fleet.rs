//! The fleet end to end: every service in its own `replicator serve` process over the
//! machine's real RabbitMQ, or Kafka, with state in its real PostgreSQL; a run submitted by
//! `replicator submit` or by a client in another language. The harness is
//! `common/fleet.rs`; crashes and reconnects are in `fleet_crashes.rs`, refused credentials
//! and messages in `fleet_refusals.rs`.

mod common;

use std::process::Command;

use common::fleet::*;
use common::*;
use uuid::Uuid;

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

/// The console over a fleet (docs/console.md): `replicator serve console` beside the other
/// services reads the run from PostgreSQL and the dead letters from RabbitMQ, and refuses
/// an action without the operator token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_serves_a_fleet_run_from_postgresql_and_rabbitmq() {
    let console_port = free_port();
    let mut fleet = Fleet::new(
        3,
        &format!("console: {{ listen: \"127.0.0.1:{console_port}\" }}\n"),
    )
    .await;
    fleet.start_all();
    fleet.start("console");
    let run = fleet.submit();
    let (code, summary) = fleet.watch(run);
    assert_eq!(code, 0, "{summary}\n{}", fleet.logs());

    let (code, body) = http_get(console_port, "/api/runs").unwrap();
    assert_eq!(code, 200, "{body}");
    let runs: serde_json::Value = serde_json::from_str(&body).unwrap();
    let listed = &runs["runs"][0];
    assert_eq!(listed["run_id"], run.to_string(), "{runs}");
    assert_eq!(
        (listed["total"].as_u64(), listed["succeeded"].as_u64()),
        (Some(3), Some(3))
    );
    let (code, body) = http_get(console_port, &format!("/api/runs/{run}")).unwrap();
    assert_eq!(code, 200, "{body}");
    let detail: serde_json::Value = serde_json::from_str(&body).unwrap();
    let tasks = detail["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 3);
    assert!(tasks.iter().all(|t| t["status"] == "succeeded"), "{detail}");
    assert!(!detail["attempts"].as_array().unwrap().is_empty());
    let (code, body) = http_get(console_port, "/api/dead-letters").unwrap();
    assert_eq!((code, body.as_str()), (200, "{\"dead_letters\":[]}"));
    let (code, page) = http_get(console_port, "/").unwrap();
    assert_eq!(code, 200);
    assert!(page.contains("<meta name=\"csrf-token\""), "{page}");
    // No operator token configured: the console is read-only.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", console_port)).unwrap();
    use std::io::{Read, Write};
    write!(
        s,
        "POST /api/runs/{run}/replay HTTP/1.0\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.0 403"), "{answer}");
    assert!(answer.contains("actions are off"), "{answer}");
    fleet.cleanup().await;
}
