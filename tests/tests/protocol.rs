//! Delta protocol corners of the native deep clone: deletion vectors stored by absolute path,
//! unknown table features, change data files, damaged `_last_checkpoint`, and schema and
//! protocol changes between clones.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use replicator_lake::inspect::{log_facts, read_batches, sorted_rows};
use replicator_lake::{CloneOptions, LakeError, TableLocation, deep_clone, sample};

fn corpus(name: &str) -> PathBuf {
    std::env::var_os("REPLICATOR_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/delta-corpus"))
        .join(name)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), &dst).unwrap();
            let mut perms = std::fs::metadata(&dst).unwrap().permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perms.set_readonly(false);
            std::fs::set_permissions(&dst, perms).unwrap();
        }
    }
}

fn loc(p: &Path) -> TableLocation {
    TableLocation::parse(p.to_str().unwrap()).unwrap()
}

async fn rows(p: &Path) -> Vec<String> {
    sorted_rows(&read_batches(&loc(p), None).await.unwrap()).unwrap()
}

fn rewrite_log(table: &Path, version: u64, edit: impl Fn(String) -> String) {
    let path = table.join(format!("_delta_log/{version:020}.json"));
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, edit(text)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_path_deletion_vector_is_copied_and_repointed_into_the_target() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    copy_dir(&corpus("table-with-dv-small"), &src);
    // Move the DV file outside the table and point at it by absolute path ('p').
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let dv_name = "deletion_vector_61d16c75-6994-46b7-a15b-8b538852e50e.bin";
    std::fs::rename(src.join(dv_name), elsewhere.join(dv_name)).unwrap();
    let dv_url = url::Url::from_file_path(elsewhere.join(dv_name))
        .unwrap()
        .to_string();
    rewrite_log(&src, 1, |t| {
        t.replace(
            r#""storageType":"u","pathOrInlineDv":"vBn[lx{q8@P<9BNH/isA""#,
            &format!(r#""storageType":"p","pathOrInlineDv":"{dv_url}""#),
        )
    });
    let expected = rows(&src).await;
    assert_eq!(
        expected.len(),
        8,
        "the source reads through its 'p' deletion vector"
    );

    let dst = dir.path().join("dst");
    // Outside the table: read only under a root the user allowed (docs/safety.md).
    let err = deep_clone(&loc(&src), &loc(&dst), &CloneOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, LakeError::OutsidePath { .. }), "{err}");
    let allowed = CloneOptions {
        external_roots: vec![loc(&elsewhere)],
        ..Default::default()
    };
    deep_clone(&loc(&src), &loc(&dst), &allowed).await.unwrap();
    assert_eq!(rows(&dst).await, expected);
    let log = std::fs::read_to_string(dst.join("_delta_log/00000000000000000000.json")).unwrap();
    let dst_url = loc(&dst).url().to_string();
    let add: serde_json::Value = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| !v["add"].is_null())
        .unwrap();
    let dv = &add["add"]["deletionVector"];
    assert_eq!(dv["storageType"], "p", "{log}");
    assert_eq!(
        dv["pathOrInlineDv"].as_str().unwrap(),
        format!("{dst_url}{dv_name}"),
        "{log}"
    );
    assert!(
        !log.contains(&dv_url),
        "the target must never point into the source"
    );
    assert!(dst.join(dv_name).exists());
    // Moving the source's DV away now does not affect the target.
    std::fs::remove_file(elsewhere.join(dv_name)).unwrap();
    assert_eq!(rows(&dst).await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_features_are_refused_by_name_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    copy_dir(&corpus("table-without-dv-small"), &src);
    rewrite_log(&src, 0, |t| {
        let mut out = String::new();
        for line in t.lines() {
            if line.starts_with(r#"{"protocol""#) {
                out.push_str(r#"{"protocol":{"minReaderVersion":3,"minWriterVersion":7,"readerFeatures":[],"writerFeatures":["appendOnly","fancyFutureWriterFeature"]}}"#);
            } else {
                out.push_str(line);
            }
            out.push('\n');
        }
        out
    });
    let dst = dir.path().join("dst");
    let err = deep_clone(&loc(&src), &loc(&dst), &CloneOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, LakeError::UnsupportedFeature { .. }), "{err}");
    assert!(
        err.to_string().contains("fancyFutureWriterFeature"),
        "{err}"
    );
    assert!(!dst.exists());
}

/// Delta's golden tables `collations` and `collations-preview`: a string column with a
/// collation, the writer feature and domain metadata. A verbatim clone honours them (the
/// protocol's requirements concern statistics and metadata the clone copies unchanged).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collated_tables_are_cloned_with_their_feature_and_metadata() {
    for feature in ["collations", "collations-preview"] {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        copy_dir(&corpus("delta-0.8.0-partitioned"), &src);
        rewrite_log(&src, 0, |t| {
            let mut out = String::new();
            for line in t.lines() {
                if line.starts_with(r#"{"protocol""#) {
                    out.push_str(&format!(
                        r#"{{"protocol":{{"minReaderVersion":1,"minWriterVersion":7,"writerFeatures":["{feature}","domainMetadata"]}}}}"#
                    ));
                } else {
                    out.push_str(&line.replacen(
                        r#"{\"name\":\"value\",\"type\":\"string\",\"nullable\":true,\"metadata\":{}}"#,
                        r#"{\"name\":\"value\",\"type\":\"string\",\"nullable\":true,\"metadata\":{\"__COLLATIONS\":{\"value\":\"ICU.de_DE\"}}}"#,
                        1,
                    ));
                }
                out.push('\n');
            }
            out.push_str(r#"{"domainMetadata":{"domain":"delta.collations","configuration":"{\"ICU\":\"74.0.0.0\"}","removed":false}}"#);
            out.push('\n');
            out
        });
        let expected = rows(&src).await;
        let dst = dir.path().join("dst");
        deep_clone(&loc(&src), &loc(&dst), &CloneOptions::default())
            .await
            .unwrap_or_else(|e| panic!("{feature}: {e}"));
        assert_eq!(rows(&dst).await, expected, "{feature}");
        let log =
            std::fs::read_to_string(dst.join("_delta_log/00000000000000000000.json")).unwrap();
        assert!(
            log.contains(&format!(
                r#""writerFeatures":["{feature}","domainMetadata"]"#
            )) || log.contains(feature),
            "{log}"
        );
        assert!(
            log.contains("ICU.de_DE"),
            "the collation travels in the schema: {log}"
        );
        assert!(log.contains(r#""domain":"delta.collations""#), "{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_managed_tables_are_refused_by_name_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    copy_dir(&corpus("table-without-dv-small"), &src);
    rewrite_log(&src, 0, |t| {
        t.replace(
            r#"{"protocol":{"minReaderVersion":1,"minWriterVersion":2}}"#,
            r#"{"protocol":{"minReaderVersion":3,"minWriterVersion":7,"readerFeatures":["catalogManaged"],"writerFeatures":["catalogManaged","inCommitTimestamp"]}}"#,
        )
    });
    let dst = dir.path().join("dst");
    let err = deep_clone(&loc(&src), &loc(&dst), &CloneOptions::default())
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, LakeError::UnsupportedFeature { .. }), "{msg}");
    assert!(
        msg.contains("`catalogManaged`") && msg.contains("catalog"),
        "{msg}"
    );
    assert!(!msg.contains('\n'), "{msg}");
    assert!(!dst.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_data_files_are_not_part_of_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let dst = dir.path().join("dst");
    deep_clone(
        &loc(&corpus("cdf-table")),
        &loc(&dst),
        &CloneOptions::default(),
    )
    .await
    .unwrap();
    assert!(corpus("cdf-table").join("_change_data").exists());
    assert!(!dst.join("_change_data").exists());
    assert_eq!(rows(&dst).await, rows(&corpus("cdf-table")).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_corrupt_last_checkpoint_still_clones() {
    for damage in ["missing", "corrupt"] {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        copy_dir(&corpus("simple_table_with_checkpoint"), &src);
        let hint = src.join("_delta_log/_last_checkpoint");
        match damage {
            "missing" => std::fs::remove_file(&hint).unwrap(),
            _ => std::fs::write(&hint, b"{not json at all").unwrap(),
        }
        let dst = dir.path().join("dst");
        let report = deep_clone(&loc(&src), &loc(&dst), &CloneOptions::default())
            .await
            .unwrap();
        assert_eq!(report.source_version, 10, "{damage}");
        assert_eq!(
            rows(&dst).await,
            rows(&corpus("simple_table_with_checkpoint")).await,
            "{damage}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_follows_schema_evolution_and_protocol_upgrades() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    sample::create(&loc(&src), &sample::orders(0, 20, "emea"), &[])
        .await
        .unwrap();
    deep_clone(&loc(&src), &loc(&dst), &CloneOptions::default())
        .await
        .unwrap();

    sample::add_string_column(&loc(&src), "note").await.unwrap();
    sample::set_properties(&loc(&src), &[("delta.enableChangeDataFeed", "true")])
        .await
        .unwrap();
    let report = deep_clone(&loc(&src), &loc(&dst), &CloneOptions::default())
        .await
        .unwrap();
    assert!(report.committed);
    assert_eq!(
        report.metrics.num_copied_files, 0,
        "a metadata-only change copies no data"
    );
    let (s, d) = (
        log_facts(&loc(&src), None).await.unwrap(),
        log_facts(&loc(&dst), None).await.unwrap(),
    );
    assert!(d.schema_string.contains("\"note\""), "{}", d.schema_string);
    assert_eq!(
        (s.schema_string, s.configuration),
        (d.schema_string, d.configuration)
    );
    let proto = |p: &Path| -> serde_json::Value {
        let mut logs: Vec<_> = std::fs::read_dir(p.join("_delta_log"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        logs.sort();
        let mut last = serde_json::Value::Null;
        for l in logs
            .iter()
            .filter(|l| l.extension().is_some_and(|x| x == "json"))
        {
            for line in std::fs::read_to_string(l).unwrap().lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                if !v["protocol"].is_null() {
                    last = v["protocol"].clone();
                }
            }
        }
        last
    };
    assert_eq!(proto(&src), proto(&dst));
    assert_eq!(rows(&src).await, rows(&dst).await);
}

/// Z85 (ZeroMQ base85), as Delta encodes inline deletion vectors.
fn z85(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] =
        b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";
    assert_eq!(bytes.len() % 4, 0);
    let mut out = String::new();
    for chunk in bytes.chunks(4) {
        let mut v = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]) as u64;
        let mut five = [0u8; 5];
        for slot in five.iter_mut().rev() {
            *slot = ALPHABET[(v % 85) as usize];
            v /= 85;
        }
        out.push_str(std::str::from_utf8(&five).unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_deletion_vector_clones_without_files() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    copy_dir(&corpus("table-with-dv-small"), &src);
    // Turn the stored DV ('u', offset 1: a 4-byte size, the 36-byte bitmap, a checksum) into
    // an inline one ('i') holding the same bitmap, and delete the DV file.
    let dv_name = "deletion_vector_61d16c75-6994-46b7-a15b-8b538852e50e.bin";
    let file = std::fs::read(src.join(dv_name)).unwrap();
    let size = u32::from_be_bytes(file[1..5].try_into().unwrap()) as usize;
    assert_eq!(size, 36);
    let inline = z85(&file[5..5 + size]);
    std::fs::remove_file(src.join(dv_name)).unwrap();
    rewrite_log(&src, 1, |t| {
        t.replace(
            r#"{"storageType":"u","pathOrInlineDv":"vBn[lx{q8@P<9BNH/isA","offset":1,"#,
            &format!(r#"{{"storageType":"i","pathOrInlineDv":"{inline}","#),
        )
    });
    let expected = rows(&src).await;
    assert_eq!(expected.len(), 8, "the inline DV deletes two of ten rows");

    let dst = dir.path().join("dst");
    let report = deep_clone(&loc(&src), &loc(&dst), &CloneOptions::default())
        .await
        .unwrap();
    assert_eq!(
        report.metrics.num_copied_files, 1,
        "only the data file: the DV lives in the log"
    );
    assert_eq!(rows(&dst).await, expected);
    let log = std::fs::read_to_string(dst.join("_delta_log/00000000000000000000.json")).unwrap();
    assert!(
        log.contains(&format!(r#""pathOrInlineDv":"{inline}""#)),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamp_without_time_zone_round_trips() {
    use arrow::array::{Int64Array, RecordBatch, TimestampMicrosecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("at", DataType::Timestamp(TimeUnit::Microsecond, None), true),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(vec![1, 2, 3])),
            Arc::new(TimestampMicrosecondArray::from(vec![
                Some(0),
                Some(1_795_000_000_000_000),
                None,
            ])),
        ],
    )
    .unwrap();
    sample::create(&loc(&src), &batch, &[]).await.unwrap();
    let protocol =
        std::fs::read_to_string(src.join("_delta_log/00000000000000000000.json")).unwrap();
    assert!(
        protocol.contains("timestampNtz"),
        "the source must use the feature: {protocol}"
    );
    deep_clone(&loc(&src), &loc(&dst), &CloneOptions::default())
        .await
        .unwrap();
    assert_eq!(rows(&dst).await, rows(&src).await);
    assert!(
        rows(&dst).await.iter().any(|r| r.contains("2026-")),
        "{:?}",
        rows(&dst).await
    );
}

/// Split `version`'s classic checkpoint into `parts` parquet files, as Spark writes a
/// multi-part checkpoint, and point `_last_checkpoint` at it.
fn split_checkpoint(table: &Path, version: u64, parts: usize) {
    use parquet::arrow::ArrowWriter;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let log = table.join("_delta_log");
    let single = log.join(format!("{version:020}.checkpoint.parquet"));
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&single).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<_> = reader.map(|b| b.unwrap()).collect();
    let all = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
    let per = all.num_rows().div_ceil(parts);
    for part in 0..parts {
        let start = (part * per).min(all.num_rows());
        let len = per.min(all.num_rows() - start);
        let name = format!(
            "{version:020}.checkpoint.{:010}.{parts:010}.parquet",
            part + 1
        );
        let file = std::fs::File::create(log.join(name)).unwrap();
        let mut writer = ArrowWriter::try_new(file, all.schema(), None).unwrap();
        writer.write(&all.slice(start, len)).unwrap();
        writer.close().unwrap();
    }
    std::fs::remove_file(&single).unwrap();
    std::fs::write(
        log.join("_last_checkpoint"),
        format!(
            r#"{{"version":{version},"size":{},"parts":{parts}}}"#,
            all.num_rows()
        ),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_part_checkpoint_is_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    copy_dir(&corpus("simple_table_with_checkpoint"), &src);
    split_checkpoint(&src, 10, 3);
    // Without the commits the checkpoint replaces, only the three parts together describe
    // the table: a reader that missed one would lose files.
    for v in 0..10u64 {
        std::fs::remove_file(src.join(format!("_delta_log/{v:020}.json"))).unwrap();
    }
    let dst = dir.path().join("dst");
    let report = deep_clone(&loc(&src), &loc(&dst), &CloneOptions::default())
        .await
        .unwrap();
    assert_eq!(report.source_version, 10);
    let expected = rows(&corpus("simple_table_with_checkpoint")).await;
    assert!(!expected.is_empty());
    assert_eq!(rows(&src).await, expected);
    assert_eq!(rows(&dst).await, expected);
}

/// Write `values` as a one-column parquet file named `name`: `int` column of Int32 when
/// `narrow`, else Int64.
fn write_ints(path: &Path, narrow: bool, values: &[i64]) -> u64 {
    use arrow::array::{ArrayRef, Int32Array, Int64Array};
    use arrow::datatypes::{DataType, Field, Schema};
    let (ty, array): (DataType, ArrayRef) = if narrow {
        let v: Vec<i32> = values.iter().map(|v| *v as i32).collect();
        (DataType::Int32, Arc::new(Int32Array::from(v)))
    } else {
        (DataType::Int64, Arc::new(Int64Array::from(values.to_vec())))
    };
    let schema = Arc::new(Schema::new(vec![Field::new("n", ty, true)]));
    let batch = arrow::record_batch::RecordBatch::try_new(schema.clone(), vec![array]).unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    std::fs::metadata(path).unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn type_widening_clones_old_narrow_files_with_the_widened_schema() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("_delta_log")).unwrap();
    let schema = |ty: &str, changes: &str| {
        serde_json::json!({"type": "struct", "fields": [{"name": "n", "type": ty, "nullable": true,
            "metadata": serde_json::from_str::<serde_json::Value>(changes).unwrap()}]})
        .to_string()
    };
    let metadata = |schema: String| {
        serde_json::json!({"metaData": {"id": "6e3b3c1a-0000-4000-8000-000000000001",
            "format": {"provider": "parquet", "options": {}}, "schemaString": schema,
            "partitionColumns": [], "configuration": {"delta.enableTypeWidening": "true"},
            "createdTime": 1_700_000_000_000i64}})
    };
    let add = |name: &str, size: u64, ts: i64| {
        serde_json::json!({"add": {"path": name, "partitionValues": {}, "size": size,
            "modificationTime": ts, "dataChange": true}})
    };
    let commit = |v: u64, ts: i64, actions: Vec<serde_json::Value>| {
        let mut lines =
            vec![serde_json::json!({"commitInfo": {"timestamp": ts, "operation": "WRITE"}})];
        lines.extend(actions);
        let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(src.join(format!("_delta_log/{v:020}.json")), body).unwrap();
    };
    // Version 0: an `integer` column, written as Int32.
    let size0 = write_ints(&src.join("part-0.parquet"), true, &[1, 2, 3]);
    commit(
        0,
        1_700_000_000_000,
        vec![
            serde_json::json!({"protocol": {"minReaderVersion": 3, "minWriterVersion": 7,
                "readerFeatures": ["typeWidening"], "writerFeatures": ["typeWidening"]}}),
            metadata(schema("integer", "{}")),
            add("part-0.parquet", size0, 1_700_000_000_000),
        ],
    );
    // Version 1: widened to `long`; the old file stays Int32 on disk.
    let changes = r#"{"delta.typeChanges": [{"fromType": "integer", "toType": "long"}]}"#;
    let size1 = write_ints(&src.join("part-1.parquet"), false, &[5_000_000_000]);
    commit(
        1,
        1_700_000_001_000,
        vec![
            metadata(schema("long", changes)),
            add("part-1.parquet", size1, 1_700_000_001_000),
        ],
    );

    let dst = dir.path().join("dst");
    let report = deep_clone(&loc(&src), &loc(&dst), &CloneOptions::default())
        .await
        .unwrap();
    assert_eq!(report.source_version, 1);
    assert_eq!(report.metrics.num_copied_files, 2);
    let expected = rows(&src).await;
    assert_eq!(expected.len(), 4, "{expected:?}");
    assert!(
        expected.iter().any(|r| r.contains("5000000000")),
        "{expected:?}"
    );
    assert_eq!(rows(&dst).await, expected);
    let facts = log_facts(&loc(&dst), None).await.unwrap();
    assert!(
        facts.schema_string.contains("delta.typeChanges"),
        "{}",
        facts.schema_string
    );
    let log = std::fs::read_to_string(dst.join("_delta_log/00000000000000000000.json")).unwrap();
    assert!(
        log.contains(r#""readerFeatures":["typeWidening"]"#),
        "{log}"
    );
}
