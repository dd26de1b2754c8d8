//! Deep validation on a period, the cheap check in between (`reconciliation.deep_every`),
//! end to end on the embedded default: which tables each run validates deeply, and that the
//! cheap check never vouches for a pair whose logs moved or whose last validation failed.

use std::collections::BTreeMap;
use std::path::Path;

use replicator_cli::embedded::{self, RunOptions, RunOutput};
use replicator_common::Config;
use replicator_lake::{TableLocation, sample};
use replicator_proto::{Operation, ReconcileResult, RunCompleted, TableStatus, ValidationDepth};
use replicator_store::Store;

fn config(dir: &Path, extra: &str) -> Config {
    let yaml = format!(
        "source: {{ root: {src} }}\ntarget: {{ root: {dst} }}\n\
         state: {{ url: \"sqlite://{state}\" }}\nretry: {{ max_attempts: 2, base_delay_ms: 1, max_delay_ms: 5 }}\n{extra}",
        src = dir.join("source").display(),
        dst = dir.join("target").display(),
        state = dir.join("state.db").display(),
    );
    Config::from_yaml(&yaml, Vec::new(), &[]).unwrap()
}

fn loc(p: &Path) -> TableLocation {
    TableLocation::parse(p.to_str().unwrap()).unwrap()
}

async fn run(cfg: &Config, operation: Option<Operation>) -> RunCompleted {
    let opts = RunOptions {
        operation,
        ..Default::default()
    };
    match embedded::run(cfg, &opts).await.unwrap() {
        RunOutput::Completed(done) => done,
        other => panic!("expected a completed run, got {other:?}"),
    }
}

/// Each table's validation result in `done`'s run, by table.
async fn validations(cfg: &Config, done: &RunCompleted) -> BTreeMap<String, ReconcileResult> {
    let store = Store::open(&cfg.state.url).await.unwrap();
    store
        .outcomes(done.header.run_id)
        .await
        .unwrap()
        .into_iter()
        .filter(|(stage, _, _)| stage == "reconcile")
        .map(|(_, _, detail)| {
            let r: ReconcileResult = serde_json::from_value(detail).unwrap();
            (r.table.clone(), r)
        })
        .collect()
}

/// The tables validated at `depth`.
fn at(found: &BTreeMap<String, ReconcileResult>, depth: ValidationDepth) -> Vec<&str> {
    found
        .values()
        .filter(|r| r.depth == depth)
        .map(|r| r.table.as_str())
        .collect()
}

const ALL: [&str; 4] = [
    "marketing.campaigns",
    "marketing.events",
    "sales.customers",
    "sales.orders",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_pair_gets_the_cheap_check_and_a_changed_one_a_deep_validation() {
    let dir = tempfile::tempdir().unwrap();
    sample::demo_estate(&loc(&dir.path().join("source")))
        .await
        .unwrap();
    let cfg = config(dir.path(), "");

    let first = run(&cfg, None).await;
    assert_eq!(first.summary.succeeded, 4, "{:#?}", first.summary);
    let deep = validations(&cfg, &first).await;
    assert_eq!(
        at(&deep, ValidationDepth::Deep),
        ALL,
        "no validation on record yet"
    );
    assert!(
        deep.values()
            .all(|r| r.checks.iter().any(|c| c.name == "row_count"))
    );

    // Nothing changed: every pair is proven unchanged, nothing is read again.
    let second = run(&cfg, None).await;
    assert_eq!(
        (second.summary.succeeded, second.summary.files_copied),
        (4, 0)
    );
    let cheap = validations(&cfg, &second).await;
    assert_eq!(at(&cheap, ValidationDepth::Cheap), ALL);
    for (table, r) in &cheap {
        let before = &deep[table];
        assert_eq!(
            (
                r.source_version,
                r.target_version,
                r.source_rows,
                r.target_rows
            ),
            (
                before.source_version,
                before.target_version,
                before.source_rows,
                before.target_rows
            ),
            "{table}: the deep validation's versions and counts stand"
        );
        assert_eq!(r.checks.len(), 1, "{r:?}");
        assert_eq!(r.checks[0].name, "unchanged");
        assert!(
            r.checks[0]
                .detail
                .contains(&first.header.run_id.to_string())
        );
    }
    for (t, s) in second.summary.tables.iter().zip(&first.summary.tables) {
        assert_eq!(
            (t.source_rows, t.target_rows),
            (s.source_rows, s.target_rows)
        );
    }

    // One table gets a commit: it alone is cloned and validated deeply.
    sample::append(
        &loc(&dir.path().join("source/sales/orders")),
        &sample::orders(9000, 5, "apac"),
    )
    .await
    .unwrap();
    let third = run(&cfg, None).await;
    assert_eq!(
        (third.summary.succeeded, third.summary.files_copied),
        (4, 1)
    );
    let found = validations(&cfg, &third).await;
    assert_eq!(at(&found, ValidationDepth::Deep), ["sales.orders"]);
    let orders = &found["sales.orders"];
    assert_eq!(
        (orders.source_rows, orders.target_rows),
        (Some(1005), Some(1005))
    );

    // A validation-only run checks the latest source version the same way.
    let only = run(&cfg, Some(Operation::Reconciliation)).await;
    assert_eq!(only.summary.succeeded, 4);
    assert_eq!(
        at(&validations(&cfg, &only).await, ValidationDepth::Cheap),
        ALL
    );

    // Other checks for a table need their own deep validation.
    let mut keyed = cfg.clone();
    keyed.reconciliation.tables = vec![replicator_common::config::TableReconciliation {
        tables: vec!["sales.orders".into()],
        primary_key: vec!["id".into()],
        ..Default::default()
    }];
    let keys = run(&keyed, None).await;
    assert_eq!(keys.summary.succeeded, 4);
    let found = validations(&keyed, &keys).await;
    assert_eq!(at(&found, ValidationDepth::Deep), ["sales.orders"]);
    assert!(
        found["sales.orders"].keys.is_some(),
        "the key comparison ran"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deep_validation_runs_again_when_its_period_has_passed() {
    let dir = tempfile::tempdir().unwrap();
    sample::demo_estate(&loc(&dir.path().join("source")))
        .await
        .unwrap();
    let cfg = config(dir.path(), "reconciliation: { deep_every: 1h }\n");
    assert_eq!(
        cfg.reconciliation.deep_every.0,
        std::time::Duration::from_secs(3600)
    );
    let first = run(&cfg, None).await;
    assert_eq!(first.summary.succeeded, 4);

    // Age two of the deep validations past the period (less than a quarter early would
    // not be due yet; a whole period always is).
    let store = Store::open(&cfg.state.url).await.unwrap();
    let pair = |table: &str| {
        let rel = table.replace('.', "/");
        (
            loc(&dir.path().join("source").join(&rel)).url().to_string(),
            loc(&dir.path().join("target").join(&rel)).url().to_string(),
        )
    };
    for table in ["sales.orders", "marketing.events"] {
        let (s, t) = pair(table);
        let mut v = store.deep_validation(&s, &t).await.unwrap().unwrap();
        v.validated_at -= chrono::Duration::minutes(61);
        store.save_deep_validation(&v).await.unwrap();
    }
    let second = run(&cfg, None).await;
    assert_eq!(second.summary.succeeded, 4);
    let found = validations(&cfg, &second).await;
    assert_eq!(
        at(&found, ValidationDepth::Deep),
        ["marketing.events", "sales.orders"]
    );
    assert_eq!(
        at(&found, ValidationDepth::Cheap),
        ["marketing.campaigns", "sales.customers"]
    );
    // The new deep validations are on record: the next run is cheap throughout.
    let third = run(&cfg, None).await;
    assert_eq!(
        at(&validations(&cfg, &third).await, ValidationDepth::Cheap),
        ALL
    );

    // `deep_every: 0` validates every table deeply on every run.
    let mut always = cfg.clone();
    always.reconciliation.deep_every = "0".parse().unwrap();
    let fourth = run(&always, None).await;
    assert_eq!(
        at(&validations(&always, &fourth).await, ValidationDepth::Deep),
        ALL
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_target_is_validated_deeply_until_it_matches_again() {
    let dir = tempfile::tempdir().unwrap();
    sample::demo_estate(&loc(&dir.path().join("source")))
        .await
        .unwrap();
    let cfg = config(dir.path(), "");
    run(&cfg, None).await;
    run(&cfg, None).await;

    // Rows written to a replica directly: its log moved, so the pair is checked deeply.
    let target = loc(&dir.path().join("target/sales/customers"));
    sample::append(&target, &sample::orders(7000, 3, "emea"))
        .await
        .unwrap();
    let check = run(&cfg, Some(Operation::Reconciliation)).await;
    assert_eq!((check.summary.succeeded, check.summary.mismatched), (3, 1));
    let found = validations(&cfg, &check).await;
    assert_eq!(at(&found, ValidationDepth::Deep), ["sales.customers"]);
    // And again on the next run, although neither log moved since: a validation that did
    // not match proves nothing.
    let again = run(&cfg, Some(Operation::Reconciliation)).await;
    let bad = again
        .summary
        .tables
        .iter()
        .find(|t| t.table == "sales.customers")
        .unwrap();
    assert_eq!(bad.status, TableStatus::Mismatched);
    assert_eq!(
        at(&validations(&cfg, &again).await, ValidationDepth::Deep),
        ["sales.customers"]
    );

    // A clone run repairs the replica (the full diff), which is then validated deeply and
    // cheaply after that.
    let repaired = run(&cfg, None).await;
    assert_eq!(repaired.summary.succeeded, 4, "{:#?}", repaired.summary);
    assert_eq!(
        at(&validations(&cfg, &repaired).await, ValidationDepth::Deep),
        ["sales.customers"]
    );
    let after = run(&cfg, None).await;
    assert_eq!(
        at(&validations(&cfg, &after).await, ValidationDepth::Cheap),
        ALL
    );
}
