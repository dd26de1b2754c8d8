//! Sync-group triggers on the Databricks engine against the workspace emulator: a
//! workflow's newest successful run in the source workspace (Jobs API 2.2, paged), runs
//! active in the secondary, and `DEEP CLONE … TIMESTAMP AS OF` a consistent cut.

use chrono::{DateTime, Duration, Utc};
use replicator_databricks::ops::DbOperation;
use replicator_databricks::{DatabricksError, WorkspacePair};
use replicator_lake::sample;
use replicator_tests::databricks_emulator::{RunFields, RunResult};

mod databricks_env;
use databricks_env::{Env, loc, rows};

const WORKFLOW: &str = "core_product_job";

fn pair(env: &Env) -> WorkspacePair {
    WorkspacePair::from_config(&env.config(""), false).unwrap()
}

fn base() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-20T08:00:00.250Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn min(n: i64) -> DateTime<Utc> {
    base() + Duration::minutes(n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successful_run_gives_its_end_and_runs_ending_before_since_are_ignored() {
    let env = Env::new().await;
    // Another job's runs do not count.
    let other = env.src.add_job("nightly_other");
    env.src.add_run(other, min(0), min(500), RunResult::Success);
    let job = env.src.add_job(WORKFLOW);
    let first = env.src.add_run(job, min(0), min(10), RunResult::Success);
    let second = env.src.add_run(job, min(60), min(75), RunResult::Success);
    env.src.add_run(job, min(120), min(130), RunResult::Failed);
    env.src
        .add_run(job, min(180), min(181), RunResult::Canceled);
    env.src.add_run(job, min(240), min(0), RunResult::Running);
    let p = pair(&env);

    // No history: the workflow's last successful run, found across pages of one run each.
    let r = p
        .last_successful_run(WORKFLOW, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((r.job_id, r.run_id, r.end_time), (job, second, min(75)));
    let pages = env
        .src
        .calls()
        .iter()
        .filter(|c| c.path == "/api/2.2/jobs/runs/list")
        .count();
    // Four completed runs, one per page (the harness pages one item at a time).
    assert_eq!(pages, 4, "runs listed page by page");

    // Since the last cut: only runs that ended after it count.
    let r = p
        .last_successful_run(WORKFLOW, Some(min(10)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.run_id, second);
    assert_eq!(
        p.last_successful_run(WORKFLOW, Some(min(75)))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        p.last_successful_run(WORKFLOW, Some(min(100)))
            .await
            .unwrap(),
        None
    );
    // A run that started before the cut but ended after it triggers a sync.
    let long = env.src.add_run(job, min(70), min(300), RunResult::Success);
    let r = p
        .last_successful_run(WORKFLOW, Some(min(100)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((r.run_id, r.end_time), (long, min(300)));
    assert_ne!(first, long);

    // The same answers from the 2.1 `state` shape alone and the 2.2 `status` shape alone.
    for fields in [RunFields::StateOnly, RunFields::StatusOnly] {
        env.src.faults(|f| f.run_fields = fields);
        let r = p
            .last_successful_run(&WORKFLOW.to_uppercase(), Some(min(10)))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r.run_id, long, "{fields:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_run_gives_nothing_and_a_missing_workflow_is_reported_by_name() {
    let env = Env::new().await;
    let job = env.src.add_job(WORKFLOW);
    env.src.add_run(job, min(0), min(5), RunResult::Failed);
    env.src.add_run(job, min(10), min(15), RunResult::Canceled);
    env.src.add_run(job, min(20), min(0), RunResult::Running);
    env.src.add_run(job, min(30), min(0), RunResult::Queued);
    let p = pair(&env);
    assert_eq!(p.last_successful_run(WORKFLOW, None).await.unwrap(), None);

    let err = p
        .last_successful_run("no_such_job", None)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DatabricksError::WorkflowNotFound { workflow, .. } if workflow == "no_such_job"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!("workflow `no_such_job` not found in {}", env.src.url)
    );
    assert_eq!(err.kind(), replicator_proto::ErrorKind::Permanent);
    // The job exists in the target only: still missing where it must run.
    env.tgt.add_job("only_in_dr");
    assert!(matches!(
        p.last_successful_run("only_in_dr", None).await,
        Err(DatabricksError::WorkflowNotFound { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_active_in_the_secondary_is_found() {
    let env = Env::new().await;
    let p = pair(&env);
    // No such job in the secondary: nothing runs there.
    assert!(
        p.active_runs_in_secondary(WORKFLOW)
            .await
            .unwrap()
            .is_empty()
    );
    let job = env.tgt.add_job(WORKFLOW);
    env.tgt.add_run(job, min(0), min(5), RunResult::Success);
    env.tgt.add_run(job, min(6), min(9), RunResult::Failed);
    assert!(
        p.active_runs_in_secondary(WORKFLOW)
            .await
            .unwrap()
            .is_empty()
    );
    let running = env.tgt.add_run(job, min(10), min(0), RunResult::Running);
    let queued = env.tgt.add_run(job, min(11), min(0), RunResult::Queued);
    // A run in the primary is not the secondary's business.
    let src_job = env.src.add_job(WORKFLOW);
    env.src
        .add_run(src_job, min(12), min(0), RunResult::Running);
    let active = p.active_runs_in_secondary(WORKFLOW).await.unwrap();
    let ids: Vec<(i64, i64)> = active.iter().map(|r| (r.job_id, r.run_id)).collect();
    assert_eq!(ids, [(job, queued), (job, running)]);
    assert_eq!(active[1].start_time, Some(min(10)));
    let listed: Vec<String> = env
        .tgt
        .calls()
        .into_iter()
        .filter(|c| c.path.starts_with("/api/2.2/jobs/"))
        .map(|c| c.path)
        .collect();
    assert!(
        listed.contains(&"/api/2.2/jobs/runs/list".to_owned()),
        "{listed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clone_as_of_an_instant_has_the_rows_of_that_instant() {
    let env = Env::new().await;
    let r = env.run(DbOperation::All, "").await;
    assert!(r.is_success(), "{r:#?}");
    let orders = env.source_path("orders");
    let at_cut = rows(&orders).await;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let cut = Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    // Written after the cut: not part of it.
    sample::append(&loc(&orders), &sample::orders(50, 7, "late"))
        .await
        .unwrap();
    let latest = rows(&orders).await;
    assert_eq!(latest.len(), at_cut.len() + 7);

    let p = pair(&env);
    let t = p.source_table("prod.sales.orders").await.unwrap();
    env.tgt.clear_log();
    let step = p.replicate_table(&t, Some(cut)).await.unwrap();
    let target = env.table(&env.tgt, "prod", "sales", "orders").unwrap();
    assert_eq!(rows(&target.location).await, at_cut);
    let stmts: Vec<String> = env.tgt.statements().into_iter().map(|(_, s)| s).collect();
    let literal = cut.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    assert!(
        stmts.contains(&format!(
            "CREATE OR REPLACE TABLE `prod`.`sales`.`orders` DEEP CLONE `prod_shared`.`sales`.`orders` TIMESTAMP AS OF '{literal}'"
        )),
        "{stmts:#?}"
    );
    assert!(!step.statement_ids.is_empty());

    // An instant after the table's latest commit: Delta refuses it, the table has not
    // changed since, and its latest version is cloned.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    env.tgt.clear_log();
    let step = p.replicate_table(&t, Some(Utc::now())).await.unwrap();
    assert_eq!(rows(&target.location).await, latest);
    let ids = &step.statement_ids;
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert_eq!(env.tgt.statement_state(&ids[0]).as_deref(), Some("FAILED"));
    assert_eq!(
        env.tgt.statement_state(&ids[1]).as_deref(),
        Some("SUCCEEDED")
    );

    // Without an instant, nothing changes: the clone is of the latest version.
    let step = p.replicate_table(&t, None).await.unwrap();
    assert_eq!(step.metrics.unwrap().num_copied_files, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_table_is_backed_up_as_of_the_instant_then_replicated_as_it_is() {
    let env = Env::new().await;
    let r = env.run(DbOperation::All, "").await;
    assert!(r.is_success(), "{r:#?}");
    let events = env.source_path("events");
    let at_cut = rows(&events).await;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let cut = Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    sample::append(&loc(&events), &sample::orders(700, 4, "late"))
        .await
        .unwrap();

    let p = pair(&env);
    let t = p.source_table("prod.sales.events").await.unwrap();
    env.src.clear_log();
    env.tgt.clear_log();
    p.backup_table(&t, Some(cut)).await.unwrap();
    p.replicate_table(&t, Some(cut)).await.unwrap();
    let backing = env
        .table(
            &env.tgt,
            "__databricks_internal",
            "__dlt_materialization_schema_p_2222_bbbb",
            "events",
        )
        .unwrap();
    assert_eq!(rows(&backing.location).await, at_cut);
    // The instant is applied where the source's commits are: on the backup.
    let src: Vec<String> = env.src.statements().into_iter().map(|(_, s)| s).collect();
    assert!(
        src.iter().any(|s| s.contains("TIMESTAMP AS OF")),
        "{src:#?}"
    );
    let tgt: Vec<String> = env.tgt.statements().into_iter().map(|(_, s)| s).collect();
    assert!(
        tgt.iter().all(|s| !s.contains("TIMESTAMP AS OF")),
        "{tgt:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_clones_a_task_as_of_its_instant() {
    use replicator_engine::{CloneContext, DatabricksEngine, Engine};
    use replicator_proto::{CloneTask, EngineKind, Header};

    let env = Env::new().await;
    let r = env.run(DbOperation::All, "").await;
    assert!(r.is_success(), "{r:#?}");
    let orders = env.source_path("orders");
    let at_cut = rows(&orders).await;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let cut = Utc::now();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    sample::append(&loc(&orders), &sample::orders(50, 3, "late"))
        .await
        .unwrap();

    let config = env.config("");
    let (source_root, target_root) = replicator_engine::databricks::roots(&config);
    let engine = DatabricksEngine::from_config(&config).unwrap();
    let task = CloneTask {
        ingest: None,
        header: Header::new(uuid::Uuid::now_v7()),
        task_id: uuid::Uuid::now_v7(),
        attempt: 1,
        table: "prod.sales.orders".into(),
        source: format!("{source_root}/prod.sales.orders"),
        target: format!("{target_root}/prod.sales.orders"),
        version: None,
        operation: Default::default(),
        engine: EngineKind::Databricks,
        replace: false,
        external_roots: Vec::new(),
        as_of: Some(cut),
    };
    let ctx = CloneContext {
        parallelism: 1,
        progress: None,
        last_watermark: None,
    };
    let cloned = engine.clone_table(&task, &ctx).await.unwrap();
    assert!(!cloned.statement_ids.is_empty());
    let target = env.table(&env.tgt, "prod", "sales", "orders").unwrap();
    assert_eq!(rows(&target.location).await, at_cut);
}
