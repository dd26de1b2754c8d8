//! The Databricks engine's operations end to end against the workspace emulator: backup,
//! replication and reconciliation, incremental second runs, backing tables, odd names,
//! schema enforcement, dry runs.

use std::path::{Path, PathBuf};

use replicator_databricks::WorkspacePair;
use replicator_databricks::ops::{DbOperation, TableVerdict};
use replicator_lake::sample;
use replicator_tests::databricks_emulator::Table;

mod databricks_env;
use databricks_env::{Env, find, loc, rows};

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
