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
//!
//! The module's parts: `columns` decides which columns take part and hashes rows,
//! `spill` holds the hash-partitioned records (spilling to disk), `join` joins them
//! partition by partition, and `output` renders the samples and partition differences.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::Schema;
use delta_kernel::engine::arrow_conversion::TryIntoArrow;
use replicator_proto::{KeyDiff, PartitionDiff};
use twox_hash::XxHash3_64;

use crate::clone::load;
use crate::inspect::scan_each;
use crate::{LakeError, TableLocation};

mod columns;
mod join;
mod output;
mod spill;

use columns::ScanPlan;
pub use columns::hash_columns;
use join::join_all;
use spill::Spill;

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
    compare_spilling(source, source_version, target, target_version, options)
        .await
        .map(|(comparison, _)| comparison)
}

/// [`compare`], and how many bytes of records went to spill files on disk.
async fn compare_spilling(
    source: &TableLocation,
    source_version: Option<u64>,
    target: &TableLocation,
    target_version: Option<u64>,
    options: &CompareOptions,
) -> Result<(Comparison, u64), LakeError> {
    let (src, tgt) = tokio::try_join!(
        Side::open(source, source_version),
        Side::open(target, target_version)
    )?;
    let plan = Arc::new(ScanPlan::new(&src, &tgt, options)?);
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
    let spilled = s.spill.spilled + t.spill.spilled;
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
    let comparison = Comparison {
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
    };
    Ok((comparison, spilled))
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
    fn scan(self, plan: &ScanPlan, partitions: usize, chunk: usize) -> Result<Scanned, LakeError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::{append, create, orders};

    fn at(p: std::path::PathBuf) -> TableLocation {
        TableLocation::parse(p.to_str().unwrap()).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_tiny_memory_budget_spills_and_finds_the_same_differences() {
        let dir = tempfile::tempdir().unwrap();
        let (src, tgt) = (at(dir.path().join("src")), at(dir.path().join("tgt")));
        create(&src, &orders(0, 5000, "emea"), &[]).await.unwrap();
        append(&src, &orders(5000, 1000, "emea")).await.unwrap();
        // 0..100 missing, 5000..6000 changed (another region), 6000..6100 extra, and
        // 200..205 twice (same rows).
        create(&tgt, &orders(100, 4900, "emea"), &[]).await.unwrap();
        append(&tgt, &orders(5000, 1000, "amer")).await.unwrap();
        append(&tgt, &orders(6000, 100, "emea")).await.unwrap();
        append(&tgt, &orders(200, 5, "emea")).await.unwrap();
        let options = CompareOptions {
            primary_key: vec!["id".into()],
            partition_checksums: true,
            sample_size: 3,
            ..Default::default()
        };
        let (memory, none) = compare_spilling(&src, None, &tgt, None, &options)
            .await
            .unwrap();
        assert_eq!((memory.hash_partitions, none), (1, 0));
        let tiny = CompareOptions {
            memory_budget: 1,
            ..options
        };
        let (mut spilled, bytes) = compare_spilling(&src, None, &tgt, None, &tiny)
            .await
            .unwrap();
        assert!(spilled.hash_partitions > 1, "{}", spilled.hash_partitions);
        assert!(bytes > 0, "nothing was spilled");
        spilled.hash_partitions = memory.hash_partitions;
        assert_eq!(spilled, memory);
        let keys = memory.keys.unwrap();
        assert_eq!((keys.missing, keys.extra, keys.changed), (100, 100, 1000));
        assert_eq!((keys.duplicate_source, keys.duplicate_target), (0, 5));
        assert_eq!(keys.missing_sample, ["id=0", "id=1", "id=2"]);
        assert_eq!(keys.changed_sample, ["id=5000", "id=5001", "id=5002"]);
        assert_eq!(keys.extra_sample, ["id=6000", "id=6001", "id=6002"]);
    }
}
