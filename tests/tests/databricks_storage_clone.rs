//! `databricks.clone_mode: storage` against the workspace emulator: Unity Catalog vends
//! credentials for the source table (temporary table credentials) and the target path
//! (temporary path credentials), the native engine copies the files between the object
//! stores that really hold them — moto behind the credential-enforcing S3 gateway, and
//! azurite, which checks the vended SAS tokens itself — and the target warehouse only
//! registers the new table. Credentials that expire in the middle of the copy are replaced
//! before they do; a refusal of the credentials API falls back to the warehouse `DEEP CLONE`
//! and says why.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStoreExt;
use replicator_common::Config;
use replicator_databricks::WorkspacePair;
use replicator_engine::{CloneContext, Cloned, DatabricksEngine, Engine, Engines};
use replicator_lake::inspect::{read_batches, sorted_rows};
use replicator_lake::location::StorageOptions;
use replicator_lake::location::vended::{Vended, VendedCredentials, VendedSecret, Vendor};
use replicator_lake::{TableLocation, sample};
use replicator_proto::{CloneTask, EngineKind, Header};
use replicator_tests::databricks_emulator::{Table, service_sas};
use replicator_tests::s3_gateway::S3Gateway;
use replicator_tests::servers::{AZURITE_KEY, Azurite, Moto};

mod databricks_env;
use databricks_env::Env;

fn moto() -> &'static Moto {
    Moto::shared()
}

fn bucket(prefix: &str) -> String {
    let name = format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    moto().bucket(&name);
    name
}

fn task(table: &str) -> CloneTask {
    CloneTask {
        ingest: None,
        header: Header::new(uuid::Uuid::now_v7()),
        task_id: uuid::Uuid::now_v7(),
        attempt: 1,
        table: table.into(),
        source: String::new(),
        target: String::new(),
        version: None,
        operation: Default::default(),
        engine: EngineKind::Databricks,
        replace: false,
        external_roots: Vec::new(),
        as_of: None,
    }
}

async fn clone(engine: &DatabricksEngine, roots: &(String, String), table: &str) -> Cloned {
    let mut t = task(table);
    t.source = format!("{}/{table}", roots.0);
    t.target = format!("{}/{table}", roots.1);
    let ctx = CloneContext {
        parallelism: 4,
        progress: None,
        last_watermark: None,
    };
    engine
        .clone_table(&t, &ctx)
        .await
        .unwrap_or_else(|f| panic!("clone of {table} failed: {}", f.error.message))
}

async fn rows(loc: &TableLocation) -> Vec<String> {
    sorted_rows(&read_batches(loc, None).await.unwrap()).unwrap()
}

/// A source table of `commits` commits in `url` (written directly to moto).
async fn s3_table(url: &str, commits: usize) -> TableLocation {
    let loc = moto().location(url);
    sample::create(&loc, &sample::orders(0, 40, "eu"), &["region"])
        .await
        .unwrap();
    for i in 1..commits {
        sample::append(&loc, &sample::orders(40 * i as i64, 10, "us"))
            .await
            .unwrap();
    }
    loc
}

/// A managed source table `prod.sales.<name>` at `src_url`, external access on in both
/// metastores, and an external location of the target's over `replicas`.
fn register(env: &Env, name: &str, src_url: &str, replicas: &str) {
    env.world.add_table(
        &env.src.metastore,
        "prod",
        "sales",
        name,
        Table {
            table_type: "MANAGED".into(),
            location: PathBuf::from(src_url),
            properties: Default::default(),
        },
    );
    for ms in [&env.src.metastore, &env.tgt.metastore] {
        env.world.enable_external_access(ms, true);
    }
    env.world
        .add_storage_credential(&env.tgt.metastore, "dr-cred");
    env.world
        .add_external_location(&env.tgt.metastore, "dr-replicas", replicas, "dr-cred");
}

/// The environment's config with `clone_mode: storage` into `replicas`, and `storage` (a
/// YAML flow map of object_store options) as both sides' storage options.
fn storage_yaml(env: &Env, replicas: &str, storage: &str) -> String {
    env.yaml(&format!(
        "  clone_mode: storage\n  storage_location: {replicas}\n"
    )) + &format!("source: {{ storage: {storage} }}\ntarget: {{ storage: {storage} }}\n")
}

fn config(yaml: &str) -> Config {
    Config::from_yaml(yaml, std::iter::empty(), &[]).unwrap()
}

/// The S3 options that reach moto through `gateway`.
fn through(gateway: &S3Gateway) -> String {
    format!(
        "{{ aws_endpoint: \"{}\", aws_allow_http: \"true\", aws_region: us-east-1 }}",
        gateway.url
    )
}

/// The environment's source and target metastores with external access on, an external
/// location for the replicas in `replicas` (`s3://bucket/replicas`), and a managed source
/// table `prod.sales.s3orders` in another bucket; the config with `clone_mode: storage`,
/// whose `target.storage`/`source.storage` reach S3 through `gateway`.
async fn setup(env: &Env, gateway: &S3Gateway, replicas: &str) -> (String, TableLocation) {
    let src_bucket = bucket("uc-src");
    let src_url = format!(
        "s3://{src_bucket}/managed/{}",
        uuid::Uuid::new_v4().simple()
    );
    let src = s3_table(&src_url, 4).await;
    register(env, "s3orders", &src_url, replicas);
    // The emulator reaches the replicas' bucket directly (its own storage access).
    moto().location(replicas);
    (storage_yaml(env, replicas, &through(gateway)), src)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_managed_table_is_copied_with_vended_credentials_refreshed_mid_copy() {
    let env = Env::new().await;
    // Short-lived credentials and a slow link: every request takes 300 ms, and a credential
    // lives 1 s (replaced from 750 ms on). Reading the source takes at least four rounds one
    // after the other (list the log, read the commits, check the files, read them), so the
    // source's first credential is due before the copy ends, however fast the machine.
    env.world
        .set_credential_lifetime(Duration::from_millis(1000));
    let gateway = S3Gateway::start(&env.world, moto().port, Duration::from_millis(300)).await;
    let replicas = format!("s3://{}/replicas", bucket("uc-dr"));
    let (yaml, src) = setup(&env, &gateway, &replicas).await;
    let config = config(&yaml);
    let engines = Engines::from_config(&config).unwrap();
    let engine = engines.databricks().unwrap();
    let roots = replicator_engine::databricks::roots(config.databricks.as_ref().unwrap());

    let first = clone(engine, &roots, "prod.sales.s3orders").await;
    let path = first.path.clone().unwrap();
    assert_eq!(path.mode, "storage", "{path:?}");
    assert_eq!(path.fallback, None);
    assert!(
        path.credential_requests > 2,
        "credentials were refreshed during the copy: {path:?}"
    );
    assert_eq!(
        gateway.refused(),
        0,
        "no request went out with an expired credential"
    );
    assert!(gateway.forwarded() > 10);
    let m = first.metrics.clone().unwrap();
    assert_eq!(m.num_copied_files, m.source_num_of_files);
    assert!(m.copied_files_size > 0);
    // The warehouse only registered the table: no DEEP CLONE, no file moved by it.
    let sql: Vec<String> = env.tgt.statements().into_iter().map(|(_, s)| s).collect();
    assert!(sql.iter().all(|s| !s.contains("DEEP CLONE")), "{sql:?}");
    let target_url = format!("{replicas}/prod/sales/s3orders");
    assert!(
        sql.iter().any(|s| s
            == &format!(
                "CREATE TABLE IF NOT EXISTS `prod`.`sales`.`s3orders` LOCATION '{target_url}'"
            )),
        "{sql:?}"
    );
    assert_eq!(first.statement_ids.len(), sql.len());
    let registered = env.table(&env.tgt, "prod", "sales", "s3orders").unwrap();
    assert_eq!(registered.table_type, "EXTERNAL");
    assert_eq!(registered.location, PathBuf::from(&target_url));
    let target = moto().location(&target_url);
    assert_eq!(rows(&target).await, rows(&src).await);
    assert_eq!(first.target_version, Some(0));

    // A new source commit: only its file moves, and the warehouse runs nothing at all.
    env.tgt.clear_log();
    sample::append(&src, &sample::orders(900, 7, "late"))
        .await
        .unwrap();
    let second = clone(engine, &roots, "prod.sales.s3orders").await;
    assert_eq!(second.path.as_ref().unwrap().mode, "storage");
    assert_eq!(second.metrics.as_ref().unwrap().num_copied_files, 1);
    assert!(
        second.statement_ids.is_empty(),
        "{:?}",
        second.statement_ids
    );
    assert!(env.tgt.statements().is_empty());
    assert_eq!(rows(&target).await, rows(&src).await);
    assert_eq!(second.target_version, Some(1));
    assert_eq!(gateway.refused(), 0);

    // Credentials vended for the source table do not reach another bucket's objects, and
    // read credentials do not write.
    let denied = env.world.check_s3("ASIAUNKNOWN", None, "x", "y", false);
    assert_eq!(denied.unwrap_err().1, "InvalidAccessKeyId");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_credential_falls_back_to_the_warehouse_and_says_why() {
    let env = Env::new().await;
    let gateway = S3Gateway::start(&env.world, moto().port, Duration::ZERO).await;
    let replicas = format!("s3://{}/replicas", bucket("uc-dr"));
    let (yaml, src) = setup(&env, &gateway, &replicas).await;
    let config = config(&yaml);
    // The source metastore does not allow external access.
    env.world.enable_external_access(&env.src.metastore, false);
    // Delta Sharing set up as planning does (the warehouse path reads the shared catalog).
    let pair = WorkspacePair::from_config(config.databricks.as_ref().unwrap(), false).unwrap();
    let tables: Vec<_> = pair
        .discover()
        .await
        .unwrap()
        .into_iter()
        .filter(|t| t.supported())
        .collect();
    assert!(
        tables
            .iter()
            .any(|t| t.full_name() == "prod.sales.s3orders")
    );
    pair.prepare(&tables).await.unwrap();
    let engines = Engines::from_config(&config).unwrap();
    let engine = engines.databricks().unwrap();
    let roots = replicator_engine::databricks::roots(config.databricks.as_ref().unwrap());
    env.tgt.clear_log();

    let c = clone(engine, &roots, "prod.sales.s3orders").await;
    let path = c.path.clone().unwrap();
    assert_eq!(path.mode, "warehouse");
    let why = path.fallback.unwrap();
    assert!(
        why.contains("source table credentials refused") && why.contains("PERMISSION_DENIED"),
        "{why}"
    );
    let sql: Vec<String> = env.tgt.statements().into_iter().map(|(_, s)| s).collect();
    assert!(sql.iter().any(|s| s.contains("DEEP CLONE")), "{sql:?}");
    let target = env.table(&env.tgt, "prod", "sales", "s3orders").unwrap();
    assert_eq!(target.table_type, "MANAGED");
    assert_eq!(
        databricks_env::rows(&target.location).await,
        rows(&src).await
    );

    // A target table that exists as MANAGED cannot take vended path credentials: fallback,
    // even with external access back on.
    env.world.enable_external_access(&env.src.metastore, true);
    let c = clone(engine, &roots, "prod.sales.s3orders").await;
    let why = c.path.unwrap().fallback.unwrap();
    assert!(why.contains("is MANAGED"), "{why}");
    assert_eq!(gateway.forwarded(), 0, "nothing was copied through storage");
}

// ---- Azure (azurite) ------------------------------------------------------------------

fn azurite() -> &'static Azurite {
    Azurite::shared()
}

fn azure_endpoint() -> String {
    azurite().endpoint()
}

/// Options with the account key: what the test itself (and the emulator) uses.
fn azure_admin() -> StorageOptions {
    azurite().options()
}

fn container(name: &str) {
    azurite().container(name);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_azure_table_is_copied_with_vended_sas_tokens_azurite_checks() {
    let env = Env::new().await;
    env.world.set_azure_account("devstoreaccount1", AZURITE_KEY);
    let (src_c, dr_c) = (
        format!("src{}", &uuid::Uuid::new_v4().simple().to_string()[..10]),
        format!("dr{}", &uuid::Uuid::new_v4().simple().to_string()[..10]),
    );
    container(&src_c);
    container(&dr_c);
    let src_url = format!("az://{src_c}/managed/orders");
    // The source table: written locally, deep-cloned into the container with the key.
    let local = tempfile::tempdir().unwrap();
    let seed = TableLocation::parse(local.path().to_str().unwrap()).unwrap();
    sample::create(&seed, &sample::orders(0, 30, "eu"), &["region"])
        .await
        .unwrap();
    sample::append(&seed, &sample::orders(30, 5, "us"))
        .await
        .unwrap();
    let src = TableLocation::parse_with(&src_url, azure_admin()).unwrap();
    replicator_lake::deep_clone(&seed, &src, &Default::default())
        .await
        .unwrap();
    let replicas = format!("az://{dr_c}/replicas");
    register(&env, "azorders", &src_url, &replicas);
    // The emulator reaches the replicas' container with the account key.
    TableLocation::parse_with(&replicas, azure_admin()).unwrap();
    // The worker knows the account and endpoint, never the key.
    let storage = format!(
        "{{ azure_storage_account_name: devstoreaccount1, azure_storage_endpoint: \"{}\", azure_allow_http: \"true\" }}",
        azure_endpoint()
    );
    let config = config(&storage_yaml(&env, &replicas, &storage));
    let engines = Engines::from_config(&config).unwrap();
    let engine = engines.databricks().unwrap();
    let roots = replicator_engine::databricks::roots(config.databricks.as_ref().unwrap());

    let c = clone(engine, &roots, "prod.sales.azorders").await;
    assert_eq!(c.path.as_ref().unwrap().mode, "storage", "{:?}", c.path);
    let target_url = format!("{replicas}/prod/sales/azorders");
    let target = TableLocation::parse_with(&target_url, azure_admin()).unwrap();
    assert_eq!(rows(&target).await, rows(&src).await);
    let registered = env.table(&env.tgt, "prod", "sales", "azorders").unwrap();
    assert_eq!(registered.table_type, "EXTERNAL");
    assert!(env.world.credential_requests(&env.src.metastore) >= 1);
    assert!(env.world.credential_requests(&env.tgt.metastore) >= 1);

    // azurite checks the signature: a token signed with another key reads nothing, and a
    // read-only token cannot write.
    let options: StorageOptions = Arc::new(BTreeMap::from([
        (
            "azure_storage_account_name".to_owned(),
            "devstoreaccount1".to_owned(),
        ),
        ("azure_storage_endpoint".to_owned(), azure_endpoint()),
        ("azure_allow_http".to_owned(), "true".to_owned()),
    ]));
    let expires = chrono::Utc::now() + chrono::Duration::minutes(5);
    let with_sas = |sas: String| {
        let creds = VendedCredentials::new(
            Arc::new(NoMore),
            Vended {
                secret: VendedSecret::AzureSas(sas),
                expires_at: Some(expires),
            },
            "test",
        );
        TableLocation::parse_vended(&src_url, options.clone(), creds).unwrap()
    };
    let forged = with_sas(service_sas(
        "devstoreaccount1",
        "c2VjcmV0LWtleS1ub3QtdGhlLWFjY291bnRz",
        &src_c,
        "rl",
        expires,
    ));
    assert!(read_batches(&forged, None).await.is_err());
    let read_only = with_sas(service_sas(
        "devstoreaccount1",
        AZURITE_KEY,
        &src_c,
        "rl",
        expires,
    ));
    assert_eq!(rows(&read_only).await, rows(&src).await);
    let put = read_only
        .object_store()
        .put(
            &read_only.object_path("x.txt"),
            bytes::Bytes::from_static(b"x").into(),
        )
        .await;
    assert!(put.is_err(), "a read-only SAS wrote");
}

/// A vendor with nothing more to give (the test's credentials do not expire in time).
struct NoMore;

#[async_trait::async_trait]
impl Vendor for NoMore {
    async fn vend(&self) -> Result<Vended, String> {
        Err("no more credentials".into())
    }
}

/// Through the fleet path of `replicator run`: the S3 table goes through storage, the local
/// ones (no cloud storage to vend credentials for) fall back to the warehouse, and each
/// recorded result (audit) says which, with its statements.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_run_records_how_each_table_moved() {
    use replicator_cli::embedded::{RunOptions, RunOutput, run};
    let env = Env::new().await;
    let gateway = S3Gateway::start(&env.world, moto().port, Duration::ZERO).await;
    let replicas = format!("s3://{}/replicas", bucket("uc-dr"));
    let (yaml, src) = setup(&env, &gateway, &replicas).await;
    let state = env.dir.path().join("state.db");
    let config = config(&format!(
        "{yaml}state: {{ url: \"sqlite://{}\" }}\n",
        state.display()
    ));
    let RunOutput::Completed(done) = run(&config, &RunOptions::default()).await.unwrap() else {
        panic!("expected a completed run");
    };
    assert!(done.summary.is_success(), "{:#?}", done.summary);
    let target = moto().location(&format!("{replicas}/prod/sales/s3orders"));
    assert_eq!(rows(&target).await, rows(&src).await);
    env.assert_replicas_equal().await;

    let store = replicator_store::Store::open(&format!("sqlite://{}", state.display()))
        .await
        .unwrap();
    let outcomes = store.outcomes(done.header.run_id).await.unwrap();
    let clone_of = |table: &str| {
        outcomes
            .iter()
            .find(|(stage, _, d)| stage == "clone" && d["table"] == table)
            .map(|(_, _, d)| d.clone())
            .unwrap_or_else(|| panic!("no clone result for {table}: {outcomes:#?}"))
    };
    let s3 = clone_of("prod.sales.s3orders");
    assert_eq!(s3["clone_path"]["mode"], "storage", "{s3}");
    assert!(s3["metrics"]["copied_files_size"].as_u64().unwrap() > 0);
    assert_eq!(s3["statement_ids"].as_array().unwrap().len(), 1, "{s3}");
    let local = clone_of("prod.sales.orders");
    assert_eq!(local["clone_path"]["mode"], "warehouse", "{local}");
    let why = local["clone_path"]["fallback"].as_str().unwrap();
    assert!(why.contains("not in S3 or Azure storage"), "{why}");
    let streaming = clone_of("prod.sales.events");
    assert!(
        streaming["clone_path"]["fallback"]
            .as_str()
            .unwrap()
            .contains("streaming table"),
        "{streaming}"
    );
}
