//! The fleet survives its workers and its broker: a cloner killed or stopped mid-run,
//! every connection closed by the broker, tasks redelivered to a worker still cloning them.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::fleet::*;
use common::*;

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
