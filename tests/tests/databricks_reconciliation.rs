//! Reconciliation by the Databricks engine: missing rows with examples read across result
//! chunks, and rows only the target has.

use replicator_databricks::ops::{DbOperation, TableVerdict};
use replicator_lake::sample;

mod databricks_env;
use databricks_env::{Env, find, loc};

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
