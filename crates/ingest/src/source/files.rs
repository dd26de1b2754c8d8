//! File sources: CSV, JSON lines and Parquet files under a location (local, S3, Azure),
//! selected by a glob over their paths relative to it, read in path order.
//!
//! The schema comes from the first file: Parquet's own, or inferred from its first 1000
//! records (CSV, JSON lines), with CSV's declared `types` taking precedence. Every file is
//! read with that schema, so a value that does not fit fails the run with the file and the
//! reader's message (CSV: the line), before anything is committed. Files on object stores
//! are copied to a local temporary file first, one at a time, and read from there.

use std::collections::BTreeMap;
use std::io::{BufReader, Seek, Write};
use std::sync::Arc;

use arrow::array::{RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use replicator_lake::TableLocation;

use super::{BatchStream, Source, Watermark, channel_stream};
use crate::definition::{SourceDefinition, SourceKind, declared_type};
use crate::error::IngestError;
use crate::target::conform;

/// Records read to infer a CSV or JSON-lines schema.
const INFER_RECORDS: usize = 1000;

/// Files under a location.
#[derive(Debug)]
pub struct FileSource {
    name: String,
    kind: SourceKind,
    root: TableLocation,
    glob: globset::GlobMatcher,
    header: bool,
    delimiter: u8,
    declared: BTreeMap<String, DataType>,
    schema: tokio::sync::OnceCell<SchemaRef>,
}

impl FileSource {
    pub fn new(def: &SourceDefinition, root: TableLocation) -> Result<Self, IngestError> {
        let pattern = def.pattern_or_default();
        let name = format!("{} {}{}", def.kind.as_str(), root, pattern);
        let bad = |detail: String| IngestError::Source {
            source_name: name.clone(),
            detail,
            transient: false,
        };
        let glob = globset::GlobBuilder::new(&pattern)
            .literal_separator(true)
            .build()
            .map_err(|e| bad(format!("pattern: {e}")))?
            .compile_matcher();
        let mut declared = BTreeMap::new();
        for (c, t) in &def.options.types {
            declared.insert(c.clone(), declared_type(t).map_err(bad)?);
        }
        Ok(Self {
            kind: def.kind,
            root,
            glob,
            header: def.options.header.unwrap_or(true),
            delimiter: def
                .options
                .delimiter
                .as_deref()
                .and_then(|d| d.bytes().next())
                .unwrap_or(b','),
            declared,
            schema: tokio::sync::OnceCell::new(),
            name,
        })
    }

    fn fail(&self, detail: impl std::fmt::Display) -> IngestError {
        IngestError::Source {
            source_name: self.name.clone(),
            detail: crate::error::one_line(&detail.to_string()),
            transient: false,
        }
    }

    /// The matching files: (path relative to the root, object path), sorted.
    async fn list(&self) -> Result<Vec<(String, Path)>, IngestError> {
        let prefix = self.root.prefix().clone();
        let mut listing = self.root.object_store().list(Some(&prefix));
        let mut out = Vec::new();
        while let Some(meta) = listing.try_next().await.map_err(|e| IngestError::Source {
            source_name: self.name.clone(),
            detail: format!("cannot list: {e}"),
            transient: true,
        })? {
            let full = meta.location.as_ref();
            let rel = full
                .strip_prefix(prefix.as_ref())
                .unwrap_or(full)
                .trim_start_matches('/')
                .to_owned();
            if self.glob.is_match(&rel) {
                out.push((rel, meta.location));
            }
        }
        out.sort();
        Ok(out)
    }

    fn infer(&self, rel: &str, file: std::fs::File) -> Result<Schema, IngestError> {
        let at = |e: &dyn std::fmt::Display| self.fail(format!("file {rel}: {e}"));
        let inferred = match self.kind {
            SourceKind::Csv => {
                arrow::csv::reader::Format::default()
                    .with_header(self.header)
                    .with_delimiter(self.delimiter)
                    .infer_schema(BufReader::new(file), Some(INFER_RECORDS))
                    .map_err(|e| at(&e))?
                    .0
            }
            SourceKind::Jsonl => {
                arrow::json::reader::infer_json_schema(BufReader::new(file), Some(INFER_RECORDS))
                    .map_err(|e| at(&e))?
                    .0
            }
            _ => parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                .map_err(|e| at(&e))?
                .schema()
                .as_ref()
                .clone(),
        };
        let mut fields = Vec::new();
        for f in inferred.fields() {
            let ty = match self.declared.get(f.name()) {
                Some(t) => t.clone(),
                None => normalize(f.data_type()).ok_or_else(|| IngestError::UnsupportedType {
                    source_name: self.name.clone(),
                    column: f.name().clone(),
                    ty: f.data_type().to_string(),
                })?,
            };
            fields.push(Field::new(f.name(), ty, true));
        }
        for c in self.declared.keys() {
            if inferred.field_with_name(c).is_err() {
                return Err(self.fail(format!(
                    "file {rel}: declared column `{c}` is not in the file"
                )));
            }
        }
        Ok(Schema::new(fields))
    }
}

/// The Arrow type a file column is carried as (`None`: not supported).
fn normalize(ty: &DataType) -> Option<DataType> {
    Some(match ty {
        DataType::Null | DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            DataType::Utf8
        }
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => DataType::Binary,
        DataType::Timestamp(_, tz) => {
            DataType::Timestamp(TimeUnit::Microsecond, tz.as_ref().map(|_| Arc::from("UTC")))
        }
        DataType::Date64 => DataType::Date32,
        DataType::Boolean
        | DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::Float32
        | DataType::Float64
        | DataType::Date32
        | DataType::Decimal128(_, _) => ty.clone(),
        DataType::UInt8 => DataType::Int16,
        DataType::UInt16 => DataType::Int32,
        DataType::UInt32 => DataType::Int64,
        DataType::Float16 => DataType::Float32,
        _ => return None,
    })
}

/// A local copy of a file (the file itself when the root is local; otherwise an anonymous
/// temporary file, gone when closed).
pub(crate) async fn fetch_local(
    root: &TableLocation,
    name: &str,
    rel: &str,
    path: &Path,
) -> Result<std::fs::File, IngestError> {
    let fail = |e: &dyn std::fmt::Display, transient: bool| IngestError::Source {
        source_name: name.to_owned(),
        detail: crate::error::one_line(&format!("file {rel}: {e}")),
        transient,
    };
    if let Some(dir) = root.local_dir() {
        return std::fs::File::open(dir.join(rel)).map_err(|e| fail(&e, false));
    }
    let mut tmp = tempfile::tempfile().map_err(|e| fail(&e, false))?;
    let mut body = root
        .object_store()
        .get(path)
        .await
        .map_err(|e| fail(&e, true))?
        .into_stream();
    while let Some(chunk) = body.try_next().await.map_err(|e| fail(&e, true))? {
        tmp.write_all(&chunk).map_err(|e| fail(&e, false))?;
    }
    tmp.rewind().map_err(|e| fail(&e, false))?;
    Ok(tmp)
}

#[async_trait::async_trait]
impl Source for FileSource {
    fn name(&self) -> &str {
        &self.name
    }

    async fn schema(&self) -> Result<SchemaRef, IngestError> {
        self.schema
            .get_or_try_init(|| async {
                let files = self.list().await?;
                let Some((rel, path)) = files.first() else {
                    return Err(self.fail("no file matches"));
                };
                let file = fetch_local(&self.root, &self.name, rel, path).await?;
                Ok(Arc::new(self.infer(rel, file)?))
            })
            .await
            .cloned()
    }

    async fn batches(
        &self,
        after: Option<&Watermark>,
        batch_rows: usize,
    ) -> Result<BatchStream, IngestError> {
        let schema = self.schema().await?;
        let files = self.list().await?;
        let (tx, stream) = channel_stream(2);
        let batch_rows = batch_rows.max(1);
        // The producer owns what it needs: a clone of the listing and the reader settings.
        let me = Reader {
            name: self.name.clone(),
            kind: self.kind,
            header: self.header,
            delimiter: self.delimiter,
            schema,
            after: after.cloned(),
            batch_rows,
        };
        let root = self.root.clone();
        tokio::spawn(async move {
            for (rel, path) in files {
                let file = match fetch_local(&root, &me.name, &rel, &path).await {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                let (me2, tx2, rel2) = (me.clone(), tx.clone(), rel.clone());
                let done = tokio::task::spawn_blocking(move || me2.read(&rel2, file, &tx2)).await;
                match done {
                    Ok(Ok(true)) => {}
                    Ok(Ok(false)) => return,
                    Ok(Err(e)) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                    Err(e) => {
                        let _ = tx
                            .send(Err(IngestError::Source {
                                source_name: me.name.clone(),
                                detail: format!("file {rel}: reader failed: {e}"),
                                transient: false,
                            }))
                            .await;
                        return;
                    }
                }
            }
        });
        Ok(stream)
    }
}

/// Reads one file on a blocking thread.
#[derive(Clone)]
struct Reader {
    name: String,
    kind: SourceKind,
    header: bool,
    delimiter: u8,
    schema: SchemaRef,
    after: Option<Watermark>,
    batch_rows: usize,
}

type Tx = tokio::sync::mpsc::Sender<Result<RecordBatch, IngestError>>;

/// Arrow's CSV message without its ` at line N` (a record number that skips the header).
fn without_record_line(e: &arrow::error::ArrowError) -> String {
    let text = e.to_string();
    match text.find(" at line ") {
        Some(i) => {
            let rest = &text[i + " at line ".len()..];
            let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            format!("{}{}", &text[..i], &rest[digits..])
        }
        None => text,
    }
}

impl Reader {
    fn fail(&self, rel: &str, e: impl std::fmt::Display) -> IngestError {
        IngestError::Source {
            source_name: self.name.clone(),
            detail: crate::error::one_line(&format!("file {rel}: {e}")),
            transient: false,
        }
    }

    /// The line of the first CSV record that fails to parse (records read one at a time;
    /// only called after a batch failed). A record with quoted line breaks counts as one.
    fn csv_error_line(&self, mut file: std::fs::File) -> Option<u64> {
        file.rewind().ok()?;
        let reader = arrow::csv::ReaderBuilder::new(self.schema.clone())
            .with_header(self.header)
            .with_delimiter(self.delimiter)
            .with_batch_size(1)
            .build(file)
            .ok()?;
        let mut line = u64::from(self.header);
        for r in reader {
            line += 1;
            if r.is_err() {
                return Some(line);
            }
        }
        None
    }

    /// Send every batch of the file; `false` when the consumer is gone.
    fn read(&self, rel: &str, file: std::fs::File, tx: &Tx) -> Result<bool, IngestError> {
        let again = file.try_clone().ok();
        let iter: Box<dyn Iterator<Item = Result<RecordBatch, arrow::error::ArrowError>>> =
            match self.kind {
                SourceKind::Csv => Box::new(
                    arrow::csv::ReaderBuilder::new(self.schema.clone())
                        .with_header(self.header)
                        .with_delimiter(self.delimiter)
                        .with_batch_size(self.batch_rows)
                        .build(file)
                        .map_err(|e| self.fail(rel, e))?,
                ),
                SourceKind::Jsonl => Box::new(
                    arrow::json::ReaderBuilder::new(self.schema.clone())
                        .with_batch_size(self.batch_rows)
                        .build(BufReader::new(file))
                        .map_err(|e| self.fail(rel, e))?,
                ),
                _ => Box::new(
                    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                        .map_err(|e| self.fail(rel, e))?
                        .with_batch_size(self.batch_rows)
                        .build()
                        .map_err(|e| self.fail(rel, e))?,
                ),
            };
        for batch in iter {
            let batch = match batch {
                Ok(b) => b,
                // The file's own line (arrow counts records after the header instead).
                Err(e) if self.kind == SourceKind::Csv => {
                    let at = again.and_then(|f| self.csv_error_line(f));
                    return Err(match at {
                        Some(line) => {
                            self.fail(rel, format!("line {line}: {}", without_record_line(&e)))
                        }
                        None => self.fail(rel, e),
                    });
                }
                Err(e) => return Err(self.fail(rel, e)),
            };
            let batch = conform(&batch, &self.schema).map_err(|e| self.fail(rel, e))?;
            let batch = match &self.after {
                Some(w) => after_watermark(&batch, w).map_err(|e| self.fail(rel, e))?,
                None => batch,
            };
            if batch.num_rows() > 0 && tx.blocking_send(Ok(batch)).is_err() {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// The rows of `batch` whose watermark column is greater than the watermark.
pub(crate) fn after_watermark(
    batch: &RecordBatch,
    w: &Watermark,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let col = batch.column_by_name(&w.column).ok_or_else(|| {
        arrow::error::ArrowError::SchemaError(format!(
            "watermark column `{}` is not in the source",
            w.column
        ))
    })?;
    let value = StringArray::from(vec![w.after.as_str()]);
    let options = arrow::compute::CastOptions {
        safe: false,
        ..Default::default()
    };
    let value = arrow::compute::cast_with_options(&value, col.data_type(), &options)?;
    let keep = arrow::compute::kernels::cmp::gt(col, &arrow::array::Scalar::new(value))?;
    arrow::compute::filter_record_batch(batch, &keep)
}
