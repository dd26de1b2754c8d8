//! The Databricks engine through the CLI: `replicator databricks` operation by operation,
//! and the fleet path (planner, cloners, reconcilers) of `replicator run`.

use replicator_common::Config;
use replicator_databricks::ops::DbOperation;

mod databricks_env;
use databricks_env::Env;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_command_runs_each_operation_in_turn() {
    use replicator_cli::databricks::{Options, run};
    let env = Env::new().await;
    let mut config = Config::from_yaml(&env.yaml(""), std::iter::empty(), &[]).unwrap();
    let opts = |operation, dry_run, validate_only| Options {
        operation,
        dry_run,
        validate_only,
        json: true,
    };
    assert_eq!(run(&config, opts(DbOperation::All, false, true)).await, 0);
    // Validation only reads (and runs `SELECT 1` on each warehouse).
    assert!(env.src.changes().is_empty() && env.tgt.changes().is_empty());
    env.src.clear_log();
    env.tgt.clear_log();
    assert_eq!(run(&config, opts(DbOperation::All, true, false)).await, 0);
    assert!(env.src.statements().is_empty() && env.tgt.statements().is_empty());
    assert_eq!(
        run(&config, opts(DbOperation::Backup, false, false)).await,
        0
    );
    assert!(
        env.tgt.statements().is_empty(),
        "backup runs on the source only"
    );
    assert_eq!(
        run(&config, opts(DbOperation::Replication, false, false)).await,
        0
    );
    // Synchronous submits: the warehouse answers within the server-side wait (5 s), so no
    // statement needs a poll.
    config.databricks.as_mut().unwrap().client.wait_timeout_s = 5;
    env.tgt.clear_log();
    assert_eq!(
        run(&config, opts(DbOperation::Reconciliation, false, false)).await,
        0
    );
    assert!(!env.tgt.statements().is_empty());
    assert!(
        env.tgt
            .calls()
            .iter()
            .all(|c| !(c.method == "GET" && c.path.starts_with("/api/2.0/sql/statements/"))),
        "{:?}",
        env.tgt.calls()
    );
    env.assert_replicas_equal().await;
    // A config without the section is a usage error.
    let native = Config::from_yaml(
        "source: { root: /a }\ntarget: { root: /b }\n",
        std::iter::empty(),
        &[],
    )
    .unwrap();
    assert_eq!(run(&native, opts(DbOperation::All, false, false)).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_runs_databricks_tasks_through_planner_cloners_and_reconcilers() {
    use replicator_cli::embedded::{RunOptions, RunOutput, run};
    let env = Env::new().await;
    let state = env.dir.path().join("state.db");
    let yaml = format!(
        "{}state: {{ url: \"sqlite://{}\" }}\n",
        env.yaml(""),
        state.display()
    );
    let config = Config::from_yaml(&yaml, std::iter::empty(), &[]).unwrap();
    let opts = RunOptions {
        operation: None,
        dry_run: false,
        validate_only: false,
        progress: false,
        ingest_only: false,
        mirror_only: false,
        ui: false,
    };
    // `replicator validate` checks the workspaces and changes nothing.
    let checks = replicator_cli::embedded::validate(&config).await.unwrap();
    assert!(
        checks.iter().any(|c| c.contains("SQL warehouse")),
        "{checks:?}"
    );
    assert!(env.src.changes().is_empty() && env.tgt.changes().is_empty());
    let RunOutput::Completed(done) = run(&config, &opts).await.unwrap() else {
        panic!("expected a completed run");
    };
    assert!(done.summary.is_success(), "{:#?}", done.summary);
    // The materialized view is not planned.
    let mut tables: Vec<&str> = done
        .summary
        .tables
        .iter()
        .map(|t| t.table.as_str())
        .collect();
    tables.sort();
    assert_eq!(
        tables,
        [
            "prod.sales.customers",
            "prod.sales.events",
            "prod.sales.orders"
        ]
    );
    env.assert_replicas_equal().await;
    // Audit: every recorded result names the statements that produced it, and they ran.
    let store = replicator_store::Store::open(&format!("sqlite://{}", state.display()))
        .await
        .unwrap();
    let outcomes = store.outcomes(done.header.run_id).await.unwrap();
    assert_eq!(outcomes.len(), 6, "{outcomes:#?}");
    for (stage, _, detail) in &outcomes {
        let ids = detail["statement_ids"].as_array().unwrap();
        assert!(!ids.is_empty(), "{stage}: {detail}");
        for id in ids {
            let id = id.as_str().unwrap();
            let state = env
                .tgt
                .statement_state(id)
                .or_else(|| env.src.statement_state(id));
            assert_eq!(state.as_deref(), Some("SUCCEEDED"), "{id}");
        }
    }

    // A second fleet run is incremental and leaves sharing alone.
    env.src.clear_log();
    env.tgt.clear_log();
    let RunOutput::Completed(again) = run(&config, &opts).await.unwrap() else {
        panic!("expected a completed run");
    };
    assert!(again.summary.is_success(), "{:#?}", again.summary);
    assert_eq!(again.summary.files_copied, 0);
    assert!(env.src.changes().is_empty() && env.tgt.changes().is_empty());
}
