//! Failures leave the target as it was: a connection dropped mid-read, and another writer
//! committing between the merge's read and its commit.

mod common;

use common::*;
use replicator_ingest::source::{BatchStream, Watermark};
use replicator_ingest::{
    IngestError, IngestOptions, LoadSpec, Source, SourceContext, SourceKind, ingest,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_dropped_mid_read_fails_transiently_and_commits_nothing() {
    let pool = pg().await;
    let t = unique("ingest_pgdrop");
    pg_exec(
        &pool,
        &format!(
            "CREATE TABLE {t} (id int PRIMARY KEY, v text);
         INSERT INTO {t} SELECT g, repeat('x', 200) FROM generate_series(1, 200000) g;"
        ),
    )
    .await;
    let def = sql_def(SourceKind::Postgres, &t, &["id"]);
    let source = replicator_ingest::open(&def, &ctx(PG_URL)).await.unwrap();
    // A source that kills its own server session once the first batches have arrived.
    #[derive(Debug)]
    struct Dropping {
        inner: Box<dyn Source>,
        pool: sqlx::PgPool,
        table: String,
    }
    #[async_trait::async_trait]
    impl Source for Dropping {
        fn name(&self) -> &str {
            self.inner.name()
        }
        async fn schema(&self) -> Result<arrow::datatypes::SchemaRef, IngestError> {
            self.inner.schema().await
        }
        async fn batches(
            &self,
            after: Option<&Watermark>,
            batch_rows: usize,
        ) -> Result<BatchStream, IngestError> {
            use futures::StreamExt;
            let inner = self.inner.batches(after, batch_rows).await?;
            let (pool, table) = (self.pool.clone(), self.table.clone());
            Ok(inner
                .enumerate()
                .then(move |(i, b)| {
                    let (pool, table) = (pool.clone(), table.clone());
                    async move {
                        if i == 3 {
                            sqlx::query(
                                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                                 WHERE query LIKE '%' || $1 || '%' AND pid <> pg_backend_pid()",
                            )
                            .bind(&table)
                            .execute(&pool)
                            .await
                            .unwrap();
                        }
                        b
                    }
                })
                .boxed())
        }
    }
    let dropping = Dropping {
        inner: source,
        pool: pool.clone(),
        table: t.clone(),
    };
    let dir = tempfile::tempdir().unwrap();
    let target = loc(dir.path()).child(&t).unwrap();
    let spec = LoadSpec::from_definition(&def);
    let opts = IngestOptions {
        batch_rows: 1000,
        ..Default::default()
    };
    let err = ingest(&dropping, &spec, &target, &opts).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(err.to_string().contains(&t), "{err}");
    assert!(
        !target.local_dir().unwrap().join("_delta_log").exists(),
        "no table was created"
    );
    // The retry (a new attempt) loads everything.
    let r = ingest(dropping.inner.as_ref(), &spec, &target, &opts)
        .await
        .unwrap();
    assert_eq!(r.inserted, 200_000);
    pg_exec(&pool, &format!("DROP TABLE {t}")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_commit_fails_the_merge_and_leaves_the_table_whole() {
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let batch = replicator_lake::sample::orders(0, 100, "emea");
    std::fs::create_dir_all(src.path().join("in")).unwrap();
    let f = std::fs::File::create(src.path().join("in/a.parquet")).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(f, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let def = file_def(SourceKind::Parquet, "in", "*.parquet", &["id"]);
    let c = SourceContext {
        connection: None,
        files_root: Some(loc(src.path())),
    };
    let target = loc(out.path()).child("orders").unwrap();
    let spec = LoadSpec::from_definition(&def);
    let source = replicator_ingest::open(&def, &c).await.unwrap();
    ingest(source.as_ref(), &spec, &target, &IngestOptions::default())
        .await
        .unwrap();
    // Change the source, and let another writer append while the merge reads it.
    let changed = replicator_lake::sample::orders(0, 100, "amer");
    let f = std::fs::File::create(src.path().join("in/a.parquet")).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(f, changed.schema(), None).unwrap();
    w.write(&changed).unwrap();
    w.close().unwrap();
    #[derive(Debug)]
    struct Racing {
        inner: Box<dyn Source>,
        target: replicator_lake::TableLocation,
    }
    #[async_trait::async_trait]
    impl Source for Racing {
        fn name(&self) -> &str {
            self.inner.name()
        }
        async fn schema(&self) -> Result<arrow::datatypes::SchemaRef, IngestError> {
            self.inner.schema().await
        }
        async fn batches(
            &self,
            after: Option<&Watermark>,
            batch_rows: usize,
        ) -> Result<BatchStream, IngestError> {
            replicator_lake::sample::append(
                &self.target,
                &replicator_lake::sample::orders(1000, 5, "apac"),
            )
            .await
            .unwrap();
            self.inner.batches(after, batch_rows).await
        }
    }
    let racing = Racing {
        inner: replicator_ingest::open(&def, &c).await.unwrap(),
        target: target.clone(),
    };
    let v = version(&target).await;
    let err = ingest(&racing, &spec, &target, &IngestOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, IngestError::CommitConflict { .. }), "{err}");
    assert!(err.is_transient());
    assert_eq!(
        version(&target).await,
        v + 1,
        "only the other writer's commit"
    );
    let rows = target_rows(&target).await;
    assert_eq!(rows.len(), 105);
    assert_eq!(rows.iter().filter(|r| r.contains("region=amer")).count(), 0);
}
