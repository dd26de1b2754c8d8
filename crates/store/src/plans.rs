//! The hot queries find their rows through an index (issue 19 §3: a store of a million task
//! rows). Each test asks the database for its plan of every query below — the very SQL the
//! store runs — and fails naming the query when one reads a whole table: a missing index
//! shows here, not as a slow fleet. No timing is measured.

use crate::Store;

/// The queries of the hot path (task status updates, results, leases, the completion
/// check, the last-validation lookup) and of the status and console listings.
const HOT: &[(&str, &str)] = &[
    ("attempt started (clone)", crate::attempts::START_CLONE),
    ("attempt started (catalog)", crate::attempts::START_CATALOG),
    (
        "attempt started (reconcile)",
        crate::attempts::START_RECONCILE,
    ),
    ("attempt finished", crate::attempts::ATTEMPT_FINISHED),
    ("attempts of a run", crate::attempts::ATTEMPTS_OF_RUN),
    ("attempt log", crate::attempts::ATTEMPT_LOG),
    ("clone result", crate::tasks::RECORD_CLONE),
    ("validation result", crate::tasks::RECORD_RECONCILE),
    ("fail a task", crate::tasks::FAIL_TASK),
    ("task status", crate::tasks::TASK_STATUS),
    ("tasks of a run", crate::tasks::TASKS_OF_RUN),
    ("last source version", crate::tasks::LAST_SOURCE_VERSION),
    ("run progress", crate::runs::RUN_PROGRESS),
    ("run summary", crate::runs::SUMMARIZE),
    ("open runs", crate::runs::OPEN_RUNS),
    ("completion check", crate::validations::HAS_OPEN_TASKS),
    ("last deep validation", crate::validations::DEEP_VALIDATION),
    ("lease release", crate::leases::RELEASE_LEASE),
    ("lease holder", crate::leases::LEASE_HOLDER),
    ("console: recent runs", crate::console::RECENT_RUNS),
    ("console: target history", crate::console::TARGET_HISTORY),
];

/// PostgreSQL's own forms of hot queries (one statement where SQLite runs several).
const HOT_POSTGRES: &[(&str, &str)] = &[
    (
        "attempt started (clone, PostgreSQL)",
        crate::attempts::START_CLONE_PG,
    ),
    (
        "attempt started (catalog, PostgreSQL)",
        crate::attempts::START_CATALOG_PG,
    ),
    (
        "attempt started (reconcile, PostgreSQL)",
        crate::attempts::START_RECONCILE_PG,
    ),
    (
        "lease and first attempt (clone, PostgreSQL)",
        crate::attempts::START_LEASED_CLONE_PG,
    ),
    (
        "lease and first attempt (catalog, PostgreSQL)",
        crate::attempts::START_LEASED_CATALOG_PG,
    ),
    ("clone result (PostgreSQL)", crate::tasks::RECORD_CLONE_PG),
    (
        "validation result (PostgreSQL)",
        crate::tasks::RECORD_RECONCILE_PG,
    ),
];

/// How many parameters (`$1`…`$n`) a query takes.
fn params(sql: &str) -> usize {
    let mut n = 0;
    let mut rest = sql;
    while let Some(i) = rest.find('$') {
        rest = &rest[i + 1..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        n = n.max(digits.parse().unwrap_or(0));
    }
    n
}

/// The plan lines of SQLite's `EXPLAIN QUERY PLAN` that read a whole table: `SCAN x`
/// without an index, x not a subquery of the query itself (`CO-ROUTINE x`, `MATERIALIZE x`).
fn sqlite_full_scans(plan: &[String]) -> Vec<String> {
    let subqueries: Vec<&str> = plan
        .iter()
        .filter_map(|l| {
            l.strip_prefix("CO-ROUTINE ")
                .or_else(|| l.strip_prefix("MATERIALIZE "))
        })
        .map(|s| s.split_whitespace().next().unwrap_or(s))
        .collect();
    plan.iter()
        .filter(|l| {
            l.strip_prefix("SCAN ").is_some_and(|rest| {
                let name = rest.split_whitespace().next().unwrap_or(rest);
                !rest.contains(" INDEX ") && !subqueries.contains(&name)
            })
        })
        .cloned()
        .collect()
}

#[tokio::test]
async fn every_hot_query_uses_an_index_on_sqlite() {
    use sqlx::Row;
    let (url, _dir) = crate::testing::sqlite_file();
    let store = Store::open(&url).await.unwrap();
    let mut missing = Vec::new();
    for (name, sql) in HOT {
        let explain = format!("EXPLAIN QUERY PLAN {sql}");
        let mut q = sqlx::query(&explain);
        for _ in 0..params(sql) {
            q = q.bind("1");
        }
        let plan: Vec<String> = q
            .fetch_all(&store.pool)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .iter()
            .map(|r| r.get::<String, _>(3))
            .collect();
        assert!(!plan.is_empty(), "{name}: no plan");
        let scans = sqlite_full_scans(&plan);
        if !scans.is_empty() {
            missing.push(format!("{name}: {scans:?} in {plan:?}"));
        }
    }
    assert!(
        missing.is_empty(),
        "full table scans:\n{}",
        missing.join("\n")
    );
}

/// The migrations' partial indexes (`CREATE INDEX … WHERE …`).
const PARTIAL_INDEXES: &[&str] = &["runs_open"];

/// The nodes of PostgreSQL's `EXPLAIN` that read a whole table: a `Seq Scan`, or an index
/// scan without an `Index Cond` (the whole index in its order, rows filtered) unless a
/// `Limit` right above it stops it early (the latest runs).
fn postgres_full_scans(plan: &[String]) -> Vec<String> {
    // Plan nodes: the first line, and every line whose text starts with `->`.
    let nodes: Vec<(usize, usize)> = plan
        .iter()
        .enumerate()
        .filter_map(|(i, l)| {
            let indent = l.len() - l.trim_start().len();
            (i == 0 || l.trim_start().starts_with("->")).then_some((i, indent))
        })
        .collect();
    let text = |i: usize| plan[i].trim_start().trim_start_matches("->").trim_start();
    let mut full = Vec::new();
    for (k, &(i, indent)) in nodes.iter().enumerate() {
        let node = text(i);
        if node.starts_with("Seq Scan") {
            full.push(node.to_owned());
            continue;
        }
        if !(node.starts_with("Index Scan") || node.starts_with("Index Only Scan")) {
            continue;
        }
        let end = nodes.get(k + 1).map_or(plan.len(), |n| n.0);
        // A partial index holds only the rows its predicate picks: reading it whole is the
        // search (`runs_open`: the runs not completed).
        let partial = PARTIAL_INDEXES
            .iter()
            .any(|p| node.contains(&format!(" using {p} ")));
        if partial || plan[i + 1..end].iter().any(|l| l.contains("Index Cond:")) {
            continue;
        }
        let parent = nodes[..k].iter().rev().find(|n| n.1 < indent);
        if parent.is_some_and(|p| text(p.0).starts_with("Limit")) {
            continue;
        }
        full.push(node.to_owned());
    }
    full
}

/// PostgreSQL with sequential scans priced out (`enable_seqscan = off`): a query still planned
/// as a `Seq Scan`, or as a whole index read in order, has no index it can search. Parameters become literals (`'1'`, which reads as
/// text or a number), so the plan is the one a bound query gets.
#[tokio::test]
async fn every_hot_query_uses_an_index_on_postgres() {
    use sqlx::{Executor, Row};
    let (url, db) = crate::testing::postgres().await;
    let store = Store::open(&url).await.unwrap();
    let mut conn = store.pool.acquire().await.unwrap();
    (&mut *conn)
        .execute("SET enable_seqscan = off")
        .await
        .unwrap();
    let mut missing = Vec::new();
    for (name, sql) in HOT.iter().chain(HOT_POSTGRES) {
        let mut literal = sql.to_string();
        for i in (1..=params(sql)).rev() {
            literal = literal.replace(&format!("${i}"), "'1'");
        }
        let explain = format!("EXPLAIN {literal}");
        let plan: Vec<String> = sqlx::query(&explain)
            .fetch_all(&mut *conn)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .iter()
            .map(|r| r.get::<String, _>(0))
            .collect();
        let scans = postgres_full_scans(&plan);
        if !scans.is_empty() {
            missing.push(format!("{name}: {scans:?} in {}", plan.join(" / ")));
        }
    }
    drop(conn);
    drop(store);
    crate::testing::drop_db(&db).await;
    assert!(
        missing.is_empty(),
        "sequential scans:\n{}",
        missing.join("\n")
    );
}

#[test]
fn full_scans_are_told_from_index_scans_and_subqueries() {
    let lines = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(sqlite_full_scans(&lines(&["SCAN tasks"])), ["SCAN tasks"]);
    assert!(sqlite_full_scans(&lines(&["SCAN runs USING INDEX runs_by_created"])).is_empty());
    assert!(
        sqlite_full_scans(&lines(&[
            "SEARCH tasks USING INDEX tasks_by_target (target=?)"
        ]))
        .is_empty()
    );
    assert!(sqlite_full_scans(&lines(&["CO-ROUTINE r", "SCAN r"])).is_empty());
    assert_eq!(params("a = $1 AND b IN ($2, $10)"), 10);
    let full = postgres_full_scans(&lines(&[
        "Sort  (cost=1)",
        "  ->  Index Scan using attempts_pkey on attempts  (cost=1)",
        "        Filter: (run_id = '1'::text)",
    ]));
    assert_eq!(
        full,
        ["Index Scan using attempts_pkey on attempts  (cost=1)"]
    );
    assert!(
        postgres_full_scans(&lines(&[
            "Limit  (cost=1)",
            "  ->  Index Scan Backward using runs_by_created on runs  (cost=1)",
            "  ->  Index Only Scan using tasks_by_run_status on tasks t  (cost=1)",
            "        Index Cond: (run_id = runs.run_id)",
        ]))
        .is_empty()
    );
    assert_eq!(
        postgres_full_scans(&lines(&["Seq Scan on tasks  (cost=1)"])),
        ["Seq Scan on tasks  (cost=1)"]
    );
}
