//! Ingestion from the machine's MariaDB (127.0.0.1:3306, root, database `test`): each test
//! creates its own table and drops it at the end.

mod common;

use common::*;
use replicator_ingest::{IngestOptions, LoadMode, SourceKind, check_keys};

async fn drop_table(pool: &sqlx::MySqlPool, t: &str) {
    my_exec(pool, &format!("DROP TABLE IF EXISTS {t}")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_full_load_then_merge_by_key_hash() {
    let pool = mysql().await;
    let t = unique("ingest_my");
    my_exec(
        &pool,
        &format!(
            "CREATE TABLE {t} (
            id BIGINT PRIMARY KEY, name VARCHAR(50), amount DECIMAL(12,2), flag TINYINT(1),
            born DATE, seen DATETIME(6), at TIMESTAMP(6) NULL, uid CHAR(36), doc JSON,
            small SMALLINT UNSIGNED, tiny TINYINT, score DOUBLE, ratio FLOAT, raw BLOB,
            big BIGINT UNSIGNED, kind ENUM('a','b'))"
        ),
    )
    .await;
    // 1000 rows; every non-key column NULL in one row of ten.
    my_exec(
        &pool,
        &format!(
            "INSERT INTO {t} SELECT seq,
            IF(seq % 10 = 0, NULL, CONCAT('name-', seq)),
            IF(seq % 10 = 0, NULL, seq * 1.25 - 500),
            IF(seq % 10 = 0, NULL, seq % 2 = 0),
            IF(seq % 10 = 0, NULL, DATE_ADD('2020-01-01', INTERVAL seq DAY)),
            IF(seq % 10 = 0, NULL, DATE_ADD('2024-01-01 00:00:00.123456', INTERVAL seq MINUTE)),
            IF(seq % 10 = 0, NULL, DATE_ADD('2024-01-01 00:00:00', INTERVAL seq SECOND)),
            IF(seq % 10 = 0, NULL, UUID()),
            IF(seq % 10 = 0, NULL, JSON_OBJECT('g', seq)),
            IF(seq % 10 = 0, NULL, seq % 60000),
            IF(seq % 10 = 0, NULL, CAST(seq AS SIGNED) % 100 - 50),
            IF(seq % 10 = 0, NULL, seq / 3),
            IF(seq % 10 = 0, NULL, seq / 4),
            IF(seq % 10 = 0, NULL, UNHEX(MD5(seq))),
            IF(seq % 10 = 0, NULL, 18446744073709551615 - seq),
            IF(seq % 10 = 0, NULL, IF(seq % 2 = 0, 'a', 'b'))
         FROM seq_1_to_1000"
        ),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let root = loc(dir.path());
    let target = root.child(&t).unwrap();
    let mut def = sql_def(SourceKind::Mysql, &t, &["id"]);
    let c = ctx(MYSQL_URL);
    let opts = IngestOptions::default();

    let full = run(&def, &c, &root, &opts).await;
    assert_eq!((full.mode, full.inserted), (Some(LoadMode::Full), 1000));
    let rows = target_rows(&target).await;
    assert_eq!(rows, source_rows(&def, &c).await);
    let r7 = rows.iter().find(|r| r.starts_with("id=7|")).unwrap();
    for part in [
        "amount=-491.25",
        "flag=false",
        "born=2020-01-08",
        "seen=2024-01-01T00:07:00.123456",
        "at=2024-01-01T00:00:07",
        "small=7|",
        "tiny=-43|",
        "big=18446744073709551608",
        "kind=b",
    ] {
        assert!(r7.contains(part), "{part} in {r7}");
    }
    let r10 = rows.iter().find(|r| r.starts_with("id=10|")).unwrap();
    assert!(
        r10.contains("name=NULL|") && r10.contains("big=NULL"),
        "{r10}"
    );

    let v = version(&target).await;
    let same = run(&def, &c, &root, &opts).await;
    assert!(!same.committed);
    assert_eq!(version(&target).await, v);

    my_exec(
        &pool,
        &format!(
            "UPDATE {t} SET name = CONCAT('changed-', id) WHERE id <= 100;
         INSERT INTO {t} (id, name, amount) SELECT seq, 'new', 1.5 FROM seq_1001_to_1050;
         DELETE FROM {t} WHERE id BETWEEN 901 AND 920;"
        ),
    )
    .await;
    def.hard_deletes = true;
    let merged = run(&def, &c, &root, &opts).await;
    assert!(merged.committed);
    assert_eq!(
        (merged.updated, merged.inserted, merged.deleted),
        (100, 50, 20)
    );
    assert_eq!(target_rows(&target).await, source_rows(&def, &c).await);
    let v = version(&target).await;
    assert!(!run(&def, &c, &root, &opts).await.committed);
    assert_eq!(version(&target).await, v);

    let source = replicator_ingest::open(&def, &c).await.unwrap();
    let keys = check_keys(source.as_ref(), &target, &["id".into()], 64 << 20)
        .await
        .unwrap();
    assert!(keys.consistent(), "{keys:?}");
    assert_eq!(keys.target_rows, 1030);
    drop_table(&pool, &t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_watermark_query_and_unsupported_type() {
    let pool = mysql().await;
    let t = unique("ingest_mywm");
    my_exec(&pool, &format!(
        "CREATE TABLE {t} (id INT PRIMARY KEY, v VARCHAR(20), updated_at DATETIME(6) NOT NULL, d TIME);
         INSERT INTO {t} SELECT seq, CONCAT('v', seq), DATE_ADD('2025-01-01', INTERVAL seq SECOND), '10:00:00'
         FROM seq_1_to_200;"
    )).await;
    let c = ctx(MYSQL_URL);
    let def = sql_def(SourceKind::Mysql, &t, &["id"]);
    let err = replicator_ingest::open(&def, &c)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&t) && err.contains("`d`") && err.contains("time"),
        "{err}"
    );

    let mut q = def.clone();
    q.table = None;
    q.query = Some(format!("SELECT id, v, updated_at FROM {t}"));
    q.watermark = Some("updated_at".into());
    let dir = tempfile::tempdir().unwrap();
    let root = loc(dir.path());
    let full = run(&q, &c, &root, &IngestOptions::default()).await;
    assert_eq!(
        full.watermark.as_deref(),
        Some("2025-01-01 00:03:20.000000")
    );
    my_exec(
        &pool,
        &format!("UPDATE {t} SET v = 'again', updated_at = '2025-03-01 00:00:00' WHERE id <= 7"),
    )
    .await;
    let inc = run(
        &q,
        &c,
        &root,
        &IngestOptions {
            last_watermark: full.watermark.clone(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        (inc.mode, inc.source_rows, inc.updated),
        (Some(LoadMode::Watermark), 7, 7)
    );
    assert_eq!(
        target_rows(&root.child(&t).unwrap()).await,
        source_rows(&q, &c).await
    );

    // A query source too: with `hard_deletes`, the watermark run reads the query's keys
    // (`SELECT id FROM (query)`) and finds the rows deleted since.
    my_exec(&pool, &format!("DELETE FROM {t} WHERE id > 195")).await;
    q.hard_deletes = true;
    let del = run(
        &q,
        &c,
        &root,
        &IngestOptions {
            last_watermark: inc.watermark.clone(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        (del.mode, del.source_rows, del.deleted),
        (Some(LoadMode::Watermark), 0, 5)
    );
    assert_eq!(
        target_rows(&root.child(&t).unwrap()).await,
        source_rows(&q, &c).await
    );
    drop_table(&pool, &t).await;
}
