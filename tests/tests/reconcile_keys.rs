//! Key-level reconciliation: a replica tampered in three ways (rows deleted, rows added, a
//! value changed) is reported with the right counts and sample keys in each category, per
//! partition checksums point at the partitions that differ, an untouched replica is clean,
//! and schema differences are named precisely. Run through the reconciler's `validate`,
//! the function its workers call.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, Field, Schema};
use replicator_common::config::{Reconciliation, TableReconciliation};
use replicator_engine::native::check_pair as validate;
use replicator_lake::compare::{CompareOptions, compare};
use replicator_lake::{CloneOptions, TableLocation, deep_clone, sample};
use replicator_proto::KeyDiff;

fn loc(p: &Path) -> TableLocation {
    TableLocation::parse(p.to_str().unwrap()).unwrap()
}

/// A source of 3,000 orders over three regions (1,000 each, ids 0..3000), partitioned by
/// region, and its deep-cloned replica.
async fn source_and_replica(dir: &Path) -> (TableLocation, TableLocation) {
    let s = loc(&dir.join("src"));
    sample::create(&s, &sample::orders(0, 1000, "amer"), &["region"])
        .await
        .unwrap();
    sample::append(&s, &sample::orders(1000, 1000, "emea"))
        .await
        .unwrap();
    sample::append(&s, &sample::orders(2000, 1000, "apac"))
        .await
        .unwrap();
    let d = loc(&dir.join("dst"));
    deep_clone(&s, &d, &CloneOptions::default()).await.unwrap();
    (s, d)
}

/// Every row of the sample shape for `ids` (as `sample::orders` makes them), with
/// `amount` replaced for the ids in `changed`.
fn rows(ids: &[(i64, &str)], changed: &[i64]) -> RecordBatch {
    let batches: Vec<RecordBatch> = ids
        .iter()
        .map(|(id, region)| sample::orders(*id, 1, region))
        .collect();
    let b = concat_batches(&batches[0].schema(), &batches).unwrap();
    let amounts = b.column(3).as_any().downcast_ref::<Float64Array>().unwrap();
    let ids_col = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
    let amount: Float64Array = (0..b.num_rows())
        .map(|i| {
            let v = amounts.value(i);
            Some(if changed.contains(&ids_col.value(i)) {
                v + 0.01
            } else {
                v
            })
        })
        .collect();
    let mut cols: Vec<ArrayRef> = b.columns().to_vec();
    cols[3] = Arc::new(amount);
    RecordBatch::try_new(b.schema(), cols).unwrap()
}

fn region_of(id: i64) -> &'static str {
    ["amer", "emea", "apac"][(id / 1000) as usize]
}

const DELETED: [i64; 3] = [5, 1017, 1040];
const CHANGED: [i64; 2] = [1007, 1999];
const ADDED: [i64; 2] = [5000, 5001];

/// The replica with rows 5, 1017 and 1040 deleted, 5000 and 5001 added (in emea), and the
/// amount of 1007 and 1999 changed: amer loses one row, emea loses two, gains two and has
/// two changed, apac is untouched.
async fn tamper(target: &TableLocation) {
    let mut ids: Vec<(i64, &str)> = (0..3000)
        .filter(|i| !DELETED.contains(i))
        .map(|i| (i, region_of(i)))
        .collect();
    ids.extend(ADDED.iter().map(|i| (*i, "emea")));
    sample::overwrite(target, &rows(&ids, &CHANGED))
        .await
        .unwrap();
}

fn checks(primary_key: &[&str], partition_checksums: bool) -> Reconciliation {
    Reconciliation {
        tables: vec![TableReconciliation {
            tables: vec!["sales.*".into()],
            primary_key: primary_key.iter().map(|s| s.to_string()).collect(),
            partition_checksums: Some(partition_checksums),
            ..Default::default()
        }],
        sample_size: 2,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_replica_is_reported_by_category_and_an_untouched_one_is_clean() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = source_and_replica(dir.path()).await;
    let config = checks(&["id"], true);
    let rules = config.for_table("sales.orders");
    assert_eq!(rules.primary_key, vec!["id".to_string()]);
    assert!(
        config.for_table("hr.people").primary_key.is_empty(),
        "rules apply only to the tables they match"
    );

    // Untouched: every check passes, nothing in any category.
    let clean = validate(&src, &dst, None, &rules).await.unwrap();
    assert!(clean.checks.iter().all(|c| c.passed), "{:?}", clean.checks);
    let names: Vec<&str> = clean.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["row_count", "schema", "keys", "partition_checksums"]
    );
    let k = clean.keys.clone().unwrap();
    assert!(k.is_clean(), "{k:?}");
    assert!(clean.partitions.is_empty());

    // Tampered in three ways.
    tamper(&dst).await;
    let found = validate(&src, &dst, None, &rules).await.unwrap();
    let k = found.keys.clone().unwrap();
    assert_eq!(
        k,
        KeyDiff {
            primary_key: vec!["id".into()],
            missing: 3,
            extra: 2,
            changed: 2,
            duplicate_source: 0,
            duplicate_target: 0,
            // The sample holds the smallest keys of each category (sample_size 2).
            missing_sample: vec!["id=5".into(), "id=1017".into()],
            extra_sample: vec!["id=5000".into(), "id=5001".into()],
            changed_sample: vec!["id=1007".into(), "id=1999".into()],
        }
    );
    assert_eq!(
        (found.source_rows, found.target_rows),
        (Some(3000), Some(2999))
    );
    let keys = found.checks.iter().find(|c| c.name == "keys").unwrap();
    assert!(!keys.passed);
    assert!(
        keys.detail
            .contains("3 missing (id=5; id=1017, …), 2 extra (id=5000; id=5001), 2 changed"),
        "{}",
        keys.detail
    );
    // Partition checksums localise it: amer and emea differ, apac matches.
    let parts: Vec<(&str, u64, u64)> = found
        .partitions
        .iter()
        .map(|p| (p.partition.as_str(), p.source_rows, p.target_rows))
        .collect();
    assert_eq!(
        parts,
        [("region=amer", 1000, 999), ("region=emea", 1000, 1000)]
    );
    let pc = found
        .checks
        .iter()
        .find(|c| c.name == "partition_checksums")
        .unwrap();
    assert_eq!(
        pc.detail,
        "2 of 3 partitions differ: region=amer (source 1000 rows, target 999), region=emea (same row count, different checksum)"
    );
    // The versions compared are in the result.
    assert_eq!(found.target_version, 1);
    assert_eq!(found.source_version, 3);
}

/// With a tiny memory budget the records spill over many hash partitions to temporary
/// files; the answer is the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_memory_budget_spills_and_gives_the_same_answer() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = source_and_replica(dir.path()).await;
    tamper(&dst).await;
    let run = |budget: u64| {
        let (src, dst) = (src.clone(), dst.clone());
        async move {
            compare(
                &src,
                None,
                &dst,
                None,
                &CompareOptions {
                    primary_key: vec!["id".into()],
                    partition_checksums: true,
                    sample_size: 10,
                    memory_budget: budget,
                },
            )
            .await
            .unwrap()
        }
    };
    let roomy = run(512 << 20).await;
    let tight = run(64 << 10).await;
    assert_eq!(roomy.hash_partitions, 1);
    assert!(tight.hash_partitions >= 3, "{}", tight.hash_partitions);
    assert_eq!(roomy.keys, tight.keys);
    assert_eq!(roomy.partitions, tight.partitions);
    let k = tight.keys.unwrap();
    assert_eq!(k.missing_sample, ["id=5", "id=1017", "id=1040"]);
    assert_eq!(k.changed_sample, ["id=1007", "id=1999"]);
}

/// A composite key, duplicate keys, and a key column the target lacks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn composite_keys_duplicates_and_missing_key_columns() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = source_and_replica(dir.path()).await;
    // The target gets row 7 twice, and row 9000 (which the source lacks) twice.
    sample::append(
        &dst,
        &rows(&[(7, "amer"), (9000, "amer"), (9000, "amer")], &[]),
    )
    .await
    .unwrap();
    let rules = checks(&["region", "id"], false).for_table("sales.orders");
    let found = validate(&src, &dst, None, &rules).await.unwrap();
    let k = found.keys.unwrap();
    assert_eq!(
        (k.missing, k.extra, k.changed, k.duplicate_target),
        (0, 1, 0, 2)
    );
    assert_eq!(k.extra_sample, ["region=amer, id=9000"]);
    let keys = found.checks.iter().find(|c| c.name == "keys").unwrap();
    assert!(!keys.passed);
    assert!(
        keys.detail
            .contains("duplicate keys: 0 in the source, 2 in the target"),
        "{}",
        keys.detail
    );

    let rules = checks(&["order_no"], false).for_table("sales.orders");
    let found = validate(&src, &dst, None, &rules).await.unwrap();
    let keys = found.checks.iter().find(|c| c.name == "keys").unwrap();
    assert!(!keys.passed);
    assert_eq!(
        keys.detail,
        "cannot compare: primary key column `order_no` is not in the source table"
    );
}

/// Schema differences are named one by one: a missing column, an extra column, a type
/// change, a nullability change and different partition columns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_differences_are_reported_precisely() {
    let dir = tempfile::tempdir().unwrap();
    let (s, t) = (loc(&dir.path().join("s")), loc(&dir.path().join("t")));
    let batch = |fields: Vec<(&str, DataType, bool)>| {
        let schema = Arc::new(Schema::new(
            fields
                .iter()
                .map(|(n, ty, null)| Field::new(*n, ty.clone(), *null))
                .collect::<Vec<_>>(),
        ));
        let cols: Vec<ArrayRef> = fields
            .iter()
            .map(|(_, ty, _)| -> ArrayRef {
                match ty {
                    DataType::Int64 => Arc::new(Int64Array::from(vec![1, 2])),
                    DataType::Float64 => Arc::new(Float64Array::from(vec![1.0, 2.0])),
                    _ => Arc::new(StringArray::from(vec!["a", "b"])),
                }
            })
            .collect();
        RecordBatch::try_new(schema, cols).unwrap()
    };
    sample::create(
        &s,
        &batch(vec![
            ("id", DataType::Int64, false),
            ("amount", DataType::Float64, true),
            ("note", DataType::Utf8, true),
            ("region", DataType::Utf8, true),
        ]),
        &["region"],
    )
    .await
    .unwrap();
    sample::create(
        &t,
        &batch(vec![
            ("id", DataType::Int64, true),
            ("amount", DataType::Utf8, true),
            ("region", DataType::Utf8, true),
            ("extra", DataType::Int64, true),
        ]),
        &[],
    )
    .await
    .unwrap();
    let rules = Reconciliation::default().for_table("x");
    let found = validate(&s, &t, None, &rules).await.unwrap();
    let schema = found.checks.iter().find(|c| c.name == "schema").unwrap();
    assert!(!schema.passed);
    assert_eq!(
        schema.detail.split("; ").collect::<Vec<_>>(),
        [
            "column `id` is nullable in the target, NOT NULL in the source",
            "column `amount` has type string in the target, double in the source",
            "column `note` is missing in the target",
            "column `extra` exists only in the target",
            "partition columns differ: source [\"region\"], target []",
        ]
    );
}

/// Without complete log statistics, the key comparison's own scan gives the row counts: the
/// table is read once, not twice, and the counts say how they were obtained.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_come_from_the_comparison_scan_when_statistics_are_missing() {
    let corpus = std::env::var_os("REPLICATOR_CORPUS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/delta-corpus"));
    let src = loc(&corpus.join("delta-stats-optional"));
    let dir = tempfile::tempdir().unwrap();
    let dst = loc(&dir.path().join("dst"));
    deep_clone(&src, &dst, &CloneOptions::default())
        .await
        .unwrap();
    let mut config = checks(&[], true);
    config.tables[0].tables = vec!["*".into()];
    let found = validate(&src, &dst, None, &config.for_table("t"))
        .await
        .unwrap();
    let names: Vec<&str> = found.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["row_count", "schema", "partition_checksums"]);
    assert!(found.checks.iter().all(|c| c.passed), "{:?}", found.checks);
    let counts = &found.checks[0].detail;
    assert!(counts.contains("(scan)"), "{counts}");
    assert_eq!(found.source_rows, found.target_rows);
    assert!(found.source_rows.unwrap() > 0);
}
