//! Validation after a load, as the hand-built pipelines do it: row counts on both sides, and
//! primary-key consistency of the target (no duplicate keys, every target key in the
//! source; source keys missing from the target are counted too). Keys are compared with
//! the same spilled, hash-partitioned records as the merge, so memory stays bounded.

use std::collections::HashMap;

use futures::TryStreamExt;
use replicator_lake::TableLocation;

use crate::error::IngestError;
use crate::hash::KeyHasher;
use crate::source::Source;
use crate::spill::Spill;
use crate::target::{self, TargetState};

/// Keys shown per finding.
const SAMPLE: usize = 5;

/// What a key check found.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct KeyCheck {
    pub source_rows: u64,
    pub target_rows: u64,
    /// Target keys held by more than one row (each counted once).
    pub duplicate_target_keys: u64,
    /// Target keys the source does not have.
    pub missing_from_source: u64,
    /// Source keys the target does not have.
    pub missing_from_target: u64,
    /// A few of the keys above, as `col=value`.
    pub sample: Vec<String>,
}

impl KeyCheck {
    /// No duplicates in the target and every target key in the source.
    pub fn consistent(&self) -> bool {
        self.duplicate_target_keys == 0 && self.missing_from_source == 0
    }
}

/// The source's row count (SQL sources ask the server).
pub async fn count_source(source: &dyn Source) -> Result<u64, IngestError> {
    source.count().await
}

/// The target's row count (from the log's statistics when every file has them).
pub async fn count_target(target: &TableLocation) -> Result<u64, IngestError> {
    Ok(replicator_lake::inspect::count_rows(target, None).await?.0)
}

/// Compare the keys of `source` and `target` within `memory_budget` bytes.
pub async fn check_keys(
    source: &dyn Source,
    target: &TableLocation,
    primary_key: &[String],
    memory_budget: u64,
) -> Result<KeyCheck, IngestError> {
    let name = target.url().to_string();
    let schema = source.schema().await?;
    let hasher = KeyHasher::new(&schema, primary_key, &name)?;
    let state = TargetState::load(target).await?;
    let per_partition = (memory_budget.max(16 << 20) / 2 / 64).max(1024);
    let partitions = state.estimated_rows().div_ceil(per_partition).clamp(1, 256) as usize;
    let chunk = ((memory_budget / 8) as usize / (2 * partitions)).clamp(16 << 10, 1 << 20);
    let mut out = KeyCheck::default();
    let mut t = Spill::keys_only(partitions, chunk);
    for f in &state.files {
        for b in target::live_rows(target, f, 8192, Some(primary_key)).await? {
            let (b, _) =
                b.map_err(|e| IngestError::target(&name, format!("file {}: {e}", f.path)))?;
            out.target_rows += b.num_rows() as u64;
            for k in hasher.keys(&b)?.iter() {
                t.push(k.data(), 0, 0)?;
            }
        }
    }
    let mut s = Spill::keys_only(partitions, chunk);
    let mut stream = source.batches(None, 8192).await?;
    while let Some(b) = stream.try_next().await? {
        out.source_rows += b.num_rows() as u64;
        for k in hasher.keys(&b)?.iter() {
            s.push(k.data(), 0, 0)?;
        }
    }
    for p in 0..partitions {
        let (tr, sr) = (t.take(p)?, s.take(p)?);
        let mut keys: HashMap<&[u8], (u32, bool)> = HashMap::new();
        for (k, _, _) in tr.iter() {
            keys.entry(k).or_insert((0, false)).0 += 1;
        }
        for (k, _, _) in sr.iter() {
            match keys.get_mut(k) {
                Some(e) => e.1 = true,
                None => {
                    out.missing_from_target += 1;
                    if out.sample.len() < SAMPLE {
                        out.sample
                            .push(format!("missing from target: {}", hasher.render(k)));
                    }
                }
            }
        }
        for (k, (n, in_source)) in keys {
            if n > 1 {
                out.duplicate_target_keys += 1;
                if out.sample.len() < SAMPLE {
                    out.sample
                        .push(format!("duplicate in target: {}", hasher.render(k)));
                }
            }
            if !in_source {
                out.missing_from_source += 1;
                if out.sample.len() < SAMPLE {
                    out.sample
                        .push(format!("not in source: {}", hasher.render(k)));
                }
            }
        }
    }
    Ok(out)
}
