//! Sync groups on the Databricks engine against the workspace emulator: a successful run of a
//! group's workflow triggers one sync as of that run's end, a failed run triggers nothing, a
//! workflow that does not exist is reported on its group, and a job of the group's workflow
//! running in the secondary is reported by `sync status`.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use replicator_bus::{BusRef, MemoryBus};
use replicator_cli::runtime::{self, Deps, Service};
use replicator_common::Config;
use replicator_common::shutdown::CancellationToken;
use replicator_planner::sync::{Clock, ManualClock, Syncer};
use replicator_store::SyncStatus;
use replicator_tests::databricks_emulator::RunResult;

mod databricks_env;
use databricks_env::{Env, rows};

fn config(env: &Env) -> Config {
    let dir = env.dir.path().display();
    let extra = format!(
        r#"state: {{ url: "sqlite://{dir}/state.db" }}
retry: {{ max_attempts: 2, base_delay_ms: 1, max_delay_ms: 5 }}
sync:
  primary: {dir}/meta/primary
  secondary: {dir}/meta/secondary
  default_schedule: "0 0 1 1 *"
  max_retries: 0
  groups:
    - name: core
      owner: [core@example.com]
      tables: [prod.sales.orders, prod.sales.customers]
      workflow: core_product_job
    - name: ghost
      owner: [ghost@example.com]
      tables: [prod.sales.customers]
      workflow: missing_job
"#
    );
    Config::from_yaml(&env.yaml(&extra), Vec::new(), &[]).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successful_workflow_run_triggers_one_sync_as_of_its_end() {
    let env = Env::new().await;
    let config = config(&env);
    let memory = MemoryBus::new(1024, 3);
    let deps = Deps::open(&config, Arc::new(memory.clone()) as BusRef)
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    // The services, with a planner that runs no scheduler of its own: the test drives the
    // one scheduler, on its clock.
    let services_config = Config {
        sync: None,
        ..config.clone()
    };
    let services = runtime::start(&services_config, &deps, &Service::ALL, None, &shutdown)
        .await
        .unwrap();
    let clock = Arc::new(ManualClock::new(Utc::now() + chrono::Duration::minutes(1)));
    let syncer = Syncer::new(
        Arc::new(config.clone()),
        deps.engines.clone(),
        deps.bus.clone(),
        deps.store.clone(),
        clock.clone() as Arc<dyn Clock>,
    )
    .unwrap();
    let store = deps.store.clone();

    // The workflow has never run: nothing fires; the missing workflow is reported.
    assert!(syncer.tick().await.unwrap().is_empty());
    let ghost = store.sync_group("ghost").await.unwrap().unwrap();
    assert_eq!(ghost.status, SyncStatus::Failed);
    assert!(
        ghost
            .message
            .as_deref()
            .unwrap_or("")
            .contains("workflow `missing_job` not found"),
        "{ghost:?}"
    );

    // A failed run triggers nothing.
    let job = env.src.add_job("core_product_job");
    let start = Utc::now() - chrono::Duration::seconds(30);
    env.src.add_run(job, start, Utc::now(), RunResult::Failed);
    assert!(syncer.tick().await.unwrap().is_empty());

    // A successful run: one sync as of its end, and the group at that cut.
    let end = Utc::now();
    env.src.add_run(job, start, end, RunResult::Success);
    let fired = syncer.tick().await.unwrap();
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(fired[0].group, "core");
    assert_eq!(fired[0].fired_by, "workflow");
    let at = fired[0].at;
    assert!(
        (at - end).num_milliseconds().abs() < 2,
        "{at} is the run's end {end}"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        syncer.finish_completed().await.unwrap();
        let core = store.sync_group("core").await.unwrap().unwrap();
        if core.status != SyncStatus::InProgress {
            assert_eq!(core.status, SyncStatus::Success, "{core:?}");
            assert_eq!(core.cut_at, Some(at));
            assert_eq!(core.cut_tables.len(), 2, "{core:?}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{core:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for name in ["orders", "customers"] {
        let target = env.table(&env.tgt, "prod", "sales", name).unwrap();
        assert_eq!(
            rows(&target.location).await,
            rows(&env.source_path(name)).await,
            "{name}"
        );
    }

    // A commit on the source after the cut is what `sync status` says the cut does not cover.
    let status = syncer.status().await.unwrap();
    let core = status.iter().find(|g| g.group == "core").unwrap();
    assert_eq!(core.newest_uncovered_commit, None, "{core:?}");
    replicator_lake::sample::append(
        &databricks_env::loc(&env.source_path("orders")),
        &replicator_lake::sample::orders(900, 5, "eu"),
    )
    .await
    .unwrap();
    let status = syncer.status().await.unwrap();
    let core = status.iter().find(|g| g.group == "core").unwrap();
    let uncovered = core
        .newest_uncovered_commit
        .as_ref()
        .expect("a newer commit");
    assert_eq!(uncovered.table, "prod.sales.orders");
    assert!(uncovered.committed_at > at, "{uncovered:?}");

    // The same run does not trigger again.
    clock.advance(chrono::Duration::minutes(5));
    assert!(syncer.tick().await.unwrap().is_empty());

    // A run of the workflow in the secondary while it is passive is reported.
    let passive = env.tgt.add_job("core_product_job");
    env.tgt
        .add_run(passive, Utc::now(), Utc::now(), RunResult::Running);
    let status = syncer.status().await.unwrap();
    let core = status.iter().find(|g| g.group == "core").unwrap();
    assert_eq!(core.secondary_active.len(), 1, "{core:?}");
    assert_eq!(core.last_cut, Some(at));

    shutdown.cancel();
    for s in services {
        let _ = s.await;
    }
    memory.close();
}
