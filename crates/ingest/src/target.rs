//! The target Delta table: whether it exists, its schema and files, reading a file's rows,
//! and writing new files with delta-rs's streaming writer (bounded file and row-group
//! sizes; files are uploaded as they are written).

use std::sync::Arc;

use arrow::array::{RecordBatch, new_null_array};
use arrow::datatypes::{Field, Schema, SchemaRef};
use deltalake::kernel::engine::arrow_conversion::{TryIntoArrow, TryIntoKernel};
use deltalake::kernel::{Add, DeletionVectorDescriptor, Remove, StructType};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use deltalake::{DeltaTable, DeltaTableBuilder};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::file::properties::WriterProperties;
use replicator_lake::TableLocation;

use crate::error::IngestError;

/// Whether `loc` holds a Delta table (a commit in `_delta_log`).
pub(crate) async fn exists(loc: &TableLocation) -> Result<bool, IngestError> {
    Ok(replicator_lake::unchanged::log_point(loc, None, None)
        .await?
        .is_some())
}

fn builder(loc: &TableLocation) -> Result<DeltaTableBuilder, IngestError> {
    Ok(DeltaTableBuilder::from_url(loc.url().clone())
        .map_err(|e| IngestError::target(loc.url().as_str(), e))?
        .with_storage_options(
            loc.options()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ))
}

/// One active file of the target.
#[derive(Clone)]
pub(crate) struct TargetFile {
    pub(crate) path: String,
    /// Rows in the Parquet file (its deletion vector's included), from the log's stats.
    pub(crate) rows: Option<u64>,
    pub(crate) remove: Remove,
    /// The file as added, to add again with a new deletion vector.
    pub(crate) add: Add,
    pub(crate) dv: Option<DeletionVectorDescriptor>,
}

/// The target's latest snapshot, as the merge needs it.
pub(crate) struct TargetState {
    pub(crate) table: DeltaTable,
    pub(crate) version: u64,
    pub(crate) delta_schema: StructType,
    pub(crate) files: Vec<TargetFile>,
    /// The table has the `deletionVectors` feature and `delta.enableDeletionVectors`: a merge
    /// marks changed and deleted rows in deletion vectors instead of rewriting their files.
    pub(crate) deletion_vectors: bool,
}

impl TargetState {
    pub(crate) async fn load(loc: &TableLocation) -> Result<Self, IngestError> {
        let name = loc.url().as_str();
        let table = builder(loc)?
            .load()
            .await
            .map_err(|e| IngestError::target(name, e))?;
        let snap = table.snapshot().map_err(|e| IngestError::target(name, e))?;
        if !snap.metadata().partition_columns().is_empty() {
            return Err(IngestError::target(
                name,
                "is partitioned; ingestion writes unpartitioned tables only",
            ));
        }
        let delta_schema = snap.schema().as_ref().clone();
        let mut files = Vec::new();
        for f in snap.log_data().iter() {
            #[allow(deprecated)] // the file's add action, to add it again with another vector
            let add = f.add_action();
            files.push(TargetFile {
                path: f.path().into_owned(),
                rows: f.num_records().map(|n| n as u64),
                remove: f.remove_action(true),
                dv: f.deletion_vector_descriptor(),
                add,
            });
        }
        let protocol = serde_json::to_value(snap.protocol()).unwrap_or_default();
        let feature = protocol["writerFeatures"]
            .as_array()
            .is_some_and(|a| a.iter().any(|v| v == "deletionVectors"));
        let enabled = snap
            .metadata()
            .configuration()
            .get("delta.enableDeletionVectors")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        Ok(Self {
            version: snap.version(),
            delta_schema,
            files,
            table,
            deletion_vectors: feature && enabled,
        })
    }

    pub(crate) fn estimated_rows(&self) -> u64 {
        self.files.iter().map(|f| f.rows.unwrap_or(1 << 20)).sum()
    }
}

/// The live rows of one target file (its deletion vector applied), `batch_rows` at a time,
/// each batch with the Parquet row index of each of its rows; only the `only` columns when
/// given (the others are not decoded).
pub(crate) async fn live_rows(
    loc: &TableLocation,
    file: &TargetFile,
    batch_rows: usize,
    only: Option<&[String]>,
) -> Result<LiveRows, IngestError> {
    let deleted = match &file.dv {
        Some(d) => Some(crate::dv::read(loc, &file.path, d).await?),
        None => None,
    };
    live_rows_with(loc, &file.path, batch_rows, only, deleted).await
}

/// [`live_rows`] of a file whose deletion vector was already read (`deleted`).
pub(crate) async fn live_rows_with(
    loc: &TableLocation,
    path: &str,
    batch_rows: usize,
    only: Option<&[String]>,
    deleted: Option<roaring::RoaringTreemap>,
) -> Result<LiveRows, IngestError> {
    Ok(LiveRows {
        reader: read_file(loc, path, batch_rows, only).await?,
        deleted,
        next: 0,
    })
}

/// See [`live_rows`].
pub(crate) struct LiveRows {
    reader: ParquetRecordBatchReader,
    /// The rows the file's deletion vector removes.
    pub(crate) deleted: Option<roaring::RoaringTreemap>,
    /// The Parquet row index of the next row read.
    next: u64,
}

impl LiveRows {
    /// The rows in the file, deleted ones included (once every batch was read).
    pub(crate) fn physical_rows(&self) -> u64 {
        self.next
    }
}

impl Iterator for LiveRows {
    type Item = Result<(RecordBatch, Vec<u64>), arrow::error::ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        let batch = match self.reader.next()? {
            Ok(b) => b,
            Err(e) => return Some(Err(e)),
        };
        let first = self.next;
        self.next += batch.num_rows() as u64;
        let Some(deleted) = &self.deleted else {
            return Some(Ok((batch, (first..self.next).collect())));
        };
        let live: Vec<bool> = (first..self.next).map(|i| !deleted.contains(i)).collect();
        let indexes: Vec<u64> = (first..self.next)
            .zip(&live)
            .filter_map(|(i, l)| l.then_some(i))
            .collect();
        if indexes.len() == batch.num_rows() {
            return Some(Ok((batch, indexes)));
        }
        let mask = arrow::array::BooleanArray::from(live);
        Some(arrow::compute::filter_record_batch(&batch, &mask).map(|b| (b, indexes)))
    }
}

/// The rows of one target file, `batch_rows` at a time.
pub(crate) async fn read_file(
    loc: &TableLocation,
    path: &str,
    batch_rows: usize,
    only: Option<&[String]>,
) -> Result<ParquetRecordBatchReader, IngestError> {
    let object = loc.object_path(path);
    let file = crate::source::files::fetch_local(loc, loc.url().as_str(), path, &object).await?;
    ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| {
            let b = b.with_batch_size(batch_rows);
            match only {
                Some(columns) => {
                    let mask = parquet::arrow::ProjectionMask::columns(
                        b.parquet_schema(),
                        columns.iter().map(String::as_str),
                    );
                    b.with_projection(mask).build()
                }
                None => b.build(),
            }
        })
        .map_err(|e| IngestError::target(loc.url().as_str(), format!("file {path}: {e}")))
}

/// `batch` with `schema`'s columns, in its order: found by name, cast where the type
/// differs (failing rather than turning a value into NULL), NULL where missing.
pub(crate) fn conform(
    batch: &RecordBatch,
    schema: &SchemaRef,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    if batch.schema().as_ref() == schema.as_ref() {
        return Ok(batch.clone());
    }
    let options = arrow::compute::CastOptions {
        safe: false,
        ..Default::default()
    };
    let columns = schema
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            None => Ok(new_null_array(f.data_type(), batch.num_rows())),
            Some(c) if c.data_type() == f.data_type() => Ok(c.clone()),
            Some(c) => arrow::compute::cast_with_options(c, f.data_type(), &options),
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new_with_options(
        schema.clone(),
        columns,
        &arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )
}

/// The Delta schema of an Arrow schema (every column nullable).
pub(crate) fn delta_schema(schema: &Schema, table: &str) -> Result<StructType, IngestError> {
    let nullable = Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| Field::new(f.name(), f.data_type().clone(), true))
            .collect::<Vec<_>>(),
    );
    (&nullable)
        .try_into_kernel()
        .map_err(|e| IngestError::target(table, format!("schema: {e}")))
}

/// The Arrow schema delta-rs reads and writes for a Delta schema.
pub(crate) fn arrow_schema(schema: &StructType, table: &str) -> Result<SchemaRef, IngestError> {
    let s: Schema = schema
        .try_into_arrow()
        .map_err(|e| IngestError::target(table, format!("schema: {e}")))?;
    Ok(Arc::new(s))
}

/// New data files for the target, written as batches arrive.
pub(crate) struct FileWriter {
    writer: RecordBatchWriter,
    schema: SchemaRef,
    table: String,
    pub(crate) rows: u64,
}

impl FileWriter {
    pub(crate) fn new(
        loc: &TableLocation,
        schema: SchemaRef,
        target_file_size: u64,
        row_group_rows: usize,
    ) -> Result<Self, IngestError> {
        let table = loc.url().to_string();
        let writer = RecordBatchWriter::try_new(
            loc.url().as_str(),
            schema.clone(),
            None,
            Some(
                loc.options()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
        )
        .map_err(|e| IngestError::target(&table, e))?
        .with_target_file_size(target_file_size)
        .with_writer_properties(
            WriterProperties::builder()
                .set_compression(parquet::basic::Compression::SNAPPY)
                .set_max_row_group_row_count(Some(row_group_rows.max(1024)))
                .build(),
        );
        Ok(Self {
            writer,
            schema,
            table,
            rows: 0,
        })
    }

    pub(crate) async fn write(&mut self, batch: &RecordBatch) -> Result<(), IngestError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let batch =
            conform(batch, &self.schema).map_err(|e| IngestError::target(&self.table, e))?;
        self.rows += batch.num_rows() as u64;
        self.writer
            .write(batch)
            .await
            .map_err(|e| IngestError::target(&self.table, e))
    }

    /// Finish every file; their `add` actions.
    pub(crate) async fn finish(mut self) -> Result<Vec<Add>, IngestError> {
        self.writer
            .flush()
            .await
            .map_err(|e| IngestError::target(&self.table, e))
    }

    /// Give up: abort uploads in progress (files already finished stay unreferenced).
    pub(crate) fn abort(mut self) {
        self.writer.reset();
    }
}
