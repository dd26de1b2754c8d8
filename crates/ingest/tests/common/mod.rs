//! Shared by the ingestion tests: the machine's PostgreSQL and MariaDB, unique table names,
//! and reading a Delta table back.
#![allow(dead_code)]

use replicator_ingest::definition::SourceOptions;
use replicator_ingest::{
    IngestOptions, IngestReport, SourceContext, SourceDefinition, SourceKind, ingest_definition,
};
use replicator_lake::TableLocation;
use replicator_lake::inspect::{read_batches, sorted_rows};

pub const PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
pub const MYSQL_URL: &str = "mysql://root@127.0.0.1:3306/test";

/// A table name no other test (or run) uses.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

pub async fn pg() -> sqlx::PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(PG_URL)
        .await
        .expect("the machine's PostgreSQL (127.0.0.1:5432, database test)")
}

pub async fn mysql() -> sqlx::MySqlPool {
    sqlx::mysql::MySqlPoolOptions::new()
        .max_connections(2)
        .connect(MYSQL_URL)
        .await
        .expect("the machine's MariaDB (127.0.0.1:3306, database test)")
}

/// A SQL source definition for `table`.
/// Run SQL (several statements allowed) on the machine's PostgreSQL.
pub async fn pg_exec(pool: &sqlx::PgPool, sql: &str) {
    sqlx::raw_sql(sql).execute(pool).await.unwrap();
}

/// Run SQL (several statements allowed) on the machine's MariaDB.
pub async fn my_exec(pool: &sqlx::MySqlPool, sql: &str) {
    sqlx::raw_sql(sql).execute(pool).await.unwrap();
}

pub fn sql_def(kind: SourceKind, table: &str, key: &[&str]) -> SourceDefinition {
    SourceDefinition {
        name: None,
        kind,
        connection: Some(replicator_ingest::ConnectionRef::env("UNUSED_IN_TESTS")),
        table: Some(table.to_owned()),
        query: None,
        path: None,
        pattern: None,
        primary_key: key.iter().map(|s| s.to_string()).collect(),
        watermark: None,
        target: table.to_owned(),
        hard_deletes: false,
        deletion_vectors: false,
        options: SourceOptions::default(),
    }
}

pub fn file_def(kind: SourceKind, path: &str, pattern: &str, key: &[&str]) -> SourceDefinition {
    SourceDefinition {
        name: None,
        kind,
        connection: None,
        table: None,
        query: None,
        path: Some(path.to_owned()),
        pattern: Some(pattern.to_owned()),
        primary_key: key.iter().map(|s| s.to_string()).collect(),
        watermark: None,
        target: format!("files/{path}"),
        hard_deletes: false,
        deletion_vectors: false,
        options: SourceOptions::default(),
    }
}

pub fn ctx(url: &str) -> SourceContext {
    SourceContext {
        connection: Some(url.to_owned()),
        files_root: None,
    }
}

pub fn loc(p: &std::path::Path) -> TableLocation {
    TableLocation::parse(p.to_str().unwrap()).unwrap()
}

pub async fn run(
    def: &SourceDefinition,
    ctx: &SourceContext,
    root: &TableLocation,
    options: &IngestOptions,
) -> IngestReport {
    ingest_definition(def, ctx, root, options)
        .await
        .unwrap_or_else(|e| panic!("ingest {}: {e}", def.target))
}

/// The target's rows, rendered and sorted.
pub async fn target_rows(t: &TableLocation) -> Vec<String> {
    sorted_rows(&read_batches(t, None).await.unwrap()).unwrap()
}

/// Every batch a source's stream hands over.
pub async fn collect(
    stream: Result<replicator_ingest::source::BatchStream, replicator_ingest::IngestError>,
) -> Vec<arrow::array::RecordBatch> {
    use futures::TryStreamExt;
    stream.unwrap().try_collect().await.unwrap()
}

/// The source's rows, rendered and sorted the same way.
pub async fn source_rows(def: &SourceDefinition, ctx: &SourceContext) -> Vec<String> {
    let s = replicator_ingest::open(def, ctx).await.unwrap();
    sorted_rows(&collect(s.batches(None, 1000).await).await).unwrap()
}

pub async fn version(t: &TableLocation) -> u64 {
    replicator_lake::inspect::table_info(t, None)
        .await
        .unwrap()
        .version
}
