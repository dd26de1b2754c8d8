//! The Databricks engine when the workspace misbehaves: throttling storms, failing and
//! hanging statements, 404s that are not about the object asked for.

use std::time::{Duration, Instant};

use replicator_databricks::ops::{DbOperation, TableVerdict};
use replicator_databricks::{DatabricksError, WorkspacePair};

mod databricks_env;
use databricks_env::{Env, find};

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
