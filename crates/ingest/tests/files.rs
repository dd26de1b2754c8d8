//! File sources from a local directory: CSV, JSON lines and Parquet.

mod common;

use std::sync::Arc;

use common::*;
use replicator_ingest::{IngestOptions, LoadMode, SourceContext, SourceKind};

fn files_ctx(dir: &std::path::Path) -> SourceContext {
    SourceContext {
        connection: None,
        files_root: Some(loc(dir)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_files_arriving_in_a_folder_are_merged_and_a_bad_row_is_refused() {
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let landing = src.path().join("landing");
    std::fs::create_dir_all(&landing).unwrap();
    std::fs::write(
        landing.join("a.csv"),
        "id;amount;day;note\n1;1.50;2025-01-01;first\n2;2.25;2025-01-02;\n",
    )
    .unwrap();
    std::fs::write(
        landing.join("b.csv"),
        "id;amount;day;note\n3;3.00;2025-01-03;third\n",
    )
    .unwrap();
    std::fs::write(landing.join("ignored.txt"), "not a csv").unwrap();
    let mut def = file_def(SourceKind::Csv, "landing", "*.csv", &["id"]);
    def.options.delimiter = Some(";".into());
    def.options
        .types
        .insert("amount".into(), "decimal(10,2)".into());
    let c = files_ctx(src.path());
    let root = loc(out.path());
    let target = root.child("files/landing").unwrap();
    let full = run(&def, &c, &root, &IngestOptions::default()).await;
    assert_eq!((full.mode, full.inserted), (Some(LoadMode::Full), 3));
    assert_eq!(
        target_rows(&target).await,
        [
            "id=1|amount=1.50|day=2025-01-01|note=first",
            "id=2|amount=2.25|day=2025-01-02|note=NULL",
            "id=3|amount=3.00|day=2025-01-03|note=third",
        ]
    );

    // A new file arrives and another is corrected.
    std::fs::write(
        landing.join("c.csv"),
        "id;amount;day;note\n4;4.00;2025-01-04;fourth\n",
    )
    .unwrap();
    std::fs::write(
        landing.join("b.csv"),
        "id;amount;day;note\n3;3.10;2025-01-03;third\n",
    )
    .unwrap();
    let merged = run(&def, &c, &root, &IngestOptions::default()).await;
    assert_eq!((merged.inserted, merged.updated), (1, 1));
    assert_eq!(target_rows(&target).await.len(), 4);

    // A malformed row: reported with its file and line, nothing committed.
    std::fs::write(
        landing.join("d.csv"),
        "id;amount;day;note\n5;5.00;2025-01-05;ok\n6;lots;2025-01-06;bad\n",
    )
    .unwrap();
    let v = version(&target).await;
    let err = replicator_ingest::ingest_definition(&def, &c, &root, &IngestOptions::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("file d.csv") && err.contains("line"), "{err}");
    assert_eq!(version(&target).await, v);
    assert_eq!(target_rows(&target).await.len(), 4, "never half-loaded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsonl_and_parquet_files_load() {
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let root = loc(out.path());
    let c = files_ctx(src.path());

    let j = src.path().join("events");
    std::fs::create_dir_all(j.join("2025")).unwrap();
    std::fs::write(
        j.join("2025/01.jsonl"),
        "{\"id\": 1, \"kind\": \"a\", \"n\": 1.5, \"ok\": true}\n{\"id\": 2, \"kind\": \"b\", \"n\": null, \"ok\": false}\n",
    )
    .unwrap();
    std::fs::write(
        j.join("2025/02.jsonl"),
        "{\"id\": 3, \"kind\": \"c\", \"n\": 2, \"ok\": true}\n",
    )
    .unwrap();
    let def = file_def(SourceKind::Jsonl, "events", "**/*.jsonl", &["id"]);
    let r = run(&def, &c, &root, &IngestOptions::default()).await;
    assert_eq!(r.inserted, 3);
    assert_eq!(
        target_rows(&root.child("files/events").unwrap()).await,
        [
            "id=1|kind=a|n=1.5|ok=true",
            "id=2|kind=b|n=NULL|ok=false",
            "id=3|kind=c|n=2.0|ok=true",
        ]
    );

    // The key + row-hash stream: one changed value changes exactly that row's hash.
    async fn hashes(
        def: &replicator_ingest::SourceDefinition,
        c: &SourceContext,
    ) -> std::collections::BTreeMap<Vec<u8>, u64> {
        use futures::TryStreamExt;
        let s = replicator_ingest::open(def, c).await.unwrap();
        let batches: Vec<_> = s
            .key_hashes(&["id".into()], None, 2)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        let mut out = std::collections::BTreeMap::new();
        for b in batches {
            for (k, h) in b.keys.iter().zip(b.hashes) {
                out.insert(k.data().to_vec(), h);
            }
        }
        out
    }
    let before = hashes(&def, &c).await;
    std::fs::write(
        j.join("2025/02.jsonl"),
        "{\"id\": 3, \"kind\": \"c\", \"n\": 2.5, \"ok\": true}\n",
    )
    .unwrap();
    let after = hashes(&def, &c).await;
    assert_eq!(before.len(), 3);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    let differ = before.iter().filter(|(k, h)| after[*k] != **h).count();
    assert_eq!(differ, 1);

    let p = src.path().join("pq");
    std::fs::create_dir_all(&p).unwrap();
    let batch = replicator_lake::sample::orders(0, 300, "emea");
    for (i, part) in [batch.slice(0, 200), batch.slice(200, 100)]
        .iter()
        .enumerate()
    {
        let f = std::fs::File::create(p.join(format!("part-{i}.parquet"))).unwrap();
        let mut w =
            parquet::arrow::ArrowWriter::try_new(f, Arc::new(part.schema().as_ref().clone()), None)
                .unwrap();
        w.write(part).unwrap();
        w.close().unwrap();
    }
    let mut def = file_def(SourceKind::Parquet, "pq", "*.parquet", &["id"]);
    def.hard_deletes = true;
    let r = run(&def, &c, &root, &IngestOptions::default()).await;
    assert_eq!(r.inserted, 300);
    let target = root.child("files/pq").unwrap();
    assert_eq!(
        target_rows(&target).await,
        replicator_lake::inspect::sorted_rows(&[batch]).unwrap()
    );
    // A file removed from the folder: its rows are deleted (hard_deletes).
    std::fs::remove_file(p.join("part-1.parquet")).unwrap();
    let r = run(&def, &c, &root, &IngestOptions::default()).await;
    assert_eq!((r.deleted, r.inserted, r.updated), (100, 0, 0));
    assert_eq!(target_rows(&target).await.len(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_watermark_reads_only_newer_rows() {
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let dir = src.path().join("w");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("a.csv"),
        "id,v,changed\n1,a,2025-01-01T00:00:00\n2,b,2025-01-02T00:00:00\n",
    )
    .unwrap();
    let mut def = file_def(SourceKind::Csv, "w", "*.csv", &["id"]);
    def.watermark = Some("changed".into());
    def.options
        .types
        .insert("changed".into(), "timestamp".into());
    let c = files_ctx(src.path());
    let root = loc(out.path());
    let full = run(&def, &c, &root, &IngestOptions::default()).await;
    assert_eq!(
        full.watermark.as_deref(),
        Some("2025-01-02 00:00:00.000000")
    );
    std::fs::write(
        dir.join("a.csv"),
        "id,v,changed\n1,a,2025-01-01T00:00:00\n2,B,2025-01-03T00:00:00\n3,c,2025-01-04T00:00:00\n",
    )
    .unwrap();
    let inc = run(
        &def,
        &c,
        &root,
        &IngestOptions {
            last_watermark: full.watermark,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(inc.mode, Some(LoadMode::Watermark));
    assert_eq!((inc.source_rows, inc.updated, inc.inserted), (2, 1, 1));
    assert_eq!(inc.watermark.as_deref(), Some("2025-01-04 00:00:00.000000"));
    assert_eq!(target_rows(&root.child("files/w").unwrap()).await.len(), 3);
}
