//! Loading a source into a Delta table: a full load when the target is missing, a merge by
//! primary key when it is present, no commit when nothing changed.
//!
//! **Full load**: batches stream from the source into Parquet files (delta-rs's writer,
//! bounded file and row-group sizes), then one commit creates the table with them. Keys are
//! spilled on the way and checked for duplicates before the commit.
//!
//! **Merge** (copy-on-write, one commit, no DataFusion): every target file is read once and
//! its rows reduced to `(key, row hash, file)`; the source is streamed once (all of it, or
//! only the rows after the watermark) into `(key, row hash, row ordinal)` records and a local
//! stash of its rows (a temporary Parquet file). Both record sets are hash-partitioned by key
//! and spill to disk past a chunk, and each partition is joined on its own (`join`: keys of
//! fixed-width columns are packed into integers, sorted and walked together; other keys
//! go through a hash table): a source key the target lacks is an insert, one whose hash
//! differs an update, a target key the source lacks (full comparison, or after a watermark
//! one missing from the source's key-only scan) a delete. Then new files are written: the
//! stashed rows that were inserted or updated, and the surviving rows of every target file
//! holding an updated or deleted key; the commit removes those files and adds the new ones,
//! with a metadata action when the source gained columns. Deletes are applied only with
//! `hard_deletes`.
//!
//! Memory: the join holds one partition (sized from the target's row count and the budget),
//! the writer one row group, the stash one batch; what grows with the table is on disk.
//! What grows with the *change* is in memory: the ordinals of changed rows (8 bytes each)
//! and the keys to drop from rewritten files.
//!
//! Concurrency: the commit is written at the version read + 1 with no retry; another
//! writer's commit in between fails this one as [`IngestError::CommitConflict`] (transient:
//! a rerun recomputes against the new version), never a corrupt or half-merged table.

use std::collections::{HashMap, HashSet};
use std::io::Seek;
use std::time::{Duration, Instant};

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch};
use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use arrow::row::{RowConverter, SortField};
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, MetadataExt, StructType};
use deltalake::protocol::{DeltaOperation, SaveMode};
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::properties::WriterProperties;
use replicator_lake::TableLocation;
use roaring::RoaringTreemap;

use crate::definition::SourceDefinition;
use crate::error::IngestError;
use crate::hash::KeyHasher;
use crate::join::{self, Changes, Packing, locate};
use crate::source::{Source, SourceContext, Watermark};
use crate::spill::Spill;
use crate::target::{self, FileWriter, TargetFile, TargetState};

/// How a run loaded its target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadMode {
    /// The target was missing: every row, one commit creating the table.
    Full,
    /// Rows after the last watermark, merged by key; with `hard_deletes`, a key-only scan of
    /// the source finds the keys gone from it.
    Watermark,
    /// Every row compared by key and row hash with the target: inserts, updates, deletes.
    KeyHash,
}

/// What to load: the key, the watermark column and the delete rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadSpec {
    /// The table's name in messages.
    pub name: String,
    pub primary_key: Vec<String>,
    pub watermark: Option<String>,
    pub hard_deletes: bool,
    /// A full load creates the table with deletion vectors enabled.
    pub deletion_vectors: bool,
}

impl LoadSpec {
    pub fn from_definition(def: &SourceDefinition) -> Self {
        Self {
            name: def.target.trim_matches('/').to_owned(),
            primary_key: def.primary_key.clone(),
            watermark: def.watermark.clone(),
            hard_deletes: def.hard_deletes,
            deletion_vectors: def.deletion_vectors,
        }
    }
}

/// Knobs of one run.
#[derive(Clone, Debug)]
pub struct IngestOptions {
    /// Memory the run may use for its buffers (join partitions, writer row groups), bytes.
    pub memory_budget: u64,
    /// Rows per batch from the source.
    pub batch_rows: usize,
    /// Size at which a new data file is started, bytes (at most half the budget).
    pub target_file_size: u64,
    /// The watermark the previous run returned ([`IngestReport::watermark`]); `None` with a
    /// watermark column on an existing target: compare every row instead.
    pub last_watermark: Option<String>,
}

impl Default for IngestOptions {
    fn default() -> Self {
        Self {
            memory_budget: 256 << 20,
            batch_rows: 8192,
            target_file_size: 128 << 20,
            last_watermark: None,
        }
    }
}

/// What a run did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct IngestReport {
    pub mode: Option<LoadMode>,
    /// Whether a commit was made (false: nothing changed).
    pub committed: bool,
    /// The target's version after the run.
    pub version: u64,
    /// Rows read from the source.
    pub source_rows: u64,
    pub inserted: u64,
    pub updated: u64,
    /// Target rows deleted (keys gone from the source, with `hard_deletes`).
    pub deleted: u64,
    /// Target keys the source no longer has (deleted only with `hard_deletes`).
    pub gone_from_source: u64,
    /// Unchanged rows copied from rewritten files.
    pub rewritten_rows: u64,
    /// Target files whose removed rows were marked in a deletion vector instead of the file
    /// being rewritten (tables with deletion vectors enabled).
    pub deletion_vectors: u64,
    pub files_added: u64,
    pub files_removed: u64,
    pub bytes_added: u64,
    /// Columns the source gained, added to the target.
    pub added_columns: Vec<String>,
    /// The largest watermark value seen (or the last one when no row was newer): store it
    /// and pass it as [`IngestOptions::last_watermark`] next time.
    pub watermark: Option<String>,
    /// Bytes of key records that went to spill files.
    pub spilled_bytes: u64,
    pub duration_ms: u64,
}

/// Open the source a definition describes and load it into `target_root`/`def.target`.
pub async fn ingest_definition(
    def: &SourceDefinition,
    ctx: &SourceContext,
    target_root: &TableLocation,
    options: &IngestOptions,
) -> Result<IngestReport, IngestError> {
    let source = crate::source::open(def, ctx).await?;
    let target = target_root.child(def.target.trim_matches('/'))?;
    ingest(
        source.as_ref(),
        &LoadSpec::from_definition(def),
        &target,
        options,
    )
    .await
}

/// Load `source` into the Delta table at `target`.
pub async fn ingest(
    source: &dyn Source,
    spec: &LoadSpec,
    target: &TableLocation,
    options: &IngestOptions,
) -> Result<IngestReport, IngestError> {
    let started = Instant::now();
    let schema = source.schema().await?;
    let exists = target::exists(target).await?;
    for k in &spec.primary_key {
        if schema.field_with_name(k).is_err() {
            return Err(if exists {
                IngestError::SchemaDrift {
                    table: spec.name.clone(),
                    column: k.clone(),
                    detail: "primary key column is no longer in the source".into(),
                }
            } else {
                IngestError::Data {
                    table: spec.name.clone(),
                    detail: format!("primary key column `{k}` is not in the source"),
                }
            });
        }
    }
    if let Some(w) = &spec.watermark
        && schema.field_with_name(w).is_err()
    {
        return Err(IngestError::Data {
            table: spec.name.clone(),
            detail: format!("watermark column `{w}` is not in the source"),
        });
    }
    let plan = Sizes::new(options);
    let mut report = if exists {
        merge(source, spec, target, options, &plan, schema).await?
    } else {
        full_load(source, spec, target, &plan, schema).await?
    };
    if report.watermark.is_none() {
        report.watermark = options.last_watermark.clone();
    }
    report.duration_ms = started.elapsed().as_millis() as u64;
    tracing::info!(
        table = %spec.name,
        mode = ?report.mode,
        committed = report.committed,
        version = report.version,
        rows = report.source_rows,
        inserted = report.inserted,
        updated = report.updated,
        deleted = report.deleted,
        ms = report.duration_ms,
        "ingested"
    );
    Ok(report)
}

/// Sizes derived from the budget.
struct Sizes {
    budget: u64,
    batch_rows: usize,
    file_size: u64,
    row_group_rows: usize,
}

impl Sizes {
    fn new(o: &IngestOptions) -> Self {
        let budget = o.memory_budget.max(16 << 20);
        Self {
            budget,
            batch_rows: o.batch_rows.clamp(64, 1 << 20),
            file_size: o.target_file_size.clamp(1 << 20, budget / 2),
            // About an eighth of the budget in a row group being encoded, at ~128 bytes a row.
            row_group_rows: ((budget / 8 / 128) as usize).clamp(8192, 1 << 20),
        }
    }

    /// Partitions and chunk size for about `rows` records per side.
    fn spill(&self, rows: u64) -> (usize, usize) {
        // ~160 bytes per target record held while joining (its spilled bytes, its packed
        // copy and the sort's scratch or its hash-table entry, and a present key's
        // share), half the budget for the partition being joined.
        let per_partition = (self.budget / 2 / 160).max(1024);
        let partitions = rows.div_ceil(per_partition).clamp(1, 256) as usize;
        let chunk = ((self.budget / 8) as usize / (2 * partitions)).clamp(16 << 10, 1 << 20);
        (partitions, chunk)
    }
}

async fn full_load(
    source: &dyn Source,
    spec: &LoadSpec,
    target: &TableLocation,
    sizes: &Sizes,
    schema: SchemaRef,
) -> Result<IngestReport, IngestError> {
    let delta = target::delta_schema(&schema, &spec.name)?;
    let out = target::arrow_schema(&delta, &spec.name)?;
    let hasher = KeyHasher::new(&schema, &spec.primary_key, &spec.name)?;
    // The row count is unknown: enough partitions for tens of millions of keys.
    let (partitions, chunk) = sizes.spill(64 * (sizes.budget / 96));
    let mut keys = Spill::keys_only(partitions, chunk);
    let mut wm = WatermarkMax::new(spec.watermark.clone());
    let mut writer = FileWriter::new(target, out, sizes.file_size, sizes.row_group_rows)?;
    let mut stream = source.batches(None, sizes.batch_rows).await?;
    let mut rows = 0u64;
    let streamed: Result<(), IngestError> = async {
        while let Some(b) = stream.try_next().await? {
            let k = hasher.keys(&b)?;
            for r in k.iter() {
                keys.push(r.data(), 0, 0)?;
            }
            wm.update(&b)?;
            rows += b.num_rows() as u64;
            writer.write(&b).await?;
        }
        Ok(())
    }
    .await;
    if let Err(e) = streamed {
        writer.abort();
        return Err(e);
    }
    for p in 0..keys.partitions() {
        let records = keys.take(p)?;
        let mut seen: HashSet<&[u8]> = HashSet::new();
        for (k, _, _) in records.iter() {
            if !seen.insert(k) {
                writer.abort();
                return Err(IngestError::Data {
                    table: spec.name.clone(),
                    detail: format!(
                        "duplicate primary key in the source: {}; nothing was written",
                        hasher.render(k)
                    ),
                });
            }
        }
    }
    let adds = writer.finish().await?;
    let files_added = adds.len() as u64;
    let bytes_added: u64 = adds.iter().map(|a| a.size.max(0) as u64).sum();
    if let Some(dir) = target.local_dir() {
        std::fs::create_dir_all(dir).map_err(|e| {
            IngestError::target(&spec.name, format!("cannot create {}: {e}", dir.display()))
        })?;
    }
    let table = deltalake::DeltaTableBuilder::from_url(target.url().clone())
        .map_err(|e| IngestError::target(&spec.name, e))?
        .with_storage_options(
            target
                .options()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )
        .build()
        .map_err(|e| IngestError::target(&spec.name, e))?;
    let metrics = serde_json::json!({
        "numOutputRows": rows,
        "numFiles": files_added,
        "numOutputBytes": bytes_added,
    });
    let version = if spec.deletion_vectors {
        create_with_vectors(&table, target, &delta, adds, metrics, &spec.name).await?
    } else {
        table
            .create()
            .with_columns(delta.fields().cloned())
            .with_actions(adds.into_iter().map(Action::Add))
            .with_save_mode(SaveMode::ErrorIfExists)
            .with_commit_properties(
                CommitProperties::default()
                    .with_metadata([("operationMetrics".to_owned(), metrics)]),
            )
            .await
            .map_err(|e| commit_error(&spec.name, e))?
            .version()
            .unwrap_or_default() as u64
    };
    Ok(IngestReport {
        mode: Some(LoadMode::Full),
        committed: true,
        version,
        source_rows: rows,
        inserted: rows,
        files_added,
        bytes_added,
        watermark: wm.value(),
        spilled_bytes: keys.spilled,
        ..Default::default()
    })
}

/// Create the table with deletion vectors enabled: table features `deletionVectors` (and
/// `timestampNtz` when a column needs it) and `delta.enableDeletionVectors`. Committed here,
/// not by delta-rs's create, whose protocol upgrade also lists the legacy `invariants`
/// feature — which delta-rs without DataFusion then refuses to write to.
async fn create_with_vectors(
    table: &deltalake::DeltaTable,
    target: &TableLocation,
    schema: &StructType,
    adds: Vec<deltalake::kernel::Add>,
    metrics: serde_json::Value,
    name: &str,
) -> Result<u64, IngestError> {
    let mut features = vec!["deletionVectors"];
    if schema
        .fields()
        .any(|f| *f.data_type() == deltalake::kernel::DataType::TIMESTAMP_NTZ)
    {
        features.push("timestampNtz");
    }
    let protocol: deltalake::kernel::Protocol = serde_json::from_value(serde_json::json!({
        "minReaderVersion": 3,
        "minWriterVersion": 7,
        "readerFeatures": features,
        "writerFeatures": features,
    }))
    .map_err(|e| IngestError::target(name, format!("protocol: {e}")))?;
    let metadata = deltalake::kernel::new_metadata(
        schema,
        Vec::<String>::new(),
        [("delta.enableDeletionVectors", "true")],
    )
    .map_err(|e| IngestError::target(name, e))?;
    let mut actions = vec![
        Action::Protocol(protocol.clone()),
        Action::Metadata(metadata.clone()),
    ];
    actions.extend(adds.into_iter().map(Action::Add));
    let done = CommitBuilder::default()
        .with_max_retries(0)
        .with_app_metadata(HashMap::from([("operationMetrics".to_owned(), metrics)]))
        .with_actions(actions)
        .build(
            None,
            table.log_store(),
            DeltaOperation::Create {
                mode: SaveMode::ErrorIfExists,
                location: target.url().clone(),
                protocol,
                metadata,
            },
        )
        .await
        .map_err(|e| commit_error(name, e))?;
    Ok(done.version as u64)
}

fn commit_error(table: &str, e: deltalake::DeltaTableError) -> IngestError {
    use deltalake::kernel::transaction::TransactionError as T;
    let conflict = matches!(
        &e,
        deltalake::DeltaTableError::Transaction {
            source: T::VersionAlreadyExists(_) | T::CommitConflict(_) | T::MaxCommitAttempts(_)
        } | deltalake::DeltaTableError::VersionAlreadyExists(_)
    ) || e.to_string().contains("already exists");
    if conflict {
        IngestError::CommitConflict {
            table: table.to_owned(),
            detail: crate::error::one_line(&e.to_string()),
        }
    } else {
        IngestError::target(table, e)
    }
}

/// What the target scan found: the keys, and per file its Parquet row count and the rows its
/// deletion vector already removes.
struct Scanned {
    spill: Spill,
    files: Vec<(u64, Option<RoaringTreemap>)>,
}

/// What marking rows in deletion vectors made of the touched files.
struct Marked {
    /// A `remove` for each touched file, an `add` of it again with its new vector.
    actions: Vec<Action>,
    /// The deletion-vector file written, relative to the store.
    written: Option<object_store::path::Path>,
    vectors: u64,
    /// Files all of whose rows are now removed: removed, not added again.
    emptied: u64,
}

/// Mark `rows` (target file index → rows) in the files' deletion vectors: each file's new
/// vector is its old one and these rows, written into one new file beside the table; a file
/// with no row left is removed.
async fn mark_deleted(
    target: &TableLocation,
    table: &str,
    state: &TargetState,
    scanned: &[(u64, Option<RoaringTreemap>)],
    rows: &mut HashMap<u32, Vec<u64>>,
) -> Result<Marked, IngestError> {
    let mut touched: Vec<(u32, Vec<u64>)> = std::mem::take(rows).into_iter().collect();
    touched.sort_by_key(|(i, _)| *i);
    let mut out = Marked {
        actions: Vec::new(),
        written: None,
        vectors: 0,
        emptied: 0,
    };
    let mut kept = Vec::new();
    for (i, marked) in touched {
        let file = &state.files[i as usize];
        let (physical, old) = &scanned[i as usize];
        let mut vector = old.clone().unwrap_or_default();
        vector.extend(marked);
        out.actions.push(Action::Remove(file.remove.clone()));
        if vector.len() >= *physical {
            out.emptied += 1;
        } else {
            kept.push((i, vector));
        }
    }
    if kept.is_empty() {
        return Ok(out);
    }
    let written = crate::dv::write(table, kept.iter().map(|(_, v)| v))?;
    let path = target.object_path(&written.path);
    target
        .object_store()
        .put(&path, written.bytes.into())
        .await
        .map_err(|e| IngestError::target(table, format!("{}: {e}", written.path)))?;
    out.written = Some(path);
    for ((i, _), descriptor) in kept.into_iter().zip(written.descriptors) {
        let mut add = state.files[i as usize].add.clone();
        add.deletion_vector = Some(descriptor);
        add.data_change = true;
        add.stats = add.stats.as_deref().and_then(wide_bounds);
        out.actions.push(Action::Add(add));
        out.vectors += 1;
    }
    Ok(out)
}

/// A file's statistics once a deletion vector hides some of its rows: `numRecords` still
/// counts the file's rows and the bounds may be wider than the live rows' (`tightBounds`).
fn wide_bounds(stats: &str) -> Option<String> {
    let mut v: serde_json::Value = serde_json::from_str(stats).ok()?;
    v.as_object_mut()?
        .insert("tightBounds".into(), serde_json::Value::Bool(false));
    Some(v.to_string())
}

async fn merge(
    source: &dyn Source,
    spec: &LoadSpec,
    target: &TableLocation,
    options: &IngestOptions,
    sizes: &Sizes,
    schema: SchemaRef,
) -> Result<IngestReport, IngestError> {
    let state = TargetState::load(target).await?;
    // Schema drift: new source columns are added; a type change stops the table.
    let src_delta = target::delta_schema(&schema, &spec.name)?;
    let mut fields: Vec<_> = state.delta_schema.fields().cloned().collect();
    let mut added = Vec::new();
    for f in src_delta.fields() {
        match state.delta_schema.field(f.name()) {
            Some(t) if t.data_type() != f.data_type() => {
                return Err(IngestError::SchemaDrift {
                    table: spec.name.clone(),
                    column: f.name().clone(),
                    detail: format!(
                        "type changed from {} to {}; the target is left as it is",
                        t.data_type(),
                        f.data_type()
                    ),
                });
            }
            Some(_) => {}
            None => {
                added.push(f.name().clone());
                fields.push(f.clone());
            }
        }
    }
    // A new `timestamp_ntz` column needs the `timestampNtz` table feature, which delta-rs's
    // protocol upgrade is not public to add; refuse rather than commit a table readers reject.
    if let Some(f) = src_delta.fields().find(|f| {
        added.contains(f.name()) && *f.data_type() == deltalake::kernel::DataType::TIMESTAMP_NTZ
    }) {
        let snap = state
            .table
            .snapshot()
            .map_err(|e| IngestError::target(&spec.name, e))?;
        let protocol = serde_json::to_value(snap.protocol()).unwrap_or_default();
        let has = protocol["writerFeatures"]
            .as_array()
            .is_some_and(|a| a.iter().any(|v| v == "timestampNtz"));
        if !has {
            return Err(IngestError::SchemaDrift {
                table: spec.name.clone(),
                column: f.name().clone(),
                detail: "a new timestamp without time zone column needs the table feature \
                         timestampNtz, which the target does not have"
                    .into(),
            });
        }
    }
    for k in &spec.primary_key {
        if state.delta_schema.field(k).is_none() {
            return Err(IngestError::SchemaDrift {
                table: spec.name.clone(),
                column: k.clone(),
                detail: "primary key column is not in the target".into(),
            });
        }
    }
    let new_schema = if added.is_empty() {
        state.delta_schema.clone()
    } else {
        StructType::try_new(fields).map_err(|e| IngestError::target(&spec.name, e))?
    };
    let out = target::arrow_schema(&new_schema, &spec.name)?;
    let after = match (&spec.watermark, &options.last_watermark) {
        (Some(column), Some(after)) => Some(Watermark {
            column: column.clone(),
            after: after.clone(),
        }),
        _ => None,
    };
    let mode = if after.is_some() {
        LoadMode::Watermark
    } else {
        LoadMode::KeyHash
    };
    let hasher = KeyHasher::new(&schema, &spec.primary_key, &spec.name)?;
    let (partitions, chunk) = sizes.spill(state.estimated_rows());

    // The target's keys and row hashes, tagged with their file, read on a blocking thread
    // while the source streams below: the two scans are independent, and the target's
    // (Parquet decoding, hashing) is CPU the source's (mostly waiting on the database) leaves.
    let scan_started = Instant::now();
    let target_scan = {
        let files: Vec<TargetFile> = state.files.clone();
        let target = target.clone();
        let thasher = KeyHasher::new(&schema, &spec.primary_key, &spec.name)?;
        let (name, batch_rows) = (spec.name.clone(), sizes.batch_rows);
        // After a watermark every source row is a change: the target's keys suffice (its
        // other columns are not decoded, its rows not hashed).
        let only = (mode == LoadMode::Watermark).then(|| spec.primary_key.clone());
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || -> Result<Scanned, IngestError> {
            let mut tspill = if only.is_some() {
                Spill::without_hash(partitions, chunk)
            } else {
                Spill::new(partitions, chunk)
            };
            let mut files_read = Vec::with_capacity(files.len());
            for (i, f) in files.iter().enumerate() {
                let mut rows =
                    handle.block_on(target::live_rows(&target, f, batch_rows, only.as_deref()))?;
                for b in rows.by_ref() {
                    let (b, at) =
                        b.map_err(|e| IngestError::target(&name, format!("file {}: {e}", f.path)))?;
                    if only.is_some() {
                        let keys = thasher.keys(&b)?;
                        for (j, row) in keys.iter().enumerate() {
                            tspill.push(row.data(), 0, locate(i, at[j], &name)?)?;
                        }
                        continue;
                    }
                    let (keys, hashes) = thasher.hash(&b)?;
                    for (j, h) in hashes.iter().enumerate() {
                        tspill.push(keys.row(j).data(), *h, locate(i, at[j], &name)?)?;
                    }
                }
                files_read.push((rows.physical_rows(), rows.deleted.take()));
            }
            Ok(Scanned {
                spill: tspill,
                files: files_read,
            })
        })
    };

    // The source's, tagged with their ordinal, and its rows stashed.
    let stash_err = |e: &dyn std::fmt::Display| IngestError::Data {
        table: spec.name.clone(),
        detail: format!("cannot stash source rows in a temporary file: {e}"),
    };
    let changed = async {
        let mut sspill = Spill::new(partitions, chunk);
        let mut stash = ArrowWriter::try_new(
            tempfile::tempfile().map_err(|e| stash_err(&e))?,
            schema.clone(),
            Some(
                WriterProperties::builder()
                    .set_compression(parquet::basic::Compression::UNCOMPRESSED)
                    .set_max_row_group_row_count(Some(sizes.batch_rows))
                    .build(),
            ),
        )
        .map_err(|e| stash_err(&e))?;
        let mut wm = WatermarkMax::new(spec.watermark.clone());
        let mut stream = source.batches(after.as_ref(), sizes.batch_rows).await?;
        let mut ordinal = 0u64;
        while let Some(b) = stream.try_next().await? {
            let (keys, hashes) = hasher.hash(&b)?;
            for (j, h) in hashes.iter().enumerate() {
                sspill.push(keys.row(j).data(), *h, ordinal + j as u64)?;
            }
            wm.update(&b)?;
            stash.write(&b).map_err(|e| stash_err(&e))?;
            ordinal += b.num_rows() as u64;
        }
        Ok::<_, IngestError>((sspill, stash, wm, ordinal))
    };
    // Watermark mode with `hard_deletes`: every source key (only the keys), so that a target
    // key the source no longer has is found without reading the unchanged rows. Read at the
    // same time as the changed rows, on the pool's second connection (either order of the
    // two reads is safe: a key deleted in between is found by the next run, a row inserted
    // in between is past the watermark).
    let present = async {
        if mode != LoadMode::Watermark || !spec.hard_deletes {
            return Ok(None);
        }
        let mut k = Spill::keys_only(partitions, chunk);
        let mut keys = source
            .key_batches(&spec.primary_key, sizes.batch_rows)
            .await?;
        while let Some(b) = keys.try_next().await? {
            let rows = hasher.keys(&b)?;
            for j in 0..rows.num_rows() {
                k.push(rows.row(j).data(), 0, 0)?;
            }
        }
        Ok::<_, IngestError>(Some(k))
    };
    let ((mut sspill, stash, wm, ordinal), mut kspill) =
        futures::future::try_join(changed, present).await?;
    let source_scanned = scan_started.elapsed();
    let Scanned {
        spill: mut tspill,
        files: scanned,
    } = target_scan
        .await
        .map_err(|e| IngestError::target(&spec.name, format!("the target scan stopped: {e}")))??;
    tracing::debug!(table = %spec.name, source_ms = source_scanned.as_millis() as u64, both_ms = scan_started.elapsed().as_millis() as u64, "merge: source and target scanned");
    let mut stash = stash.into_inner().map_err(|e| stash_err(&e))?;
    stash.rewind().map_err(|e| stash_err(&e))?;

    // Join partition by partition.
    let rules = join::Rules {
        every_source_row_changed: mode == LoadMode::Watermark,
        deletes_visible: mode == LoadMode::KeyHash || kspill.is_some(),
        hard_deletes: spec.hard_deletes,
        table: &spec.name,
        hasher: &hasher,
    };
    let packing = Packing::for_types(hasher.key_types());
    let mut ch = Changes {
        vectors: state.deletion_vectors,
        ..Default::default()
    };
    // Partitions read back, and joined (the sorted way's buffers kept from one to the next).
    let (mut read, mut joined) = (Duration::ZERO, Duration::ZERO);
    let mut buffers = join::Sorted::default();
    for p in 0..partitions {
        let started = Instant::now();
        let target = tspill.take(p)?;
        let source = sspill.take(p)?;
        let present = match kspill.as_mut() {
            Some(k) => Some(k.take(p)?),
            None => None,
        };
        let part = join::Partition {
            target: &target,
            source: &source,
            present: present.as_ref(),
        };
        read += started.elapsed();
        let started = Instant::now();
        join::join(&part, packing.as_ref(), &rules, &mut buffers, &mut ch)?;
        joined += started.elapsed();
    }
    drop(buffers);
    tracing::debug!(
        table = %spec.name,
        partitions,
        read_ms = read.as_millis() as u64,
        join_ms = joined.as_millis() as u64,
        ms = scan_started.elapsed().as_millis() as u64,
        "merge: joined"
    );
    let spilled_bytes = tspill.spilled + sspill.spilled;
    let mut report = IngestReport {
        mode: Some(mode),
        version: state.version,
        source_rows: ordinal,
        inserted: ch.inserted,
        updated: ch.updated,
        deleted: ch.deleted,
        gone_from_source: ch.gone,
        watermark: wm.value(),
        spilled_bytes,
        ..Default::default()
    };
    if ch.take.is_empty() && ch.drop.is_empty() && ch.rows.is_empty() && added.is_empty() {
        return Ok(report);
    }
    let mut vector_file: Option<object_store::path::Path> = None;

    // New files: the changed source rows, then what survives of the touched target files.
    let mut writer = FileWriter::new(target, out, sizes.file_size, sizes.row_group_rows)?;
    let written: Result<Vec<Action>, IngestError> = async {
        ch.take.sort_unstable();
        let reader = ParquetRecordBatchReaderBuilder::try_new(stash)
            .and_then(|b| b.with_batch_size(sizes.batch_rows).build())
            .map_err(|e| stash_err(&e))?;
        let (mut start, mut next) = (0u64, 0usize);
        for b in reader {
            let b = b.map_err(|e| stash_err(&e))?;
            let n = b.num_rows() as u64;
            let mut mask = vec![false; b.num_rows()];
            let mut any = false;
            while next < ch.take.len() && ch.take[next] < start + n {
                mask[(ch.take[next] - start) as usize] = true;
                any = true;
                next += 1;
            }
            start += n;
            if any {
                writer.write(&filter(&b, mask, &spec.name)?).await?;
            }
        }
        if ch.vectors {
            // The touched files stay; their removed rows join their deletion vectors.
            let marked = mark_deleted(target, &spec.name, &state, &scanned, &mut ch.rows).await?;
            vector_file = marked.written;
            report.deletion_vectors = marked.vectors;
            report.files_removed = marked.emptied;
            return Ok(marked.actions);
        }
        // What survives of the touched files, read and filtered on a blocking thread while
        // this one encodes what it sends (a bounded channel keeps two batches in flight).
        let mut touched: Vec<(u32, HashSet<Vec<u8>>)> =
            std::mem::take(&mut ch.drop).into_iter().collect();
        touched.sort_by_key(|(i, _)| *i);
        let removes: Vec<Action> = touched
            .iter()
            .map(|(i, _)| Action::Remove(state.files[*i as usize].remove.clone()))
            .collect();
        // Each file with the deletion vector its scan already read.
        let jobs: Vec<(String, Option<RoaringTreemap>, HashSet<Vec<u8>>)> = touched
            .into_iter()
            .map(|(i, drop)| {
                let i = i as usize;
                (state.files[i].path.clone(), scanned[i].1.clone(), drop)
            })
            .collect();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<RecordBatch, IngestError>>(2);
        let reader = {
            let target = target.clone();
            let rhasher = KeyHasher::new(&schema, &spec.primary_key, &spec.name)?;
            let (name, batch_rows) = (spec.name.clone(), sizes.batch_rows);
            let handle = tokio::runtime::Handle::current();
            tokio::task::spawn_blocking(move || -> u64 {
                let mut kept_rows = 0u64;
                let send = |r| tx.blocking_send(r).is_ok();
                for (path, deleted, drop) in jobs {
                    let rows = target::live_rows_with(&target, &path, batch_rows, None, deleted);
                    let batches = match handle.block_on(rows) {
                        Ok(b) => b,
                        Err(e) => {
                            send(Err(e));
                            return kept_rows;
                        }
                    };
                    for b in batches {
                        let kept = b
                            .map_err(|e| IngestError::target(&name, format!("file {path}: {e}")))
                            .and_then(|(b, _)| {
                                let keys = rhasher.keys(&b)?;
                                let mask: Vec<bool> =
                                    keys.iter().map(|k| !drop.contains(k.data())).collect();
                                let n = mask.iter().filter(|m| **m).count();
                                Ok((
                                    n,
                                    if n > 0 {
                                        Some(filter(&b, mask, &name)?)
                                    } else {
                                        None
                                    },
                                ))
                            });
                        match kept {
                            Ok((_, None)) => {}
                            Ok((n, Some(b))) => {
                                kept_rows += n as u64;
                                if !send(Ok(b)) {
                                    return kept_rows;
                                }
                            }
                            Err(e) => {
                                send(Err(e));
                                return kept_rows;
                            }
                        }
                    }
                }
                kept_rows
            })
        };
        while let Some(b) = rx.recv().await {
            writer.write(&b?).await?;
        }
        report.rewritten_rows += reader.await.map_err(|e| {
            IngestError::target(
                &spec.name,
                format!("reading the touched files stopped: {e}"),
            )
        })?;
        Ok(removes)
    }
    .await;
    let discard_vectors = async |file: &Option<object_store::path::Path>| {
        if let Some(f) = file {
            let _ = object_store::ObjectStoreExt::delete(target.object_store().as_ref(), f).await;
        }
    };
    let removes = match written {
        Ok(r) => r,
        Err(e) => {
            writer.abort();
            discard_vectors(&vector_file).await;
            return Err(e);
        }
    };
    let adds = match writer.finish().await {
        Ok(a) => a,
        Err(e) => {
            discard_vectors(&vector_file).await;
            return Err(e);
        }
    };
    tracing::debug!(table = %spec.name, ms = scan_started.elapsed().as_millis() as u64, "merge: files written");
    report.files_added = adds.len() as u64;
    if !ch.vectors {
        report.files_removed = removes.len() as u64;
    }
    report.bytes_added = adds.iter().map(|a| a.size.max(0) as u64).sum();
    let snap = state
        .table
        .snapshot()
        .map_err(|e| IngestError::target(&spec.name, e))?;
    let mut actions = Vec::new();
    if !added.is_empty() {
        let metadata = snap
            .metadata()
            .clone()
            .with_schema(&new_schema)
            .map_err(|e| IngestError::target(&spec.name, e))?;
        actions.push(Action::Metadata(metadata));
    }
    actions.extend(removes);
    actions.extend(adds.into_iter().map(Action::Add));
    let on = spec
        .primary_key
        .iter()
        .map(|k| format!("target.`{k}` = source.`{k}`"))
        .collect::<Vec<_>>()
        .join(" AND ");
    // Delta's MERGE metric names, in `commitInfo.operationMetrics`.
    let metrics = serde_json::json!({
        "numSourceRows": report.source_rows,
        "numTargetRowsInserted": report.inserted,
        "numTargetRowsUpdated": report.updated,
        "numTargetRowsDeleted": report.deleted,
        "numTargetRowsCopied": report.rewritten_rows,
        "numOutputRows": report.inserted + report.updated + report.rewritten_rows,
        "numTargetFilesAdded": report.files_added,
        "numTargetFilesRemoved": report.files_removed,
        "numTargetBytesAdded": report.bytes_added,
        "numTargetDeletionVectorsAdded": report.deletion_vectors,
    });
    let done = CommitBuilder::default()
        .with_max_retries(0)
        .with_app_metadata(HashMap::from([("operationMetrics".to_owned(), metrics)]))
        .with_actions(actions)
        .build(
            Some(snap),
            state.table.log_store(),
            DeltaOperation::Merge {
                predicate: None,
                merge_predicate: Some(on),
                matched_predicates: Vec::new(),
                not_matched_predicates: Vec::new(),
                not_matched_by_source_predicates: Vec::new(),
            },
        )
        .await;
    let done = match done {
        Ok(d) => d,
        Err(e) => {
            discard_vectors(&vector_file).await;
            return Err(commit_error(&spec.name, e));
        }
    };
    report.committed = true;
    report.version = done.version as u64;
    report.added_columns = added;
    Ok(report)
}

fn filter(b: &RecordBatch, mask: Vec<bool>, table: &str) -> Result<RecordBatch, IngestError> {
    arrow::compute::filter_record_batch(b, &BooleanArray::from(mask))
        .map_err(|e| IngestError::target(table, e))
}

/// The largest value of the watermark column seen, compared in Arrow's row format (which
/// orders like the typed values), rendered as the SQL sources' watermark filter reads it.
struct WatermarkMax {
    column: Option<String>,
    conv: Option<RowConverter>,
    best: Option<(Vec<u8>, String)>,
}

impl WatermarkMax {
    fn new(column: Option<String>) -> Self {
        Self {
            column,
            conv: None,
            best: None,
        }
    }

    fn update(&mut self, b: &RecordBatch) -> Result<(), IngestError> {
        let Some(name) = &self.column else {
            return Ok(());
        };
        let Some(col) = b.column_by_name(name) else {
            return Ok(());
        };
        let err = |e: arrow::error::ArrowError| IngestError::Data {
            table: name.clone(),
            detail: format!("watermark column `{name}`: {e}"),
        };
        if self.conv.is_none() {
            self.conv = Some(
                RowConverter::new(vec![SortField::new(col.data_type().clone())]).map_err(err)?,
            );
        }
        let conv = self.conv.as_ref().expect("set above");
        let rows = conv
            .convert_columns(std::slice::from_ref(col))
            .map_err(err)?;
        let mut top: Option<usize> = None;
        for i in 0..col.len() {
            if col.is_null(i) {
                continue;
            }
            let better = match (top, &self.best) {
                (Some(t), _) => rows.row(i) > rows.row(t),
                (None, Some((best, _))) => rows.row(i).data() > best.as_slice(),
                (None, None) => true,
            };
            if better {
                top = Some(i);
            }
        }
        if let Some(i) = top
            && self
                .best
                .as_ref()
                .is_none_or(|(best, _)| rows.row(i).data() > best.as_slice())
        {
            self.best = Some((rows.row(i).data().to_vec(), render(col, i).map_err(err)?));
        }
        Ok(())
    }

    fn value(&self) -> Option<String> {
        self.best.as_ref().map(|(_, v)| v.clone())
    }
}

/// One value as a watermark: timestamps `YYYY-MM-DD HH:MM:SS.ffffff` (UTC), dates
/// `YYYY-MM-DD`, numbers and text as Arrow displays them.
fn render(col: &ArrayRef, i: usize) -> Result<String, arrow::error::ArrowError> {
    use arrow::array::AsArray;
    use arrow::datatypes::TimestampMicrosecondType;
    if let DataType::Timestamp(TimeUnit::Microsecond, _) = col.data_type() {
        let v = col.as_primitive::<TimestampMicrosecondType>().value(i);
        if let Some(t) = chrono::DateTime::from_timestamp_micros(v) {
            return Ok(t.naive_utc().format("%Y-%m-%d %H:%M:%S%.6f").to_string());
        }
    }
    arrow::util::display::array_value_to_string(col, i)
}
