//! Typed Snowflake statements, rendered to SQL, and the plan that brings Snowflake from its
//! current state to the desired one.
//!
//! Each statement follows the grammar of its Snowflake reference page (listed in
//! `docs/snowflake.md`); every statement is rendered on one line. A catalog integration's
//! OAuth client secret is held as a [`Secret`]: [`Statement::sql`] (what is executed) holds
//! the resolved value, [`Statement::redacted`] (dry runs, logs, error messages) a placeholder
//! naming where the value comes from, `'<secret from env:UC_SECRET>'`.
//!
//! Catalog integration and external volume names are referenced from `CREATE ICEBERG TABLE`
//! as string literals (`CATALOG = '<catalog_integration_name>'`), whose case rules the
//! documentation leaves open; such names are therefore restricted to what an unquoted
//! identifier resolves to (upper case letters, digits, `_` and `$`), for which quoted and
//! unquoted spellings are the same object.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::SnowflakeError;
use crate::ident::{Ident, Name, quote_string};

/// A secret value with the reference it was resolved from (`env:UC_SECRET`,
/// `file:/run/secrets/uc`). `Debug` and the redacted rendering show the reference only.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    reference: String,
    value: String,
}

impl Secret {
    pub fn new(reference: &str, value: &str) -> Self {
        Self {
            reference: reference.to_owned(),
            value: value.to_owned(),
        }
    }

    pub fn reference(&self) -> &str {
        &self.reference
    }

    fn placeholder(&self) -> String {
        format!("<secret from {}>", self.reference)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({})", self.reference)
    }
}

/// A name for an account-level object (catalog integration, external volume): the
/// characters of an unquoted identifier, upper case.
fn account_object(name: &str, what: &str) -> Result<Ident, SnowflakeError> {
    let ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_uppercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_' || c == '$');
    if !ok {
        return Err(SnowflakeError::InvalidName {
            name: name.escape_debug().to_string(),
            reason: format!(
                "a {what} name must be upper case letters, digits, `_` or `$`, starting with a letter or `_` (it is referenced as a string literal, where case is not preserved)"
            ),
        });
    }
    Ident::new(name)
}

/// The cloud of a storage location.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageProvider {
    S3,
    Azure,
    Gcs,
}

impl StorageProvider {
    /// The `STORAGE_PROVIDER` value of `CREATE EXTERNAL VOLUME`.
    pub fn keyword(self) -> &'static str {
        match self {
            Self::S3 => "S3",
            Self::Azure => "AZURE",
            Self::Gcs => "GCS",
        }
    }
}

/// Recognize a storage location and give it in the form `STORAGE_BASE_URL` takes, ending
/// with `/`: `s3://bucket/path/`; `abfss://container@account.dfs.core.windows.net/path` and
/// `azure://account.blob.core.windows.net/container/path` as
/// `azure://account.blob.core.windows.net/container/path/`; `gs://` and `gcs://` as
/// `gcs://bucket/path/`.
pub fn storage_location(url: &str) -> Result<(StorageProvider, String), SnowflakeError> {
    let bad = |why: &str| SnowflakeError::Config(format!("storage location `{url}`: {why}"));
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| bad("not a URL (expected s3://, abfss://, azure://, gs:// or gcs://)"))?;
    let rest = rest.trim_end_matches('/');
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    if authority.is_empty() {
        return Err(bad("no bucket or container"));
    }
    let join = |prefix: String| {
        if path.is_empty() {
            format!("{prefix}/")
        } else {
            format!("{prefix}/{path}/")
        }
    };
    match scheme.to_ascii_lowercase().as_str() {
        "s3" => Ok((StorageProvider::S3, join(format!("s3://{authority}")))),
        "gs" | "gcs" => Ok((StorageProvider::Gcs, join(format!("gcs://{authority}")))),
        "azure" => {
            if path.is_empty() {
                return Err(bad("no container after the account host"));
            }
            Ok((StorageProvider::Azure, join(format!("azure://{authority}"))))
        }
        "abfss" | "abfs" => {
            let (container, host) = authority
                .split_once('@')
                .ok_or_else(|| bad("expected abfss://container@account.dfs.core.windows.net/…"))?;
            let (account, suffix) = host
                .split_once(".dfs.")
                .ok_or_else(|| bad("expected a .dfs. endpoint host"))?;
            if container.is_empty() || account.is_empty() {
                return Err(bad("no container or account"));
            }
            Ok((
                StorageProvider::Azure,
                join(format!("azure://{account}.blob.{suffix}/{container}")),
            ))
        }
        other => Err(bad(&format!(
            "scheme `{other}` is not one Snowflake reads (s3, abfss, azure, gs, gcs)"
        ))),
    }
}

/// A catalog integration for a remote Iceberg REST catalog (Unity Catalog's Iceberg REST
/// endpoint) with vended credentials and OAuth client credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestIntegration {
    pub name: Ident,
    pub catalog_uri: String,
    pub catalog_name: String,
    pub catalog_namespace: Option<String>,
    pub oauth_token_uri: Option<String>,
    pub client_id: String,
    pub client_secret: Secret,
    pub scopes: Vec<String>,
    pub refresh_interval_seconds: Option<u32>,
}

impl RestIntegration {
    pub fn new(
        name: &str,
        catalog_uri: &str,
        catalog_name: &str,
        client_id: &str,
        client_secret: Secret,
        scopes: &[&str],
    ) -> Result<Self, SnowflakeError> {
        if scopes.is_empty() {
            return Err(SnowflakeError::Config(format!(
                "catalog integration {name}: OAUTH_ALLOWED_SCOPES needs at least one scope"
            )));
        }
        Ok(Self {
            name: account_object(name, "catalog integration")?,
            catalog_uri: catalog_uri.to_owned(),
            catalog_name: catalog_name.to_owned(),
            catalog_namespace: None,
            oauth_token_uri: None,
            client_id: client_id.to_owned(),
            client_secret,
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            refresh_interval_seconds: None,
        })
    }
}

/// A catalog integration for Delta table files in object storage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeltaIntegration {
    pub name: Ident,
    pub refresh_interval_seconds: Option<u32>,
}

impl DeltaIntegration {
    pub fn new(name: &str) -> Result<Self, SnowflakeError> {
        Ok(Self {
            name: account_object(name, "catalog integration")?,
            refresh_interval_seconds: None,
        })
    }
}

/// How Snowflake reaches a storage location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageAccess {
    /// An IAM role Snowflake assumes, with an optional external ID.
    S3 {
        role_arn: String,
        external_id: Option<String>,
    },
    /// The Azure tenant the storage account belongs to.
    Azure { tenant_id: String },
    /// Google Cloud Storage (Snowflake's own service account is granted access).
    Gcs,
}

/// An external volume with one storage location (for Iceberg tables over Delta files).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalVolume {
    pub name: Ident,
    pub location_name: String,
    pub provider: StorageProvider,
    pub base_url: String,
    pub access: StorageAccess,
    pub allow_writes: Option<bool>,
}

impl ExternalVolume {
    /// `url` in any recognized form ([`storage_location`]); `access` must fit its cloud.
    pub fn new(name: &str, url: &str, access: StorageAccess) -> Result<Self, SnowflakeError> {
        let name = account_object(name, "external volume")?;
        let (provider, base_url) = storage_location(url)?;
        let fits = matches!(
            (provider, &access),
            (StorageProvider::S3, StorageAccess::S3 { .. })
                | (StorageProvider::Azure, StorageAccess::Azure { .. })
                | (StorageProvider::Gcs, StorageAccess::Gcs)
        );
        if !fits {
            return Err(SnowflakeError::Config(format!(
                "external volume {name}: the access given does not fit the {} location `{url}`",
                provider.keyword()
            )));
        }
        Ok(Self {
            location_name: format!("{}_LOCATION", name.as_str()),
            name,
            provider,
            base_url,
            access,
            allow_writes: None,
        })
    }
}

/// An Iceberg table over a remote Iceberg REST catalog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestTable {
    pub name: Name,
    pub catalog: Ident,
    pub catalog_namespace: Option<String>,
    pub catalog_table_name: String,
    pub auto_refresh: bool,
}

/// An Iceberg table over Delta files under an external volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeltaTable {
    pub name: Name,
    pub external_volume: Ident,
    pub catalog: Ident,
    pub base_location: String,
    pub auto_refresh: bool,
}

/// One statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Statement {
    CreateRestIntegration(RestIntegration),
    CreateDeltaIntegration(DeltaIntegration),
    CreateExternalVolume(ExternalVolume),
    CreateDatabase(Ident),
    CreateSchema(Ident, Ident),
    CreateRestTable(RestTable),
    CreateDeltaTable(DeltaTable),
    DropTable(Name),
    RefreshTable(Name),
}

fn bool_kw(b: bool) -> &'static str {
    if b { "TRUE" } else { "FALSE" }
}

impl Statement {
    /// The SQL to execute (secrets resolved). Never log it or put it in an error.
    pub fn sql(&self) -> String {
        self.render(true)
    }

    /// The SQL with every secret replaced by a placeholder naming its reference.
    pub fn redacted(&self) -> String {
        self.render(false)
    }

    /// The object the statement creates or changes, for messages.
    pub fn object(&self) -> String {
        match self {
            Self::CreateRestIntegration(i) => i.name.quoted(),
            Self::CreateDeltaIntegration(i) => i.name.quoted(),
            Self::CreateExternalVolume(v) => v.name.quoted(),
            Self::CreateDatabase(d) => d.quoted(),
            Self::CreateSchema(d, s) => format!("{}.{}", d.quoted(), s.quoted()),
            Self::CreateRestTable(t) => t.name.fqn(),
            Self::CreateDeltaTable(t) => t.name.fqn(),
            Self::DropTable(n) | Self::RefreshTable(n) => n.fqn(),
        }
    }

    fn render(&self, reveal: bool) -> String {
        match self {
            Self::CreateRestIntegration(i) => {
                let mut s = format!(
                    "CREATE CATALOG INTEGRATION IF NOT EXISTS {} CATALOG_SOURCE = ICEBERG_REST TABLE_FORMAT = ICEBERG",
                    i.name.quoted()
                );
                if let Some(ns) = &i.catalog_namespace {
                    s += &format!(" CATALOG_NAMESPACE = {}", quote_string(ns));
                }
                s += &format!(
                    " REST_CONFIG = ( CATALOG_URI = {} CATALOG_NAME = {} ACCESS_DELEGATION_MODE = VENDED_CREDENTIALS )",
                    quote_string(&i.catalog_uri),
                    quote_string(&i.catalog_name)
                );
                s += " REST_AUTHENTICATION = ( TYPE = OAUTH";
                if let Some(uri) = &i.oauth_token_uri {
                    s += &format!(" OAUTH_TOKEN_URI = {}", quote_string(uri));
                }
                let secret = if reveal {
                    quote_string(&i.client_secret.value)
                } else {
                    quote_string(&i.client_secret.placeholder())
                };
                let scopes: Vec<String> = i.scopes.iter().map(|s| quote_string(s)).collect();
                s += &format!(
                    " OAUTH_CLIENT_ID = {} OAUTH_CLIENT_SECRET = {secret} OAUTH_ALLOWED_SCOPES = ( {} ) )",
                    quote_string(&i.client_id),
                    scopes.join(", ")
                );
                s += " ENABLED = TRUE";
                if let Some(r) = i.refresh_interval_seconds {
                    s += &format!(" REFRESH_INTERVAL_SECONDS = {r}");
                }
                s
            }
            Self::CreateDeltaIntegration(i) => {
                let mut s = format!(
                    "CREATE CATALOG INTEGRATION IF NOT EXISTS {} CATALOG_SOURCE = OBJECT_STORE TABLE_FORMAT = DELTA ENABLED = TRUE",
                    i.name.quoted()
                );
                if let Some(r) = i.refresh_interval_seconds {
                    s += &format!(" REFRESH_INTERVAL_SECONDS = {r}");
                }
                s
            }
            Self::CreateExternalVolume(v) => {
                let mut loc = format!(
                    "NAME = {} STORAGE_PROVIDER = {}",
                    quote_string(&v.location_name),
                    quote_string(v.provider.keyword())
                );
                match &v.access {
                    StorageAccess::S3 {
                        role_arn,
                        external_id,
                    } => {
                        loc += &format!(
                            " STORAGE_AWS_ROLE_ARN = {} STORAGE_BASE_URL = {}",
                            quote_string(role_arn),
                            quote_string(&v.base_url)
                        );
                        if let Some(x) = external_id {
                            loc += &format!(" STORAGE_AWS_EXTERNAL_ID = {}", quote_string(x));
                        }
                    }
                    StorageAccess::Azure { tenant_id } => {
                        loc += &format!(
                            " AZURE_TENANT_ID = {} STORAGE_BASE_URL = {}",
                            quote_string(tenant_id),
                            quote_string(&v.base_url)
                        );
                    }
                    StorageAccess::Gcs => {
                        loc += &format!(" STORAGE_BASE_URL = {}", quote_string(&v.base_url));
                    }
                }
                let mut s = format!(
                    "CREATE EXTERNAL VOLUME IF NOT EXISTS {} STORAGE_LOCATIONS = ( ( {loc} ) )",
                    v.name.quoted()
                );
                if let Some(w) = v.allow_writes {
                    s += &format!(" ALLOW_WRITES = {}", bool_kw(w));
                }
                s
            }
            Self::CreateDatabase(d) => format!("CREATE DATABASE IF NOT EXISTS {}", d.quoted()),
            Self::CreateSchema(d, sc) => {
                format!("CREATE SCHEMA IF NOT EXISTS {}.{}", d.quoted(), sc.quoted())
            }
            Self::CreateRestTable(t) => {
                let mut s = format!(
                    "CREATE ICEBERG TABLE IF NOT EXISTS {} CATALOG = {} CATALOG_TABLE_NAME = {}",
                    t.name.fqn(),
                    quote_string(t.catalog.as_str()),
                    quote_string(&t.catalog_table_name)
                );
                if let Some(ns) = &t.catalog_namespace {
                    s += &format!(" CATALOG_NAMESPACE = {}", quote_string(ns));
                }
                s + &format!(" AUTO_REFRESH = {}", bool_kw(t.auto_refresh))
            }
            Self::CreateDeltaTable(t) => format!(
                "CREATE ICEBERG TABLE IF NOT EXISTS {} EXTERNAL_VOLUME = {} CATALOG = {} BASE_LOCATION = {} AUTO_REFRESH = {}",
                t.name.fqn(),
                quote_string(t.external_volume.as_str()),
                quote_string(t.catalog.as_str()),
                quote_string(&t.base_location),
                bool_kw(t.auto_refresh)
            ),
            Self::DropTable(n) => format!("DROP ICEBERG TABLE IF EXISTS {}", n.fqn()),
            Self::RefreshTable(n) => format!("ALTER ICEBERG TABLE {} REFRESH", n.fqn()),
        }
    }
}

impl fmt::Display for Statement {
    /// The redacted rendering.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// A catalog integration wanted in Snowflake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Integration {
    Rest(RestIntegration),
    Delta(DeltaIntegration),
}

impl Integration {
    pub fn name(&self) -> &Ident {
        match self {
            Self::Rest(i) => &i.name,
            Self::Delta(i) => &i.name,
        }
    }
}

/// An Iceberg table wanted in Snowflake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Table {
    Rest(RestTable),
    Delta(DeltaTable),
}

impl Table {
    pub fn name(&self) -> &Name {
        match self {
            Self::Rest(t) => &t.name,
            Self::Delta(t) => &t.name,
        }
    }

    pub fn catalog(&self) -> &Ident {
        match self {
            Self::Rest(t) => &t.catalog,
            Self::Delta(t) => &t.catalog,
        }
    }
}

/// What should exist: the integrations (one per source catalog, one for the Delta path),
/// external volumes, and tables.
#[derive(Clone, Debug, Default)]
pub struct Desired {
    pub volumes: Vec<ExternalVolume>,
    pub integrations: Vec<Integration>,
    pub tables: Vec<Table>,
}

/// An Iceberg table as `SHOW ICEBERG TABLES` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CurrentTable {
    pub name: Name,
    /// `catalog_name`: the catalog integration the table reads through.
    pub catalog: String,
}

/// What exists, as the `SHOW` commands returned it (names exactly as stored).
#[derive(Clone, Debug, Default)]
pub struct Current {
    pub volumes: BTreeSet<String>,
    pub integrations: BTreeSet<String>,
    pub databases: BTreeSet<String>,
    pub schemas: BTreeSet<(String, String)>,
    pub tables: Vec<CurrentTable>,
}

/// The statements to run, in order, and what was found but left alone.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub statements: Vec<Statement>,
    /// Tables of a managed integration that are no longer in the source: dropped when
    /// `drop_removed`, otherwise listed here.
    pub removed: Vec<Name>,
    /// Tables that exist under another catalog integration than the one wanted: reported,
    /// never replaced.
    pub mismatched: Vec<(Name, String, String)>,
}

impl Plan {
    /// The dry-run listing: each statement redacted.
    pub fn dry_run(&self) -> Vec<String> {
        self.statements.iter().map(Statement::redacted).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.statements.is_empty()
    }
}

/// The statements that bring `current` to `desired`, in execution order: external volumes,
/// catalog integrations, databases, schemas, tables, then drops. Nothing when they agree.
/// Tables read through one of the desired integrations but absent from `desired` are dropped
/// when `drop_removed`, otherwise reported in [`Plan::removed`].
pub fn plan(
    desired: &Desired,
    current: &Current,
    drop_removed: bool,
) -> Result<Plan, SnowflakeError> {
    let mut out = Plan::default();
    let integrations: BTreeMap<&str, &Integration> = desired
        .integrations
        .iter()
        .map(|i| (i.name().as_str(), i))
        .collect();
    let volumes: BTreeSet<&str> = desired.volumes.iter().map(|v| v.name.as_str()).collect();
    let mut wanted: BTreeSet<&Name> = BTreeSet::new();
    for t in &desired.tables {
        if !wanted.insert(t.name()) {
            return Err(SnowflakeError::Config(format!(
                "table {} is wanted twice",
                t.name()
            )));
        }
        let kind_fits = match (t, integrations.get(t.catalog().as_str())) {
            (Table::Rest(_), Some(Integration::Rest(_)))
            | (Table::Delta(_), Some(Integration::Delta(_))) => true,
            (_, None) => {
                return Err(SnowflakeError::Config(format!(
                    "table {} reads through catalog integration {}, which is not configured",
                    t.name(),
                    t.catalog()
                )));
            }
            _ => false,
        };
        if !kind_fits {
            return Err(SnowflakeError::Config(format!(
                "table {} and its catalog integration {} are not of the same kind (Iceberg REST or Delta)",
                t.name(),
                t.catalog()
            )));
        }
        if let Table::Delta(d) = t
            && !volumes.contains(d.external_volume.as_str())
        {
            return Err(SnowflakeError::Config(format!(
                "table {} uses external volume {}, which is not configured",
                t.name(),
                d.external_volume
            )));
        }
    }

    for v in &desired.volumes {
        if !current.volumes.contains(v.name.as_str()) {
            out.statements
                .push(Statement::CreateExternalVolume(v.clone()));
        }
    }
    for i in &desired.integrations {
        if !current.integrations.contains(i.name().as_str()) {
            out.statements.push(match i {
                Integration::Rest(r) => Statement::CreateRestIntegration(r.clone()),
                Integration::Delta(d) => Statement::CreateDeltaIntegration(d.clone()),
            });
        }
    }
    let existing: BTreeMap<&Name, &str> = current
        .tables
        .iter()
        .map(|t| (&t.name, t.catalog.as_str()))
        .collect();
    let mut databases = BTreeSet::new();
    let mut schemas = BTreeSet::new();
    let mut tables = Vec::new();
    for t in &desired.tables {
        let n = t.name();
        if let Some(catalog) = existing.get(n) {
            if *catalog != t.catalog().as_str() {
                out.mismatched.push((
                    n.clone(),
                    (*catalog).to_owned(),
                    t.catalog().as_str().to_owned(),
                ));
            }
            continue;
        }
        if !current.databases.contains(n.database.as_str()) && databases.insert(&n.database) {
            out.statements
                .push(Statement::CreateDatabase(n.database.clone()));
        }
        let key = (n.database.as_str().to_owned(), n.schema.as_str().to_owned());
        if !current.schemas.contains(&key) && schemas.insert(key) {
            out.statements.push(Statement::CreateSchema(
                n.database.clone(),
                n.schema.clone(),
            ));
        }
        tables.push(match t {
            Table::Rest(r) => Statement::CreateRestTable(r.clone()),
            Table::Delta(d) => Statement::CreateDeltaTable(d.clone()),
        });
    }
    out.statements.extend(tables);
    for t in &current.tables {
        if integrations.contains_key(t.catalog.as_str()) && !wanted.contains(&t.name) {
            if drop_removed {
                out.statements.push(Statement::DropTable(t.name.clone()));
            } else {
                out.removed.push(t.name.clone());
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rest_integration() -> RestIntegration {
        let mut i = RestIntegration::new(
            "UC_MAIN",
            "https://adb-1.azuredatabricks.net/api/2.1/unity-catalog/iceberg-rest",
            "main",
            "sp-client",
            Secret::new("env:UC_SECRET", "very-secret-value"),
            &["all-apis"],
        )
        .unwrap();
        i.oauth_token_uri = Some("https://adb-1.azuredatabricks.net/oidc/v1/token".into());
        i.refresh_interval_seconds = Some(60);
        i
    }

    #[test]
    fn a_rest_integration_renders_the_documented_grammar_and_redacts_the_secret() {
        let s = Statement::CreateRestIntegration(rest_integration());
        let expected = |secret: &str| {
            format!(
                "CREATE CATALOG INTEGRATION IF NOT EXISTS \"UC_MAIN\" CATALOG_SOURCE = ICEBERG_REST TABLE_FORMAT = ICEBERG REST_CONFIG = ( CATALOG_URI = 'https://adb-1.azuredatabricks.net/api/2.1/unity-catalog/iceberg-rest' CATALOG_NAME = 'main' ACCESS_DELEGATION_MODE = VENDED_CREDENTIALS ) REST_AUTHENTICATION = ( TYPE = OAUTH OAUTH_TOKEN_URI = 'https://adb-1.azuredatabricks.net/oidc/v1/token' OAUTH_CLIENT_ID = 'sp-client' OAUTH_CLIENT_SECRET = '{secret}' OAUTH_ALLOWED_SCOPES = ( 'all-apis' ) ) ENABLED = TRUE REFRESH_INTERVAL_SECONDS = 60"
            )
        };
        assert_eq!(s.sql(), expected("very-secret-value"));
        assert_eq!(s.redacted(), expected("<secret from env:UC_SECRET>"));
        assert!(!format!("{s:?} {s}").contains("very-secret-value"));
    }

    #[test]
    fn integration_and_volume_names_must_resolve_the_same_quoted_or_not() {
        for bad in ["uc_main", "Uc", "1UC", "UC-MAIN", ""] {
            assert!(DeltaIntegration::new(bad).is_err(), "{bad}");
        }
        assert!(DeltaIntegration::new("_UC$1").is_ok());
    }

    #[test]
    fn storage_locations_of_three_clouds_are_recognized() {
        let cases = [
            ("s3://bucket/a/b", StorageProvider::S3, "s3://bucket/a/b/"),
            ("s3://bucket", StorageProvider::S3, "s3://bucket/"),
            (
                "abfss://lake@acct.dfs.core.windows.net/tables/x/",
                StorageProvider::Azure,
                "azure://acct.blob.core.windows.net/lake/tables/x/",
            ),
            (
                "azure://acct.blob.core.windows.net/lake/t",
                StorageProvider::Azure,
                "azure://acct.blob.core.windows.net/lake/t/",
            ),
            ("gs://bkt/p", StorageProvider::Gcs, "gcs://bkt/p/"),
            ("gcs://bkt/p/", StorageProvider::Gcs, "gcs://bkt/p/"),
        ];
        for (url, provider, base) in cases {
            assert_eq!(
                storage_location(url).unwrap(),
                (provider, base.to_owned()),
                "{url}"
            );
        }
        for bad in [
            "file:///tmp/x",
            "/local/path",
            "abfss://acct.dfs.core.windows.net/x",
            "azure://acct.blob.core.windows.net",
            "s3://",
        ] {
            assert!(storage_location(bad).is_err(), "{bad}");
        }
        let e = ExternalVolume::new(
            "V",
            "gs://b/p",
            StorageAccess::Azure {
                tenant_id: "t".into(),
            },
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("does not fit the GCS location"),
            "{e}"
        );
    }

    #[test]
    fn external_volumes_and_delta_tables_render() {
        let v = ExternalVolume::new(
            "LAKE_VOL",
            "abfss://lake@acct.dfs.core.windows.net/replicas",
            StorageAccess::Azure {
                tenant_id: "tenant-1".into(),
            },
        )
        .unwrap();
        assert_eq!(
            Statement::CreateExternalVolume(v).sql(),
            "CREATE EXTERNAL VOLUME IF NOT EXISTS \"LAKE_VOL\" STORAGE_LOCATIONS = ( ( NAME = 'LAKE_VOL_LOCATION' STORAGE_PROVIDER = 'AZURE' AZURE_TENANT_ID = 'tenant-1' STORAGE_BASE_URL = 'azure://acct.blob.core.windows.net/lake/replicas/' ) )"
        );
        let t = DeltaTable {
            name: Name::new("DB", "sc", "t").unwrap(),
            external_volume: Ident::new("LAKE_VOL").unwrap(),
            catalog: Ident::new("DELTA_INT").unwrap(),
            base_location: "sales/orders/".into(),
            auto_refresh: true,
        };
        assert_eq!(
            Statement::CreateDeltaTable(t).sql(),
            "CREATE ICEBERG TABLE IF NOT EXISTS \"DB\".\"sc\".\"t\" EXTERNAL_VOLUME = 'LAKE_VOL' CATALOG = 'DELTA_INT' BASE_LOCATION = 'sales/orders/' AUTO_REFRESH = TRUE"
        );
        assert_eq!(
            Statement::RefreshTable(Name::new("D", "S", "T").unwrap()).sql(),
            "ALTER ICEBERG TABLE \"D\".\"S\".\"T\" REFRESH"
        );
    }

    fn rest_table(db: &str, schema: &str, table: &str) -> Table {
        Table::Rest(RestTable {
            name: Name::new(db, schema, table).unwrap(),
            catalog: Ident::new("UC_MAIN").unwrap(),
            catalog_namespace: Some(schema.to_owned()),
            catalog_table_name: table.to_owned(),
            auto_refresh: true,
        })
    }

    #[test]
    fn the_plan_creates_what_is_missing_in_order_and_nothing_when_all_agree() {
        let desired = Desired {
            volumes: vec![],
            integrations: vec![Integration::Rest(rest_integration())],
            tables: vec![
                rest_table("MAIN", "sales", "orders"),
                rest_table("MAIN", "sales", "items"),
                rest_table("MAIN", "hr", "people"),
            ],
        };
        let p = plan(&desired, &Current::default(), false).unwrap();
        let kinds: Vec<String> = p
            .statements
            .iter()
            .map(|s| s.redacted().split(" IF ").next().unwrap().to_owned())
            .collect();
        assert_eq!(
            kinds,
            [
                "CREATE CATALOG INTEGRATION",
                "CREATE DATABASE",
                "CREATE SCHEMA",
                "CREATE SCHEMA",
                "CREATE ICEBERG TABLE",
                "CREATE ICEBERG TABLE",
                "CREATE ICEBERG TABLE"
            ]
        );
        let mut current = Current::default();
        current.integrations.insert("UC_MAIN".into());
        current.databases.insert("MAIN".into());
        current.schemas.insert(("MAIN".into(), "sales".into()));
        current.schemas.insert(("MAIN".into(), "hr".into()));
        for t in &desired.tables {
            current.tables.push(CurrentTable {
                name: t.name().clone(),
                catalog: "UC_MAIN".into(),
            });
        }
        // A table of another integration is never touched.
        current.tables.push(CurrentTable {
            name: Name::new("OTHER", "s", "t").unwrap(),
            catalog: "SOMEONE_ELSES".into(),
        });
        let p = plan(&desired, &current, true).unwrap();
        assert!(p.is_empty(), "{:?}", p.dry_run());
        assert!(p.removed.is_empty());

        let fewer = Desired {
            tables: desired.tables[..2].to_vec(),
            ..desired.clone()
        };
        let p = plan(&fewer, &current, false).unwrap();
        assert!(p.is_empty());
        assert_eq!(p.removed, vec![Name::new("MAIN", "hr", "people").unwrap()]);
        let p = plan(&fewer, &current, true).unwrap();
        assert_eq!(
            p.dry_run(),
            ["DROP ICEBERG TABLE IF EXISTS \"MAIN\".\"hr\".\"people\""]
        );
    }

    #[test]
    fn a_table_under_another_integration_is_reported_not_replaced() {
        let desired = Desired {
            integrations: vec![Integration::Rest(rest_integration())],
            tables: vec![rest_table("MAIN", "sales", "orders")],
            ..Default::default()
        };
        let mut current = Current::default();
        current.integrations.insert("UC_MAIN".into());
        current.tables.push(CurrentTable {
            name: Name::new("MAIN", "sales", "orders").unwrap(),
            catalog: "OLD_INT".into(),
        });
        let p = plan(&desired, &current, true).unwrap();
        assert!(p.is_empty(), "{:?}", p.dry_run());
        assert_eq!(
            p.mismatched,
            vec![(
                Name::new("MAIN", "sales", "orders").unwrap(),
                "OLD_INT".to_owned(),
                "UC_MAIN".to_owned()
            )]
        );
    }

    #[test]
    fn a_plan_refuses_tables_without_their_integration_or_volume() {
        let desired = Desired {
            tables: vec![rest_table("D", "s", "t")],
            ..Default::default()
        };
        let e = plan(&desired, &Current::default(), false).unwrap_err();
        assert!(
            e.to_string().contains("UC_MAIN, which is not configured"),
            "{e}"
        );
        let twice = Desired {
            integrations: vec![Integration::Rest(rest_integration())],
            tables: vec![rest_table("D", "s", "t"), rest_table("D", "s", "t")],
            ..Default::default()
        };
        assert!(plan(&twice, &Current::default(), false).is_err());
    }
}
