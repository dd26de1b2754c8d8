//! The Snowflake mirror's foundation against the SQL API v2 emulator
//! (`replicator_tests::snowflake_emulator`): key-pair JWTs, encrypted keys, asynchronous
//! statements, throttling, re-minting, compilation errors, and the DDL plan applied twice.
//!
//! Test keys are 2048-bit RSA (the emulator, like Snowflake, refuses shorter ones),
//! generated once per test binary.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use pkcs8::{EncodePrivateKey, LineEnding};
use replicator_snowflake::ddl::{
    self, DeltaIntegration, DeltaTable, Desired, ExternalVolume, Integration, RestIntegration,
    RestTable, Secret, Statement, StorageAccess, Table,
};
use replicator_snowflake::ident::Ident;
use replicator_snowflake::mirror::{apply, read_current};
use replicator_snowflake::{ClientOptions, JwtMinter, KeyPair, Name, SnowflakeError, SqlClient};
use replicator_tests::snowflake_emulator::{SnowflakeEmulator, fingerprint};
use rsa::RsaPrivateKey;

const ACCOUNT: &str = "myorg-acct";
const USER: &str = "replicator_svc";
const SECRET: &str = "uc-oauth-s3cr3t-value";

/// The registered user's key and a key Snowflake does not know.
fn keys() -> &'static (RsaPrivateKey, RsaPrivateKey) {
    static KEYS: OnceLock<(RsaPrivateKey, RsaPrivateKey)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut rng = rsa::rand_core::OsRng;
        (
            RsaPrivateKey::new(&mut rng, 2048).unwrap(),
            RsaPrivateKey::new(&mut rng, 2048).unwrap(),
        )
    })
}

async fn emulator() -> SnowflakeEmulator {
    SnowflakeEmulator::start("MYORG-ACCT", "REPLICATOR_SVC", keys().0.to_public_key()).await
}

fn options(em: &SnowflakeEmulator) -> ClientOptions {
    ClientOptions {
        base_url: Some(em.url.clone()),
        statement_timeout: Duration::from_secs(20),
        poll_interval: Duration::from_millis(10),
        max_poll_interval: Duration::from_millis(40),
        max_attempts: 5,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        max_retry_after: Duration::from_secs(5),
        request_timeout: Duration::from_secs(10),
        ..Default::default()
    }
}

fn client_with(em: &SnowflakeEmulator, key: KeyPair) -> SqlClient {
    let minter = JwtMinter::new(ACCOUNT, USER, key, Duration::from_secs(3540)).unwrap();
    SqlClient::new(ACCOUNT, minter, options(em)).unwrap()
}

fn client(em: &SnowflakeEmulator) -> SqlClient {
    client_with(em, KeyPair::from_key(keys().0.clone(), "test key").unwrap())
}

fn uc_integration() -> RestIntegration {
    let mut i = RestIntegration::new(
        "UC_MAIN",
        "https://adb-42.azuredatabricks.net/api/2.1/unity-catalog/iceberg-rest",
        "main",
        "sp-mirror",
        Secret::new("env:UC_CLIENT_SECRET", SECRET),
        &["all-apis"],
    )
    .unwrap();
    i.oauth_token_uri = Some("https://adb-42.azuredatabricks.net/oidc/v1/token".into());
    i.refresh_interval_seconds = Some(120);
    i
}

fn uc_table(db: &str, schema: &str, table: &str, namespace: &str, source: &str) -> Table {
    Table::Rest(RestTable {
        name: Name::new(db, schema, table).unwrap(),
        catalog: Ident::new("UC_MAIN").unwrap(),
        catalog_namespace: Some(namespace.to_owned()),
        catalog_table_name: source.to_owned(),
        auto_refresh: true,
    })
}

/// One Unity Catalog catalog `main` of three tables.
fn three_tables() -> Desired {
    Desired {
        volumes: vec![],
        integrations: vec![Integration::Rest(uc_integration())],
        tables: vec![
            uc_table("MAIN", "sales", "orders", "sales", "orders"),
            uc_table("MAIN", "sales", "items", "sales", "items"),
            uc_table("MAIN", "hr", "people", "hr", "people"),
        ],
    }
}

async fn sync(c: &SqlClient, desired: &Desired, drop_removed: bool) -> ddl::Plan {
    let current = read_current(c).await.unwrap();
    let plan = ddl::plan(desired, &current, drop_removed).unwrap();
    apply(c, &plan).await.unwrap();
    plan
}

#[tokio::test]
async fn a_key_pair_jwt_is_accepted_and_an_unknown_key_refused() {
    let em = emulator().await;
    let c = client(&em);
    let r = c.query("SHOW DATABASES").await.unwrap();
    assert_eq!(r.columns[1], "name");
    assert!(em.auth_failures().is_empty(), "{:?}", em.auth_failures());
    assert_eq!(em.tokens_seen(), 1);

    let stranger = client_with(
        &em,
        KeyPair::from_key(keys().1.clone(), "other key").unwrap(),
    );
    let e = stranger.query("SHOW DATABASES").await.unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(e, SnowflakeError::Auth { status: 401, .. }),
        "{e:?}"
    );
    assert!(
        msg.starts_with("authentication failed at http://127.0.0.1:")
            && msg.contains("for user REPLICATOR_SVC: HTTP 401 390144: JWT token is invalid."),
        "{msg}"
    );
    assert!(!msg.contains('\n') && !msg.contains("eyJ"), "{msg}");
    // Refused, re-minted once, refused again.
    assert_eq!(stranger.minter().minted(), 2);
    assert_eq!(
        em.auth_failures(),
        vec!["signature does not verify with the registered public key"; 2]
    );
}

#[tokio::test]
async fn an_encrypted_key_opens_with_its_passphrase_only() {
    let em = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rsa_key.p8");
    // PBES2 (PBKDF2-SHA256, AES-256-CBC), as `openssl pkcs8 -topk8 -v2 aes256` writes it.
    let params = pkcs8::pkcs5::pbes2::Parameters::pbkdf2_sha256_aes256cbc(
        2048,
        b"0123456789abcdef",
        b"fedcba9876543210",
    )
    .unwrap();
    let der = keys().0.to_pkcs8_der().unwrap();
    let pem = pkcs8::PrivateKeyInfo::try_from(der.as_bytes())
        .unwrap()
        .encrypt_with_params(params, "correct horse")
        .unwrap()
        .to_pem("ENCRYPTED PRIVATE KEY", LineEnding::LF)
        .unwrap();
    std::fs::write(&path, pem.as_bytes()).unwrap();

    let key = KeyPair::from_pem_file(&path, Some("correct horse")).unwrap();
    assert_eq!(key.fingerprint(), fingerprint(&keys().0.to_public_key()));
    let c = client_with(&em, key);
    c.query("SHOW CATALOG INTEGRATIONS").await.unwrap();

    let e = KeyPair::from_pem_file(&path, Some("battery staple")).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "the private key in {} could not be decrypted: wrong passphrase?",
            path.display()
        )
    );
    assert!(!format!("{e:?}").contains("battery staple"));

    // The unencrypted PKCS#8 form of the same key gives the same fingerprint.
    let plain = dir.path().join("plain.p8");
    std::fs::write(
        &plain,
        keys().0.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes(),
    )
    .unwrap();
    assert_eq!(
        KeyPair::from_pem_file(&plain, None).unwrap().fingerprint(),
        fingerprint(&keys().0.to_public_key())
    );
}

#[tokio::test]
async fn asynchronous_statements_are_polled_to_completion() {
    let em = emulator().await;
    let c = client(&em);
    em.faults(|f| f.async_polls = Some(3));
    c.execute(&Statement::CreateDatabase(Ident::new("ASYNC_DB").unwrap()))
        .await
        .unwrap();
    assert_eq!(em.polls(), 3);
    assert!(em.catalog(|cat| cat.databases.contains_key("ASYNC_DB")));
    for db in ["B", "C"] {
        c.execute(&Statement::CreateDatabase(Ident::new(db).unwrap()))
            .await
            .unwrap();
    }
    // A result in three partitions, the first with the answer, two fetched by handle.
    em.faults(|f| f.partition_rows = 1);
    let r = c.query("SHOW DATABASES").await.unwrap();
    let names: Vec<&str> = (0..r.rows.len())
        .map(|i| r.get(i, "name").unwrap())
        .collect();
    assert_eq!(names, ["ASYNC_DB", "B", "C"]);
}

#[tokio::test]
async fn a_statement_still_running_at_the_timeout_is_cancelled() {
    let em = emulator().await;
    let minter = JwtMinter::new(
        ACCOUNT,
        USER,
        KeyPair::from_key(keys().0.clone(), "k").unwrap(),
        Duration::from_secs(600),
    )
    .unwrap();
    let c = SqlClient::new(
        ACCOUNT,
        minter,
        ClientOptions {
            statement_timeout: Duration::from_millis(300),
            ..options(&em)
        },
    )
    .unwrap();
    em.faults(|f| f.async_polls = Some(1_000_000));
    let e = c.query("SHOW DATABASES").await.unwrap_err();
    let SnowflakeError::Timeout { handle, .. } = &e else {
        panic!("{e:?}");
    };
    assert_eq!(em.cancels(), vec![handle.clone()]);
    assert!(e.to_string().contains("[statement: SHOW DATABASES]"), "{e}");
}

#[tokio::test]
async fn a_429_storm_is_ridden_out_and_a_longer_one_gives_up() {
    let em = emulator().await;
    let c = client(&em);
    em.faults(|f| {
        f.throttle = 3;
        f.retry_after_s = 1;
    });
    let started = Instant::now();
    c.execute(&Statement::CreateDatabase(Ident::new("STORMY").unwrap()))
        .await
        .unwrap();
    // Retry-After (1 s) was honoured for each of the three 429s.
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(em.throttled(), 3);
    // The submission that got through carried the same request ID and retry=true; the
    // statement ran once.
    assert_eq!(em.resubmissions(), 1);
    assert_eq!(
        em.ddl_executed(),
        ["CREATE DATABASE IF NOT EXISTS \"STORMY\""]
    );

    em.faults(|f| {
        f.throttle = 50;
        f.retry_after_s = 0;
    });
    let e = c.query("SHOW DATABASES").await.unwrap_err();
    assert!(
        matches!(e, SnowflakeError::Http { status: 429, .. }),
        "{e:?}"
    );
    assert_eq!(em.throttled(), 3 + 5, "bounded by max_attempts");
    assert!(!e.to_string().contains('\n'));
}

#[tokio::test]
async fn an_expired_jwt_is_reminted_and_the_request_repeated() {
    let em = emulator().await;
    let c = client(&em);
    c.query("SHOW DATABASES").await.unwrap();
    c.query("SHOW DATABASES").await.unwrap();
    assert_eq!(c.minter().minted(), 1, "cached");
    em.expire_tokens();
    c.query("SHOW SCHEMAS IN ACCOUNT").await.unwrap();
    assert_eq!(c.minter().minted(), 2);
    assert_eq!(em.auth_failures(), ["expired (injected)"]);
    assert_eq!(em.tokens_seen(), 2);
}

#[tokio::test]
async fn unknown_sql_fails_as_a_compilation_error() {
    let em = emulator().await;
    let c = client(&em);
    let e = c.query("SELEC 1").await.unwrap_err();
    match &e {
        SnowflakeError::Statement {
            code,
            sql_state,
            message,
            handle,
            ..
        } => {
            assert_eq!(code, "001003");
            assert_eq!(sql_state, "42000");
            assert_eq!(
                message,
                "SQL compilation error: syntax error line 1 at position 0 unexpected 'SELEC'."
            );
            assert!(!handle.is_empty());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        e.to_string(),
        "statement failed (001003, SQLSTATE 42000): SQL compilation error: syntax error line 1 at position 0 unexpected 'SELEC'. [statement: SELEC 1]"
    );
}

#[tokio::test]
async fn a_failed_statement_with_a_secret_is_reported_redacted() {
    let em = emulator().await;
    let c = client(&em);
    let mut bad = uc_integration();
    bad.refresh_interval_seconds = Some(5); // below Snowflake's minimum of 30
    let e = c
        .execute(&Statement::CreateRestIntegration(bad))
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("REFRESH_INTERVAL_SECONDS must be"), "{msg}");
    assert!(
        msg.contains("[statement: CREATE CATALOG INTEGRATION IF NOT EXISTS \"UC_MAIN\""),
        "{msg}"
    );
    assert!(
        !msg.contains(SECRET) && !format!("{e:?}").contains(SECRET),
        "{msg}"
    );
}

#[test]
fn the_dry_run_of_a_catalog_of_three_tables_is_checked_statement_by_statement() {
    let plan = ddl::plan(&three_tables(), &ddl::Current::default(), false).unwrap();
    let expected = [
        "CREATE CATALOG INTEGRATION IF NOT EXISTS \"UC_MAIN\" CATALOG_SOURCE = ICEBERG_REST TABLE_FORMAT = ICEBERG REST_CONFIG = ( CATALOG_URI = 'https://adb-42.azuredatabricks.net/api/2.1/unity-catalog/iceberg-rest' CATALOG_NAME = 'main' ACCESS_DELEGATION_MODE = VENDED_CREDENTIALS ) REST_AUTHENTICATION = ( TYPE = OAUTH OAUTH_TOKEN_URI = 'https://adb-42.azuredatabricks.net/oidc/v1/token' OAUTH_CLIENT_ID = 'sp-mirror' OAUTH_CLIENT_SECRET = '<secret from env:UC_CLIENT_SECRET>' OAUTH_ALLOWED_SCOPES = ( 'all-apis' ) ) ENABLED = TRUE REFRESH_INTERVAL_SECONDS = 120",
        "CREATE DATABASE IF NOT EXISTS \"MAIN\"",
        "CREATE SCHEMA IF NOT EXISTS \"MAIN\".\"sales\"",
        "CREATE SCHEMA IF NOT EXISTS \"MAIN\".\"hr\"",
        "CREATE ICEBERG TABLE IF NOT EXISTS \"MAIN\".\"sales\".\"orders\" CATALOG = 'UC_MAIN' CATALOG_TABLE_NAME = 'orders' CATALOG_NAMESPACE = 'sales' AUTO_REFRESH = TRUE",
        "CREATE ICEBERG TABLE IF NOT EXISTS \"MAIN\".\"sales\".\"items\" CATALOG = 'UC_MAIN' CATALOG_TABLE_NAME = 'items' CATALOG_NAMESPACE = 'sales' AUTO_REFRESH = TRUE",
        "CREATE ICEBERG TABLE IF NOT EXISTS \"MAIN\".\"hr\".\"people\" CATALOG = 'UC_MAIN' CATALOG_TABLE_NAME = 'people' CATALOG_NAMESPACE = 'hr' AUTO_REFRESH = TRUE",
    ];
    let dry = plan.dry_run();
    assert_eq!(dry.len(), expected.len(), "{dry:#?}");
    for (i, (got, want)) in dry.iter().zip(expected).enumerate() {
        assert_eq!(got, want, "statement {i}");
    }
    assert!(dry.iter().all(|s| !s.contains(SECRET)));
    // The statement executed holds the resolved secret in its place.
    assert_eq!(
        plan.statements[0].sql(),
        expected[0].replace("<secret from env:UC_CLIENT_SECRET>", SECRET)
    );
}

#[tokio::test]
async fn a_second_application_executes_no_ddl() {
    let em = emulator().await;
    let c = client(&em);
    let first = sync(&c, &three_tables(), false).await;
    assert_eq!(em.ddl_executed().len(), 7);
    assert_eq!(
        em.ddl_executed(),
        first
            .statements
            .iter()
            .map(Statement::sql)
            .collect::<Vec<_>>()
    );
    // Snowflake received the resolved secret.
    let received =
        em.catalog(|cat| cat.integrations["UC_MAIN"].props["REST_AUTHENTICATION"].clone());
    assert!(format!("{received:?}").contains(SECRET));
    assert_eq!(em.catalog(|cat| cat.tables.len()), 3);

    em.clear_log();
    let second = sync(&c, &three_tables(), true).await;
    assert!(second.is_empty(), "{:?}", second.dry_run());
    assert!(second.removed.is_empty());
    assert!(em.ddl_executed().is_empty(), "{:?}", em.ddl_executed());
    assert_eq!(em.executed().len(), 5, "only the five SHOW commands");
}

#[tokio::test]
async fn drop_removed_drops_a_table_gone_from_the_source_and_otherwise_it_is_reported() {
    let em = emulator().await;
    let c = client(&em);
    sync(&c, &three_tables(), false).await;
    let mut fewer = three_tables();
    fewer.tables.pop(); // MAIN.hr.people is gone from Unity Catalog
    let people = Name::new("MAIN", "hr", "people").unwrap();

    em.clear_log();
    let kept = sync(&c, &fewer, false).await;
    assert!(kept.is_empty());
    assert_eq!(kept.removed, vec![people.clone()]);
    assert!(em.ddl_executed().is_empty());
    assert_eq!(em.catalog(|cat| cat.tables.len()), 3);

    let dropped = sync(&c, &fewer, true).await;
    assert!(dropped.removed.is_empty());
    assert_eq!(
        em.ddl_executed(),
        ["DROP ICEBERG TABLE IF EXISTS \"MAIN\".\"hr\".\"people\""]
    );
    assert_eq!(em.catalog(|cat| cat.tables.len()), 2);
    em.clear_log();
    assert!(sync(&c, &fewer, true).await.is_empty());
    assert!(em.ddl_executed().is_empty());
}

#[tokio::test]
async fn a_name_with_quotes_and_mixed_case_reaches_snowflake_correctly_quoted() {
    let em = emulator().await;
    let c = client(&em);
    let (db, schema, table) = ("Main Mirror", "Sales \"EU\"", "Orders.2024 'Q1'");
    let desired = Desired {
        volumes: vec![],
        integrations: vec![Integration::Rest(uc_integration())],
        tables: vec![uc_table(db, schema, table, "sales eu", "orders'q1\\x")],
    };
    sync(&c, &desired, false).await;
    let executed = em.ddl_executed();
    assert_eq!(
        executed[3],
        "CREATE ICEBERG TABLE IF NOT EXISTS \"Main Mirror\".\"Sales \"\"EU\"\"\".\"Orders.2024 'Q1'\" CATALOG = 'UC_MAIN' CATALOG_TABLE_NAME = 'orders\\'q1\\\\x' CATALOG_NAMESPACE = 'sales eu' AUTO_REFRESH = TRUE"
    );
    // The emulator parsed the names back exactly, case and quotes included.
    let t = em.catalog(|cat| {
        cat.tables
            .get(&(db.to_owned(), schema.to_owned(), table.to_owned()))
            .cloned()
    });
    let t = t.expect("the table under its exact name");
    assert_eq!(t.catalog_table_name.as_deref(), Some("orders'q1\\x"));
    // SHOW lists the exact names, so the next run sees the table as present.
    em.clear_log();
    assert!(sync(&c, &desired, true).await.is_empty());
    assert!(em.ddl_executed().is_empty());
}

#[tokio::test]
async fn the_delta_path_creates_a_volume_an_object_store_integration_and_tables() {
    let em = emulator().await;
    let c = client(&em);
    let desired = Desired {
        volumes: vec![
            ExternalVolume::new(
                "REPLICAS_S3",
                "s3://lake-replicas/prod",
                StorageAccess::S3 {
                    role_arn: "arn:aws:iam::123456789012:role/snowflake-read".into(),
                    external_id: None,
                },
            )
            .unwrap(),
        ],
        integrations: vec![Integration::Delta(
            DeltaIntegration::new("REPLICAS_DELTA").unwrap(),
        )],
        tables: vec![Table::Delta(DeltaTable {
            name: Name::new("REPLICAS", "sales", "orders").unwrap(),
            external_volume: Ident::new("REPLICAS_S3").unwrap(),
            catalog: Ident::new("REPLICAS_DELTA").unwrap(),
            base_location: "sales/orders/".into(),
            auto_refresh: true,
        })],
    };
    sync(&c, &desired, false).await;
    assert_eq!(
        em.ddl_executed(),
        [
            "CREATE EXTERNAL VOLUME IF NOT EXISTS \"REPLICAS_S3\" STORAGE_LOCATIONS = ( ( NAME = 'REPLICAS_S3_LOCATION' STORAGE_PROVIDER = 'S3' STORAGE_AWS_ROLE_ARN = 'arn:aws:iam::123456789012:role/snowflake-read' STORAGE_BASE_URL = 's3://lake-replicas/prod/' ) )",
            "CREATE CATALOG INTEGRATION IF NOT EXISTS \"REPLICAS_DELTA\" CATALOG_SOURCE = OBJECT_STORE TABLE_FORMAT = DELTA ENABLED = TRUE",
            "CREATE DATABASE IF NOT EXISTS \"REPLICAS\"",
            "CREATE SCHEMA IF NOT EXISTS \"REPLICAS\".\"sales\"",
            "CREATE ICEBERG TABLE IF NOT EXISTS \"REPLICAS\".\"sales\".\"orders\" EXTERNAL_VOLUME = 'REPLICAS_S3' CATALOG = 'REPLICAS_DELTA' BASE_LOCATION = 'sales/orders/' AUTO_REFRESH = TRUE",
        ]
    );
    em.clear_log();
    assert!(sync(&c, &desired, false).await.is_empty());
    assert!(em.ddl_executed().is_empty());
    // A refresh of the table is understood too.
    c.execute(&Statement::RefreshTable(
        Name::new("REPLICAS", "sales", "orders").unwrap(),
    ))
    .await
    .unwrap();
    assert_eq!(
        em.catalog(|cat| cat.tables.values().map(|t| t.refreshes).sum::<u32>()),
        1
    );
}

/// POST a statement with a hand-made JWT; the HTTP status.
async fn post_with(em: &SnowflakeEmulator, jwt: &str, token_type: Option<&str>) -> u16 {
    let mut req = reqwest::Client::new()
        .post(format!("{}/api/v2/statements", em.url))
        .bearer_auth(jwt)
        .json(&serde_json::json!({"statement": "SHOW DATABASES"}));
    if let Some(t) = token_type {
        req = req.header("X-Snowflake-Authorization-Token-Type", t);
    }
    req.send().await.unwrap().status().as_u16()
}

fn hand_made_jwt(key: &RsaPrivateKey, iss: &str, sub: &str, iat: u64, exp: u64) -> String {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use rsa::signature::{SignatureEncoding, Signer};
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
    let claims = URL_SAFE_NO_PAD.encode(
        serde_json::json!({"iss": iss, "sub": sub, "iat": iat, "exp": exp})
            .to_string()
            .as_bytes(),
    );
    let input = format!("{header}.{claims}");
    let sig = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key.clone()).sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.to_vec()))
}

#[tokio::test]
async fn the_emulator_checks_every_claim_as_snowflake_does() {
    let em = emulator().await;
    let key = &keys().0;
    let fp = fingerprint(&key.to_public_key());
    let sub = "MYORG-ACCT.REPLICATOR_SVC";
    let iss = format!("{sub}.{fp}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let good = hand_made_jwt(key, &iss, sub, now, now + 3600);
    assert_eq!(post_with(&em, &good, Some("KEYPAIR_JWT")).await, 200);
    let other_fp = fingerprint(&keys().1.to_public_key());
    let cases = [
        (post_with(&em, &good, None).await, "token type header"),
        (
            post_with(
                &em,
                &hand_made_jwt(key, &format!("{sub}.{other_fp}"), sub, now, now + 60),
                Some("KEYPAIR_JWT"),
            )
            .await,
            "iss",
        ),
        (
            post_with(
                &em,
                &hand_made_jwt(key, &iss, "MYORG-ACCT.SOMEONE", now, now + 60),
                Some("KEYPAIR_JWT"),
            )
            .await,
            "sub",
        ),
        (
            post_with(
                &em,
                &hand_made_jwt(key, &iss, sub, now, now + 3601),
                Some("KEYPAIR_JWT"),
            )
            .await,
            "more than one hour",
        ),
        (
            post_with(
                &em,
                &hand_made_jwt(key, &iss, sub, now - 120, now - 60),
                Some("KEYPAIR_JWT"),
            )
            .await,
            "expired",
        ),
    ];
    let failures = em.auth_failures();
    assert_eq!(failures.len(), cases.len(), "{failures:?}");
    for ((status, why), failure) in cases.iter().zip(&failures) {
        assert_eq!(*status, 401, "{why}");
        assert!(failure.contains(why), "{why}: {failure}");
    }
}

#[tokio::test]
async fn the_emulator_parses_strictly_and_checks_references() {
    let em = emulator().await;
    let c = client(&em);
    c.query("CREATE DATABASE \"D\"").await.unwrap();
    c.query("CREATE SCHEMA \"D\".\"s\"").await.unwrap();
    let cases = [
        (
            "CREATE ICEBERG TABLE \"D\".\"s\".\"t\" CATALOG = 'NOPE' CATALOG_TABLE_NAME = 't'",
            "Integration 'NOPE' does not exist or not authorized.",
        ),
        (
            "CREATE ICEBERG TABLE \"D\".\"s\".\"t\" CATALOG = 'X' COLOR = 'blue'",
            "invalid property 'COLOR' for 'ICEBERG TABLE'",
        ),
        (
            "CREATE ICEBERG TABLE \"D\".\"nope\".\"t\" CATALOG = 'X' CATALOG_TABLE_NAME = 't'",
            "Schema '\"D\".\"nope\"' does not exist or not authorized.",
        ),
        (
            "CREATE CATALOG INTEGRATION \"I\" CATALOG_SOURCE = OBJECT_STORE TABLE_FORMAT = DELTA",
            "missing required property 'ENABLED'",
        ),
        ("DROP ICEBERG TABLE \"D\".\"s\".\"t\"", "does not exist"),
        (
            "CREATE DATABASE 'quoted as a string'",
            "unexpected ''quoted as a string''",
        ),
    ];
    for (sql, want) in cases {
        let e = c.query(sql).await.unwrap_err();
        let SnowflakeError::Statement { message, .. } = &e else {
            panic!("{sql}: {e:?}");
        };
        assert!(message.contains(want), "{sql}: {message}");
    }
    assert_eq!(em.ddl_executed().len(), 2);
}
