//! Compute-free clone benchmark (`bench/compute-free.sh`, issue 19): N managed Databricks
//! tables in S3 (moto) replicated by the Databricks engine against the workspace emulator,
//! once with `clone_mode: warehouse` (the baseline: `DEEP CLONE` on the target warehouse)
//! and once with `clone_mode: storage` (files copied by the worker with vended
//! credentials), each followed by an unchanged re-run. Prints, per mode and run: statements
//! sent to the warehouses, bytes the warehouse copied, bytes the worker copied, credential
//! requests and wall time.
//!
//! Usage: `compute_free [--tables N] [--commits N] [--rows N]`

use std::path::PathBuf;
use std::time::Instant;

use replicator_common::Config;
use replicator_databricks::WorkspacePair;
use replicator_engine::{CloneContext, Engine, Engines};
use replicator_lake::sample;
use replicator_proto::{CloneTask, EngineKind, Header};
use replicator_tests::databricks_emulator::{Table, Workspace, WorkspaceAuth, World};
use replicator_tests::servers::Moto;

#[derive(Default)]
struct Totals {
    statements: usize,
    warehouse_bytes: u64,
    worker_bytes: u64,
    credential_requests: u32,
    fallbacks: usize,
    secs: f64,
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (tables, commits, rows) = (
        arg("--tables", 20),
        arg("--commits", 3),
        arg("--rows", 20_000),
    );
    let dir = tempfile::tempdir().unwrap();
    let moto = Moto::start();
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let (src_bucket, dr_bucket) = (
        format!("bench-src-{}", &run_id[..8]),
        format!("bench-dr-{}", &run_id[..8]),
    );
    moto.bucket(&src_bucket);
    moto.bucket(&dr_bucket);
    let replicas = format!("s3://{dr_bucket}/replicas");
    moto.location(&replicas);

    let world = World::new();
    let src_ms = world.add_metastore("prod", &dir.path().join("prod-root"));
    let tgt_ms = world.add_metastore("dr", &dir.path().join("dr-root"));
    eprintln!(
        "== writing {tables} tables of {commits} commits × {rows} rows into s3://{src_bucket}"
    );
    for i in 0..tables {
        let url = format!("s3://{src_bucket}/managed/t{i:04}");
        let loc = moto.location(&url);
        sample::create(&loc, &sample::orders(0, rows, "eu"), &[])
            .await
            .unwrap();
        for c in 1..commits {
            sample::append(&loc, &sample::orders((c * rows) as i64, rows, "us"))
                .await
                .unwrap();
        }
        world.add_table(
            &src_ms,
            "prod",
            "sales",
            &format!("t{i:04}"),
            Table {
                table_type: "MANAGED".into(),
                location: PathBuf::from(&url),
                properties: Default::default(),
            },
        );
    }
    for ms in [&src_ms, &tgt_ms] {
        world.enable_external_access(ms, true);
    }
    world.add_storage_credential(&tgt_ms, "dr-cred");
    world.add_external_location(&tgt_ms, "dr-replicas", &replicas, "dr-cred");
    let auth = |pat: &str| WorkspaceAuth {
        pat: Some(pat.into()),
        oauth: None,
        token_lifetime_s: 3600,
    };
    let src = Workspace::start(&world, &src_ms, "wh-src", auth("src-token")).await;
    let tgt = Workspace::start(&world, &tgt_ms, "wh-tgt", auth("tgt-token")).await;
    std::fs::write(dir.path().join("src.token"), "src-token").unwrap();
    std::fs::write(dir.path().join("tgt.token"), "tgt-token").unwrap();
    let endpoint = format!("http://127.0.0.1:{}", moto.port);
    let yaml = |mode: &str, catalog: &str| {
        format!(
            r#"
databricks:
  source: {{ host: {s}, warehouse_id: wh-src, auth: {{ token: {{ file: {d}/src.token }} }} }}
  target: {{ host: {t}, warehouse_id: wh-tgt, auth: {{ token: {{ file: {d}/tgt.token }} }} }}
  catalogs: [ {{ source: prod, target: {catalog} }} ]
  clone_mode: {mode}
  storage_location: {replicas}
  client: {{ poll_interval_ms: 2, wait_timeout_s: 0 }}
source: {{ storage: {{ aws_endpoint: "{endpoint}", aws_allow_http: "true", aws_region: us-east-1 }} }}
target: {{ storage: {{ aws_endpoint: "{endpoint}", aws_allow_http: "true", aws_region: us-east-1 }} }}
"#,
            s = src.url,
            t = tgt.url,
            d = dir.path().display(),
        )
    };

    println!(
        "{tables} tables, {commits} commits of {rows} rows each (release build: {})",
        !cfg!(debug_assertions)
    );
    println!(
        "| mode | run | statements | bytes copied by the warehouse | bytes copied by the worker | credential requests | fallbacks | s |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    let mut first = Vec::new();
    // Each mode replicates into a catalog of its own, so both start from an empty target.
    for (mode, catalog) in [("warehouse", "dr_wh"), ("storage", "dr_st")] {
        let config = Config::from_yaml(&yaml(mode, catalog), std::iter::empty(), &[]).unwrap();
        let db = config.databricks.clone().unwrap();
        // Planning's sharing setup (the warehouse path reads the shared catalog).
        let pair = WorkspacePair::from_config(&db, false).unwrap();
        let found: Vec<_> = pair.discover().await.unwrap();
        pair.prepare(&found).await.unwrap();
        let engines = Engines::from_config(&config).unwrap();
        let engine = engines.databricks().unwrap();
        let (source_root, target_root) = replicator_engine::databricks::roots(&db);
        for run in ["first", "unchanged"] {
            src.clear_log();
            tgt.clear_log();
            let mut t = Totals::default();
            let started = Instant::now();
            for i in 0..tables {
                let name = format!("prod.sales.t{i:04}");
                let task = CloneTask {
                    ingest: None,
                    header: Header::new(uuid::Uuid::now_v7()),
                    task_id: uuid::Uuid::now_v7(),
                    attempt: 1,
                    table: name.clone(),
                    source: format!("{source_root}/{name}"),
                    target: format!("{target_root}/{catalog}.sales.t{i:04}"),
                    version: None,
                    operation: Default::default(),
                    engine: EngineKind::Databricks,
                    replace: false,
                    external_roots: Vec::new(),
                    as_of: None,
                };
                let ctx = CloneContext {
                    parallelism: 8,
                    progress: None,
                    last_watermark: None,
                };
                let c = engine
                    .clone_table(&task, &ctx)
                    .await
                    .unwrap_or_else(|f| panic!("{name}: {}", f.error.message));
                let bytes = c.metrics.as_ref().map_or(0, |m| m.copied_files_size);
                let path = c.path.unwrap();
                if path.mode == "storage" {
                    t.worker_bytes += bytes;
                    t.credential_requests += path.credential_requests;
                } else {
                    t.warehouse_bytes += bytes;
                }
                if path.fallback.is_some() {
                    t.fallbacks += 1;
                }
            }
            t.secs = started.elapsed().as_secs_f64();
            t.statements = src.statements().len() + tgt.statements().len();
            println!(
                "| {mode} | {run} | {} | {} | {} | {} | {} | {:.2} |",
                t.statements,
                t.warehouse_bytes,
                t.worker_bytes,
                t.credential_requests,
                t.fallbacks,
                t.secs
            );
            if run == "first" {
                first.push(t);
            }
        }
    }
    let (wh, st) = (&first[0], &first[1]);
    println!(
        "first run: the storage mode sent {} statements against {} (warehouse bytes {} → {}); the worker moved {} bytes",
        st.statements, wh.statements, wh.warehouse_bytes, st.warehouse_bytes, st.worker_bytes
    );
}
