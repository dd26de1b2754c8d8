//! What the fleet refuses: wrong credentials (one line, at once, no password), and
//! messages it cannot decode (dead letters with the reason, replayed once fixed).

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::fleet::*;
use common::*;
use uuid::Uuid;

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
