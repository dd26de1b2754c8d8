//! Failover of a sync group with the Databricks engine against the workspace emulator: a
//! clone records the target's version (`DESCRIBE HISTORY`), `restore` brings a target table
//! back to it with a new commit (`RESTORE TABLE … TO VERSION AS OF`), and `sync failover`
//! restores a table that moved ahead of the group's cut. A streaming table's version and
//! restore are its target pipeline's backing table's (where its clone writes).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use replicator_bus::{BusRef, MemoryBus};
use replicator_cli::runtime::{self, Deps, Service};
use replicator_common::Config;
use replicator_common::shutdown::CancellationToken;
use replicator_engine::{CloneContext, Cloned, DatabricksEngine, Engine};
use replicator_lake::sample;
use replicator_planner::sync::{Clock, ManualClock, Syncer};
use replicator_proto::{CloneTask, EngineKind, Header};
use replicator_store::SyncStatus;
use replicator_tests::databricks_emulator::RunResult;

mod databricks_env;
use databricks_env::{Env, loc, rows};

fn task(source_root: &str, target_root: &str, table: &str) -> CloneTask {
    CloneTask {
        ingest: None,
        header: Header::new(uuid::Uuid::now_v7()),
        task_id: uuid::Uuid::now_v7(),
        attempt: 1,
        table: table.into(),
        source: format!("{source_root}/{table}"),
        target: format!("{target_root}/{table}"),
        version: None,
        operation: Default::default(),
        engine: EngineKind::Databricks,
        replace: false,
        external_roots: Vec::new(),
        as_of: None,
    }
}

async fn clone(engine: &DatabricksEngine, task: &CloneTask) -> Cloned {
    let ctx = CloneContext {
        parallelism: 1,
        progress: None,
        last_watermark: None,
    };
    engine.clone_table(task, &ctx).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_table_is_restored_to_a_cloned_version_with_history_kept() {
    let env = Env::new().await;
    let r = env
        .run(replicator_databricks::ops::DbOperation::All, "")
        .await;
    assert!(r.is_success(), "{r:#?}");
    let config = env.config("");
    let (source_root, target_root) = replicator_engine::databricks::roots(&config);
    let engine = DatabricksEngine::from_config(&config).unwrap();
    let t = task(&source_root, &target_root, "prod.sales.orders");
    let orders = env.source_path("orders");

    let first = clone(&engine, &t).await;
    let v1 = first.target_version.expect("the clone records its version");
    assert!(first.statement_ids.len() >= 2, "{:?}", first.statement_ids);
    let target = env.table(&env.tgt, "prod", "sales", "orders").unwrap();
    let first_rows = rows(&target.location).await;
    assert_eq!(first_rows, rows(&orders).await);
    assert_eq!(engine.table_version(&t.target).await.unwrap(), v1);

    sample::append(&loc(&orders), &sample::orders(60, 4, "late"))
        .await
        .unwrap();
    let second = clone(&engine, &t).await;
    let v2 = second.target_version.unwrap();
    assert!(v2 > v1, "{v2} > {v1}");
    assert_ne!(rows(&target.location).await, first_rows);

    let done = engine.restore(&t.target, v1).await.unwrap();
    assert!(
        done.contains(&format!("restored to version {v1}")),
        "{done}"
    );
    assert_eq!(rows(&target.location).await, first_rows);
    // A new commit: history is kept, the version moves forward.
    let v3 = engine.table_version(&t.target).await.unwrap();
    assert_eq!(v3, v2 + 1);

    // The history as the warehouse reports it: newest first, the restore on top.
    let pair = replicator_databricks::WorkspacePair::from_config(&config, false).unwrap();
    let h = pair
        .target
        .execute("DESCRIBE HISTORY `prod`.`sales`.`orders` LIMIT 2")
        .await
        .unwrap();
    assert_eq!(
        &h.columns[..5],
        ["version", "timestamp", "userId", "userName", "operation"]
    );
    assert_eq!(h.get(0, "version"), Some(v3.to_string().as_str()));
    assert_eq!(h.get(0, "operation"), Some("RESTORE"));
    assert_eq!(h.get(1, "version"), Some(v2.to_string().as_str()));

    // A version the table never had is the warehouse's error, and changes nothing.
    let e = engine
        .restore(&t.target, v3 + 5)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("DELTA_CANNOT_RESTORE_TABLE_VERSION"), "{e}");
    assert_eq!(engine.table_version(&t.target).await.unwrap(), v3);

    // A location of another workspace is refused, naming it.
    let other = format!("{source_root}/prod.sales.orders");
    let e = engine.restore(&other, v1).await.unwrap_err().to_string();
    assert!(e.contains(&other) && !e.contains('\n'), "{e}");
    // A version is read on either side (a sync group compares the source with its cut);
    // a location of neither workspace is refused, naming it.
    assert!(engine.table_version(&other).await.is_ok());
    let nowhere = "https://nowhere.example/prod.sales.orders";
    let e = engine.table_version(nowhere).await.unwrap_err().to_string();
    assert!(e.contains(nowhere), "{e}");
}

/// A streaming table's clone goes into the target pipeline's backing table: the version
/// recorded and the table restored are the backing table's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_table_is_restored_through_its_backing_table() {
    let env = Env::new().await;
    let r = env
        .run(replicator_databricks::ops::DbOperation::All, "")
        .await;
    assert!(r.is_success(), "{r:#?}");
    let config = env.config("");
    let (source_root, target_root) = replicator_engine::databricks::roots(&config);
    let engine = DatabricksEngine::from_config(&config).unwrap();
    let t = task(&source_root, &target_root, "prod.sales.events");
    let events = env.source_path("events");
    let backing = env
        .table(
            &env.tgt,
            "__databricks_internal",
            "__dlt_materialization_schema_p_2222_bbbb",
            "events",
        )
        .expect("the target pipeline's backing table");

    let first = clone(&engine, &t).await;
    let v1 = first
        .target_version
        .expect("the clone records its backing table's version");
    let first_rows = rows(&backing.location).await;
    assert_eq!(first_rows, rows(&events).await);
    assert_eq!(engine.table_version(&t.target).await.unwrap(), v1);

    sample::append(&loc(&events), &sample::orders(700, 4, "late"))
        .await
        .unwrap();
    let second = clone(&engine, &t).await;
    let v2 = second.target_version.unwrap();
    assert!(v2 > v1, "{v2} > {v1}");
    assert_ne!(rows(&backing.location).await, first_rows);

    let done = engine.restore(&t.target, v1).await.unwrap();
    assert!(
        done.contains(&format!("restored to version {v1}")),
        "{done}"
    );
    assert_eq!(rows(&backing.location).await, first_rows);
    assert_eq!(engine.table_version(&t.target).await.unwrap(), v2 + 1);
    let stmts: Vec<String> = env.tgt.statements().into_iter().map(|(_, s)| s).collect();
    assert!(
        stmts.contains(&format!(
            "RESTORE TABLE `__databricks_internal`.`__dlt_materialization_schema_p_2222_bbbb`.`events` TO VERSION AS OF {v1}"
        )),
        "{stmts:#?}"
    );
}

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
      tables: [prod.sales.orders, prod.sales.customers, prod.sales.events]
      workflow: core_product_job
"#
    );
    Config::from_yaml(&env.yaml(&extra), Vec::new(), &[]).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_failover_restores_a_table_that_moved_past_the_cut() {
    let env = Env::new().await;
    let config = config(&env);
    let memory = MemoryBus::new(1024, 3);
    let deps = Deps::open(&config, Arc::new(memory.clone()) as BusRef)
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
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

    // One successful sync of the group, triggered by its workflow.
    let job = env.src.add_job("core_product_job");
    env.src.add_run(
        job,
        Utc::now() - chrono::Duration::seconds(30),
        Utc::now(),
        RunResult::Success,
    );
    let fired = syncer.tick().await.unwrap();
    assert_eq!(fired.len(), 1, "{fired:?}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let core = loop {
        syncer.finish_completed().await.unwrap();
        let core = store.sync_group("core").await.unwrap().unwrap();
        if core.status != SyncStatus::InProgress {
            assert_eq!(core.status, SyncStatus::Success, "{core:?}");
            break core;
        }
        assert!(tokio::time::Instant::now() < deadline, "{core:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(core.cut_tables.len(), 3, "{core:?}");
    assert!(
        core.cut_tables.iter().all(|t| t.target_version.is_some()),
        "{core:?}"
    );
    let target = env.table(&env.tgt, "prod", "sales", "orders").unwrap();
    let at_cut = rows(&target.location).await;
    let customers = env.table(&env.tgt, "prod", "sales", "customers").unwrap();
    let customers_at_cut = rows(&customers.location).await;
    // The streaming table's data: the target pipeline's backing table.
    let backing = env
        .table(
            &env.tgt,
            "__databricks_internal",
            "__dlt_materialization_schema_p_2222_bbbb",
            "events",
        )
        .unwrap();
    let events_at_cut = rows(&backing.location).await;
    assert_eq!(events_at_cut, rows(&env.source_path("events")).await);

    // A later, incomplete sync moved orders ahead of the cut.
    let orders = env.source_path("orders");
    sample::append(&loc(&orders), &sample::orders(70, 5, "later"))
        .await
        .unwrap();
    let db = config.databricks.clone().unwrap();
    let (source_root, target_root) = replicator_engine::databricks::roots(&db);
    let engine = DatabricksEngine::from_config(&db).unwrap();
    clone(
        &engine,
        &task(&source_root, &target_root, "prod.sales.orders"),
    )
    .await;
    assert_ne!(rows(&target.location).await, at_cut);
    // And the streaming table too.
    let events = env.source_path("events");
    sample::append(&loc(&events), &sample::orders(800, 3, "later"))
        .await
        .unwrap();
    clone(
        &engine,
        &task(&source_root, &target_root, "prod.sales.events"),
    )
    .await;
    assert_ne!(rows(&backing.location).await, events_at_cut);

    // Dry run: says what it would do, changes nothing.
    let plan = replicator_cli::sync::failover(&config, "core", false)
        .await
        .unwrap();
    assert!(
        plan.iter()
            .any(|l| l.starts_with("prod.sales.orders: would restore version")),
        "{plan:?}"
    );
    assert!(
        plan.iter()
            .any(|l| l.starts_with("prod.sales.customers: at the cut")),
        "{plan:?}"
    );
    assert!(
        plan.iter()
            .any(|l| l.starts_with("prod.sales.events: would restore version")),
        "{plan:?}"
    );
    assert_ne!(rows(&target.location).await, at_cut);

    let done = replicator_cli::sync::failover(&config, "core", true)
        .await
        .unwrap();
    assert!(
        done.iter().any(|l| l.contains("restored to version")),
        "{done:?}"
    );
    assert_eq!(rows(&target.location).await, at_cut);
    assert_eq!(rows(&customers.location).await, customers_at_cut);
    assert_eq!(rows(&backing.location).await, events_at_cut);
    // With a new commit: the history of the later sync is kept.
    let cut_version = core
        .cut_tables
        .iter()
        .find(|t| t.table == "prod.sales.orders")
        .and_then(|t| t.target_version)
        .unwrap();
    let orders_target = format!("{target_root}/prod.sales.orders");
    assert_eq!(
        engine.table_version(&orders_target).await.unwrap(),
        cut_version + 2
    );

    shutdown.cancel();
    for s in services {
        let _ = s.await;
    }
    memory.close();
}
