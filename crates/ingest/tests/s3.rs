//! File sources and targets on S3 (the `moto` server, started by this test on a free port;
//! `scripts/test-tools.sh` installs it): CSV files landing in a bucket are loaded into a
//! Delta table in another bucket, then a new file is merged.

mod common;

use common::*;
use object_store::{ObjectStoreExt, PutPayload};
use replicator_ingest::{IngestOptions, LoadMode, SourceContext, SourceKind};
use replicator_lake::TableLocation;
use replicator_tests::servers::Moto;

/// Bucket `name` on the test process's moto server.
fn bucket(name: &str) -> TableLocation {
    let moto = Moto::shared();
    moto.location(&format!("{}/", moto.bucket(name)))
}

async fn put(root: &TableLocation, rel: &str, body: &str) {
    root.object_store()
        .put(&root.object_path(rel), PutPayload::from(body.to_owned()))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_files_in_a_bucket_land_in_a_delta_table_in_another() {
    let landing = bucket("landing");
    let lake = bucket("lake");
    put(
        &landing,
        "orders/a.csv",
        "id,qty,day\n1,5,2026-01-01\n2,7,2026-01-02\n",
    )
    .await;
    put(&landing, "orders/b.csv", "id,qty,day\n3,1,2026-01-03\n").await;
    put(&landing, "orders/notes.txt", "not a csv").await;
    let mut def = file_def(SourceKind::Csv, "orders", "*.csv", &["id"]);
    def.target = "sales/orders".into();
    def.options.types.insert("day".into(), "date".into());
    let ctx = SourceContext {
        connection: None,
        files_root: Some(landing.clone()),
    };
    let target = lake.child("sales/orders").unwrap();

    let full = run(&def, &ctx, &lake, &IngestOptions::default()).await;
    assert_eq!((full.mode, full.inserted), (Some(LoadMode::Full), 3));
    assert_eq!(
        target_rows(&target).await,
        [
            "id=1|qty=5|day=2026-01-01",
            "id=2|qty=7|day=2026-01-02",
            "id=3|qty=1|day=2026-01-03",
        ]
    );

    // A new file, and a corrected one.
    put(&landing, "orders/c.csv", "id,qty,day\n4,2,2026-01-04\n").await;
    put(&landing, "orders/b.csv", "id,qty,day\n3,9,2026-01-03\n").await;
    let merge = run(&def, &ctx, &lake, &IngestOptions::default()).await;
    assert_eq!(
        (merge.mode, merge.inserted, merge.updated, merge.deleted),
        (Some(LoadMode::KeyHash), 1, 1, 0)
    );
    assert_eq!(
        target_rows(&target).await,
        [
            "id=1|qty=5|day=2026-01-01",
            "id=2|qty=7|day=2026-01-02",
            "id=3|qty=9|day=2026-01-03",
            "id=4|qty=2|day=2026-01-04",
        ]
    );
    // Nothing changed: no commit.
    let v = version(&target).await;
    let same = run(&def, &ctx, &lake, &IngestOptions::default()).await;
    assert!(!same.committed);
    assert_eq!(version(&target).await, v);
}
