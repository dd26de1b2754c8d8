//! The Snowflake mirror (docs/snowflake.md): one `mirror` catalog task per run finds the
//! tables to expose — UniForm tables of Unity Catalog (Databricks engine) and Delta tables
//! under the Delta location (either engine) — works out the Snowflake objects that read them
//! in place, compares them with what `SHOW` lists, and runs the difference through the SQL
//! API (or, in a dry run, lists it). Then it refreshes the metadata table: one row per table
//! with its names, locations, the Snowflake objects it maps to, and the sync's time and
//! status.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use replicator_common::config::{SnowflakeConfig, UniformSettings};
use replicator_lake::discover::TableMatcher;
use replicator_proto::{CatalogTask, EngineKind, ErrorKind, TableFilter};
use replicator_snowflake::ddl::{
    self, DeltaIntegration, DeltaTable, Desired, ExternalVolume, Integration, Plan,
    RestIntegration, RestTable, Secret, Statement, StorageAccess, StorageProvider, Table,
};
use replicator_snowflake::ident::Ident;
use replicator_snowflake::{ClientOptions, JwtMinter, KeyPair, Name, SnowflakeError, SqlClient};

use crate::{Applied, EngineError, Failure, ObjectContext};

/// A table the mirror may expose.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MirrorSource {
    /// Unity Catalog's `catalog.schema.table`, or the path under the Delta location (`sales/orders`).
    pub name: String,
    /// Where its files are.
    pub storage_location: String,
    /// A UniForm table's Iceberg metadata location, as Unity Catalog reports it.
    pub iceberg_metadata: Option<String>,
    /// Readable as Iceberg through Unity Catalog's Iceberg REST endpoint.
    pub uniform: bool,
    /// A Unity Catalog table (`name` is `catalog.schema.table`), not a path under the Delta
    /// location.
    pub unity_catalog: bool,
}

/// What one table became in Snowflake, for the metadata table.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Row {
    source: String,
    path: &'static str,
    storage_location: String,
    iceberg_metadata: Option<String>,
    integration: String,
    table: String,
    status: String,
}

/// The mirror of one process: its settings and the SQL API client (the key read once).
pub struct Mirror {
    config: SnowflakeConfig,
    client: Arc<SqlClient>,
    /// The Delta location (`snowflake.delta.location`, else `target.root`).
    delta_location: Option<String>,
    /// UniForm: the catalogs, the endpoints, the client secret (resolved).
    uniform: Option<Uniform>,
}

struct Uniform {
    settings: UniformSettings,
    catalogs: Vec<String>,
    catalog_uri: String,
    token_uri: String,
    secret: Secret,
}

fn secret_ref(r: &replicator_common::config::SecretRef) -> String {
    r.reference().unwrap_or_else(|| "a reference".into())
}

impl std::fmt::Debug for Mirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mirror")
            .field("account", &self.config.account)
            .field("user", &self.config.user)
            .finish_non_exhaustive()
    }
}

impl Mirror {
    /// The mirror of a config's `snowflake` section: the private key is read and opened now
    /// (a wrong passphrase stops the process at start, naming the file), the OAuth secret too.
    pub fn from_config(config: &replicator_common::Config) -> Result<Option<Self>, EngineError> {
        let Some(sf) = &config.snowflake else {
            return Ok(None);
        };
        let setup = |e: String| EngineError::NotConfigured(format!("snowflake: {e}"));
        let passphrase = sf
            .private_key_passphrase
            .as_ref()
            .map(|p| p.resolve())
            .transpose()
            .map_err(|e| setup(e.to_string()))?;
        let key = match &sf.private_key.file {
            Some(path) => KeyPair::from_pem_file(path, passphrase.as_deref()),
            None => {
                let pem = sf.private_key.resolve().map_err(|e| setup(e.to_string()))?;
                KeyPair::from_pem(&pem, &secret_ref(&sf.private_key), passphrase.as_deref())
            }
        }
        .map_err(|e| setup(e.to_string()))?;
        let minter = JwtMinter::new(&sf.account, &sf.user, key, Duration::from_secs(3540))
            .map_err(|e| setup(e.to_string()))?;
        let ms = Duration::from_millis;
        let c = &sf.client;
        let options = ClientOptions {
            base_url: sf.url.clone(),
            warehouse: sf.warehouse.clone(),
            role: sf.role.clone(),
            statement_timeout: ms(c.statement_timeout_ms),
            poll_interval: ms(c.poll_interval_ms),
            max_poll_interval: ms(c.max_poll_interval_ms.max(c.poll_interval_ms)),
            max_attempts: c.max_attempts,
            base_delay: ms(c.base_delay_ms),
            max_delay: ms(c.max_delay_ms.max(c.base_delay_ms)),
            max_retry_after: ms(c.max_retry_after_ms),
            request_timeout: ms(c.request_timeout_ms),
        };
        let client =
            SqlClient::new(&sf.account, minter, options).map_err(|e| setup(e.to_string()))?;
        let uniform = match &sf.uniform {
            None => None,
            Some(u) => {
                let host = config
                    .databricks
                    .as_ref()
                    .map(|d| d.source.host.trim_end_matches('/').to_owned());
                let endpoint = |given: &Option<String>, path: &str, key: &str| {
                    given
                        .clone()
                        .or_else(|| host.as_ref().map(|h| format!("{h}{path}")))
                        .ok_or_else(|| {
                            setup(format!(
                                "`snowflake.uniform.{key}` is needed without a `databricks` section"
                            ))
                        })
                };
                let catalogs = if u.catalogs.is_empty() {
                    config
                        .databricks
                        .iter()
                        .flat_map(|d| d.catalogs.iter().map(|c| c.source.clone()))
                        .collect()
                } else {
                    u.catalogs.clone()
                };
                let value = u
                    .oauth_client_secret
                    .resolve()
                    .map_err(|e| setup(format!("uniform.oauth_client_secret: {e}")))?;
                Some(Uniform {
                    settings: u.clone(),
                    catalogs,
                    catalog_uri: endpoint(
                        &u.catalog_uri,
                        "/api/2.1/unity-catalog/iceberg-rest",
                        "catalog_uri",
                    )?,
                    token_uri: endpoint(&u.oauth_token_uri, "/oidc/v1/token", "oauth_token_uri")?,
                    secret: Secret::new(&secret_ref(&u.oauth_client_secret), &value),
                })
            }
        };
        let delta_location = sf.delta.as_ref().map(|d| {
            d.location
                .clone()
                .unwrap_or_else(|| config.target.root.clone())
        });
        Ok(Some(Self {
            config: sf.clone(),
            client: Arc::new(client),
            delta_location,
            uniform,
        }))
    }

    /// What the mirror task's target is called: `snowflake:<ACCOUNT>`.
    pub fn target(&self) -> String {
        format!(
            "snowflake:{}",
            replicator_snowflake::auth::jwt_account(&self.config.account)
        )
    }

    /// The tables' filter.
    fn filter(&self) -> TableFilter {
        (&self.config.tables).into()
    }

    /// The integration a Unity Catalog catalog's UniForm tables read through.
    fn integration_name(prefix: &str, catalog: &str) -> String {
        let mut s: String = prefix.to_owned();
        s.extend(catalog.chars().map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '$' {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        }));
        s
    }

    /// The Snowflake name of a Unity Catalog table.
    fn uc_name(&self, full: &str) -> Result<Name, Box<SnowflakeError>> {
        let mut parts = full.splitn(3, '.');
        let (Some(c), Some(s), Some(t)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(Box::new(SnowflakeError::Config(format!(
                "table {full}: not a catalog.schema.table name"
            ))));
        };
        let database = self.config.databases.get(c).map_or(c, String::as_str);
        Ok(Name::new(database, s, t)?)
    }

    /// The Snowflake name of a Delta table at `relative` under the Delta location.
    fn delta_name(&self, relative: &str, uc: bool) -> Result<Name, Box<SnowflakeError>> {
        if uc {
            return self.uc_name(relative);
        }
        let d = self
            .config
            .delta
            .as_ref()
            .expect("a Delta source needs `delta`");
        let database = d.database.as_deref().ok_or_else(|| {
            SnowflakeError::Config(format!(
                "table {relative}: `snowflake.delta.database` is needed to name the native engine's tables in Snowflake"
            ))
        })?;
        let (schema, table) = match relative.rsplit_once('/') {
            Some((dirs, t)) => (dirs.replace('/', "_"), t),
            None => (d.schema.clone(), relative),
        };
        Ok(Name::new(database, &schema, table)?)
    }

    /// The objects `sources` need, and what is reported instead of mirrored.
    fn desired(
        &self,
        sources: &[MirrorSource],
    ) -> Result<(Desired, Vec<Row>, Vec<String>), Box<SnowflakeError>> {
        let mut desired = Desired::default();
        let mut rows = Vec::new();
        let mut findings = Vec::new();
        let auto_refresh = self.config.auto_refresh;
        let mut integrations: BTreeMap<String, String> = BTreeMap::new();
        if let Some(u) = &self.uniform {
            for c in &u.catalogs {
                let name = Self::integration_name(&u.settings.integration_prefix, c);
                if let Some(other) = integrations.insert(name.clone(), c.clone()) {
                    return Err(Box::new(SnowflakeError::Config(format!(
                        "catalogs `{other}` and `{c}` would share the catalog integration {name}"
                    ))));
                }
                let mut i = RestIntegration::new(
                    &name,
                    &u.catalog_uri,
                    c,
                    &u.settings.oauth_client_id,
                    u.secret.clone(),
                    &u.settings
                        .scopes
                        .iter()
                        .map(String::as_str)
                        .collect::<Vec<_>>(),
                )?;
                i.oauth_token_uri = Some(u.token_uri.clone());
                i.refresh_interval_seconds = self.config.refresh_interval_seconds;
                desired.integrations.push(Integration::Rest(i));
            }
        }
        let delta = match (&self.config.delta, &self.delta_location) {
            (Some(d), Some(location)) => {
                let (provider, base) = ddl::storage_location(location)?;
                let access = match provider {
                    StorageProvider::S3 => StorageAccess::S3 {
                        role_arn: d.storage_aws_role_arn.clone().ok_or_else(|| {
                            SnowflakeError::Config(format!(
                                "`snowflake.delta.storage_aws_role_arn` is needed for the S3 location {location}"
                            ))
                        })?,
                        external_id: d.storage_aws_external_id.clone(),
                    },
                    StorageProvider::Azure => StorageAccess::Azure {
                        tenant_id: d.azure_tenant_id.clone().ok_or_else(|| {
                            SnowflakeError::Config(format!(
                                "`snowflake.delta.azure_tenant_id` is needed for the Azure location {location}"
                            ))
                        })?,
                    },
                    StorageProvider::Gcs => StorageAccess::Gcs,
                };
                desired
                    .volumes
                    .push(ExternalVolume::new(&d.external_volume, location, access)?);
                let mut i = DeltaIntegration::new(&d.integration)?;
                i.refresh_interval_seconds = self.config.refresh_interval_seconds;
                desired.integrations.push(Integration::Delta(i));
                Some((d, base))
            }
            _ => None,
        };
        for s in sources {
            if s.uniform
                && let Some(u) = &self.uniform
            {
                let catalog = s.name.split('.').next().unwrap_or_default();
                let name = self.uc_name(&s.name)?;
                let integration = Self::integration_name(&u.settings.integration_prefix, catalog);
                let mut parts = s.name.splitn(3, '.').skip(1);
                let (schema, table) = (
                    parts.next().unwrap_or_default(),
                    parts.next().unwrap_or_default(),
                );
                rows.push(Row {
                    source: s.name.clone(),
                    path: "iceberg_rest",
                    storage_location: s.storage_location.clone(),
                    iceberg_metadata: s.iceberg_metadata.clone(),
                    integration: integration.clone(),
                    table: name.fqn(),
                    status: String::new(),
                });
                desired.tables.push(Table::Rest(RestTable {
                    name,
                    catalog: Ident::new(&integration)?,
                    catalog_namespace: Some(schema.to_owned()),
                    catalog_table_name: table.to_owned(),
                    auto_refresh,
                }));
                continue;
            }
            let uc = s.unity_catalog;
            let relative = match &delta {
                Some(_) if !uc => Some(s.name.clone()),
                Some((_, base)) => ddl::storage_location(&s.storage_location)
                    .ok()
                    .and_then(|(_, url)| {
                        url.strip_prefix(base.as_str())
                            .map(|r| r.trim_end_matches('/').to_owned())
                    })
                    .filter(|r| !r.is_empty()),
                None => None,
            };
            let Some(relative) = relative else {
                findings.push(format!(
                    "table {}: not mirrored: not UniForm (delta.universalFormat.enabledFormats lacks iceberg) and not under `snowflake.delta.location`",
                    s.name
                ));
                continue;
            };
            let (d, _) = delta.as_ref().expect("relative implies delta");
            let name = self.delta_name(if uc { &s.name } else { &relative }, uc)?;
            rows.push(Row {
                source: s.name.clone(),
                path: "delta",
                storage_location: s.storage_location.clone(),
                iceberg_metadata: None,
                integration: d.integration.clone(),
                table: name.fqn(),
                status: String::new(),
            });
            desired.tables.push(Table::Delta(DeltaTable {
                name,
                external_volume: Ident::new(&d.external_volume)?,
                catalog: Ident::new(&d.integration)?,
                base_location: format!("{relative}/"),
                auto_refresh,
            }));
        }
        Ok((desired, rows, findings))
    }

    /// One attempt at the mirror task: discover with `engine`'s sources, plan, apply (or, in
    /// a dry run, list), refresh the metadata table.
    pub async fn apply(
        &self,
        task: &CatalogTask,
        sources: Result<Vec<MirrorSource>, EngineError>,
        native: &crate::NativeEngine,
        databricks: Option<&crate::DatabricksEngine>,
        ctx: &ObjectContext,
    ) -> Result<Applied, Failure> {
        let fail = |kind: ErrorKind, e: &dyn std::fmt::Display, retry: bool| {
            Failure::new(kind, format!("mirror {}: {e}", task.name), retry)
        };
        let sources = sources.map_err(|e| fail(ErrorKind::Transient, &e, true))?;
        let (desired, mut rows, mut findings) = self
            .desired(&sources)
            .map_err(|e| fail(ErrorKind::Permanent, &e, false))?;
        let current = replicator_snowflake::mirror::read_current(&self.client)
            .await
            .map_err(|e| classify(&e, |k, r| fail(k, &e, r)))?;
        let plan = ddl::plan(&desired, &current, self.config.drop_removed)
            .map_err(|e| fail(ErrorKind::Permanent, &e, false))?;
        report(&plan, &mut findings);
        if ctx.dry_run {
            return Ok(Applied {
                statements: plan.dry_run(),
                findings,
                ..Applied::default()
            });
        }
        let mut done = Vec::new();
        let mut failed: Option<(Statement, SnowflakeError)> = None;
        for s in &plan.statements {
            tracing::info!(object = %s.object(), statement = %s, "executing");
            match self.client.execute(s).await {
                Ok(_) => done.push(s.clone()),
                Err(e) => {
                    failed = Some((s.clone(), e));
                    break;
                }
            }
        }
        statuses(&mut rows, &plan, &done, failed.as_ref());
        for n in plan.statements.iter().filter_map(|s| match s {
            Statement::DropTable(n) if done.contains(s) => Some(n),
            _ => None,
        }) {
            rows.push(Row {
                source: String::new(),
                path: "dropped",
                storage_location: String::new(),
                iceberg_metadata: None,
                integration: String::new(),
                table: n.fqn(),
                status: "dropped: gone from the source".into(),
            });
        }
        if let Some(location) = &self.config.metadata_table
            && let Err(e) = write_metadata(native, location, &rows).await
        {
            let e = fail(
                ErrorKind::Transient,
                &format!("metadata table {location}: {e}"),
                true,
            );
            if failed.is_none() {
                return Err(e);
            }
            tracing::warn!(error = %e, "the metadata table was not refreshed");
        }
        if let (Some(name), Some(location), Some(dbx)) = (
            &self.config.metadata_table_name,
            &self.config.metadata_table,
            databricks,
        ) && let Err(e) = register_metadata(dbx, name, location).await
        {
            let e = fail(ErrorKind::Transient, &e, true);
            if failed.is_none() {
                return Err(e);
            }
            tracing::warn!(error = %e, "the metadata table was not registered");
        }
        if let Some((s, e)) = failed {
            let mut f = classify(&e, |k, r| fail(k, &e, r));
            f.statement_ids = done.iter().map(Statement::redacted).collect();
            tracing::error!(object = %s.object(), "statement failed");
            return Err(f);
        }
        Ok(Applied {
            statements: done.iter().map(Statement::redacted).collect(),
            findings,
            ..Applied::default()
        })
    }

    /// The sources of a native root: every Delta table under the Delta location.
    pub async fn native_sources(
        &self,
        engine: &crate::NativeEngine,
    ) -> Result<Vec<MirrorSource>, EngineError> {
        let Some(location) = &self.delta_location else {
            return Ok(Vec::new());
        };
        let root = engine.resolve(location)?;
        let tables = replicator_lake::discover(&root, &self.filter()).await?;
        Ok(tables
            .into_iter()
            .map(|t| MirrorSource {
                storage_location: format!("{}/{}", location.trim_end_matches('/'), t.relative),
                name: t.relative,
                iceberg_metadata: None,
                uniform: false,
                unity_catalog: false,
            })
            .collect())
    }

    /// The sources of Unity Catalog: the tables of the UniForm catalogs (with their Iceberg
    /// metadata location), and of the `databricks` section's catalogs when a Delta location is
    /// configured, filtered by `tables` and the discovery tag.
    pub async fn databricks_sources(
        &self,
        engine: &crate::DatabricksEngine,
    ) -> Result<Vec<MirrorSource>, EngineError> {
        let uc = &engine.pair().source;
        let matcher = TableMatcher::new(&self.filter())?;
        let mut catalogs: BTreeSet<String> = self
            .uniform
            .iter()
            .flat_map(|u| u.catalogs.iter().cloned())
            .collect();
        if self.config.delta.is_some() {
            catalogs.extend(
                engine
                    .pair()
                    .config()
                    .catalogs
                    .iter()
                    .map(|c| c.source.clone()),
            );
        }
        let tag = self
            .uniform
            .as_ref()
            .and_then(|u| u.settings.discovery_tag.as_deref())
            .map(|t| t.split_once('=').map_or((t, None), |(k, v)| (k, Some(v))));
        let mut out = Vec::new();
        for catalog in &catalogs {
            for schema in uc.list_schemas(catalog).await? {
                if schema.name == "information_schema" {
                    continue;
                }
                for info in uc.list_tables(catalog, &schema.name).await? {
                    let full = format!("{catalog}.{}.{}", schema.name, info.name);
                    let kind = info.table_type.to_ascii_uppercase();
                    if !matcher.matches(&full) || !(kind == "MANAGED" || kind == "EXTERNAL") {
                        continue;
                    }
                    let uniform = info.uniform_iceberg()
                        && self
                            .uniform
                            .as_ref()
                            .is_some_and(|u| u.catalogs.contains(catalog));
                    if uniform && let Some((key, value)) = tag {
                        let tags = uc.entity_tags("tables", &full).await?;
                        if tags.get(key).is_none_or(|v| value.is_some_and(|w| v != w)) {
                            continue;
                        }
                    }
                    let iceberg_metadata = if uniform {
                        match info
                            .delta_uniform_iceberg
                            .as_ref()
                            .and_then(|u| u.metadata_location.clone())
                        {
                            Some(m) => Some(m),
                            None => uc
                                .get_table(&full)
                                .await?
                                .and_then(|t| t.delta_uniform_iceberg)
                                .and_then(|u| u.metadata_location),
                        }
                    } else {
                        None
                    };
                    out.push(MirrorSource {
                        name: full,
                        storage_location: info.storage_location.clone().unwrap_or_default(),
                        iceberg_metadata,
                        uniform,
                        unity_catalog: true,
                    });
                }
            }
        }
        Ok(out)
    }

    /// The sources for a task of `kind`.
    pub async fn sources(
        &self,
        engines: &crate::Engines,
        kind: EngineKind,
    ) -> Result<Vec<MirrorSource>, EngineError> {
        match kind {
            EngineKind::Native => self.native_sources(engines.native_engine()).await,
            EngineKind::Databricks => match engines.databricks() {
                Some(d) => self.databricks_sources(d).await,
                None => Err(EngineError::NotConfigured(
                    "mirror: this worker has no Databricks engine: its config needs the same `databricks` section".into(),
                )),
            },
        }
    }
}

/// A Snowflake error as a task failure: throttling, transport and timeouts are worth another
/// attempt; refused statements and authentication are not.
fn classify(e: &SnowflakeError, make: impl Fn(ErrorKind, bool) -> Failure) -> Failure {
    match e {
        SnowflakeError::Transport { .. } | SnowflakeError::Timeout { .. } => {
            make(ErrorKind::Transient, true)
        }
        SnowflakeError::Http { status, .. } if *status == 429 || *status >= 500 => {
            make(ErrorKind::Transient, true)
        }
        _ => make(ErrorKind::Permanent, false),
    }
}

/// What the plan leaves alone, as findings.
fn report(plan: &Plan, findings: &mut Vec<String>) {
    for n in &plan.removed {
        findings.push(format!(
            "table {n}: its source is gone; kept in Snowflake (drop_removed is off)"
        ));
    }
    for (n, has, wants) in &plan.mismatched {
        findings.push(format!(
            "table {n}: reads through catalog integration {has}, not {wants}; left alone"
        ));
    }
}

/// Each row's status after the statements ran: `created`, `in sync`, `mismatched: …`, or,
/// when a statement failed, `failed: …` for its table and `not created: …` for those after.
fn statuses(
    rows: &mut [Row],
    plan: &Plan,
    done: &[Statement],
    failed: Option<&(Statement, SnowflakeError)>,
) {
    let creates: BTreeMap<String, &Statement> = plan
        .statements
        .iter()
        .filter_map(|s| match s {
            Statement::CreateRestTable(_) | Statement::CreateDeltaTable(_) => Some((s.object(), s)),
            _ => None,
        })
        .collect();
    let mismatched: BTreeSet<String> = plan.mismatched.iter().map(|(n, _, _)| n.fqn()).collect();
    for r in rows {
        r.status = match creates.get(&r.table) {
            Some(s) if done.contains(s) => "created".into(),
            Some(s) => match failed {
                Some((f, e)) if f == *s => format!("failed: {e}"),
                _ => "not created: an earlier statement failed".into(),
            },
            None if mismatched.contains(&r.table) => {
                "mismatched: it reads through another catalog integration".into()
            }
            None => "in sync".into(),
        };
    }
}

/// Register the metadata table in the source workspace's Unity Catalog as `name` (an
/// external table over `location`) with the view `<name>_vw` over it, each only when missing.
async fn register_metadata(
    engine: &crate::DatabricksEngine,
    name: &str,
    location: &str,
) -> Result<(), String> {
    use replicator_databricks::TableName;
    let uc = &engine.pair().source;
    let err = |e: replicator_databricks::DatabricksError| format!("metadata table {name}: {e}");
    let table = TableName::parse(name).map_err(err)?;
    let view = TableName::parse(&format!("{name}_vw")).map_err(err)?;
    if uc
        .get_table(&table.full_name())
        .await
        .map_err(err)?
        .is_none()
    {
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS {} LOCATION {}",
            table.quoted(),
            replicator_databricks::ops::volumes::sql_string(location)
        );
        uc.execute(&sql).await.map_err(err)?;
    }
    if uc
        .get_table(&view.full_name())
        .await
        .map_err(err)?
        .is_none()
    {
        let sql = format!(
            "CREATE OR REPLACE VIEW {} AS SELECT * FROM {}",
            view.quoted(),
            table.quoted()
        );
        uc.execute(&sql).await.map_err(err)?;
    }
    Ok(())
}

/// The metadata table's columns.
fn metadata_schema() -> Arc<Schema> {
    let text = |n: &str, nullable: bool| Field::new(n, DataType::Utf8, nullable);
    Arc::new(Schema::new(vec![
        text("source_table", false),
        text("path", false),
        text("storage_location", false),
        text("iceberg_metadata_location", true),
        text("snowflake_integration", false),
        text("snowflake_table", false),
        text("status", false),
        Field::new(
            "synced_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
    ]))
}

/// Replace the metadata table's rows with `rows`, in one commit (the table is created on
/// the first refresh).
async fn write_metadata(
    native: &crate::NativeEngine,
    location: &str,
    rows: &[Row],
) -> Result<u64, EngineError> {
    let loc = native.resolve(location)?;
    let now = chrono::Utc::now().timestamp_micros();
    let col = |f: fn(&Row) -> Option<&str>| -> ArrayRef {
        Arc::new(rows.iter().map(f).collect::<StringArray>())
    };
    let batch = RecordBatch::try_new(
        metadata_schema(),
        vec![
            col(|r| Some(&r.source)),
            col(|r| Some(r.path)),
            col(|r| Some(&r.storage_location)),
            col(|r| r.iceberg_metadata.as_deref()),
            col(|r| Some(&r.integration)),
            col(|r| Some(&r.table)),
            col(|r| Some(&r.status)),
            Arc::new(TimestampMicrosecondArray::from(vec![now; rows.len()]).with_timezone("UTC")),
        ],
    )
    .map_err(|e| EngineError::NotConfigured(format!("metadata rows: {e}")))?;
    Ok(replicator_lake::export::replace_partition(&loc, &batch, "path", None).await?)
}
