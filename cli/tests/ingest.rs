//! Ingestion as a user runs it (docs/ingest.md): a config's `ingest` section of PostgreSQL,
//! MariaDB and CSV sources, run by `replicator ingest` on the embedded default and by a
//! fleet of `replicator serve` processes over RabbitMQ with PostgreSQL state. Each load is
//! a task of the run like a clone: a full load first, a merge by key afterwards, no commit
//! when nothing changed, the watermark kept in the state store, and the seed's validation
//! (row counts, primary-key consistency) by the reconciler.

mod common;

use std::path::{Path, PathBuf};

use common::fleet::Fleet;
use common::*;
use replicator_lake::TableLocation;
use replicator_lake::inspect::{read_batches, sorted_rows};
use sqlx::Connection;

const PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
const MYSQL_URL: &str = "mysql://root@127.0.0.1:3306/test";

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

async fn pg(sql: &str) {
    let mut c = sqlx::PgConnection::connect(PG_URL)
        .await
        .expect("the machine's PostgreSQL (127.0.0.1:5432, database test)");
    sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
}

async fn mysql(sql: &str) {
    let mut c = sqlx::MySqlConnection::connect(MYSQL_URL)
        .await
        .expect("the machine's MariaDB (127.0.0.1:3306, database test)");
    sqlx::raw_sql(sql).execute(&mut c).await.unwrap();
}

/// A table of `n` rows: id, name, amount numeric(10,2), updated_at.
async fn pg_table(t: &str, n: i64) {
    pg(&format!(
        "CREATE TABLE {t} (id bigint PRIMARY KEY, name text, amount numeric(10,2), updated_at timestamptz NOT NULL);
         INSERT INTO {t} SELECT g, 'n' || g, g * 1.5, timestamptz '2026-01-01 00:00:00+00' + g * interval '1 second'
         FROM generate_series(1, {n}) g;"
    ))
    .await;
}

/// A config in `dir` whose sources read their connection URLs from files (a reference, as
/// every process of a fleet can read it).
fn write_config(dir: &Path, head: &str, sources: &str) -> PathBuf {
    std::fs::write(dir.join("pg.url"), PG_URL).unwrap();
    std::fs::write(dir.join("mysql.url"), MYSQL_URL).unwrap();
    let config = dir.join("replicator.yaml");
    std::fs::write(&config, format!("{head}\ningest:\n  sources:\n{sources}",)).unwrap();
    config
}

fn embedded_head(dir: &Path) -> String {
    format!(
        "target: {{ root: ./lake }}\nstate: {{ url: \"sqlite://{}/state.db\" }}\n\
         retry: {{ max_attempts: 2, base_delay_ms: 50, max_delay_ms: 200 }}",
        dir.display()
    )
}

fn ingest_json(config: &Path, extra: &[&str]) -> (serde_json::Value, bool) {
    let mut args = vec!["ingest", config.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    let out = replicator(&args);
    let done = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(&out), stderr(&out)));
    (done, out.status.success())
}

/// The summary row of `table`.
fn row<'a>(done: &'a serde_json::Value, table: &str) -> &'a serde_json::Value {
    done["summary"]["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == table)
        .unwrap_or_else(|| panic!("no {table} in {done}"))
}

async fn rows(path: &Path) -> Vec<String> {
    let t = TableLocation::parse(path.to_str().unwrap()).unwrap();
    sorted_rows(&read_batches(&t, None).await.unwrap()).unwrap()
}

async fn version(path: &Path) -> u64 {
    let t = TableLocation::parse(path.to_str().unwrap()).unwrap();
    replicator_lake::inspect::table_info(&t, None)
        .await
        .unwrap()
        .version
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_and_mariadb_load_merge_and_stand_still_on_the_embedded_default() {
    let dir = tempfile::tempdir().unwrap();
    let (p, m) = (unique("cli_pg"), unique("cli_my"));
    pg_table(&p, 300).await;
    mysql(&format!(
        "CREATE TABLE {m} (id bigint PRIMARY KEY, name varchar(40), amount decimal(10,2));
         INSERT INTO {m} (id, name, amount) SELECT seq, CONCAT('n', seq), seq * 2.25 FROM seq_1_to_300;"
    ))
    .await;
    let config = write_config(
        dir.path(),
        &embedded_head(dir.path()),
        &format!(
            "    - {{ type: postgres, connection: \"file:{d}/pg.url\", table: {p}, primary_key: [id], target: pg/{p}, hard_deletes: true }}\n\
             \x20   - {{ type: mysql, connection: \"file:{d}/mysql.url\", table: {m}, primary_key: [id], target: my/{m}, hard_deletes: true }}\n",
            d = dir.path().display()
        ),
    );

    // A dry run opens both sources and says what each would do.
    let out = replicator(&["ingest", config.to_str().unwrap(), "--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!("ingest postgres {p}: full load (no table yet)")),
        "{text}"
    );
    assert!(
        text.contains(&format!("ingest mysql {m}: full load")),
        "{text}"
    );
    assert!(
        !dir.path().join("lake").exists(),
        "a dry run writes nothing"
    );

    // First run: full loads, each validated by the reconciler.
    let (done, ok) = ingest_json(&config, &[]);
    assert!(ok, "{done}");
    for t in [format!("pg/{p}"), format!("my/{m}")] {
        let r = row(&done, &t);
        assert_eq!(r["status"], "succeeded", "{r}");
        assert_eq!(r["detail"], "full load: 300 rows", "{r}");
        assert_eq!(
            (r["source_rows"].as_u64(), r["target_rows"].as_u64()),
            (Some(300), Some(300)),
            "{r}"
        );
    }
    let pg_target = dir.path().join(format!("lake/pg/{p}"));
    let my_target = dir.path().join(format!("lake/my/{m}"));
    let v1 = (version(&pg_target).await, version(&my_target).await);

    // 100 updates, 50 inserts, 20 deletes in each source.
    pg(&format!(
        "UPDATE {p} SET name = 'changed-' || id, updated_at = now() WHERE id <= 100;
         INSERT INTO {p} SELECT g, 'new' || g, g, now() FROM generate_series(301, 350) g;
         DELETE FROM {p} WHERE id BETWEEN 281 AND 300;"
    ))
    .await;
    mysql(&format!(
        "UPDATE {m} SET name = CONCAT('changed-', id) WHERE id <= 100;
         INSERT INTO {m} (id, name, amount) SELECT seq, CONCAT('new', seq), seq FROM seq_301_to_350;
         DELETE FROM {m} WHERE id BETWEEN 281 AND 300;"
    ))
    .await;
    let (done, ok) = ingest_json(&config, &[]);
    assert!(ok, "{done}");
    for t in [format!("pg/{p}"), format!("my/{m}")] {
        let r = row(&done, &t);
        assert_eq!(
            r["detail"],
            "merge by key and row hash: 330 rows read, 50 inserted, 100 updated, 20 deleted",
            "{r}"
        );
        assert_eq!(
            (r["source_rows"].as_u64(), r["target_rows"].as_u64()),
            (Some(330), Some(330)),
            "{r}"
        );
    }
    // Row for row what the sources hold (read back with delta-rs).
    let pg_rows = rows(&pg_target).await;
    assert_eq!(pg_rows.len(), 330);
    assert!(
        pg_rows.iter().any(|r| r.contains("changed-7")),
        "{pg_rows:?}"
    );
    assert!(
        !pg_rows
            .iter()
            .any(|r| r.starts_with("290|") || r.contains("n290|"))
    );
    let my_rows = rows(&my_target).await;
    assert_eq!(my_rows.len(), 330);
    assert!(my_rows.iter().any(|r| r.contains("new350")), "{my_rows:?}");

    // Nothing changed: no commit on either table.
    let v2 = (version(&pg_target).await, version(&my_target).await);
    assert_eq!((v2.0, v2.1), (v1.0 + 1, v1.1 + 1));
    let (done, ok) = ingest_json(&config, &[]);
    assert!(ok, "{done}");
    assert_eq!(
        row(&done, &format!("pg/{p}"))["detail"],
        "unchanged (330 rows read)"
    );
    assert_eq!((version(&pg_target).await, version(&my_target).await), v2);

    pg(&format!("DROP TABLE {p}")).await;
    mysql(&format!("DROP TABLE {m}")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watermark_is_kept_between_runs_and_a_bad_source_stops_only_its_table() {
    let dir = tempfile::tempdir().unwrap();
    let (w, bad) = (unique("cli_wm"), unique("cli_bad"));
    pg_table(&w, 100).await;
    pg(&format!("CREATE TABLE {bad} (id bigint PRIMARY KEY, span interval); INSERT INTO {bad} VALUES (1, '1 day');")).await;
    // Files too: a CSV drop folder.
    let drops = dir.path().join("landing/orders");
    std::fs::create_dir_all(&drops).unwrap();
    std::fs::write(drops.join("a.csv"), "id,qty\n1,5\n2,7\n").unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "{}\nsource: {{ root: ./landing }}",
            embedded_head(dir.path())
        ),
        &format!(
            "    - {{ type: postgres, connection: \"file:{d}/pg.url\", table: {w}, primary_key: [id], watermark: updated_at, target: wm }}\n\
             \x20   - {{ type: postgres, connection: \"file:{d}/pg.url\", table: {bad}, primary_key: [id], target: bad }}\n\
             \x20   - {{ type: csv, path: orders, primary_key: [id], target: orders }}\n",
            d = dir.path().display()
        ),
    );
    let (done, ok) = ingest_json(&config, &[]);
    assert!(!ok, "a failed table fails the run: {done}");
    let b = row(&done, "bad");
    assert_eq!(b["status"], "failed");
    let err = b["error"].as_str().unwrap();
    assert!(err.contains("column `span` has type interval"), "{err}");
    assert!(
        !err.contains("postgres://"),
        "never a connection URL: {err}"
    );
    assert_eq!(row(&done, "wm")["status"], "succeeded");
    assert_eq!(row(&done, "orders")["detail"], "full load: 2 rows");

    // Three rows move past the watermark: only they are read.
    pg(&format!(
        "UPDATE {w} SET name = 'late', updated_at = timestamptz '2027-01-01 00:00:00+00' WHERE id IN (1, 2);
         INSERT INTO {w} VALUES (101, 'n101', 1, timestamptz '2027-01-02 00:00:00+00');"
    ))
    .await;
    std::fs::write(drops.join("b.csv"), "id,qty\n3,1\n").unwrap();
    let (done, _) = ingest_json(&config, &[]);
    assert_eq!(
        row(&done, "wm")["detail"],
        "merge after the watermark: 3 rows read, 1 inserted, 2 updated, 0 deleted"
    );
    assert_eq!(row(&done, "wm")["target_rows"].as_u64(), Some(101));
    assert_eq!(row(&done, "orders")["target_rows"].as_u64(), Some(3));
    // A malformed CSV row fails that table naming file and line; nothing is half-loaded.
    std::fs::write(drops.join("c.csv"), "id,qty\n4,1\n5,x\n").unwrap();
    let before = version(&dir.path().join("lake/orders")).await;
    let (done, _) = ingest_json(&config, &[]);
    let o = row(&done, "orders");
    assert_eq!(o["status"], "failed", "{o}");
    let err = o["error"].as_str().unwrap();
    assert!(err.contains("c.csv") && err.contains("line 3"), "{err}");
    assert_eq!(version(&dir.path().join("lake/orders")).await, before);

    pg(&format!("DROP TABLE {w}; DROP TABLE {bad}")).await;
}

#[test]
fn a_bad_definition_is_refused_by_key_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &embedded_head(dir.path()),
        "    - { type: postgres, connection: \"postgres://u:hunter2@db/x\", table: t, primary_key: [id], target: t }\n",
    );
    let out = replicator(&["ingest", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("ingest.sources[0].connection"), "{err}");
    assert!(!err.contains("hunter2"), "the value is never echoed: {err}");

    let config = write_config(
        dir.path(),
        &embedded_head(dir.path()),
        "    - { type: csv, path: x, primary_key: [], target: t }\n",
    );
    let out = replicator(&["ingest", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("ingest.sources[0].primary_key"),
        "{}",
        stderr(&out)
    );
}

/// The same ingestion through a fleet: separate planner, cloner, reconciler and notifier
/// processes over RabbitMQ, state in PostgreSQL, beside two cloned tables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingestion_runs_through_the_fleet_beside_clones() {
    let t = unique("fleet_ing");
    pg_table(&t, 500).await;
    let mut fleet = Fleet::new(2, "").await;
    let d = fleet.dir.path().to_owned();
    std::fs::write(d.join("pg.url"), PG_URL).unwrap();
    let mut text = std::fs::read_to_string(&fleet.config).unwrap();
    text.push_str(&format!(
        "ingest:\n  sources:\n    - {{ type: postgres, connection: \"file:{}/pg.url\", table: {t}, primary_key: [id], target: ingested/{t}, hard_deletes: true }}\n",
        d.display()
    ));
    std::fs::write(&fleet.config, text).unwrap();
    fleet.start_all();

    let run = fleet.submit();
    let (code, summary) = fleet.watch(run);
    assert_eq!(code, 0, "{summary}\n{}", fleet.logs());
    let r = row(
        &serde_json::json!({ "summary": summary.clone() }),
        &format!("ingested/{t}"),
    )
    .clone();
    assert_eq!(r["status"], "succeeded", "{r}");
    assert_eq!(r["target_rows"].as_u64(), Some(500), "{r}");
    fleet.verify_targets().await;

    pg(&format!(
        "UPDATE {t} SET name = 'x' WHERE id <= 10; DELETE FROM {t} WHERE id > 495;"
    ))
    .await;
    let run = fleet.submit();
    let (code, summary) = fleet.watch(run);
    assert_eq!(code, 0, "{summary}");
    let r = row(
        &serde_json::json!({ "summary": summary.clone() }),
        &format!("ingested/{t}"),
    )
    .clone();
    assert_eq!(
        r["detail"], "merge by key and row hash: 495 rows read, 0 inserted, 10 updated, 5 deleted",
        "{r}"
    );
    assert_eq!(
        rows(&d.join(format!("lake/target/ingested/{t}")))
            .await
            .len(),
        495
    );
    fleet.assert_results_recorded_once(run).await;
    fleet.cleanup().await;
    pg(&format!("DROP TABLE {t}")).await;
}
