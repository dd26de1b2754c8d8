//! Row-level reconciliation of two Delta snapshots, streamed with bounded memory.
//!
//! With primary-key columns, every row of both tables is reduced to its key (Arrow's
//! row format: a byte string that compares and hashes like the typed values) and a 64-bit
//! hash of its other columns (xxh3 over their row format). Both tables are scanned at
//! once, one thread each, and the `(key, row hash)` records are hash-partitioned by key into
//! buffers that spill to anonymous temporary files past a small chunk. Each partition is
//! then joined on its own — build a hash table from the source's records, stream the
//! target's — two partitions at a time. The number of partitions follows the row count
//! from the log's statistics and the memory budget, so peak memory is one chunk per
//! partition plus the two partitions being joined, whatever the table's size.
//!
//! The join finds keys missing in the target, extra in the target, and present in both
//! with a different row hash (changed), with counts and a sample of each: the smallest
//! keys of the category, so the sample is the same on every run.
//! Duplicate keys are counted, not compared.
//!
//! Optionally every table partition (or the whole table, when unpartitioned) gets a row
//! count and an order-independent checksum (the wrapping sum of the rows' hashes) on each
//! side, so a difference can be localised without a key.

use std::collections::{BinaryHeap, HashMap};
use std::io::{BufReader, Read, Seek, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::row::{RowConverter, Rows, SortField};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use delta_kernel::engine::arrow_conversion::TryIntoArrow;
use hashbrown::HashTable;
use replicator_proto::{KeyDiff, PartitionDiff};
use twox_hash::XxHash3_64;

use crate::clone::load;
use crate::inspect::scan_each;
use crate::{LakeError, TableLocation};

/// What to compare.
#[derive(Clone, Debug)]
pub struct CompareOptions {
    /// Primary-key columns; empty: no key comparison.
    pub primary_key: Vec<String>,
    /// Per-partition row counts and checksums.
    pub partition_checksums: bool,
    /// Keys kept per category (missing, extra, changed) as a sample.
    pub sample_size: usize,
    /// Memory the comparison may use for its hash tables and buffers, in bytes.
    pub memory_budget: u64,
}

impl Default for CompareOptions {
    fn default() -> Self {
        Self {
            primary_key: Vec::new(),
            partition_checksums: false,
            sample_size: 10,
            memory_budget: 512 << 20,
        }
    }
}

/// What the comparison found.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    pub source_version: u64,
    pub target_version: u64,
    pub source_rows: u64,
    pub target_rows: u64,
    /// Key-level differences (when a primary key was given).
    pub keys: Option<KeyDiff>,
    /// Partitions whose row count or checksum differ, sorted, at most [`MAX_PARTITIONS`].
    pub partitions: Vec<PartitionDiff>,
    /// How many partitions were compared and how many differ (when checksums were asked).
    pub partition_counts: Option<(u64, u64)>,
    /// Non-key columns compared through the row hash.
    pub compared_columns: Vec<String>,
    /// Columns left out of the row hash (only on one side, or of a type without a row
    /// format), with the reason.
    pub ignored_columns: Vec<String>,
    /// Hash partitions the records were spread over (1: everything fit at once).
    pub hash_partitions: usize,
}

/// Differing partitions reported at most.
pub const MAX_PARTITIONS: usize = 100;

/// Hash partitions at most (each holds a spill file per side open until it is joined).
const MAX_HASH_PARTITIONS: usize = 256;

/// Partitions joined at once: one per core, at most 4.
fn join_workers() -> usize {
    std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 4)
}

/// Compare `target` (at `target_version`, latest when `None`) with `source` (likewise).
pub async fn compare(
    source: &TableLocation,
    source_version: Option<u64>,
    target: &TableLocation,
    target_version: Option<u64>,
    options: &CompareOptions,
) -> Result<Comparison, LakeError> {
    let (src, tgt) = tokio::try_join!(
        Side::open(source, source_version),
        Side::open(target, target_version)
    )?;
    let plan = Arc::new(Plan::new(&src, &tgt, options)?);
    // Partitions: as many as keep the joins that run at once within the budget (≈ 96
    // bytes per row held, key included), at least one per join worker on larger tables,
    // and at most 256 (two spill files each stay open until joined).
    let workers = join_workers();
    let estimate = src.estimated_rows.max(tgt.estimated_rows);
    let per_partition = (options.memory_budget / workers as u64 / 96).max(1024);
    let mut partitions = estimate.div_ceil(per_partition).max(1) as usize;
    if estimate > 200_000 {
        partitions = partitions.max(2 * workers);
    }
    let partitions = partitions.min(MAX_HASH_PARTITIONS);
    let chunk = ((options.memory_budget / 8) as usize / (2 * partitions)).clamp(16 << 10, 1 << 20);
    let (src_version, tgt_version) = (src.version, tgt.version);
    let scan = |side: Side| {
        let plan = plan.clone();
        tokio::task::spawn_blocking(move || side.scan(&plan, partitions, chunk))
    };
    let started = std::time::Instant::now();
    let (s, t) = tokio::join!(scan(src), scan(tgt));
    let joined = |r: Result<Result<Scanned, LakeError>, tokio::task::JoinError>| {
        r.map_err(|e| LakeError::Invalid(format!("scan task failed: {e}")))?
    };
    let (s, t) = (joined(s)?, joined(t)?);
    tracing::debug!(
        source_rows = s.rows,
        target_rows = t.rows,
        partitions,
        ms = started.elapsed().as_millis() as u64,
        "both tables scanned"
    );
    let started = std::time::Instant::now();
    let (source_rows, target_rows) = (s.rows, t.rows);
    let (partition_counts, partition_diffs) = if options.partition_checksums {
        let (n, d) = plan.partition_diffs(&s.checksums, &t.checksums)?;
        (Some(n), d)
    } else {
        (None, Vec::new())
    };
    let keys = if plan.keys.is_empty() {
        None
    } else {
        let plan = plan.clone();
        let sample = options.sample_size;
        Some(
            tokio::task::spawn_blocking(move || join_all(&plan, s.spill, t.spill, sample))
                .await
                .map_err(|e| LakeError::Invalid(format!("join task failed: {e}")))??,
        )
    };
    tracing::debug!(ms = started.elapsed().as_millis() as u64, "keys joined");
    Ok(Comparison {
        source_version: src_version,
        target_version: tgt_version,
        source_rows,
        target_rows,
        keys,
        partitions: partition_diffs,
        partition_counts,
        compared_columns: plan.values.iter().map(|f| f.name().clone()).collect(),
        ignored_columns: plan.ignored.clone(),
        hash_partitions: partitions,
    })
}

fn arrow_err(what: &str) -> impl Fn(arrow::error::ArrowError) -> LakeError + '_ {
    move |e| LakeError::Invalid(format!("{what}: {e}"))
}

/// One table, opened at a version.
struct Side {
    url: String,
    version: u64,
    schema: Schema,
    partition_columns: Vec<String>,
    estimated_rows: u64,
    engine: Arc<dyn delta_kernel::Engine>,
}

impl Side {
    async fn open(loc: &TableLocation, version: Option<u64>) -> Result<Self, LakeError> {
        let table = load(loc, version).await?;
        let url = loc.url().to_string();
        let snap = table
            .snapshot()
            .map_err(|e| LakeError::from_delta(&url, version, e))?;
        let schema: Schema = snap
            .schema()
            .as_ref()
            .try_into_arrow()
            .map_err(arrow_err("cannot convert the table schema"))?;
        let mut rows = 0u64;
        for f in snap.log_data().iter() {
            // Without statistics, assume a row per 8 bytes of parquet: rather too many
            // partitions than too few.
            rows += f
                .num_records()
                .map_or(f.size().max(0) as u64 / 8, |n| n as u64);
        }
        Ok(Self {
            version: snap.version(),
            partition_columns: snap.metadata().partition_columns().to_vec(),
            schema,
            estimated_rows: rows,
            engine: table.log_store().engine(None),
            url: table.table_url().to_string(),
        })
    }

    /// Scan every row (deletion vectors and column mapping applied) into spilled records
    /// and per-partition checksums.
    fn scan(self, plan: &Plan, partitions: usize, chunk: usize) -> Result<Scanned, LakeError> {
        let started = std::time::Instant::now();
        let mut encode = std::time::Duration::ZERO;
        let mut out = Scanned {
            rows: 0,
            spill: Spill::new(partitions, chunk),
            checksums: HashMap::new(),
        };
        let enc = plan.encoders()?;
        let mut last_part: Option<(Vec<u8>, u64, u64)> = None;
        let mut hashes: Vec<u64> = Vec::new();
        scan_each(&self.url, self.version, &self.engine, |batch| {
            let t = std::time::Instant::now();
            let n = batch.num_rows();
            out.rows += n as u64;
            let keys = enc.rows(&enc.keys, &plan.keys, batch)?;
            let values = enc.columns(&plan.values, batch)?;
            hashes.clear();
            hashes.resize(n, 0);
            hash_columns(&values, &mut hashes)?;
            let parts = if plan.checksums {
                enc.rows(&enc.parts, &plan.parts, batch)?
            } else {
                None
            };
            for (i, &vh) in hashes.iter().enumerate() {
                let key: &[u8] = keys.as_ref().map_or(&[], |k| k.row(i).data());
                if keys.is_some() {
                    out.spill.push(key, vh)?;
                }
                if plan.checksums {
                    let part: &[u8] = parts.as_ref().map_or(&[], |p| p.row(i).data());
                    let h = XxHash3_64::oneshot(key).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ vh;
                    match &mut last_part {
                        Some((p, count, sum)) if p.as_slice() == part => {
                            *count += 1;
                            *sum = sum.wrapping_add(h);
                        }
                        _ => {
                            if let Some((p, count, sum)) = last_part.take() {
                                out.add_checksum(p, count, sum);
                            }
                            last_part = Some((part.to_vec(), 1, h));
                        }
                    }
                }
            }
            encode += t.elapsed();
            Ok(())
        })?;
        if let Some((p, count, sum)) = last_part {
            out.add_checksum(p, count, sum);
        }
        tracing::debug!(
            table = %self.url,
            rows = out.rows,
            read_ms = started.elapsed().saturating_sub(encode).as_millis() as u64,
            total_ms = started.elapsed().as_millis() as u64,
            "scanned"
        );
        Ok(out)
    }
}

/// The hash of a NULL value.
const NULL_HASH: u64 = 0x6e75_6c6c_6e75_6c6c;

/// splitmix64's finalizer: a fast, well-mixed hash of one 64-bit word.
fn mix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Fold one column's value hash into a row's hash (order matters: a value moved to another
/// column changes the row's hash).
fn combine(row: u64, value: u64) -> u64 {
    (row.rotate_left(23) ^ value).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Hash every row of `columns` into `hashes`, column by column: fixed-width values by their
/// bytes, strings and binaries by xxh3, booleans by value, anything else (nested, dictionary)
/// through Arrow's row format. Works on the columns' memory directly: no per-row encoding.
fn hash_columns(columns: &[ArrayRef], hashes: &mut [u64]) -> Result<(), LakeError> {
    use arrow::array::{Array, AsArray};
    for col in columns {
        let nulls = col.logical_nulls();
        let is_null = |i: usize| nulls.as_ref().is_some_and(|b| b.is_null(i));
        let mut fold = |f: &dyn Fn(usize) -> u64| {
            for (i, h) in hashes.iter_mut().enumerate() {
                *h = combine(*h, if is_null(i) { NULL_HASH } else { f(i) });
            }
        };
        let dt = col.data_type();
        if let Some(width) = dt
            .primitive_width()
            .filter(|w| matches!(w, 1 | 2 | 4 | 8 | 16 | 32))
        {
            let data = col.to_data();
            let start = data.offset() * width;
            let bytes = &data.buffers()[0].as_slice()[start..start + col.len() * width];
            fold(&|i| {
                bytes[i * width..(i + 1) * width]
                    .chunks(8)
                    .fold(0u64, |acc, c| {
                        let mut word = [0u8; 8];
                        word[..c.len()].copy_from_slice(c);
                        mix64(acc ^ u64::from_le_bytes(word))
                    })
            });
            continue;
        }
        match dt {
            DataType::Boolean => {
                let a = col.as_boolean();
                fold(&|i| mix64(a.value(i) as u64 + 1));
            }
            DataType::Utf8 => {
                let a = col.as_string::<i32>();
                fold(&|i| XxHash3_64::oneshot(a.value(i).as_bytes()));
            }
            DataType::LargeUtf8 => {
                let a = col.as_string::<i64>();
                fold(&|i| XxHash3_64::oneshot(a.value(i).as_bytes()));
            }
            DataType::Utf8View => {
                let a = col.as_string_view();
                fold(&|i| XxHash3_64::oneshot(a.value(i).as_bytes()));
            }
            DataType::Binary => {
                let a = col.as_binary::<i32>();
                fold(&|i| XxHash3_64::oneshot(a.value(i)));
            }
            DataType::LargeBinary => {
                let a = col.as_binary::<i64>();
                fold(&|i| XxHash3_64::oneshot(a.value(i)));
            }
            DataType::BinaryView => {
                let a = col.as_binary_view();
                fold(&|i| XxHash3_64::oneshot(a.value(i)));
            }
            _ => {
                let conv = converter(&[Field::new("v", dt.clone(), true)])?.expect("one field");
                let rows = conv
                    .convert_columns(std::slice::from_ref(col))
                    .map_err(arrow_err("cannot encode rows"))?;
                fold(&|i| XxHash3_64::oneshot(rows.row(i).data()));
            }
        }
    }
    Ok(())
}

/// What a scan left behind.
struct Scanned {
    rows: u64,
    spill: Spill,
    /// Partition (row format bytes) → (rows, checksum).
    checksums: HashMap<Vec<u8>, (u64, u64)>,
}

impl Scanned {
    fn add_checksum(&mut self, part: Vec<u8>, count: u64, sum: u64) {
        let e = self.checksums.entry(part).or_insert((0, 0));
        e.0 += count;
        e.1 = e.1.wrapping_add(sum);
    }
}

/// Which columns take part, with the (source's) types both sides are read as.
struct Plan {
    keys: Vec<Field>,
    values: Vec<Field>,
    parts: Vec<Field>,
    ignored: Vec<String>,
    checksums: bool,
}

/// Row converters for one scan (one per thread: conversion needs `&mut`-free but
/// converters are cheap, and identical types give identical bytes on both sides).
struct Encoders {
    keys: Option<RowConverter>,
    parts: Option<RowConverter>,
}

impl Encoders {
    fn rows(
        &self,
        conv: &Option<RowConverter>,
        fields: &[Field],
        batch: &RecordBatch,
    ) -> Result<Option<Rows>, LakeError> {
        let Some(conv) = conv else { return Ok(None) };
        let columns = self.columns(fields, batch)?;
        conv.convert_columns(&columns)
            .map(Some)
            .map_err(arrow_err("cannot encode rows"))
    }

    /// `fields` of `batch`, each read as the plan's type.
    fn columns(&self, fields: &[Field], batch: &RecordBatch) -> Result<Vec<ArrayRef>, LakeError> {
        fields
            .iter()
            .map(|f| {
                let c = batch.column_by_name(f.name()).ok_or_else(|| {
                    LakeError::Invalid(format!(
                        "column `{}` is missing from a scanned batch",
                        f.name()
                    ))
                })?;
                if c.data_type() == f.data_type() {
                    Ok(c.clone())
                } else {
                    // Unsafe casts fail instead of turning what does not fit into NULL.
                    let options = arrow::compute::CastOptions {
                        safe: false,
                        ..Default::default()
                    };
                    arrow::compute::cast_with_options(c, f.data_type(), &options).map_err(
                        arrow_err(&format!(
                            "cannot read column `{}` as {}",
                            f.name(),
                            f.data_type()
                        )),
                    )
                }
            })
            .collect::<Result<Vec<ArrayRef>, LakeError>>()
    }
}

fn converter(fields: &[Field]) -> Result<Option<RowConverter>, LakeError> {
    if fields.is_empty() {
        return Ok(None);
    }
    RowConverter::new(
        fields
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect(),
    )
    .map(Some)
    .map_err(arrow_err("cannot build a row encoder"))
}

fn supported(dt: &DataType) -> bool {
    RowConverter::supports_fields(&[SortField::new(dt.clone())])
}

impl Plan {
    fn new(src: &Side, tgt: &Side, options: &CompareOptions) -> Result<Self, LakeError> {
        let mut keys = Vec::new();
        for k in &options.primary_key {
            let f = src.schema.field_with_name(k).map_err(|_| {
                LakeError::Invalid(format!(
                    "primary key column `{k}` is not in the source table"
                ))
            })?;
            if tgt.schema.field_with_name(k).is_err() {
                return Err(LakeError::Invalid(format!(
                    "primary key column `{k}` is not in the target table"
                )));
            }
            if !supported(f.data_type()) {
                return Err(LakeError::Invalid(format!(
                    "primary key column `{k}` has type {}, which cannot be compared",
                    f.data_type()
                )));
            }
            keys.push(f.clone());
        }
        let (mut values, mut ignored) = (Vec::new(), Vec::new());
        for f in src.schema.fields() {
            if options.primary_key.contains(f.name()) {
                continue;
            }
            if tgt.schema.field_with_name(f.name()).is_err() {
                ignored.push(format!("{} (not in the target)", f.name()));
            } else if !supported(f.data_type()) {
                ignored.push(format!(
                    "{} (type {} has no row format)",
                    f.name(),
                    f.data_type()
                ));
            } else {
                values.push(f.as_ref().clone());
            }
        }
        for f in tgt.schema.fields() {
            if src.schema.field_with_name(f.name()).is_err() {
                ignored.push(format!("{} (not in the source)", f.name()));
            }
        }
        let parts = src
            .partition_columns
            .iter()
            .filter(|p| tgt.partition_columns.contains(p))
            .filter_map(|p| src.schema.field_with_name(p).ok().cloned())
            .collect();
        Ok(Self {
            keys,
            values,
            parts,
            ignored,
            checksums: options.partition_checksums,
        })
    }

    fn encoders(&self) -> Result<Encoders, LakeError> {
        Ok(Encoders {
            keys: converter(&self.keys)?,
            parts: converter(&self.parts)?,
        })
    }

    /// Render row-format bytes of `fields` as `name=value, …`.
    fn render(&self, fields: &[Field], rows: &[Vec<u8>]) -> Result<Vec<String>, LakeError> {
        let Some(conv) = converter(fields)? else {
            return Ok(rows.iter().map(|_| "(table)".to_owned()).collect());
        };
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let parser = conv.parser();
        let arrays = conv
            .convert_rows(rows.iter().map(|r| parser.parse(r)))
            .map_err(arrow_err("cannot decode keys"))?;
        let options = FormatOptions::default().with_null("NULL");
        let formatters = arrays
            .iter()
            .map(|a| ArrayFormatter::try_new(a.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()
            .map_err(arrow_err("cannot render keys"))?;
        Ok((0..rows.len())
            .map(|i| {
                fields
                    .iter()
                    .zip(&formatters)
                    .map(|(f, fmt)| format!("{}={}", f.name(), fmt.value(i)))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .collect())
    }

    /// Partitions whose count or checksum differ, and (compared, differing) counts.
    #[allow(clippy::type_complexity)]
    fn partition_diffs(
        &self,
        src: &HashMap<Vec<u8>, (u64, u64)>,
        tgt: &HashMap<Vec<u8>, (u64, u64)>,
    ) -> Result<((u64, u64), Vec<PartitionDiff>), LakeError> {
        let mut all: Vec<&Vec<u8>> = src.keys().chain(tgt.keys()).collect();
        all.sort();
        all.dedup();
        let differing: Vec<Vec<u8>> = all
            .iter()
            .filter(|p| src.get(**p) != tgt.get(**p))
            .map(|p| (*p).clone())
            .collect();
        let names = self.render(&self.parts, &differing)?;
        let mut diffs: Vec<PartitionDiff> = differing
            .iter()
            .zip(names)
            .map(|(p, name)| {
                let (s, t) = (src.get(p), tgt.get(p));
                PartitionDiff {
                    partition: if self.parts.is_empty() {
                        "(table)".into()
                    } else {
                        name
                    },
                    source_rows: s.map_or(0, |x| x.0),
                    target_rows: t.map_or(0, |x| x.0),
                    source_checksum: s.map(|x| format!("{:016x}", x.1)),
                    target_checksum: t.map(|x| format!("{:016x}", x.1)),
                }
            })
            .collect();
        diffs.sort_by(|a, b| a.partition.cmp(&b.partition));
        let counts = (all.len() as u64, diffs.len() as u64);
        diffs.truncate(MAX_PARTITIONS);
        Ok((counts, diffs))
    }
}

/// Records `(u16 key length, key, u64 row hash)`, hash-partitioned by key, in buffers that
/// spill to anonymous temporary files.
struct Spill {
    buffers: Vec<Vec<u8>>,
    files: Vec<Option<std::fs::File>>,
    chunk: usize,
}

impl Spill {
    fn new(partitions: usize, chunk: usize) -> Self {
        Self {
            buffers: (0..partitions).map(|_| Vec::new()).collect(),
            files: (0..partitions).map(|_| None).collect(),
            chunk,
        }
    }

    fn partition_of(&self, key: &[u8]) -> usize {
        let h = XxHash3_64::oneshot_with_seed(PARTITION_SEED, key);
        ((h as u128 * self.buffers.len() as u128) >> 64) as usize
    }

    fn push(&mut self, key: &[u8], row_hash: u64) -> Result<(), LakeError> {
        let len = u16::try_from(key.len()).map_err(|_| {
            LakeError::Invalid(format!(
                "a primary key value takes {} bytes; at most 65535 are supported",
                key.len()
            ))
        })?;
        let p = self.partition_of(key);
        let b = &mut self.buffers[p];
        b.extend_from_slice(&len.to_le_bytes());
        b.extend_from_slice(key);
        b.extend_from_slice(&row_hash.to_le_bytes());
        if b.len() >= self.chunk {
            let file = match &mut self.files[p] {
                Some(f) => f,
                slot => slot.insert(tempfile::tempfile().map_err(spill_err)?),
            };
            file.write_all(b).map_err(spill_err)?;
            b.clear();
        }
        Ok(())
    }

    /// Everything written to partition `p`, in order.
    fn take(&mut self, p: usize) -> Result<impl Read + use<>, LakeError> {
        let rest = std::io::Cursor::new(std::mem::take(&mut self.buffers[p]));
        let file = match self.files[p].take() {
            Some(mut f) => {
                f.rewind().map_err(spill_err)?;
                Some(BufReader::with_capacity(1 << 20, f))
            }
            None => None,
        };
        Ok(OptionalRead(file).chain(rest))
    }
}

const PARTITION_SEED: u64 = 0x9a27_1710;

struct OptionalRead<R>(Option<R>);

impl<R: Read> Read for OptionalRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.as_mut().map_or(Ok(0), |r| r.read(buf))
    }
}

fn spill_err(e: std::io::Error) -> LakeError {
    LakeError::Invalid(format!("cannot use a temporary spill file: {e}"))
}

/// The records of a spilled partition, read whole, parsed in place.
struct Records {
    data: Vec<u8>,
}

impl Records {
    fn read(mut r: impl Read) -> Result<Self, LakeError> {
        let mut data = Vec::new();
        r.read_to_end(&mut data).map_err(spill_err)?;
        Ok(Self { data })
    }

    /// The key and row hash of the record at byte `o`.
    fn record_at(&self, o: usize) -> (&[u8], u64) {
        let d = &self.data;
        let len = u16::from_le_bytes([d[o], d[o + 1]]) as usize;
        let hash = u64::from_le_bytes(d[o + 2 + len..o + 10 + len].try_into().expect("8 bytes"));
        (&d[o + 2..o + 2 + len], hash)
    }

    /// `(offset, key, row hash)` of each record, in order.
    fn iter(&self) -> impl Iterator<Item = (usize, &[u8], u64)> + '_ {
        let mut o = 0;
        std::iter::from_fn(move || {
            if o + 2 > self.data.len() {
                return None;
            }
            let (at, (key, hash)) = (o, self.record_at(o));
            o += 10 + key.len();
            Some((at, key, hash))
        })
    }

    fn key_at(&self, offset: u32) -> &[u8] {
        self.record_at(offset as usize).0
    }

    fn hash_at(&self, offset: u32) -> u64 {
        self.record_at(offset as usize).1
    }
}

/// What one partition's join found.
#[derive(Default)]
struct Joined {
    missing: u64,
    extra: u64,
    changed: u64,
    duplicate_source: u64,
    duplicate_target: u64,
    missing_sample: BinaryHeap<Vec<u8>>,
    extra_sample: BinaryHeap<Vec<u8>>,
    changed_sample: BinaryHeap<Vec<u8>>,
}

/// Keep the `cap` smallest keys seen (row-format bytes sort like the typed keys).
fn keep_smallest(heap: &mut BinaryHeap<Vec<u8>>, key: &[u8], cap: usize) {
    if heap.len() < cap {
        heap.push(key.to_vec());
    } else if heap.peek().is_some_and(|max| key < max.as_slice()) {
        heap.pop();
        heap.push(key.to_vec());
    }
}

fn join_partition(src: impl Read, tgt: impl Read, sample: usize) -> Result<Joined, LakeError> {
    let mut out = Joined::default();
    // Build: index the source's records where they lie (offsets into the read buffer), in a
    // table sized up front so it never grows.
    let src = Records::read(src)?;
    if src.data.len() > u32::MAX as usize {
        return Err(LakeError::Invalid(
            "a hash partition outgrew 4 GiB: raise reconciliation.memory_mb".into(),
        ));
    }
    let count = src.iter().count();
    let mut offsets: Vec<u32> = Vec::with_capacity(count);
    let mut table: HashTable<u32> = HashTable::with_capacity(count);
    for (at, key, _) in src.iter() {
        let kh = XxHash3_64::oneshot(key);
        if table
            .find(kh, |&i| src.key_at(offsets[i as usize]) == key)
            .is_some()
        {
            out.duplicate_source += 1;
            continue;
        }
        let idx = offsets.len() as u32;
        offsets.push(at as u32);
        table.insert_unique(kh, idx, |&i| {
            XxHash3_64::oneshot(src.key_at(offsets[i as usize]))
        });
    }
    // Probe: the target's records in order.
    let tgt = Records::read(tgt)?;
    if tgt.data.len() > u32::MAX as usize {
        return Err(LakeError::Invalid(
            "a hash partition outgrew 4 GiB: raise reconciliation.memory_mb".into(),
        ));
    }
    let mut matched = vec![false; offsets.len()];
    // Keys only the target has: counted once as extra, their repeats as duplicates.
    let mut extras: HashTable<u32> = HashTable::new();
    for (at, key, vh) in tgt.iter() {
        let kh = XxHash3_64::oneshot(key);
        match table.find(kh, |&i| src.key_at(offsets[i as usize]) == key) {
            None => {
                if extras.find(kh, |&o| tgt.key_at(o) == key).is_some() {
                    out.duplicate_target += 1;
                    continue;
                }
                extras.insert_unique(kh, at as u32, |&o| XxHash3_64::oneshot(tgt.key_at(o)));
                out.extra += 1;
                keep_smallest(&mut out.extra_sample, key, sample);
            }
            Some(&i) => {
                let i = i as usize;
                if matched[i] {
                    out.duplicate_target += 1;
                    continue;
                }
                matched[i] = true;
                if src.hash_at(offsets[i]) != vh {
                    out.changed += 1;
                    keep_smallest(&mut out.changed_sample, key, sample);
                }
            }
        }
    }
    for (i, m) in matched.iter().enumerate() {
        if !m {
            out.missing += 1;
            keep_smallest(&mut out.missing_sample, src.key_at(offsets[i]), sample);
        }
    }
    Ok(out)
}

/// Join every partition, two (or as many as there are cores) at a time.
fn join_all(
    plan: &Plan,
    mut src: Spill,
    mut tgt: Spill,
    sample: usize,
) -> Result<KeyDiff, LakeError> {
    let n = src.buffers.len();
    let inputs = (0..n)
        .map(|p| Ok((src.take(p)?, tgt.take(p)?)))
        .collect::<Result<Vec<_>, LakeError>>()?;
    let inputs: Vec<std::sync::Mutex<Option<_>>> = inputs
        .into_iter()
        .map(|i| std::sync::Mutex::new(Some(i)))
        .collect();
    let next = AtomicUsize::new(0);
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(n);
    let results: Vec<Result<Vec<Joined>, LakeError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let p = next.fetch_add(1, Ordering::Relaxed);
                        if p >= n {
                            return Ok(done);
                        }
                        let taken = inputs[p].lock().expect("not poisoned").take();
                        if let Some((s, t)) = taken {
                            done.push(join_partition(s, t, sample)?);
                        }
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(LakeError::Invalid("a join thread panicked".into())))
            })
            .collect()
    });
    let mut total = Joined::default();
    let (mut missing, mut extra, mut changed) = (Vec::new(), Vec::new(), Vec::new());
    for r in results {
        for j in r? {
            total.missing += j.missing;
            total.extra += j.extra;
            total.changed += j.changed;
            total.duplicate_source += j.duplicate_source;
            total.duplicate_target += j.duplicate_target;
            missing.extend(j.missing_sample);
            extra.extend(j.extra_sample);
            changed.extend(j.changed_sample);
        }
    }
    let sample_of = |keys: Vec<Vec<u8>>| -> Result<Vec<String>, LakeError> {
        let mut keys = keys;
        // Each partition kept its smallest keys: the smallest of those are the table's.
        keys.sort();
        keys.truncate(sample);
        plan.render(&plan.keys, &keys)
    };
    Ok(KeyDiff {
        primary_key: plan.keys.iter().map(|f| f.name().clone()).collect(),
        missing: total.missing,
        extra: total.extra,
        changed: total.changed,
        duplicate_source: total.duplicate_source,
        duplicate_target: total.duplicate_target,
        missing_sample: sample_of(missing)?,
        extra_sample: sample_of(extra)?,
        changed_sample: sample_of(changed)?,
    })
}
