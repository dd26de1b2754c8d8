//! The Snowflake mirror end to end (docs/snowflake.md): `replicator mirror snowflake` on the
//! embedded default — planner, catalog worker, store, summary — against the Databricks
//! workspace emulator (Unity Catalog with UniForm tables backed by real Delta tables) and the
//! Snowflake SQL API emulator (JWT checked, DDL parsed by Snowflake's documented grammar).
//!
//! - discovery → metadata table → catalog integration → databases, schemas → Iceberg tables,
//!   checked statement by statement in a dry run first; a second run executes nothing;
//! - a name with quotes, a space and mixed case reaches Snowflake quoted;
//! - a table dropped in Unity Catalog is reported and kept, then dropped with `drop_removed`;
//! - a 429 storm and an expired JWT are ridden out; a wrong passphrase stops the command with
//!   one clear line;
//! - the native engine's replicas on S3 (moto) through a Delta catalog integration and an
//!   external volume.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use pkcs8::{EncodePrivateKey, LineEnding};
use replicator_cli::embedded::{RunOptions, RunOutput, run};
use replicator_common::Config;
use replicator_lake::inspect::{read_batches, sorted_rows};
use replicator_lake::{TableLocation, sample};
use replicator_proto::{ObjectKind, RunCompleted, TableStatus};
use replicator_tests::databricks_emulator::Table;
use replicator_tests::servers::Moto;
use replicator_tests::snowflake_emulator::SnowflakeEmulator;
use rsa::RsaPrivateKey;

mod databricks_env;
use databricks_env::{Env, loc};

const PASSPHRASE: &str = "correct horse";
const UC_SECRET: &str = "uc-oauth-s3cr3t-value";

fn key() -> &'static RsaPrivateKey {
    static KEY: OnceLock<RsaPrivateKey> = OnceLock::new();
    KEY.get_or_init(|| RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap())
}

/// The key as `openssl pkcs8 -topk8 -v2 aes256` writes it, and its passphrase, in `dir`.
fn write_key(dir: &Path, passphrase: &str) {
    let params = pkcs8::pkcs5::pbes2::Parameters::pbkdf2_sha256_aes256cbc(
        2048,
        b"0123456789abcdef",
        b"fedcba9876543210",
    )
    .unwrap();
    let der = key().to_pkcs8_der().unwrap();
    let pem = pkcs8::PrivateKeyInfo::try_from(der.as_bytes())
        .unwrap()
        .encrypt_with_params(params, PASSPHRASE)
        .unwrap()
        .to_pem("ENCRYPTED PRIVATE KEY", LineEnding::LF)
        .unwrap();
    std::fs::write(dir.join("rsa_key.p8"), pem.as_bytes()).unwrap();
    std::fs::write(dir.join("key.pass"), format!("{passphrase}\n")).unwrap();
    std::fs::write(dir.join("uc.secret"), UC_SECRET).unwrap();
}

async fn snowflake() -> SnowflakeEmulator {
    SnowflakeEmulator::start("MYORG-ACCT", "REPLICATOR_SVC", key().to_public_key()).await
}

/// The `snowflake` section (without its `uniform` / `delta` part) and a state store in `dir`.
fn section(dir: &Path, em: &SnowflakeEmulator, rest: &str) -> String {
    format!(
        r#"
state: {{ url: "sqlite://{d}/state.db" }}
snowflake:
  account: myorg-acct
  user: replicator_svc
  private_key: {{ file: {d}/rsa_key.p8 }}
  private_key_passphrase: {{ file: {d}/key.pass }}
  url: {url}
  refresh_interval_seconds: 120
  metadata_table: {d}/mirror_meta
  client: {{ poll_interval_ms: 5, max_poll_interval_ms: 20, base_delay_ms: 5, max_delay_ms: 20, max_retry_after_ms: 1500 }}
{rest}"#,
        d = dir.display(),
        url = em.url,
    )
}

async fn mirror(config: &Config, dry_run: bool) -> anyhow::Result<RunOutput> {
    let opts = RunOptions {
        dry_run,
        mirror_only: true,
        ..Default::default()
    };
    run(config, &opts).await
}

/// A finished run's one mirror line.
fn completed(out: RunOutput) -> (RunCompleted, replicator_proto::TableSummary) {
    let RunOutput::Completed(done) = out else {
        panic!("not a completed run: {out:?}")
    };
    assert_eq!(done.summary.tables.len(), 1, "{:?}", done.summary);
    let line = done.summary.tables[0].clone();
    assert_eq!(line.kind, Some(ObjectKind::Mirror));
    (done, line)
}

/// The statements and findings a dry run would run and report.
fn dry(out: RunOutput) -> (Vec<String>, Vec<String>) {
    let RunOutput::Planned(plan) = out else {
        panic!("not a dry run: {out:?}")
    };
    assert_eq!(plan.objects.len(), 1);
    assert_eq!(plan.objects[0].kind, ObjectKind::Mirror);
    let applied = plan.would_apply[0].as_ref().unwrap().clone();
    (applied.statements, applied.findings)
}

/// The metadata table's rows, column by column, without `synced_at` (new on every refresh).
async fn metadata(dir: &Path) -> Vec<BTreeMap<String, String>> {
    let loc = TableLocation::parse(&dir.join("mirror_meta").to_string_lossy()).unwrap();
    sorted_rows(&read_batches(&loc, None).await.unwrap())
        .unwrap()
        .into_iter()
        .map(|r| {
            r.split('|')
                .filter_map(|kv| kv.split_once('='))
                .filter(|(k, _)| *k != "synced_at")
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        })
        .collect()
}

/// A UniForm table (`delta.universalFormat.enabledFormats = iceberg`) over a new Delta table.
async fn uniform(dir: &Path, name: &str, rows: usize) -> Table {
    let path = dir.join("uniform").join(name.replace(['"', ' '], "_"));
    sample::create(&loc(&path), &sample::orders(0, rows, "eu"), &[])
        .await
        .unwrap();
    Table {
        table_type: "MANAGED".into(),
        location: path,
        properties: [
            ("delta.enableIcebergCompatV2".into(), "true".into()),
            (
                "delta.universalFormat.enabledFormats".into(),
                "iceberg".into(),
            ),
        ]
        .into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uniform_tables_are_mirrored_once_and_dropped_only_when_asked() {
    let env = Env::new().await;
    let dir = env.dir.path();
    write_key(dir, PASSPHRASE);
    let ms = env.src.metastore.clone();
    // Three UniForm tables (one in a schema and with a name that need quoting); the
    // environment's `customers` is external and not UniForm, `events` a streaming table.
    env.world.add_table(
        &ms,
        "prod",
        "sales",
        "orders",
        uniform(dir, "orders", 20).await,
    );
    env.world.add_table(
        &ms,
        "prod",
        "sales",
        "returns",
        uniform(dir, "returns", 5).await,
    );
    env.world.add_table(
        &ms,
        "prod",
        "Sales EU",
        "Q\"uoted Mix",
        uniform(dir, "Q\"uoted Mix", 3).await,
    );
    // Where the metadata table is registered in Unity Catalog (outside the mirrored catalog).
    env.world.add_schema(&ms, "ops", "mirror");
    let em = snowflake().await;
    let yaml = env.yaml(&section(
        dir,
        &em,
        "  metadata_table_name: ops.mirror.snowflake_mirror\n  uniform:\n    oauth_client_id: sp-mirror\n    oauth_client_secret: { file: DIR/uc.secret }\n"
            .replace("DIR", &dir.display().to_string())
            .as_str(),
    ));
    let mut config = Config::from_yaml(&yaml, std::iter::empty(), &[]).unwrap();

    // The dry run reads Snowflake (SHOW only) and lists every statement, in order.
    let (statements, findings) = dry(mirror(&config, true).await.unwrap());
    let host = env.src.url.trim_end_matches('/');
    let secret_file = dir.join("uc.secret");
    let expected = [
        format!(
            "CREATE CATALOG INTEGRATION IF NOT EXISTS \"UC_PROD\" CATALOG_SOURCE = ICEBERG_REST TABLE_FORMAT = ICEBERG \
             REST_CONFIG = ( CATALOG_URI = '{host}/api/2.1/unity-catalog/iceberg-rest' CATALOG_NAME = 'prod' ACCESS_DELEGATION_MODE = VENDED_CREDENTIALS ) \
             REST_AUTHENTICATION = ( TYPE = OAUTH OAUTH_TOKEN_URI = '{host}/oidc/v1/token' OAUTH_CLIENT_ID = 'sp-mirror' \
             OAUTH_CLIENT_SECRET = '<secret from file:{}>' OAUTH_ALLOWED_SCOPES = ( 'all-apis' ) ) ENABLED = TRUE REFRESH_INTERVAL_SECONDS = 120",
            secret_file.display()
        ),
        "CREATE DATABASE IF NOT EXISTS \"prod\"".to_owned(),
        "CREATE SCHEMA IF NOT EXISTS \"prod\".\"Sales EU\"".to_owned(),
        "CREATE SCHEMA IF NOT EXISTS \"prod\".\"sales\"".to_owned(),
        "CREATE ICEBERG TABLE IF NOT EXISTS \"prod\".\"Sales EU\".\"Q\"\"uoted Mix\" CATALOG = 'UC_PROD' CATALOG_TABLE_NAME = 'Q\"uoted Mix' CATALOG_NAMESPACE = 'Sales EU' AUTO_REFRESH = TRUE".to_owned(),
        "CREATE ICEBERG TABLE IF NOT EXISTS \"prod\".\"sales\".\"orders\" CATALOG = 'UC_PROD' CATALOG_TABLE_NAME = 'orders' CATALOG_NAMESPACE = 'sales' AUTO_REFRESH = TRUE".to_owned(),
        "CREATE ICEBERG TABLE IF NOT EXISTS \"prod\".\"sales\".\"returns\" CATALOG = 'UC_PROD' CATALOG_TABLE_NAME = 'returns' CATALOG_NAMESPACE = 'sales' AUTO_REFRESH = TRUE".to_owned(),
    ];
    assert_eq!(statements.len(), expected.len(), "{statements:#?}");
    for (got, want) in statements.iter().zip(&expected) {
        assert_eq!(got, want);
    }
    assert!(statements.iter().all(|s| !s.contains(UC_SECRET)));
    assert_eq!(
        findings,
        [
            "table prod.sales.customers: not mirrored: not UniForm (delta.universalFormat.enabledFormats lacks iceberg) and not under `snowflake.delta.location`"
        ]
    );
    assert!(em.ddl_executed().is_empty(), "{:?}", em.ddl_executed());
    assert!(!dir.join("mirror_meta").exists());

    // Executed, with Snowflake asking to slow down first: the same statements, the secret
    // sent to Snowflake only.
    em.faults(|f| {
        f.throttle = 3;
        f.retry_after_s = 1;
    });
    let (done, line) = completed(mirror(&config, false).await.unwrap());
    assert!(done.summary.is_success(), "{:?}", done.summary);
    assert_eq!(line.status, TableStatus::Succeeded);
    assert!(em.throttled() >= 3);
    let ddl = em.ddl_executed();
    assert_eq!(ddl.len(), expected.len(), "{ddl:#?}");
    assert!(ddl[0].contains(&format!("OAUTH_CLIENT_SECRET = '{UC_SECRET}'")));
    em.catalog(|c| {
        let t = &c.tables[&("prod".into(), "Sales EU".into(), "Q\"uoted Mix".into())];
        assert_eq!(t.catalog, "UC_PROD");
        assert_eq!(t.catalog_table_name.as_deref(), Some("Q\"uoted Mix"));
        assert_eq!(t.catalog_namespace.as_deref(), Some("Sales EU"));
        assert_eq!(c.tables.len(), 3);
    });
    // The metadata table, registered in the source's Unity Catalog with its `_vw` view.
    let registered = env
        .table(&env.src, "ops", "mirror", "snowflake_mirror")
        .unwrap();
    assert_eq!(registered.table_type, "EXTERNAL");
    assert_eq!(registered.location, dir.join("mirror_meta"));
    let view = env
        .table(&env.src, "ops", "mirror", "snowflake_mirror_vw")
        .unwrap();
    assert_eq!(view.table_type, "VIEW");
    let rows = metadata(dir).await;
    assert_eq!(rows.len(), 3, "{rows:#?}");
    assert!(
        rows.iter()
            .all(|r| r["snowflake_integration"] == "UC_PROD" && r["status"] == "created"),
        "{rows:#?}"
    );
    let orders = rows
        .iter()
        .find(|r| r["source_table"] == "prod.sales.orders")
        .unwrap();
    assert_eq!(orders["snowflake_table"], "\"prod\".\"sales\".\"orders\"");
    let iceberg = &orders["iceberg_metadata_location"];
    assert!(
        iceberg.contains("/uniform/orders/metadata/00001-") && iceberg.ends_with(".metadata.json"),
        "the Iceberg metadata location Unity Catalog reports: {iceberg}"
    );

    // A second run, with the JWT expired: re-minted, and nothing to execute.
    em.clear_log();
    em.expire_tokens();
    let (done, line) = completed(mirror(&config, false).await.unwrap());
    assert!(done.summary.is_success());
    assert!(em.ddl_executed().is_empty(), "{:?}", em.ddl_executed());
    assert!(line.detail.unwrap_or_default().contains("customers"));
    assert!(metadata(dir).await.iter().all(|r| r["status"] == "in sync"));

    // `returns` dropped in Unity Catalog: reported and kept ...
    assert!(env.world.remove_table(&ms, "prod", "sales", "returns"));
    em.clear_log();
    let (_, line) = completed(mirror(&config, false).await.unwrap());
    assert!(em.ddl_executed().is_empty());
    let detail = line.detail.unwrap_or_default();
    assert!(
        detail.contains("table \"prod\".\"sales\".\"returns\": its source is gone; kept in Snowflake (drop_removed is off)"),
        "{detail}"
    );
    assert_eq!(em.catalog(|c| c.tables.len()), 3);
    // ... and dropped with `drop_removed`.
    config.snowflake.as_mut().unwrap().drop_removed = true;
    let (_, _) = completed(mirror(&config, false).await.unwrap());
    assert_eq!(
        em.ddl_executed(),
        ["DROP ICEBERG TABLE IF EXISTS \"prod\".\"sales\".\"returns\""]
    );
    assert_eq!(em.catalog(|c| c.tables.len()), 2);
    let rows = metadata(dir).await;
    assert!(
        rows.iter()
            .any(|r| r["snowflake_table"] == "\"prod\".\"sales\".\"returns\""
                && r["status"] == "dropped: gone from the source"),
        "{rows:#?}"
    );
    assert_eq!(rows.len(), 3, "{rows:#?}");

    // With a discovery tag only tagged tables are eligible: `orders` carries it, so the
    // untagged mirror of `Q"uoted Mix` would go (drop_removed is still on).
    env.world.edit_objects(&ms, |o| {
        o.meta("table", "prod.sales.orders")
            .tags
            .insert("snowflake_mirror".into(), "true".into())
    });
    config
        .snowflake
        .as_mut()
        .unwrap()
        .uniform
        .as_mut()
        .unwrap()
        .discovery_tag = Some("snowflake_mirror=true".into());
    let (statements, _) = dry(mirror(&config, true).await.unwrap());
    assert_eq!(
        statements,
        ["DROP ICEBERG TABLE IF EXISTS \"prod\".\"Sales EU\".\"Q\"\"uoted Mix\""]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_passphrase_stops_the_command_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    write_key(dir.path(), "battery staple");
    let em = snowflake().await;
    let yaml = format!(
        "source: {{ root: {d}/s }}\ntarget: {{ root: s3://bucket/dr }}\n{}",
        section(
            dir.path(),
            &em,
            "  delta: { external_volume: VOL, integration: DELTA_INT, database: REPLICAS }\n"
        ),
        d = dir.path().display()
    );
    let config = Config::from_yaml(&yaml, std::iter::empty(), &[]).unwrap();
    let err = format!("{:#}", mirror(&config, false).await.unwrap_err());
    assert_eq!(
        err,
        format!(
            "snowflake: the private key in {}/rsa_key.p8 could not be decrypted: wrong passphrase?",
            dir.path().display()
        )
    );
    assert!(!err.contains("battery"));
    assert_eq!(em.tokens_seen(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_replicas_on_s3_are_read_through_a_delta_integration() {
    let moto = Moto::shared();
    let bucket = moto.bucket("mirror-replicas");
    // `v1.orders`: a dot in a directory name is part of the table's name, not a schema.
    for (path, n) in [
        ("dr/sales/orders", 12),
        ("dr/customers", 4),
        ("dr/v1.orders", 2),
    ] {
        sample::create(
            &moto.location(&format!("{bucket}/{path}")),
            &sample::orders(0, n, "eu"),
            &[],
        )
        .await
        .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    write_key(dir.path(), PASSPHRASE);
    std::fs::write(dir.path().join("aws-secret"), "testing\n").unwrap();
    let em = snowflake().await;
    let yaml = format!(
        r#"source: {{ root: {d}/s }}
target:
  root: {bucket}/dr
  storage: {{ aws_endpoint: "http://127.0.0.1:{port}", aws_allow_http: "true", aws_access_key_id: testing, aws_secret_access_key: {{ file: {d}/aws-secret }}, aws_region: us-east-1 }}
{}"#,
        section(
            dir.path(),
            &em,
            "  delta:\n    external_volume: REPLICAS_VOL\n    integration: DELTA_REPLICAS\n    database: REPLICAS\n    storage_aws_role_arn: arn:aws:iam::123456789012:role/snowflake\n"
        ),
        d = dir.path().display(),
        port = moto.port,
    );
    let config = Config::from_yaml(&yaml, std::iter::empty(), &[]).unwrap();
    let (statements, findings) = dry(mirror(&config, true).await.unwrap());
    assert!(findings.is_empty(), "{findings:?}");
    assert_eq!(
        statements,
        [
            "CREATE EXTERNAL VOLUME IF NOT EXISTS \"REPLICAS_VOL\" STORAGE_LOCATIONS = ( ( NAME = 'REPLICAS_VOL_LOCATION' STORAGE_PROVIDER = 'S3' STORAGE_AWS_ROLE_ARN = 'arn:aws:iam::123456789012:role/snowflake' STORAGE_BASE_URL = 's3://mirror-replicas/dr/' ) )",
            "CREATE CATALOG INTEGRATION IF NOT EXISTS \"DELTA_REPLICAS\" CATALOG_SOURCE = OBJECT_STORE TABLE_FORMAT = DELTA ENABLED = TRUE REFRESH_INTERVAL_SECONDS = 120",
            "CREATE DATABASE IF NOT EXISTS \"REPLICAS\"",
            "CREATE SCHEMA IF NOT EXISTS \"REPLICAS\".\"PUBLIC\"",
            "CREATE SCHEMA IF NOT EXISTS \"REPLICAS\".\"sales\"",
            "CREATE ICEBERG TABLE IF NOT EXISTS \"REPLICAS\".\"PUBLIC\".\"customers\" EXTERNAL_VOLUME = 'REPLICAS_VOL' CATALOG = 'DELTA_REPLICAS' BASE_LOCATION = 'customers/' AUTO_REFRESH = TRUE",
            "CREATE ICEBERG TABLE IF NOT EXISTS \"REPLICAS\".\"sales\".\"orders\" EXTERNAL_VOLUME = 'REPLICAS_VOL' CATALOG = 'DELTA_REPLICAS' BASE_LOCATION = 'sales/orders/' AUTO_REFRESH = TRUE",
            "CREATE ICEBERG TABLE IF NOT EXISTS \"REPLICAS\".\"PUBLIC\".\"v1.orders\" EXTERNAL_VOLUME = 'REPLICAS_VOL' CATALOG = 'DELTA_REPLICAS' BASE_LOCATION = 'v1.orders/' AUTO_REFRESH = TRUE",
        ]
    );
    let (done, _) = completed(mirror(&config, false).await.unwrap());
    assert!(done.summary.is_success(), "{:?}", done.summary);
    assert_eq!(em.ddl_executed().len(), 8);
    em.catalog(|c| {
        let t = &c.tables[&("REPLICAS".into(), "sales".into(), "orders".into())];
        assert_eq!(t.base_location.as_deref(), Some("sales/orders/"));
        assert_eq!(t.external_volume.as_deref(), Some("REPLICAS_VOL"));
    });
    let rows = metadata(dir.path()).await;
    assert_eq!(rows.len(), 3, "{rows:#?}");
    assert!(
        rows.iter()
            .all(|r| r["snowflake_integration"] == "DELTA_REPLICAS" && r["status"] == "created"),
        "{rows:#?}"
    );
    em.clear_log();
    completed(mirror(&config, false).await.unwrap());
    assert!(em.ddl_executed().is_empty(), "{:?}", em.ddl_executed());
}
