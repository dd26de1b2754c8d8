//! Ingestion from the machine's PostgreSQL (127.0.0.1:5432, trust, database `test`): each
//! test creates its own table and drops it at the end.

mod common;

use common::*;
use replicator_ingest::{IngestError, IngestOptions, LoadMode, SourceKind, check_keys};

/// Every supported type, with NULLs in every non-key column of one row in ten.
async fn create_typed(pool: &sqlx::PgPool, t: &str, rows: i64) {
    pg_exec(pool, &format!(
        "CREATE TABLE {t} (
            id bigint PRIMARY KEY, name text, code varchar(8), amount numeric(12,2),
            big numeric, flag boolean, born date, seen timestamp, at timestamptz, uid uuid,
            doc jsonb, small smallint, mid integer, ratio real, score double precision,
            raw bytea);
         INSERT INTO {t} SELECT g,
            CASE WHEN g % 10 = 0 THEN NULL ELSE 'name-' || g END,
            CASE WHEN g % 10 = 0 THEN NULL ELSE 'c' || (g % 7) END,
            CASE WHEN g % 10 = 0 THEN NULL ELSE g * 1.25 - 500 END,
            CASE WHEN g % 10 = 0 THEN NULL ELSE g::numeric * 1000000000000000000000000 END,
            CASE WHEN g % 10 = 0 THEN NULL ELSE g % 2 = 0 END,
            CASE WHEN g % 10 = 0 THEN NULL ELSE date '2020-01-01' + g::int END,
            CASE WHEN g % 10 = 0 THEN NULL ELSE timestamp '2024-01-01 00:00:00.123456' + g * interval '1 minute' END,
            CASE WHEN g % 10 = 0 THEN NULL ELSE timestamptz '2024-01-01 00:00:00+02' + g * interval '1 second' END,
            CASE WHEN g % 10 = 0 THEN NULL ELSE md5(g::text)::uuid END,
            CASE WHEN g % 10 = 0 THEN NULL ELSE jsonb_build_object('g', g) END,
            CASE WHEN g % 10 = 0 THEN NULL ELSE (g % 100)::smallint END,
            CASE WHEN g % 10 = 0 THEN NULL ELSE (g * 3)::int END,
            CASE WHEN g % 10 = 0 THEN NULL ELSE (g / 4.0)::real END,
            CASE WHEN g % 10 = 0 THEN NULL ELSE g / 3.0 END,
            CASE WHEN g % 10 = 0 THEN NULL ELSE decode(md5(g::text), 'hex') END
         FROM generate_series(1, {rows}) g;"
    )).await;
}

/// 100 updates (ids 1–100), 50 inserts (1001–1050), 20 deletes (901–920).
async fn change_170(pool: &sqlx::PgPool, t: &str) {
    pg_exec(
        pool,
        &format!(
            "UPDATE {t} SET name = 'changed-' || id WHERE id <= 100;
         INSERT INTO {t} (id, name, amount) SELECT g, 'new', 1.5 FROM generate_series(1001, 1050) g;
         DELETE FROM {t} WHERE id BETWEEN 901 AND 920;"
        ),
    )
    .await;
}

async fn drop_table(pool: &sqlx::PgPool, t: &str) {
    pg_exec(pool, &format!("DROP TABLE IF EXISTS {t}")).await;
}

/// A typed table of 1000 rows named after `prefix`, its source definition and a target root.
struct Typed {
    pool: sqlx::PgPool,
    t: String,
    _dir: tempfile::TempDir,
    root: replicator_lake::TableLocation,
    target: replicator_lake::TableLocation,
    def: replicator_ingest::SourceDefinition,
    c: replicator_ingest::SourceContext,
}

async fn typed(prefix: &str) -> Typed {
    let pool = pg().await;
    let t = unique(prefix);
    create_typed(&pool, &t, 1000).await;
    let dir = tempfile::tempdir().unwrap();
    let root = loc(dir.path());
    let target = root.child(&t).unwrap();
    let def = sql_def(SourceKind::Postgres, &t, &["id"]);
    Typed {
        pool,
        t,
        _dir: dir,
        root,
        target,
        def,
        c: ctx(PG_URL),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_full_load_then_merge_by_key_hash() {
    let Typed {
        pool,
        t,
        _dir,
        root,
        target,
        mut def,
        c,
    } = typed("ingest_pg").await;
    let opts = IngestOptions::default();

    let full = run(&def, &c, &root, &opts).await;
    assert_eq!(full.mode, Some(LoadMode::Full));
    assert!(full.committed);
    assert_eq!((full.source_rows, full.inserted), (1000, 1000));
    let rows = target_rows(&target).await;
    assert_eq!(rows.len(), 1000);
    assert_eq!(rows, source_rows(&def, &c).await);
    // Values read back: a decimal at its scale, a timestamp with time zone in UTC, a NULL.
    let r7 = rows.iter().find(|r| r.starts_with("id=7|")).unwrap();
    assert!(r7.contains("amount=-491.25"), "{r7}");
    assert!(r7.contains("at=2023-12-31T22:00:07"), "{r7}");
    assert!(
        r7.contains("uid=8f14e45f-ceea-167a-5a36-dedd4bea2543"),
        "{r7}"
    );
    assert!(r7.contains("doc={\"g\": 7}"), "{r7}");
    assert!(r7.contains("big=7000000000000000000000000"), "{r7}");
    let r10 = rows.iter().find(|r| r.starts_with("id=10|")).unwrap();
    assert!(
        r10.contains("name=NULL|") && r10.contains("raw=NULL"),
        "{r10}"
    );

    // Nothing changed: no commit.
    let v = version(&target).await;
    let same = run(&def, &c, &root, &opts).await;
    assert_eq!(same.mode, Some(LoadMode::KeyHash));
    assert!(!same.committed);
    assert_eq!((same.inserted, same.updated, same.deleted), (0, 0, 0));
    assert_eq!(version(&target).await, v);

    // 100 updates, 50 inserts, 20 deletes.
    change_170(&pool, &t).await;
    let soft = run(&def, &c, &root, &opts).await;
    assert!(soft.committed);
    assert_eq!(
        (
            soft.updated,
            soft.inserted,
            soft.deleted,
            soft.gone_from_source
        ),
        (100, 50, 0, 20)
    );
    assert_eq!(target_rows(&target).await.len(), 1050, "deletes kept");
    let info = actions(&target, soft.version)
        .into_iter()
        .find_map(|a| a.get("commitInfo").cloned())
        .unwrap();
    assert_eq!(info["operation"], "MERGE");
    let m = &info["operationMetrics"];
    assert_eq!(
        (
            &m["numTargetRowsUpdated"],
            &m["numTargetRowsInserted"],
            &m["numTargetRowsDeleted"]
        ),
        (
            &serde_json::json!(100),
            &serde_json::json!(50),
            &serde_json::json!(0)
        ),
        "{info}"
    );

    def.hard_deletes = true;
    let hard = run(&def, &c, &root, &opts).await;
    assert!(hard.committed);
    assert_eq!((hard.updated, hard.inserted, hard.deleted), (0, 0, 20));
    assert_eq!(target_rows(&target).await, source_rows(&def, &c).await);
    let v = version(&target).await;
    let again = run(&def, &c, &root, &opts).await;
    assert!(!again.committed);
    assert_eq!(version(&target).await, v);

    // Validation: counts and key consistency.
    let source = replicator_ingest::open(&def, &c).await.unwrap();
    assert_eq!(
        replicator_ingest::count_source(source.as_ref())
            .await
            .unwrap(),
        1030
    );
    assert_eq!(
        replicator_ingest::count_target(&target).await.unwrap(),
        1030
    );
    let keys = check_keys(source.as_ref(), &target, &["id".into()], 64 << 20)
        .await
        .unwrap();
    assert!(keys.consistent(), "{keys:?}");
    assert_eq!((keys.source_rows, keys.target_rows), (1030, 1030));
    drop_table(&pool, &t).await;
}

/// The log's actions of commit `version`.
fn actions(target: &replicator_lake::TableLocation, version: u64) -> Vec<serde_json::Value> {
    std::fs::read_to_string(
        target
            .local_dir()
            .unwrap()
            .join(format!("_delta_log/{version:020}.json")),
    )
    .unwrap()
    .lines()
    .map(|l| serde_json::from_str(l).unwrap())
    .collect()
}

/// With `deletion_vectors: true` the table is created with the feature, and a merge marks the
/// updated and deleted rows in deletion vectors (old vectors kept) instead of rewriting files;
/// what is read back — by the kernel, the key check and the next merge — is the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_merge_into_deletion_vectors() {
    let Typed {
        pool,
        t,
        _dir,
        root,
        target,
        mut def,
        c,
    } = typed("ingest_pg_dv").await;
    def.hard_deletes = true;
    def.deletion_vectors = true;
    let opts = IngestOptions::default();

    let full = run(&def, &c, &root, &opts).await;
    assert!(full.committed);
    let created = actions(&target, 0);
    let protocol = created.iter().find_map(|a| a.get("protocol")).unwrap();
    for features in ["readerFeatures", "writerFeatures"] {
        assert!(
            protocol[features]
                .as_array()
                .unwrap()
                .contains(&serde_json::json!("deletionVectors")),
            "{protocol}"
        );
    }

    // 100 updates, 50 inserts, 20 deletes: no file rewritten, rows marked instead.
    change_170(&pool, &t).await;
    let merged = run(&def, &c, &root, &opts).await;
    assert_eq!(
        (
            merged.updated,
            merged.inserted,
            merged.deleted,
            merged.rewritten_rows
        ),
        (100, 50, 20, 0)
    );
    assert!(merged.deletion_vectors >= 1, "{merged:?}");
    assert_eq!(target_rows(&target).await, source_rows(&def, &c).await);
    let log = actions(&target, merged.version);
    let readded: Vec<_> = log
        .iter()
        .filter_map(|a| a.get("add"))
        .filter(|a| a.get("deletionVector").is_some())
        .collect();
    assert_eq!(readded.len() as u64, merged.deletion_vectors);
    assert_eq!(readded[0]["deletionVector"]["cardinality"], 120);
    let stats: serde_json::Value =
        serde_json::from_str(readded[0]["stats"].as_str().unwrap()).unwrap();
    assert_eq!(stats["tightBounds"], false);

    // Again: rows of the loaded file (its vector grows: the old rows stay deleted, new ones
    // join) and rows the first merge wrote (their file gets its first vector).
    pg_exec(
        &pool,
        &format!(
            "UPDATE {t} SET name = 'again-' || id WHERE id BETWEEN 101 AND 110 OR id <= 5;
         DELETE FROM {t} WHERE id BETWEEN 121 AND 130;"
        ),
    )
    .await;
    let second = run(&def, &c, &root, &opts).await;
    assert_eq!((second.updated, second.deleted), (15, 10));
    assert_eq!(target_rows(&target).await, source_rows(&def, &c).await);
    let log = actions(&target, second.version);
    let cardinality = log
        .iter()
        .filter_map(|a| a.get("add"))
        .filter_map(|a| a.get("deletionVector"))
        .map(|d| d["cardinality"].as_i64().unwrap())
        .max()
        .unwrap();
    assert_eq!(
        cardinality,
        120 + 20,
        "the first merge's rows and this one's"
    );

    // Nothing changed: no commit; the checks the reconciler runs agree.
    let v = version(&target).await;
    assert!(!run(&def, &c, &root, &opts).await.committed);
    assert_eq!(version(&target).await, v);
    let source = replicator_ingest::open(&def, &c).await.unwrap();
    let count = replicator_ingest::count_source(source.as_ref())
        .await
        .unwrap();
    assert_eq!(count, 1020);
    assert_eq!(
        replicator_ingest::count_target(&target).await.unwrap(),
        count
    );
    let keys = check_keys(source.as_ref(), &target, &["id".into()], 64 << 20)
        .await
        .unwrap();
    assert!(keys.consistent(), "{keys:?}");
    assert_eq!(keys.target_rows, count);

    // Vectors switched off (they stay in the files): the next merge rewrites the touched
    // files copy-on-write, leaving out the rows their old vectors removed.
    let table = deltalake::DeltaTableBuilder::from_url(target.url().clone())
        .unwrap()
        .load()
        .await
        .unwrap();
    let snap = table.snapshot().unwrap();
    {
        use deltalake::kernel::MetadataExt;
        let off = snap
            .metadata()
            .clone()
            .add_config_key("delta.enableDeletionVectors".into(), "false".into())
            .unwrap();
        deltalake::kernel::transaction::CommitBuilder::default()
            .with_actions(vec![deltalake::kernel::Action::Metadata(off)])
            .build(
                Some(snap),
                table.log_store(),
                deltalake::protocol::DeltaOperation::SetTableProperties {
                    properties: Default::default(),
                },
            )
            .await
            .unwrap();
    }
    pg_exec(
        &pool,
        &format!("UPDATE {t} SET name = 'third-' || id WHERE id BETWEEN 201 AND 205"),
    )
    .await;
    let rewritten = run(&def, &c, &root, &opts).await;
    assert_eq!((rewritten.updated, rewritten.deletion_vectors), (5, 0));
    assert!(rewritten.rewritten_rows > 0);
    assert_eq!(target_rows(&target).await, source_rows(&def, &c).await);

    // Every row gone: the files are removed, no vector is written.
    pg_exec(&pool, &format!("DELETE FROM {t}")).await;
    let emptied = run(&def, &c, &root, &opts).await;
    assert_eq!((emptied.deleted, emptied.deletion_vectors), (count, 0));
    assert!(target_rows(&target).await.is_empty());
    drop_table(&pool, &t).await;
}

/// The key-only scan (binary `COPY` for integer and text keys) reads what a plain `SELECT`
/// of the same columns reads: every type, NULLs, multi-byte text, rows across batches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_key_scan_reads_what_select_reads() {
    let pool = pg().await;
    let t = unique("ingest_pg_keys");
    pg_exec(&pool, &format!(
        "CREATE TABLE {t} (a bigint, b text, c smallint, d integer, e varchar(5), f uuid, v text);
         INSERT INTO {t} SELECT g, 'ключ-' || g, (g % 300)::smallint, -g, 'e' || (g % 7),
                md5(g::text)::uuid, 'x'
           FROM generate_series(1, 2500) g;
         INSERT INTO {t} VALUES (NULL, NULL, NULL, NULL, NULL, NULL, 'nulls'), (-9223372036854775808, '', -32768, 2147483647, '', NULL, 'edges');"
    )).await;
    let def = sql_def(SourceKind::Postgres, &t, &["a"]);
    let c = ctx(PG_URL);
    let source = replicator_ingest::open(&def, &c).await.unwrap();
    let keys: Vec<String> = ["a", "b", "c", "d", "e", "f"].map(String::from).to_vec();
    let scanned = collect(source.key_batches(&keys, 1000).await).await;
    assert!(scanned.len() >= 3, "rows across batches");
    let all = collect(source.batches(None, 1000).await).await;
    let projected: Vec<_> = all
        .iter()
        .map(|b| b.project(&[0, 1, 2, 3, 4, 5]).unwrap())
        .collect();
    assert_eq!(scanned[0].schema(), projected[0].schema());
    assert_eq!(
        replicator_lake::inspect::sorted_rows(&scanned).unwrap(),
        replicator_lake::inspect::sorted_rows(&projected).unwrap()
    );
    drop_table(&pool, &t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_watermark_incremental() {
    let pool = pg().await;
    let t = unique("ingest_pgwm");
    pg_exec(&pool, &format!(
        "CREATE TABLE {t} (id int PRIMARY KEY, v text, updated_at timestamptz NOT NULL);
         INSERT INTO {t} SELECT g, 'v' || g, timestamptz '2025-01-01 00:00:00+00' + g * interval '1 second'
         FROM generate_series(1, 500) g;"
    )).await;
    let dir = tempfile::tempdir().unwrap();
    let root = loc(dir.path());
    let target = root.child(&t).unwrap();
    let mut def = sql_def(SourceKind::Postgres, &t, &["id"]);
    def.watermark = Some("updated_at".into());
    let c = ctx(PG_URL);
    let full = run(&def, &c, &root, &IngestOptions::default()).await;
    assert_eq!(
        full.watermark.as_deref(),
        Some("2025-01-01 00:08:20.000000")
    );

    pg_exec(&pool, &format!(
        "UPDATE {t} SET v = 'again', updated_at = timestamptz '2025-02-01 00:00:00+00' WHERE id <= 10;
         INSERT INTO {t} SELECT g, 'late', timestamptz '2025-02-01 00:00:01+00' FROM generate_series(501, 505) g;"
    )).await;
    let opts = IngestOptions {
        last_watermark: full.watermark.clone(),
        ..Default::default()
    };
    let inc = run(&def, &c, &root, &opts).await;
    assert_eq!(inc.mode, Some(LoadMode::Watermark));
    assert_eq!(
        inc.source_rows, 15,
        "only rows after the watermark are read"
    );
    assert_eq!((inc.updated, inc.inserted, inc.deleted), (10, 5, 0));
    assert_eq!(inc.watermark.as_deref(), Some("2025-02-01 00:00:01.000000"));
    assert_eq!(target_rows(&target).await, source_rows(&def, &c).await);

    let v = version(&target).await;
    let opts = IngestOptions {
        last_watermark: inc.watermark.clone(),
        ..Default::default()
    };
    let none = run(&def, &c, &root, &opts).await;
    assert_eq!((none.source_rows, none.committed), (0, false));
    assert_eq!(none.watermark, inc.watermark, "the watermark is kept");
    assert_eq!(version(&target).await, v);

    // Deletes leave no newer row behind: without `hard_deletes` the watermark run does not
    // look for them; with it, a key-only scan of the source finds them.
    pg_exec(&pool, &format!(
        "DELETE FROM {t} WHERE id IN (20, 21, 22);
         UPDATE {t} SET v = 'third', updated_at = timestamptz '2025-03-01 00:00:00+00' WHERE id = 30;"
    )).await;
    let opts = IngestOptions {
        last_watermark: none.watermark.clone(),
        ..Default::default()
    };
    let kept = run(&def, &c, &root, &opts).await;
    assert_eq!(kept.mode, Some(LoadMode::Watermark));
    assert_eq!((kept.source_rows, kept.updated, kept.deleted), (1, 1, 0));
    assert_eq!(kept.gone_from_source, 0, "no key scan without hard_deletes");
    assert_eq!(target_rows(&target).await.len(), 505);

    def.hard_deletes = true;
    let opts = IngestOptions {
        last_watermark: kept.watermark.clone(),
        ..Default::default()
    };
    let deleted = run(&def, &c, &root, &opts).await;
    assert_eq!(deleted.mode, Some(LoadMode::Watermark));
    assert_eq!(
        deleted.source_rows, 0,
        "no row is newer: only the keys were read"
    );
    assert_eq!(
        (
            deleted.inserted,
            deleted.updated,
            deleted.deleted,
            deleted.gone_from_source
        ),
        (0, 0, 3, 3)
    );
    assert!(deleted.committed);
    assert_eq!(target_rows(&target).await, source_rows(&def, &c).await);
    // And nothing more the next time.
    let opts = IngestOptions {
        last_watermark: deleted.watermark.clone(),
        ..Default::default()
    };
    let again = run(&def, &c, &root, &opts).await;
    assert_eq!((again.deleted, again.committed), (0, false));
    drop_table(&pool, &t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_schema_drift_adds_columns_and_refuses_type_changes() {
    let pool = pg().await;
    let t = unique("ingest_pgdrift");
    pg_exec(
        &pool,
        &format!(
            "CREATE TABLE {t} (id int PRIMARY KEY, name text);
         INSERT INTO {t} SELECT g, 'n' || g FROM generate_series(1, 100) g;"
        ),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let root = loc(dir.path());
    let target = root.child(&t).unwrap();
    let def = sql_def(SourceKind::Postgres, &t, &["id"]);
    let c = ctx(PG_URL);
    let opts = IngestOptions::default();
    run(&def, &c, &root, &opts).await;

    pg_exec(
        &pool,
        &format!("ALTER TABLE {t} ADD COLUMN note text; UPDATE {t} SET note = 'x' WHERE id <= 3;"),
    )
    .await;
    let added = run(&def, &c, &root, &opts).await;
    assert!(added.committed);
    assert_eq!(added.added_columns, ["note"]);
    assert_eq!(
        added.updated, 3,
        "rows whose new column is NULL are unchanged"
    );
    assert_eq!(target_rows(&target).await, source_rows(&def, &c).await);

    // A new timestamp without time zone needs a table feature the target lacks: refused.
    pg_exec(&pool, &format!("ALTER TABLE {t} ADD COLUMN seen timestamp")).await;
    let msg = replicator_ingest::ingest_definition(&def, &c, &root, &opts)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("`seen`") && msg.contains("timestampNtz"),
        "{msg}"
    );
    pg_exec(&pool, &format!("ALTER TABLE {t} DROP COLUMN seen")).await;

    pg_exec(
        &pool,
        &format!("ALTER TABLE {t} ALTER COLUMN name TYPE integer USING length(name)"),
    )
    .await;
    let v = version(&target).await;
    let err = replicator_ingest::ingest_definition(&def, &c, &root, &opts)
        .await
        .unwrap_err();
    assert!(matches!(err, IngestError::SchemaDrift { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&t)
            && msg.contains("`name`")
            && msg.contains("type changed from string to integer"),
        "{msg}"
    );
    assert!(!err.is_transient());
    assert_eq!(version(&target).await, v, "nothing committed");

    pg_exec(&pool, &format!("ALTER TABLE {t} DROP COLUMN id")).await;
    let msg = replicator_ingest::ingest_definition(&def, &c, &root, &opts)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains(&t) && msg.contains("`id`") && msg.contains("primary key"),
        "{msg}"
    );
    drop_table(&pool, &t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_query_source_and_refusals() {
    let pool = pg().await;
    let t = unique("ingest_pgq");
    pg_exec(
        &pool,
        &format!(
            "CREATE TABLE {t} (id int PRIMARY KEY, name text, span interval);
         INSERT INTO {t} SELECT g, 'n' || g, g * interval '1 hour' FROM generate_series(1, 50) g;"
        ),
    )
    .await;
    let c = ctx(PG_URL);
    // An unsupported type is refused by name, before any row moves.
    let def = sql_def(SourceKind::Postgres, &t, &["id"]);
    let err = replicator_ingest::open(&def, &c)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&t) && err.contains("`span`") && err.contains("interval"),
        "{err}"
    );

    // A query: its columns come through a temporary view.
    let mut q = sql_def(SourceKind::Postgres, &t, &["id"]);
    q.table = None;
    q.query = Some(format!(
        "SELECT id, upper(name) AS name, id * 2.5 AS x FROM {t} WHERE id <= 10"
    ));
    let dir = tempfile::tempdir().unwrap();
    let root = loc(dir.path());
    let r = run(&q, &c, &root, &IngestOptions::default()).await;
    assert_eq!(r.inserted, 10);
    let rows = target_rows(&root.child(&t).unwrap()).await;
    assert_eq!(rows.len(), 10);
    assert!(rows.contains(&"id=1|name=N1|x=2.5".to_owned()), "{rows:?}");

    // A password never appears in an error.
    let bad = ctx("postgres://postgres:supersecret@127.0.0.1:1/test");
    let err = replicator_ingest::open(&def, &bad).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(!err.to_string().contains("supersecret"), "{err}");
    drop_table(&pool, &t).await;
}
