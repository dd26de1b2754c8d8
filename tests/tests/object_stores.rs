//! The native deep clone on object stores: S3 (against the `moto` server) and Azure Blob
//! (against `azurite`), within one store and across stores, verified row for row. Both
//! emulators are real servers speaking the real protocols, started by this test on free
//! ports; `scripts/test-tools.sh` installs them (`.ci/run` calls it).

use std::path::Path;
use std::sync::{Arc, OnceLock};

use replicator_lake::inspect::{read_batches, sorted_rows};
use replicator_lake::location::StorageOptions;
use replicator_lake::{CloneOptions, TableLocation, deep_clone, sample};
use replicator_tests::servers::{Azurite, Moto};

fn moto() -> &'static Moto {
    Moto::shared()
}

/// A second S3 endpoint, for two clusters that both have a bucket of one name.
fn other_moto() -> &'static Moto {
    static S: OnceLock<Moto> = OnceLock::new();
    S.get_or_init(Moto::start)
}

fn azurite() -> &'static Azurite {
    Azurite::shared()
}

fn s3_options() -> StorageOptions {
    moto().options()
}

fn azure_options() -> StorageOptions {
    azurite().options()
}

fn bucket(name: &str) -> String {
    moto().bucket(name)
}

fn container(name: &str) -> String {
    azurite().container(name)
}

fn local(p: &Path) -> TableLocation {
    TableLocation::parse(p.to_str().unwrap()).unwrap()
}

async fn rows(loc: &TableLocation) -> Vec<String> {
    sorted_rows(&read_batches(loc, None).await.unwrap()).unwrap()
}

/// A local source table with three versions, and its rows.
async fn local_source(dir: &Path) -> (TableLocation, Vec<String>) {
    let src = local(&dir.join("src"));
    sample::create(&src, &sample::orders(0, 300, "emea"), &["region"])
        .await
        .unwrap();
    sample::append(&src, &sample::orders(300, 200, "amer"))
        .await
        .unwrap();
    let expected = rows(&src).await;
    (src, expected)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_to_s3_and_incremental() {
    let dir = tempfile::tempdir().unwrap();
    let (src, expected) = local_source(dir.path()).await;
    let b = bucket("replicator-s3-s3");
    let s3_src =
        TableLocation::parse_with(&format!("{b}/lake/sales/orders"), s3_options()).unwrap();
    let s3_dst = TableLocation::parse_with(&format!("{b}/dr/sales/orders"), s3_options()).unwrap();
    // Local -> S3 (streamed upload), then S3 -> S3 in the same bucket (server-side copy).
    deep_clone(&src, &s3_src, &CloneOptions::default())
        .await
        .unwrap();
    assert_eq!(rows(&s3_src).await, expected);
    assert!(
        s3_src.same_store(&s3_dst),
        "one bucket, one store: copies stay server-side"
    );
    let first = deep_clone(&s3_src, &s3_dst, &CloneOptions::default())
        .await
        .unwrap();
    assert_eq!(first.metrics.num_copied_files, 2);
    assert_eq!(rows(&s3_dst).await, expected);
    // Incremental on S3: only the new file moves; unchanged is a no-op.
    sample::append(&src, &sample::orders(500, 50, "apac"))
        .await
        .unwrap();
    deep_clone(&src, &s3_src, &CloneOptions::default())
        .await
        .unwrap();
    let inc = deep_clone(&s3_src, &s3_dst, &CloneOptions::default())
        .await
        .unwrap();
    assert_eq!((inc.target_version, inc.metrics.num_copied_files), (1, 1));
    assert_eq!(rows(&s3_dst).await, rows(&src).await);
    assert!(
        !deep_clone(&s3_src, &s3_dst, &CloneOptions::default())
            .await
            .unwrap()
            .committed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_to_azure() {
    let dir = tempfile::tempdir().unwrap();
    let (src, expected) = local_source(dir.path()).await;
    let c = container("replicator-az-az");
    let az_src = TableLocation::parse_with(&format!("{c}/lake/orders"), azure_options()).unwrap();
    let az_dst = TableLocation::parse_with(&format!("{c}/dr/orders"), azure_options()).unwrap();
    deep_clone(&src, &az_src, &CloneOptions::default())
        .await
        .unwrap();
    let r = deep_clone(&az_src, &az_dst, &CloneOptions::default())
        .await
        .unwrap();
    assert_eq!(r.metrics.num_copied_files, 2);
    assert_eq!(rows(&az_dst).await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_to_azure_across_stores() {
    let dir = tempfile::tempdir().unwrap();
    let (src, expected) = local_source(dir.path()).await;
    let b = bucket("replicator-s3-az");
    let c = container("replicator-s3-az");
    let s3 = TableLocation::parse_with(&format!("{b}/orders"), s3_options()).unwrap();
    let az = TableLocation::parse_with(&format!("{c}/orders"), azure_options()).unwrap();
    deep_clone(&src, &s3, &CloneOptions::default())
        .await
        .unwrap();
    let r = deep_clone(&s3, &az, &CloneOptions::default())
        .await
        .unwrap();
    assert!(r.committed);
    assert_eq!(rows(&az).await, expected);
    // And back to local disk, for good measure.
    let back = local(&dir.path().join("back"));
    deep_clone(&az, &back, &CloneOptions::default())
        .await
        .unwrap();
    assert_eq!(rows(&back).await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_run_reaches_s3_with_storage_options_from_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let root = local(&dir.path().join("source"));
    sample::demo_estate(&root).await.unwrap();
    let b = bucket("replicator-config-run");
    let secret_file = dir.path().join("aws-secret");
    std::fs::write(&secret_file, "testing\n").unwrap();
    let yaml = format!(
        "source: {{ root: {src} }}\n\
         target:\n  root: {b}/dr\n  storage:\n    aws_endpoint: http://127.0.0.1:{port}\n    aws_allow_http: \"true\"\n    \
         aws_region: us-east-1\n    aws_access_key_id: testing\n    aws_secret_access_key: {{ file: {secret} }}\n\
         tables: {{ include: [\"sales.*\"] }}\nstate: {{ url: \"sqlite://{state}\" }}\n",
        src = dir.path().join("source").display(),
        port = moto().port,
        secret = secret_file.display(),
        state = dir.path().join("state.db").display(),
    );
    let config = replicator_common::Config::from_yaml(&yaml, Vec::new(), &[]).unwrap();
    let out = replicator_cli::embedded::run(&config, &Default::default())
        .await
        .unwrap();
    let replicator_cli::embedded::RunOutput::Completed(done) = out else {
        panic!("run did not complete")
    };
    assert_eq!(
        (done.summary.succeeded, done.summary.total),
        (2, 2),
        "{:#?}",
        done.summary
    );
    // The workers found the target's options through the configured root, not the message.
    let orders = TableLocation::parse(&format!("{b}/dr/sales/orders")).unwrap();
    assert_eq!(
        rows(&orders).await,
        rows(&local(&dir.path().join("source/sales/orders"))).await
    );
}

/// A table whose one data file is larger than the 8 MiB copy chunk, so cross-store copies go
/// through multipart uploads.
async fn large_file_table(dir: &Path) -> TableLocation {
    use arrow::array::{Int64Array, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    let n = 200_000;
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let tags: Vec<String> = (0..n)
        .map(|_| {
            (0..4)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    format!("{x:016x}")
                })
                .collect()
        })
        .collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("tag", DataType::Utf8, true),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from((0..n as i64).collect::<Vec<_>>())),
            Arc::new(StringArray::from(tags)),
        ],
    )
    .unwrap();
    let src = local(&dir.join("big"));
    sample::create(&src, &batch, &[]).await.unwrap();
    src
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_larger_than_a_chunk_stream_through_multipart_uploads() {
    let dir = tempfile::tempdir().unwrap();
    let src = large_file_table(dir.path()).await;
    let facts = replicator_lake::inspect::log_facts(&src, None)
        .await
        .unwrap();
    let biggest = facts.files.values().map(|(size, _)| *size).max().unwrap();
    assert!(
        biggest > 8 * 1024 * 1024,
        "the data file must exceed one chunk: {biggest} bytes"
    );
    let b = bucket("replicator-multipart");
    let c = container("replicator-multipart");
    let s3 = TableLocation::parse_with(&format!("{b}/big"), s3_options()).unwrap();
    let az = TableLocation::parse_with(&format!("{c}/big"), azure_options()).unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let progress = {
        let seen = seen.clone();
        Arc::new(move |p: &replicator_lake::CloneProgress| seen.lock().unwrap().push(p.clone()))
    };
    let opts = CloneOptions {
        progress: Some(progress),
        ..Default::default()
    };
    let r = deep_clone(&src, &s3, &opts).await.unwrap();
    assert_eq!(
        r.metrics.copied_files_size as i64,
        facts.files.values().map(|(s, _)| s).sum::<i64>()
    );
    let last = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(
        (last.files_done, last.bytes_done),
        (last.files_total, last.bytes_total),
        "progress reaches the end"
    );
    deep_clone(&s3, &az, &CloneOptions::default())
        .await
        .unwrap();
    let expected = rows(&src).await;
    assert_eq!(rows(&s3).await, expected);
    assert_eq!(rows(&az).await, expected);
}

/// Write `actions` as the next commit (`version`) of `loc`.
async fn commit(loc: &TableLocation, version: u64, actions: &[serde_json::Value]) {
    use object_store::ObjectStoreExt;
    let body: String = actions.iter().map(|a| format!("{a}\n")).collect();
    loc.object_store()
        .put(
            &loc.object_path(&format!("_delta_log/{version:020}.json")),
            body.into(),
        )
        .await
        .unwrap();
}

fn add(path: &str, size: u64) -> serde_json::Value {
    serde_json::json!({"add": {"path": path, "partitionValues": {}, "size": size,
        "modificationTime": 0, "dataChange": true}})
}

async fn keys(loc: &TableLocation) -> Vec<String> {
    use futures::TryStreamExt;
    loc.object_store()
        .list(Some(loc.prefix()))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .unwrap()
}

/// docs/safety.md on S3: a `file://` path in an S3 table's log never makes the worker copy
/// its own disk; absolute paths in the bucket are read only under an allowed root; `s3a://`
/// names the same bucket as `s3://`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_log_paths_and_url_spellings_are_confined() {
    use replicator_lake::LakeError;
    let dir = tempfile::tempdir().unwrap();
    let (src, _) = local_source(dir.path()).await;
    let b = bucket("replicator-safety");
    let at = |u: String| TableLocation::parse_with(&u, s3_options()).unwrap();

    // The repro on an S3 table.
    let t = at(format!("{b}/lake/t"));
    deep_clone(&src, &t, &CloneOptions::default())
        .await
        .unwrap();
    let hostname = std::fs::metadata("/etc/hostname").map_or(1, |m| m.len());
    commit(&t, 1, &[add("file:///etc/hostname", hostname)]).await;
    let d = at(format!("{b}/dr/t"));
    let everything = [at(format!("{b}/")), local(Path::new("/etc"))];
    let err = deep_clone(
        &t,
        &d,
        &CloneOptions {
            external_roots: everything.to_vec(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, LakeError::OutsidePath { reason, .. } if reason.contains("never read")),
        "{err}"
    );
    assert!(keys(&d).await.is_empty(), "{:?}", keys(&d).await);

    // The same table spelled `s3a://`: an overlap, whichever side.
    let alias = at("s3a://replicator-safety/lake/t/sub".to_owned());
    let err = deep_clone(&t, &alias, &Default::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("overlap"), "{err}");
    let err = deep_clone(&alias, &at(format!("{b}/lake")), &Default::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("overlap"), "{err}");

    // An absolute path elsewhere in the bucket: only under an allowed root.
    let t2 = at(format!("{b}/lake/t2"));
    deep_clone(&src, &t2, &CloneOptions::default())
        .await
        .unwrap();
    {
        use object_store::ObjectStoreExt;
        t2.object_store()
            .put(
                &"shared/x/extra.parquet".into(),
                b"0123456789".to_vec().into(),
            )
            .await
            .unwrap();
    }
    commit(
        &t2,
        1,
        &[add("s3a://replicator-safety/shared/x/extra.parquet", 10)],
    )
    .await;
    let d2 = at(format!("{b}/dr/t2"));
    let err = deep_clone(&t2, &d2, &Default::default()).await.unwrap_err();
    assert!(
        matches!(&err, LakeError::OutsidePath { reason, .. } if reason.contains("allowed external root")),
        "{err}"
    );
    assert!(keys(&d2).await.is_empty());
    let done = deep_clone(
        &t2,
        &d2,
        &CloneOptions {
            external_roots: vec![at(format!("{b}/shared"))],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(done.committed);
    assert!(
        keys(&d2).await.iter().any(|k| k == "dr/t2/extra.parquet"),
        "{:?}",
        keys(&d2).await
    );
}

/// Two roots in buckets of one name on two S3 endpoints (a DR copy between two S3-compatible
/// clusters): every read of a table — delta-rs's own loads included — goes to its root's
/// endpoint, whatever was resolved before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roots_in_same_named_buckets_on_two_endpoints_keep_their_own_options() {
    let name = "replicator-twin";
    let (a, b) = (moto().bucket(name), other_moto().bucket(name));
    assert_eq!(a, b);
    let roots = replicator_lake::StorageRoots::new([
        (format!("{a}/src"), (*moto().options()).clone()),
        (format!("{b}/dst"), (*other_moto().options()).clone()),
    ])
    .unwrap();
    let src = roots.resolve(&format!("{a}/src/t")).unwrap();
    sample::create(&src, &sample::orders(0, 10, "eu"), &[])
        .await
        .unwrap();
    let before = replicator_lake::inspect::table_info(&src, None)
        .await
        .unwrap()
        .version;
    // A worker resolves the target too: same bucket name, the other endpoint.
    let _dst = roots.resolve(&format!("{b}/dst/t")).unwrap();
    let after = replicator_lake::inspect::table_info(&src, None)
        .await
        .expect("the source is read from its own endpoint")
        .version;
    assert_eq!(before, after);
}

/// Many files in one bucket (past the 16 from which the plan lists source and target
/// instead of a HEAD per file): every copy is server-side, the replica reads the same, and
/// a second clone copies nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_server_side_copies_in_one_bucket() {
    let b = bucket("replicator-s3-many");
    let s3_src = TableLocation::parse_with(&format!("{b}/lake/events"), s3_options()).unwrap();
    let s3_dst = TableLocation::parse_with(&format!("{b}/dr/events"), s3_options()).unwrap();
    sample::create(&s3_src, &sample::orders(0, 10, "eu"), &[])
        .await
        .unwrap();
    for i in 1..20 {
        sample::append(&s3_src, &sample::orders(i * 10, 10, "eu"))
            .await
            .unwrap();
    }
    let r = deep_clone(&s3_src, &s3_dst, &CloneOptions::default())
        .await
        .unwrap();
    assert_eq!(r.metrics.num_copied_files, 20);
    assert_eq!(rows(&s3_dst).await, rows(&s3_src).await);
    assert!(
        !deep_clone(&s3_src, &s3_dst, &CloneOptions::default())
            .await
            .unwrap()
            .committed
    );
}
