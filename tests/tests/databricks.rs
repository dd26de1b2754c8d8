//! The Databricks engine against the workspace emulator (`replicator_tests::databricks_emulator`):
//! two metastores linked by Delta Sharing, tables backed by local Delta directories.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use replicator_common::Config;
use replicator_common::databricks::DatabricksConfig;
use replicator_databricks::ops::{DbOperation, Report, TableVerdict};
use replicator_databricks::{DatabricksError, WorkspacePair};
use replicator_lake::TableLocation;
use replicator_lake::inspect::{read_batches, sorted_rows};
use replicator_lake::sample;
use replicator_tests::databricks_emulator::{Table, Workspace, WorkspaceAuth, World};

const PAT: &str = "dapi-source-token";
const CLIENT_ID: &str = "sp-target";
const CLIENT_SECRET: &str = "target-secret";

struct Env {
    dir: tempfile::TempDir,
    world: World,
    src: Workspace,
    tgt: Workspace,
}

fn loc(p: &Path) -> TableLocation {
    TableLocation::parse(&p.to_string_lossy()).unwrap()
}

async fn rows(p: &Path) -> Vec<String> {
    sorted_rows(&read_batches(&loc(p), None).await.unwrap()).unwrap()
}

impl Env {
    /// Source metastore `prod` with a managed, an external and a streaming table (and a
    /// materialized view the engine must skip); target metastore `dr` with the streaming
    /// table already created by its pipeline.
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let world = World::new();
        let src_ms = world.add_metastore("prod", &dir.path().join("prod-root"));
        let tgt_ms = world.add_metastore("dr", &dir.path().join("dr-root"));
        let add = |name: &str, ty: &str, path: PathBuf| {
            world.add_table(
                &src_ms,
                "prod",
                "sales",
                name,
                Table {
                    table_type: ty.into(),
                    location: path,
                    properties: Default::default(),
                },
            );
        };
        let orders = dir.path().join("src/orders");
        sample::create(&loc(&orders), &sample::orders(0, 40, "eu"), &["region"])
            .await
            .unwrap();
        sample::append(&loc(&orders), &sample::orders(40, 10, "us"))
            .await
            .unwrap();
        add("orders", "MANAGED", orders);
        let customers = dir.path().join("ext/customers");
        sample::create(&loc(&customers), &sample::orders(100, 25, "apac"), &[])
            .await
            .unwrap();
        add("customers", "EXTERNAL", customers);
        add("daily_mv", "MATERIALIZED_VIEW", dir.path().join("src/mv"));
        let events = dir.path().join("src/events");
        sample::create(&loc(&events), &sample::orders(500, 30, "eu"), &[])
            .await
            .unwrap();
        world.add_streaming_table(&src_ms, "prod", "sales", "events", "p-1111-aaaa", &events);
        let tgt_events = dir.path().join("tgt/events");
        sample::create(&loc(&tgt_events), &sample::orders(9000, 1, "pipeline"), &[])
            .await
            .unwrap();
        world.add_streaming_table(
            &tgt_ms,
            "prod",
            "sales",
            "events",
            "p-2222-bbbb",
            &tgt_events,
        );

        let src = Workspace::start(
            &world,
            &src_ms,
            "wh-src",
            WorkspaceAuth {
                pat: Some(PAT.into()),
                oauth: None,
                token_lifetime_s: 3600,
            },
        )
        .await;
        let tgt = Workspace::start(
            &world,
            &tgt_ms,
            "wh-tgt",
            WorkspaceAuth {
                pat: None,
                oauth: Some((CLIENT_ID.into(), CLIENT_SECRET.into())),
                token_lifetime_s: 3600,
            },
        )
        .await;
        std::fs::write(dir.path().join("src.token"), format!("{PAT}\n")).unwrap();
        std::fs::write(dir.path().join("tgt.secret"), CLIENT_SECRET).unwrap();
        // Exercise the documented listing corner cases on every run: one item per page and
        // an empty page (with a next token) before each.
        for ws in [&src, &tgt] {
            ws.faults(|f| {
                f.page_size = 1;
                f.empty_pages = true;
                f.min_polls = 2;
            });
        }
        Self {
            dir,
            world,
            src,
            tgt,
        }
    }

    fn yaml(&self, extra: &str) -> String {
        format!(
            r#"
databricks:
  source:
    host: {src}
    warehouse_id: wh-src
    auth: {{ token: {{ file: {dir}/src.token }} }}
  target:
    host: {tgt}
    warehouse_id: wh-tgt
    auth: {{ client_id: {CLIENT_ID}, client_secret: {{ file: {dir}/tgt.secret }} }}
  catalogs:
    - source: prod
  client:
    poll_interval_ms: 2
    statement_timeout_ms: 20000
    wait_timeout_s: 0
    max_retry_after_ms: 20
    page_size: 50
    retry: {{ max_attempts: 8, base_delay_ms: 1, max_delay_ms: 5 }}
{extra}"#,
            src = self.src.url,
            tgt = self.tgt.url,
            dir = self.dir.path().display(),
        )
    }

    fn config(&self, extra: &str) -> DatabricksConfig {
        Config::from_yaml(&self.yaml(extra), std::iter::empty(), &[])
            .unwrap()
            .databricks
            .unwrap()
    }

    async fn run(&self, op: DbOperation, extra: &str) -> Report {
        WorkspacePair::from_config(&self.config(extra), false)
            .unwrap()
            .run(op)
            .await
            .unwrap()
    }

    fn table(&self, ws: &Workspace, catalog: &str, schema: &str, name: &str) -> Option<Table> {
        self.world.table(&ws.metastore, catalog, schema, name)
    }

    fn source_path(&self, name: &str) -> PathBuf {
        self.table(&self.src, "prod", "sales", name)
            .unwrap()
            .location
    }

    /// Every replicated target table holds exactly its source's rows.
    async fn assert_replicas_equal(&self) {
        for name in ["orders", "customers", "events"] {
            let target = self.table(&self.tgt, "prod", "sales", name).unwrap();
            assert_eq!(
                rows(&target.location).await,
                rows(&self.source_path(name)).await,
                "{name}"
            );
        }
    }
}

fn find<'a>(r: &'a Report, op: &str, table: &str) -> &'a replicator_databricks::ops::TableReport {
    r.tables
        .iter()
        .find(|t| t.operation == op && t.table == table)
        .unwrap_or_else(|| panic!("no {op} report for {table}: {:#?}", r.tables))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_replication_reconciliation_then_an_incremental_second_run() {
    let env = Env::new().await;
    let r = env.run(DbOperation::All, "").await;
    assert!(r.is_success(), "{r:#?}");
    // Sharing was set up from nothing, on both sides.
    assert_eq!(r.sharing.len(), 9, "{:#?}", r.sharing);
    assert_eq!(
        find(&r, "discovery", "prod.sales.daily_mv").status,
        TableVerdict::Skipped
    );
    let backup = find(&r, "backup", "prod.sales.events");
    assert_eq!(backup.status, TableVerdict::Succeeded);
    assert!(!backup.statement_ids.is_empty());
    for t in ["orders", "customers", "events"] {
        let full = format!("prod.sales.{t}");
        let rep = find(&r, "replication", &full);
        assert_eq!(rep.status, TableVerdict::Succeeded, "{rep:#?}");
        let ids = &rep.statement_ids;
        assert!(!ids.is_empty());
        for id in ids {
            assert_eq!(env.tgt.statement_state(id).as_deref(), Some("SUCCEEDED"));
        }
        assert!(
            rep.metrics.as_ref().unwrap().num_copied_files > 0,
            "{rep:#?}"
        );
        let rec = find(&r, "reconciliation", &full);
        assert_eq!(rec.status, TableVerdict::Matched, "{rec:#?}");
        // row_count, schema, missing_rows, extra_rows
        assert_eq!(rec.checks.len(), 4, "{rec:#?}");
        assert_eq!(rec.source_rows, rec.target_rows);
    }
    // The streaming table's data went into the target pipeline's backing table, through the
    // source's backup catalog.
    let stmts: Vec<String> = env.tgt.statements().into_iter().map(|(_, s)| s).collect();
    assert!(stmts.contains(&"CREATE OR REPLACE TABLE `__databricks_internal`.`__dlt_materialization_schema_p_2222_bbbb`.`events` DEEP CLONE `prod_backup_shared`.`sales`.`events`".to_owned()), "{stmts:#?}");
    assert!(
        env.table(&env.src, "prod_backup", "sales", "events")
            .is_some()
    );
    env.assert_replicas_equal().await;

    // Second run after new source data: only the new file is copied, sharing is untouched.
    let orders = env.source_path("orders");
    sample::append(&loc(&orders), &sample::orders(50, 5, "eu"))
        .await
        .unwrap();
    env.src.clear_log();
    env.tgt.clear_log();
    let r2 = env.run(DbOperation::All, "").await;
    assert!(r2.is_success(), "{r2:#?}");
    assert!(r2.sharing.is_empty(), "{:?}", r2.sharing);
    assert!(env.src.changes().is_empty(), "{:?}", env.src.changes());
    assert!(env.tgt.changes().is_empty(), "{:?}", env.tgt.changes());
    let m = |t: &str| {
        find(&r2, "replication", &format!("prod.sales.{t}"))
            .metrics
            .clone()
            .unwrap()
    };
    assert_eq!(m("orders").num_copied_files, 1);
    assert_eq!(m("customers").num_copied_files, 0);
    assert_eq!(m("events").num_copied_files, 0);
    assert_eq!(
        find(&r2, "reconciliation", "prod.sales.orders").target_rows,
        Some(55)
    );
    env.assert_replicas_equal().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_storms_are_ridden_out_honouring_retry_after() {
    let env = Env::new().await;
    env.src.faults(|f| {
        f.throttle = 6;
        f.retry_after_s = 1;
    });
    env.tgt.faults(|f| {
        f.throttle = 4;
        f.throttle_status = 503;
        f.retry_after_s = 1;
    });
    let started = Instant::now();
    let r = env.run(DbOperation::All, "").await;
    assert!(r.is_success(), "{r:#?}");
    // Retry-After (1 s, capped at max_retry_after_ms = 20 ms) was waited out each time.
    assert!(started.elapsed() >= Duration::from_millis(10 * 20));
    env.assert_replicas_equal().await;

    // A storm longer than the retry budget fails cleanly, with the status in the error.
    env.src.faults(|f| f.throttle = 100);
    let err = WorkspacePair::from_config(&env.config(""), false)
        .unwrap()
        .run(DbOperation::Backup)
        .await
        .unwrap_err();
    assert!(
        matches!(err, DatabricksError::Http { status: 429, .. }),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_statement_fails_only_its_table_and_transient_failures_are_retried() {
    let env = Env::new().await;
    env.tgt.faults(|f| {
        f.fail = vec![
            (
                "`prod`.`sales`.`orders` DEEP CLONE".into(),
                "INTERNAL_ERROR".into(),
                1,
            ),
            (
                "`prod`.`sales`.`customers` DEEP CLONE".into(),
                "TEMPORARILY_UNAVAILABLE".into(),
                1,
            ),
        ]
    });
    let r = env.run(DbOperation::All, "").await;
    let orders = find(&r, "replication", "prod.sales.orders");
    assert_eq!(orders.status, TableVerdict::Failed);
    let err = orders.error.as_ref().unwrap();
    assert!(err.message.contains("FAILED: INTERNAL_ERROR"), "{err:?}");
    assert_eq!(orders.statement_ids.len(), 1);
    assert_eq!(
        env.tgt.statement_state(&orders.statement_ids[0]).as_deref(),
        Some("FAILED")
    );
    // Nothing half-done: the failed clone created no target table.
    assert!(env.table(&env.tgt, "prod", "sales", "orders").is_none());
    // The transient failure was retried: two statements, the second succeeded.
    let customers = find(&r, "replication", "prod.sales.customers");
    assert_eq!(customers.status, TableVerdict::Succeeded, "{customers:#?}");
    assert_eq!(customers.statement_ids.len(), 2);
    assert_eq!(
        find(&r, "reconciliation", "prod.sales.customers").status,
        TableVerdict::Matched
    );
    assert_eq!(
        find(&r, "replication", "prod.sales.events").status,
        TableVerdict::Succeeded
    );
    // The next run finishes the job.
    let r2 = env.run(DbOperation::All, "").await;
    assert!(r2.is_success(), "{r2:#?}");
    env.assert_replicas_equal().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_outliving_its_timeout_is_cancelled() {
    let env = Env::new().await;
    env.run(DbOperation::Backup, "").await;
    env.tgt
        .faults(|f| f.hang = vec!["`prod`.`sales`.`customers` DEEP CLONE".into()]);
    let mut config = env.config("");
    config.client.statement_timeout_ms = 1000;
    let started = Instant::now();
    let r = WorkspacePair::from_config(&config, false)
        .unwrap()
        .run(DbOperation::Replication)
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    let customers = find(&r, "replication", "prod.sales.customers");
    assert_eq!(customers.status, TableVerdict::Failed);
    assert!(
        customers
            .error
            .as_ref()
            .unwrap()
            .message
            .contains("cancelled"),
        "{customers:#?}"
    );
    let id = &customers.statement_ids[0];
    assert_eq!(env.tgt.cancels(), vec![id.clone()]);
    assert_eq!(env.tgt.statement_state(id).as_deref(), Some("CANCELED"));
    assert!(env.table(&env.tgt, "prod", "sales", "customers").is_none());
    assert_eq!(
        find(&r, "replication", "prod.sales.orders").status,
        TableVerdict::Succeeded
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_oauth_token_is_refreshed_once() {
    let env = Env::new().await;
    let engine = WorkspacePair::from_config(&env.config(""), false).unwrap();
    assert!(engine.run(DbOperation::All).await.unwrap().is_success());
    // One token for the whole run: it is cached.
    assert_eq!(env.tgt.token_requests(), 1);
    env.tgt.expire_tokens();
    let r = engine.run(DbOperation::Reconciliation).await.unwrap();
    assert!(r.is_success(), "{r:#?}");
    assert_eq!(env.tgt.token_requests(), 2);

    // A wrong secret is an authentication error that does not leak the secret.
    std::fs::write(env.dir.path().join("tgt.secret"), "wrong-secret").unwrap();
    let r = WorkspacePair::from_config(&env.config(""), false)
        .unwrap()
        .run(DbOperation::Reconciliation)
        .await
        .unwrap();
    let failed: Vec<_> = r
        .tables
        .iter()
        .filter(|t| t.operation == "reconciliation")
        .collect();
    assert_eq!(failed.len(), 3);
    for t in failed {
        let msg = &t.error.as_ref().unwrap().message;
        assert!(
            msg.contains("authentication failed") && msg.contains("invalid_client"),
            "{msg}"
        );
        assert!(
            !msg.contains("wrong-secret") && !msg.contains(CLIENT_SECRET),
            "{msg}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_table_names_are_quoted_or_refused() {
    let env = Env::new().await;
    let odd = env.dir.path().join("src/odd");
    sample::create(&loc(&odd), &sample::orders(0, 7, "eu"), &[])
        .await
        .unwrap();
    for name in ["we`ird;name", "a.b", "x; DROP TABLE y", "x;--DROP"] {
        env.world.add_table(
            &env.src.metastore,
            "prod",
            "sales",
            name,
            Table {
                table_type: "MANAGED".into(),
                location: odd.clone(),
                properties: Default::default(),
            },
        );
    }
    let r = env.run(DbOperation::All, "").await;
    // Unity Catalog forbids periods and spaces in names: refused before any SQL.
    for name in ["a.b", "x; DROP TABLE y"] {
        let refused = find(&r, "discovery", &format!("prod.sales.{name}"));
        assert_eq!(refused.status, TableVerdict::Failed);
        let msg = &refused.error.as_ref().unwrap().message;
        assert!(msg.contains("invalid identifier"), "{msg}");
    }
    for name in ["we`ird;name", "x;--DROP"] {
        let full = format!("prod.sales.{name}");
        assert_eq!(
            find(&r, "replication", &full).status,
            TableVerdict::Succeeded
        );
        assert_eq!(
            find(&r, "reconciliation", &full).status,
            TableVerdict::Matched
        );
        let t = env.table(&env.tgt, "prod", "sales", name).unwrap();
        assert_eq!(rows(&t.location).await, rows(&odd).await);
    }
    let stmts: Vec<String> = env.tgt.statements().into_iter().map(|(_, s)| s).collect();
    assert!(stmts.contains(&"CREATE OR REPLACE TABLE `prod`.`sales`.`we``ird;name` DEEP CLONE `prod_shared`.`sales`.`we``ird;name`".to_owned()), "{stmts:#?}");
    assert!(
        stmts
            .iter()
            .all(|s| !s.contains("a.b") && !s.contains("DROP TABLE")),
        "{stmts:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_prints_everything_and_changes_nothing() {
    let env = Env::new().await;
    let r = WorkspacePair::from_config(&env.config(""), true)
        .unwrap()
        .run(DbOperation::All)
        .await
        .unwrap();
    let lines = r.dry_run.join("\n");
    for expected in [
        "API POST",
        "/api/2.1/unity-catalog/recipients",
        "/api/2.1/unity-catalog/shares",
        "CREATE OR REPLACE TABLE `prod_backup`.`sales`.`events` DEEP CLONE `__databricks_internal`.`__dlt_materialization_schema_p_1111_aaaa`.`events`",
        "CREATE OR REPLACE TABLE `prod`.`sales`.`orders` DEEP CLONE `prod_shared`.`sales`.`orders`",
        "USING SHARE",
        "EXCEPT",
    ] {
        assert!(lines.contains(expected), "{expected} not in\n{lines}");
    }
    assert!(env.src.statements().is_empty() && env.tgt.statements().is_empty());
    assert!(env.src.changes().is_empty() && env.tgt.changes().is_empty());
    assert!(
        env.table(&env.src, "prod_backup", "sales", "events")
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_only_checks_access_and_byo_sharing_refuses_to_create() {
    let env = Env::new().await;
    let engine = WorkspacePair::from_config(&env.config(""), false).unwrap();
    let probes = engine.probe().await;
    assert!(probes.iter().all(|p| p.ok), "{probes:#?}");
    assert!(env.src.changes().is_empty() && env.tgt.changes().is_empty());

    let byo = "  sharing: { mode: byo }\n";
    let probes = WorkspacePair::from_config(&env.config(byo), false)
        .unwrap()
        .probe()
        .await;
    assert!(
        probes
            .iter()
            .any(|p| !p.ok && p.check.contains("prod_shared"))
    );
    let err = WorkspacePair::from_config(&env.config(byo), false)
        .unwrap()
        .run(DbOperation::Backup)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("recipient `replicator` does not exist"),
        "{err}"
    );
    assert!(env.src.changes().is_empty());

    // Once set up automatically, byo mode finds everything and runs.
    env.run(DbOperation::All, "").await;
    let r = env.run(DbOperation::All, byo).await;
    assert!(r.is_success() && r.sharing.is_empty(), "{r:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_enforcement_refuses_a_streaming_table_with_another_schema() {
    let env = Env::new().await;
    let tgt_events = env
        .table(&env.tgt, "prod", "sales", "events")
        .unwrap()
        .location;
    sample::add_string_column(&loc(&tgt_events), "note")
        .await
        .unwrap();
    let before = rows(&tgt_events).await;
    let r = env.run(DbOperation::All, "").await;
    let ev = find(&r, "replication", "prod.sales.events");
    assert_eq!(ev.status, TableVerdict::Failed);
    let msg = &ev.error.as_ref().unwrap().message;
    assert!(
        msg.contains("schema enforcement") && msg.contains("`note`"),
        "{msg}"
    );
    assert!(ev.statement_ids.is_empty());
    assert_eq!(rows(&tgt_events).await, before);
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backing_tables_are_found_where_databricks_keeps_them() {
    let env = Env::new().await;
    let st = |pipeline: &str| Table {
        table_type: "STREAMING_TABLE".into(),
        location: PathBuf::new(),
        properties: [("pipelines.pipelineId".to_owned(), pipeline.to_owned())].into(),
    };
    let managed = |location: &Path| Table {
        table_type: "MANAGED".into(),
        location: location.to_owned(),
        properties: Default::default(),
    };
    // Source: the backing table under its `__materialization_mat_<pipeline>_<table>_1` name.
    let src = env.dir.path().join("src/clicks");
    sample::create(&loc(&src), &sample::orders(0, 12, "eu"), &[])
        .await
        .unwrap();
    let (s_ms, t_ms) = (&env.src.metastore, &env.tgt.metastore);
    env.world.add_table(
        s_ms,
        "prod",
        "sales",
        "clicks",
        Table {
            location: src.clone(),
            ..st("p-3333")
        },
    );
    env.world.add_table(
        s_ms,
        "__databricks_internal",
        "__dlt_materialization_schema_p_3333",
        "__materialization_mat_p_3333_clicks_1",
        managed(&src),
    );
    // Target: the backing table next to the streaming table, in its own schema.
    let tgt = env.dir.path().join("tgt/clicks");
    sample::create(&loc(&tgt), &sample::orders(7000, 1, "pipeline"), &[])
        .await
        .unwrap();
    env.world.add_table(
        t_ms,
        "prod",
        "sales",
        "clicks",
        Table {
            location: tgt.clone(),
            ..st("p-4444")
        },
    );
    env.world.add_table(
        t_ms,
        "prod",
        "sales",
        "__materialization_mat_p_4444_clicks_1",
        managed(&tgt),
    );

    let r = env.run(DbOperation::All, "").await;
    assert!(r.is_success(), "{r:#?}");
    assert_eq!(rows(&tgt).await, rows(&src).await);
    let stmts: Vec<String> = env.tgt.statements().into_iter().map(|(_, s)| s).collect();
    assert!(stmts.contains(&"CREATE OR REPLACE TABLE `prod`.`sales`.`__materialization_mat_p_4444_clicks_1` DEEP CLONE `prod_backup_shared`.`sales`.`clicks`".to_owned()), "{stmts:#?}");

    // A streaming table whose backing table cannot be found fails alone, naming where it looked.
    env.world
        .add_table(s_ms, "prod", "sales", "lost", st("p-5555"));
    let r = env.run(DbOperation::Backup, "").await;
    let lost = find(&r, "backup", "prod.sales.lost");
    let msg = &lost.error.as_ref().unwrap().message;
    assert!(
        msg.contains("no backing table") && msg.contains("__dlt_materialization_schema_p_5555"),
        "{msg}"
    );
    assert_eq!(
        find(&r, "backup", "prod.sales.clicks").status,
        TableVerdict::Succeeded
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_tokens_are_refreshed_before_they_expire() {
    let env = Env::new().await;
    // A workspace whose tokens live one second: the client refreshes at half-life, before
    // the server would refuse the token.
    let short = Workspace::start(
        &env.world,
        &env.tgt.metastore,
        "wh-tgt",
        WorkspaceAuth {
            pat: None,
            oauth: Some((CLIENT_ID.into(), CLIENT_SECRET.into())),
            token_lifetime_s: 1,
        },
    )
    .await;
    let yaml = env.yaml("").replace(&env.tgt.url, &short.url);
    let config = Config::from_yaml(&yaml, std::iter::empty(), &[])
        .unwrap()
        .databricks
        .unwrap();
    let engine = WorkspacePair::from_config(&config, false).unwrap();
    engine.target.metastore_global_id().await.unwrap();
    engine.target.metastore_global_id().await.unwrap();
    assert_eq!(short.token_requests(), 1, "cached");
    tokio::time::sleep(Duration::from_millis(600)).await;
    engine.target.metastore_global_id().await.unwrap();
    assert_eq!(short.token_requests(), 2, "refreshed at half-life");
    // No request was refused on the way.
    assert!(
        short
            .calls()
            .iter()
            .filter(|c| c.path != "/oidc/v1/token")
            .count()
            == 3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciliation_reports_missing_rows_with_examples_read_across_result_chunks() {
    let env = Env::new().await;
    assert!(env.run(DbOperation::All, "").await.is_success());
    // New source rows that were not replicated yet.
    sample::append(
        &loc(&env.source_path("orders")),
        &sample::orders(50, 5, "us"),
    )
    .await
    .unwrap();
    env.tgt.faults(|f| f.chunk_rows = 2);
    let keys = "  reconciliation_keys: { prod.sales.orders: [id, region] }\n";
    let r = env.run(DbOperation::Reconciliation, keys).await;
    let orders = find(&r, "reconciliation", "prod.sales.orders");
    assert_eq!(orders.status, TableVerdict::Mismatched);
    assert_eq!(
        (orders.source_rows, orders.target_rows),
        (Some(55), Some(50))
    );
    let missing = orders
        .checks
        .iter()
        .find(|c| c.name == "missing_rows")
        .unwrap();
    assert!(!missing.passed);
    assert_eq!(
        missing.detail,
        "5 source rows missing in the target (by id, region), for example (50, us) (51, us) (52, us) (53, us) (54, us)"
    );
    // The five rows came in three chunks.
    let chunks = env
        .tgt
        .calls()
        .iter()
        .filter(|c| c.path.contains("/result/chunks/"))
        .count();
    assert_eq!(chunks, 2);
    assert_eq!(
        find(&r, "reconciliation", "prod.sales.customers").status,
        TableVerdict::Matched
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciliation_finds_rows_only_the_target_has_even_with_equal_counts() {
    let env = Env::new().await;
    assert!(env.run(DbOperation::All, "").await.is_success());
    // The replica of customers (ids 100..=124) now holds ids 101..=125: as many rows as the
    // source, one of them missing and one extra.
    let replica = env
        .table(&env.tgt, "prod", "sales", "customers")
        .unwrap()
        .location;
    sample::overwrite(&loc(&replica), &sample::orders(101, 25, "apac"))
        .await
        .unwrap();
    env.tgt.clear_log();
    let keys = "  reconciliation_keys: { prod.sales.customers: [id, region] }\n";
    let r = env.run(DbOperation::Reconciliation, keys).await;
    let rec = find(&r, "reconciliation", "prod.sales.customers");
    assert_eq!(rec.status, TableVerdict::Mismatched, "{rec:#?}");
    let check = |name: &str| {
        rec.checks
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no {name} check: {rec:#?}"))
    };
    assert!(check("row_count").passed, "{rec:#?}");
    let missing = check("missing_rows");
    assert!(!missing.passed);
    assert_eq!(
        missing.detail,
        "1 source rows missing in the target (by id, region), for example (100, apac)"
    );
    let extra = check("extra_rows");
    assert!(!extra.passed);
    assert_eq!(
        extra.detail,
        "1 target rows not in the source (by id, region), for example (125, apac)"
    );
    // The emulator ran both directions on the Delta tables themselves.
    let stmts: Vec<String> = env.tgt.statements().into_iter().map(|(_, s)| s).collect();
    for (from, other) in [
        (
            "`prod_shared`.`sales`.`customers`",
            "`prod`.`sales`.`customers`",
        ),
        (
            "`prod`.`sales`.`customers`",
            "`prod_shared`.`sales`.`customers`",
        ),
    ] {
        let except =
            format!("SELECT `id`, `region` FROM {from} EXCEPT SELECT `id`, `region` FROM {other}");
        assert!(
            stmts.contains(&format!("SELECT COUNT(*) AS n FROM ({except})")),
            "{stmts:#?}"
        );
        assert!(
            stmts.contains(&format!("SELECT `id`, `region` FROM ({except}) LIMIT 10")),
            "{stmts:#?}"
        );
    }
    // A replica that matches passes both.
    let orders = find(&r, "reconciliation", "prod.sales.orders");
    assert_eq!(orders.status, TableVerdict::Matched, "{orders:#?}");
    assert!(
        orders
            .checks
            .iter()
            .any(|c| c.name == "extra_rows" && c.passed)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_404_that_is_not_about_the_object_is_an_error_not_an_absent_object() {
    let env = Env::new().await;
    assert!(env.run(DbOperation::Backup, "").await.is_success());
    // The table lookup is answered by something that is not Databricks (a bare 404 page):
    // the target's existence, and so its schema check, cannot be known; nothing is cloned.
    env.tgt
        .faults(|f| f.bare_404 = vec!["/api/2.1/unity-catalog/tables/".into()]);
    env.tgt.clear_log();
    let r = env.run(DbOperation::Replication, "").await;
    for t in ["orders", "customers", "events"] {
        let rep = find(&r, "replication", &format!("prod.sales.{t}"));
        assert_eq!(rep.status, TableVerdict::Failed, "{rep:#?}");
        let msg = &rep.error.as_ref().unwrap().message;
        assert!(
            msg.contains("no such API endpoint")
                && msg.contains("/api/2.1/unity-catalog/tables/prod.sales.")
                && msg.contains("no Databricks error body")
                && !msg.contains('\n'),
            "{msg}"
        );
    }
    let stmts = env.tgt.statements();
    assert!(
        !stmts.iter().any(|(_, s)| s.contains("DEEP CLONE")),
        "{stmts:#?}"
    );
    assert!(env.table(&env.tgt, "prod", "sales", "orders").is_none());

    // ENDPOINT_NOT_FOUND (Delta Sharing not served here) is not "no recipient": the backup
    // fails naming it and creates nothing.
    let env = Env::new().await;
    env.src
        .faults(|f| f.endpoint_not_found = vec!["/api/2.1/unity-catalog/recipients/".into()]);
    let err = WorkspacePair::from_config(&env.config(""), false)
        .unwrap()
        .run(DbOperation::Backup)
        .await
        .unwrap_err();
    assert!(
        matches!(err, DatabricksError::NoEndpoint { .. })
            && err.to_string().contains("ENDPOINT_NOT_FOUND"),
        "{err}"
    );
    assert!(
        !env.src.changes().iter().any(|c| c.contains("recipients")),
        "{:?}",
        env.src.changes()
    );
    // validate-only reports it as a failed check instead of "missing; backup creates it".
    let probes = WorkspacePair::from_config(&env.config(""), false)
        .unwrap()
        .probe()
        .await;
    let p = probes
        .iter()
        .find(|p| p.check.contains("recipient"))
        .unwrap();
    assert!(!p.ok && p.detail.contains("no such API endpoint"), "{p:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_created_by_a_concurrent_run_are_taken_as_they_are() {
    let env = Env::new().await;
    // Between this run's read and its create, another run creates the recipient, the share
    // and adds the schema to the share: each create is answered 409 RESOURCE_ALREADY_EXISTS.
    env.src.faults(|f| {
        f.concurrent_create = vec![
            "replicator".into(),
            "replicator_prod".into(),
            "replicator_prod".into(),
        ]
    });
    let r = env.run(DbOperation::All, "").await;
    assert!(r.is_success(), "{r:#?}");
    assert!(
        !r.sharing.iter().any(|a| a.starts_with("created recipient")
            || a == "created share replicator_prod"
            || a.starts_with("added prod.sales to share replicator_prod")),
        "{:#?}",
        r.sharing
    );
    // The grant, which the concurrent run did not make, was made.
    assert!(
        r.sharing
            .contains(&"granted SELECT on share replicator_prod to replicator".to_owned()),
        "{:#?}",
        r.sharing
    );
    let left = env.src.read_faults(|f| f.concurrent_create.len());
    assert_eq!(left, 0, "every injected race happened");
    env.assert_replicas_equal().await;
}
