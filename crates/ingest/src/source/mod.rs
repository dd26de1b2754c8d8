//! The source seam: a [`Source`] yields its Arrow schema and a stream of bounded Arrow
//! batches, optionally only the rows after a watermark, and (through the default method) a
//! stream of key + row-hash records for the incremental comparison.
//!
//! [`open`] is the one place that maps a [`SourceKind`] to an implementation: SQL sources
//! ([`sql`]: PostgreSQL, MySQL/MariaDB through sqlx, rows streamed from the server's result
//! and converted column by column) and file sources ([`files`]: CSV, JSON lines, Parquet
//! under any location the lake reads). SQL Server would be one more `sql` dialect (or its
//! own module) and one more arm there.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use futures::stream::BoxStream;
use replicator_lake::TableLocation;

use crate::definition::{SourceDefinition, SourceKind};
use crate::error::IngestError;
use crate::hash::KeyHasher;

pub mod files;
pub mod sql;

/// Batches from a source, in order; an error ends the stream.
pub type BatchStream = BoxStream<'static, Result<RecordBatch, IngestError>>;

/// One batch's keys (Arrow row format, comparable and hashable bytes) and row hashes (of
/// every non-key column, as [`crate::load`] hashes the target's rows).
#[derive(Debug)]
pub struct KeyHashes {
    pub keys: arrow::row::Rows,
    pub hashes: Vec<u64>,
}

/// Key + row-hash records, batch by batch.
pub type KeyHashStream = BoxStream<'static, Result<KeyHashes, IngestError>>;

/// Only rows whose `column` is greater than `after` (a value as [`crate::load`] renders it:
/// numbers as digits, dates `YYYY-MM-DD`, timestamps `YYYY-MM-DD HH:MM:SS.ffffff` in UTC).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watermark {
    pub column: String,
    pub after: String,
}

/// A source of rows.
#[async_trait::async_trait]
pub trait Source: Send + Sync + std::fmt::Debug {
    /// A name for messages: the table, query or path, never a connection URL.
    fn name(&self) -> &str;

    /// The Arrow schema of every batch.
    async fn schema(&self) -> Result<SchemaRef, IngestError>;

    /// Every row (or every row after `after`), at most `batch_rows` per batch. The stream
    /// reads as it is consumed: a slow consumer holds the source back, never buffers it.
    async fn batches(
        &self,
        after: Option<&Watermark>,
        batch_rows: usize,
    ) -> Result<BatchStream, IngestError>;

    /// Row count (by default by streaming every row; SQL sources ask the server).
    async fn count(&self) -> Result<u64, IngestError> {
        use futures::TryStreamExt;
        let mut s = self.batches(None, 8192).await?;
        let mut n = 0u64;
        while let Some(b) = s.try_next().await? {
            n += b.num_rows() as u64;
        }
        Ok(n)
    }

    /// The primary key columns of every row, for finding deletes beside a watermark read
    /// (`hard_deletes`). By default every column is read and the keys kept; SQL sources
    /// select only the keys.
    async fn key_batches(
        &self,
        primary_key: &[String],
        batch_rows: usize,
    ) -> Result<BatchStream, IngestError> {
        use futures::StreamExt;
        let schema = self.schema().await?;
        let name = self.name().to_owned();
        let columns = primary_key
            .iter()
            .map(|k| {
                schema.index_of(k).map_err(|_| IngestError::Data {
                    table: name.clone(),
                    detail: format!("primary key column `{k}` is not in the source"),
                })
            })
            .collect::<Result<Vec<usize>, _>>()?;
        let s = self.batches(None, batch_rows).await?;
        Ok(s.map(move |b| {
            b?.project(&columns).map_err(|e| IngestError::Data {
                table: name.clone(),
                detail: format!("cannot read the key columns: {e}"),
            })
        })
        .boxed())
    }

    /// Keys and row hashes of every row (after `after`), for comparisons.
    async fn key_hashes(
        &self,
        primary_key: &[String],
        after: Option<&Watermark>,
        batch_rows: usize,
    ) -> Result<KeyHashStream, IngestError> {
        use futures::StreamExt;
        let schema = self.schema().await?;
        let hasher = Arc::new(KeyHasher::new(&schema, primary_key, self.name())?);
        let s = self.batches(after, batch_rows).await?;
        Ok(s.map(move |b| {
            let b = b?;
            let (keys, hashes) = hasher.hash(&b)?;
            Ok(KeyHashes { keys, hashes })
        })
        .boxed())
    }
}

/// What opening a source needs besides its definition.
#[derive(Clone, Debug, Default)]
pub struct SourceContext {
    /// The resolved connection URL of a SQL source; `None`: resolve the definition's
    /// reference now.
    pub connection: Option<String>,
    /// The root file sources' `path` is relative to; `None`: `path` is a location itself.
    pub files_root: Option<TableLocation>,
}

/// The source a definition describes (the registry: one arm per kind).
pub async fn open(
    def: &SourceDefinition,
    ctx: &SourceContext,
) -> Result<Box<dyn Source>, IngestError> {
    match def.kind {
        SourceKind::Postgres | SourceKind::Mysql => {
            let url = match &ctx.connection {
                Some(u) => u.clone(),
                None => def
                    .connection
                    .as_ref()
                    .ok_or_else(|| {
                        replicator_common::ConfigError::key("connection", "is required")
                    })?
                    .resolve()?,
            };
            Ok(Box::new(sql::SqlSource::connect(def, &url).await?))
        }
        SourceKind::Csv | SourceKind::Jsonl | SourceKind::Parquet => {
            let path = def.path.as_deref().unwrap_or_default();
            let relative = path.trim_matches('/');
            let root = match &ctx.files_root {
                Some(root) if relative.is_empty() || relative == "." => root.clone(),
                Some(root) => root.child(relative)?,
                None => TableLocation::parse(path)?,
            };
            Ok(Box::new(files::FileSource::new(def, root)?))
        }
    }
}

/// A stream fed by a producer task through a small bounded channel: the producer (a
/// database cursor, a file reader) runs ahead of the consumer by at most `depth` batches.
pub(crate) fn channel_stream(
    depth: usize,
) -> (
    tokio::sync::mpsc::Sender<Result<RecordBatch, IngestError>>,
    BatchStream,
) {
    use futures::StreamExt;
    let (tx, rx) = tokio::sync::mpsc::channel(depth.max(1));
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
    .boxed();
    (tx, stream)
}
