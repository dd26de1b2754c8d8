//! A million-row PostgreSQL table loaded within a memory budget, then merged after 1% of its
//! rows changed and 0.1% were deleted. Its own test binary, so the process's peak RSS is
//! this test's (a sanity bound only; nothing is timed). `INGEST_LARGE_ROWS` (a multiple of
//! 1000) runs it on another size, to see memory stay flat as the table grows.

mod common;

use common::*;
use replicator_ingest::{IngestOptions, LoadMode, SourceKind};

/// The process's peak resident set, bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_rows_within_the_memory_budget() {
    let rows: i64 = std::env::var("INGEST_LARGE_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let pool = pg().await;
    let t = unique("ingest_pgbig");
    pg_exec(&pool, &format!(
        "CREATE TABLE {t} (id bigint PRIMARY KEY, name text, amount numeric(12,2),
                           qty integer, flag boolean, at timestamptz, day date);
         INSERT INTO {t} SELECT g, md5(g::text), g * 0.01, g % 1000, g % 3 = 0,
             timestamptz '2025-01-01 00:00:00+00' + g * interval '1 second', date '2020-01-01' + (g % 2000)
         FROM generate_series(1, {rows}) g;"
    )).await;
    let dir = tempfile::tempdir().unwrap();
    let root = loc(dir.path());
    let target = root.child(&t).unwrap();
    let mut def = sql_def(SourceKind::Postgres, &t, &["id"]);
    def.hard_deletes = true;
    let c = ctx(PG_URL);
    let budget = 64u64 << 20;
    let opts = IngestOptions {
        memory_budget: budget,
        target_file_size: 16 << 20,
        ..Default::default()
    };
    let before = peak_rss();
    let started = std::time::Instant::now();
    let full = run(&def, &c, &root, &opts).await;
    let secs = started.elapsed().as_secs_f64();
    let after_full = peak_rss();
    assert_eq!(
        (full.mode, full.inserted),
        (Some(LoadMode::Full), rows as u64)
    );
    assert!(
        full.files_added > 1,
        "files are bounded: {}",
        full.files_added
    );
    assert_eq!(
        replicator_ingest::count_target(&target).await.unwrap(),
        rows as u64
    );
    eprintln!(
        "full load: {rows} rows in {secs:.1}s ({:.0} rows/s), {} files, {:.1} MiB; peak RSS {:.0} MiB (before {:.0} MiB)",
        rows as f64 / secs,
        full.files_added,
        full.bytes_added as f64 / 1048576.0,
        after_full as f64 / 1048576.0,
        before as f64 / 1048576.0,
    );

    pg_exec(
        &pool,
        &format!(
            "UPDATE {t} SET qty = -1 WHERE id % 100 = 0; DELETE FROM {t} WHERE id % 1000 = 1;"
        ),
    )
    .await;
    let started = std::time::Instant::now();
    let merged = run(&def, &c, &root, &opts).await;
    let secs = started.elapsed().as_secs_f64();
    let after_merge = peak_rss();
    assert_eq!(
        (merged.updated, merged.deleted, merged.inserted),
        (rows as u64 / 100, rows as u64 / 1000, 0)
    );
    assert_eq!(
        replicator_ingest::count_target(&target).await.unwrap(),
        (rows - rows / 1000) as u64
    );
    eprintln!(
        "merge (1% updated, 0.1% deleted): {secs:.1}s, {} files rewritten, {} rows copied, {:.1} MiB spilled; peak RSS {:.0} MiB",
        merged.files_removed,
        merged.rewritten_rows,
        merged.spilled_bytes as f64 / 1048576.0,
        after_merge as f64 / 1048576.0,
    );
    // Sanity bound: the budget plus the runtime, drivers and a debug build's overhead; the
    // table itself (~100 MiB as Arrow) must not be held.
    assert!(
        after_merge < budget + (256 << 20),
        "peak RSS {} MiB",
        after_merge >> 20
    );
    pg_exec(&pool, &format!("DROP TABLE {t}")).await;
}
