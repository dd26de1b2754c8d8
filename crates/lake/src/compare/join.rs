//! The key join of one hash partition: build a hash table of the source's records, probe
//! it with the target's, and count (and sample) missing, extra, changed and duplicate keys;
//! then every partition, a few at a time.

use std::collections::BinaryHeap;
use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};

use hashbrown::HashTable;
use replicator_proto::KeyDiff;
use twox_hash::XxHash3_64;

use super::columns::ScanPlan;
use super::spill::{Records, Spill};
use crate::LakeError;

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
pub(super) fn join_all(
    plan: &ScanPlan,
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field};
    use arrow::row::{RowConverter, SortField};

    use super::*;

    /// Columns of a comparison keyed by one `id BIGINT`.
    fn keyed_by_id() -> ScanPlan {
        ScanPlan {
            keys: vec![Field::new("id", DataType::Int64, true)],
            values: Vec::new(),
            parts: Vec::new(),
            ignored: Vec::new(),
            checksums: false,
        }
    }

    /// The row-format bytes of key `id`, as a scan encodes them.
    fn key(id: i64) -> Vec<u8> {
        let conv = RowConverter::new(vec![SortField::new(DataType::Int64)]).unwrap();
        let rows = conv
            .convert_columns(&[Arc::new(Int64Array::from(vec![id])) as _])
            .unwrap();
        rows.row(0).data().to_vec()
    }

    /// One side's `(id, row hash)` records, in `partitions` hash partitions whose buffers
    /// spill to disk past `chunk` bytes.
    fn side(records: &[(i64, u64)], partitions: usize, chunk: usize) -> Spill {
        let mut spill = Spill::new(partitions, chunk);
        for &(id, hash) in records {
            spill.push(&key(id), hash).unwrap();
        }
        spill
    }

    fn in_memory(records: &[(i64, u64)]) -> Spill {
        side(records, 1, usize::MAX)
    }

    #[test]
    fn the_join_finds_missing_extra_changed_and_duplicate_keys() {
        let src = [
            (1, 10),
            (2, 20),
            (2, 21),
            (3, 30),
            (4, 40),
            (5, 50),
            (6, 60),
        ];
        let tgt = [
            (8, 80),
            (1, 10),
            (3, 31),
            (4, 40),
            (4, 40),
            (5, 51),
            (7, 70),
            (8, 80),
        ];
        let diff = join_all(&keyed_by_id(), in_memory(&src), in_memory(&tgt), 10).unwrap();
        assert_eq!(diff.primary_key, ["id"]);
        // 2 (twice in the source: one missing key, one duplicate) and 6.
        assert_eq!(diff.missing, 2);
        assert_eq!(diff.missing_sample, ["id=2", "id=6"]);
        // 8 is extra once; its repeat, like 4's, is a duplicate in the target.
        assert_eq!(diff.extra, 2);
        assert_eq!(diff.extra_sample, ["id=7", "id=8"]);
        assert_eq!(diff.changed, 2);
        assert_eq!(diff.changed_sample, ["id=3", "id=5"]);
        assert_eq!((diff.duplicate_source, diff.duplicate_target), (1, 2));
    }

    #[test]
    fn samples_keep_the_smallest_keys_and_equal_tables_differ_in_nothing() {
        let src: Vec<(i64, u64)> = (0..50).map(|i| (i, 1)).collect();
        let tgt: Vec<(i64, u64)> = (20..70).rev().map(|i| (i, 1)).collect();
        let diff = join_all(
            &keyed_by_id(),
            side(&src, 4, 1 << 20),
            side(&tgt, 4, 1 << 20),
            3,
        )
        .unwrap();
        assert_eq!((diff.missing, diff.extra, diff.changed), (20, 20, 0));
        assert_eq!(diff.missing_sample, ["id=0", "id=1", "id=2"]);
        assert_eq!(diff.extra_sample, ["id=50", "id=51", "id=52"]);

        let same = join_all(&keyed_by_id(), in_memory(&src), in_memory(&src), 3).unwrap();
        assert_eq!(
            (same.missing, same.extra, same.changed),
            (0, 0, 0),
            "{same:?}"
        );
        assert_eq!((same.duplicate_source, same.duplicate_target), (0, 0));
        assert!(same.missing_sample.is_empty() && same.changed_sample.is_empty());
    }

    #[test]
    fn a_join_of_spilled_partitions_equals_the_in_memory_join() {
        let src: Vec<(i64, u64)> = (0..5000).map(|i| (i, i as u64 * 7)).collect();
        let tgt: Vec<(i64, u64)> = (100..5100)
            .map(|i| (i, if i % 97 == 0 { 1 } else { i as u64 * 7 }))
            .chain([(200, 1400), (4999, 0)])
            .collect();
        let memory = join_all(&keyed_by_id(), in_memory(&src), in_memory(&tgt), 5).unwrap();
        // A chunk of 256 bytes: every partition goes to disk many times over.
        let (s, t) = (side(&src, 8, 256), side(&tgt, 8, 256));
        assert!(s.files.iter().all(Option::is_some) && t.files.iter().all(Option::is_some));
        assert!(s.spilled > 0 && t.spilled > 0);
        let spilled = join_all(&keyed_by_id(), s, t, 5).unwrap();
        assert_eq!(spilled, memory);
        assert_eq!((memory.missing, memory.extra), (100, 100));
        // Multiples of 97 in 100..5000 changed, plus 4999's repeat counted as a duplicate.
        assert_eq!(
            memory.changed,
            (100..5000).filter(|i| i % 97 == 0).count() as u64
        );
        assert_eq!((memory.duplicate_source, memory.duplicate_target), (0, 2));
        assert_eq!(
            memory.missing_sample,
            ["id=0", "id=1", "id=2", "id=3", "id=4"]
        );
    }
}
