//! Sync groups on the fleet, black box: `replicator serve planner` runs the groups' scheduler
//! over the machine's RabbitMQ and PostgreSQL; `replicator sync trigger` publishes a group's
//! sync; the fleet brings the group to its cut; `sync status --json` and the planner's
//! `/metrics` show it.

mod common;

use std::time::{Duration, Instant};

use common::fleet::*;
use common::*;

const SYNC: &str = "sync:
  default_schedule: \"0 0 1 1 *\"
  poll: 1s
  groups:
    - name: first
      owner: [first@example.com]
      tables: [\"s0.*\"]
      rpo: 1h
    - name: second
      owner: [second@example.com]
      tables: [s1.t001]
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_triggered_group_reaches_its_cut_through_the_fleet() {
    let mut fleet = Fleet::new(6, SYNC).await;
    fleet.start_all();

    // Published for the fleet: prints the run ID.
    let out = fleet.cli(&["sync", "trigger", "first"]);
    assert!(out.status.success(), "{}\n{}", stderr(&out), fleet.logs());
    let run: uuid::Uuid = stdout(&out).trim().parse().expect("a run ID");

    // The planner's scheduler sees the run complete and moves the group to its cut.
    let deadline = Instant::now() + Duration::from_secs(60);
    let first = loop {
        let out = fleet.cli(&["sync", "status", "--json"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let groups: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let first = groups
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["group"] == "first")
            .unwrap()
            .clone();
        if first["status"] == "success" {
            let second = groups
                .as_array()
                .unwrap()
                .iter()
                .find(|g| g["group"] == "second")
                .unwrap();
            assert_eq!(second["status"], "never", "{groups}");
            break first;
        }
        assert!(Instant::now() < deadline, "{groups}\n{}", fleet.logs());
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(first["last_cut"].is_string(), "{first}");
    assert_eq!(first["rpo_seconds"], 3600);
    assert_eq!(first["rpo_exceeded"], false);
    assert_eq!(
        first["tables"].as_array().unwrap().len(),
        2,
        "s0.t000 and s0.t005: {first}"
    );
    let store = fleet.store().await;
    let group = store.sync_group("first").await.unwrap().unwrap();
    assert_eq!(group.cut_run_id, Some(run));

    // The planner reports the group's lag on /metrics.
    let planner = fleet.procs.iter().find(|p| p.service == "planner").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, metrics) = http_get(planner.port, "/metrics").unwrap();
        if metrics.contains("replicator_group_lag_seconds{group=\"first\"}") {
            break;
        }
        assert!(Instant::now() < deadline, "{metrics}");
        std::thread::sleep(Duration::from_millis(200));
    }

    // An unknown group is refused by name.
    let out = fleet.cli(&["sync", "trigger", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no sync group `nope`"),
        "{}",
        stderr(&out)
    );
    fleet.cleanup().await;
}
