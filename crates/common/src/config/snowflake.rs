//! The `snowflake` section: mirror the lakehouse's tables into Snowflake as Iceberg tables
//! that read them in place (docs/snowflake.md). UniForm tables of Unity Catalog go through
//! one Iceberg REST catalog integration per catalog (`uniform`); other Delta tables — the
//! native engine's replicas, Databricks tables without UniForm — through a Delta catalog
//! integration over an external volume (`delta`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{ConfigError, SecretRef, Tables};

/// `snowflake`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnowflakeConfig {
    /// Account identifier: `myorg-myaccount`, or an account locator (`xy12345.us-east-1`).
    pub account: String,
    /// The user the key pair belongs to.
    pub user: String,
    /// The RSA private key (PEM, PKCS#8 encrypted or not): `{ file: PATH }` or `{ env: VAR }`.
    pub private_key: SecretRef,
    /// The passphrase of an encrypted key.
    #[serde(default)]
    pub private_key_passphrase: Option<SecretRef>,
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub warehouse: Option<String>,
    /// The SQL API's base URL; `https://<account>.snowflakecomputing.com` when absent.
    #[serde(default)]
    pub url: Option<String>,
    /// Drop Iceberg tables whose source table is gone (otherwise they are reported, kept).
    #[serde(default)]
    pub drop_removed: bool,
    /// `AUTO_REFRESH` of each Iceberg table.
    #[serde(default = "yes")]
    pub auto_refresh: bool,
    /// `REFRESH_INTERVAL_SECONDS` of each catalog integration (Snowflake's default when absent).
    #[serde(default)]
    pub refresh_interval_seconds: Option<u32>,
    /// Where the mirror keeps its metadata table (a Delta table location: a path, `s3://…`,
    /// `az://…`), one row per mirrored table. None: no metadata table.
    #[serde(default)]
    pub metadata_table: Option<String>,
    /// With the Databricks engine: register the metadata table in the source workspace's
    /// Unity Catalog under this `catalog.schema.table` (an external table over
    /// `metadata_table`), with a `<name>_vw` view over it, as the seed's utility keeps them.
    #[serde(default)]
    pub metadata_table_name: Option<String>,
    /// Which source tables to mirror: globs over `catalog.schema.table` (Databricks) or the
    /// table's path under `delta.location` with `/` as `.` (native).
    #[serde(default)]
    pub tables: Tables,
    /// Snowflake database per Unity Catalog catalog (default: the catalog's own name).
    #[serde(default)]
    pub databases: BTreeMap<String, String>,
    /// UniForm tables of Unity Catalog, read through its Iceberg REST endpoint.
    #[serde(default)]
    pub uniform: Option<UniformSettings>,
    /// Delta tables read from their files.
    #[serde(default)]
    pub delta: Option<DeltaSettings>,
    /// How the SQL API client polls and retries.
    #[serde(default)]
    pub client: SnowflakeClient,
}

/// `snowflake.client`: polling and retries of the SQL API client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SnowflakeClient {
    /// How long one statement may take, polls included.
    pub statement_timeout_ms: u64,
    /// First interval between polls of a running statement (doubles up to `max_poll_interval_ms`).
    pub poll_interval_ms: u64,
    pub max_poll_interval_ms: u64,
    /// Attempts of one request when throttled (429), unavailable (5xx) or unreachable.
    pub max_attempts: u32,
    /// Backoff before the first retry (doubles up to `max_delay_ms`); a longer
    /// `Retry-After` wins, up to `max_retry_after_ms`.
    pub base_delay_ms: u64,
    pub max_delay_ms: u64,
    pub max_retry_after_ms: u64,
    /// Timeout of one HTTP request.
    pub request_timeout_ms: u64,
}

impl Default for SnowflakeClient {
    fn default() -> Self {
        Self {
            statement_timeout_ms: 600_000,
            poll_interval_ms: 500,
            max_poll_interval_ms: 10_000,
            max_attempts: 8,
            base_delay_ms: 500,
            max_delay_ms: 30_000,
            max_retry_after_ms: 120_000,
            request_timeout_ms: 60_000,
        }
    }
}

/// `snowflake.uniform`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UniformSettings {
    /// Unity Catalog catalogs to mirror (default: `databricks.catalogs`' sources).
    #[serde(default)]
    pub catalogs: Vec<String>,
    /// Catalog integration names are this prefix and the catalog's name, upper-cased.
    #[serde(default = "uc_prefix")]
    pub integration_prefix: String,
    /// The Iceberg REST endpoint (default: `<source workspace>/api/2.1/unity-catalog/iceberg-rest`).
    #[serde(default)]
    pub catalog_uri: Option<String>,
    /// The OAuth token endpoint (default: `<source workspace>/oidc/v1/token`).
    #[serde(default)]
    pub oauth_token_uri: Option<String>,
    /// The service principal Snowflake authenticates as.
    pub oauth_client_id: String,
    pub oauth_client_secret: SecretRef,
    #[serde(default = "all_apis")]
    pub scopes: Vec<String>,
    /// Only tables carrying this Unity Catalog tag (`name` or `name=value`) are eligible.
    #[serde(default)]
    pub discovery_tag: Option<String>,
}

/// `snowflake.delta`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeltaSettings {
    /// The external volume's base location; tables under it are mirrored (default on the
    /// native engine: `target.root`).
    #[serde(default)]
    pub location: Option<String>,
    pub external_volume: String,
    pub integration: String,
    /// The Snowflake database of the native engine's tables.
    #[serde(default)]
    pub database: Option<String>,
    /// The schema of tables directly under `location` (deeper ones: their directories).
    #[serde(default = "public")]
    pub schema: String,
    /// S3: the IAM role Snowflake assumes, and its external ID.
    #[serde(default)]
    pub storage_aws_role_arn: Option<String>,
    #[serde(default)]
    pub storage_aws_external_id: Option<String>,
    /// Azure: the storage account's tenant.
    #[serde(default)]
    pub azure_tenant_id: Option<String>,
}

fn yes() -> bool {
    true
}
fn uc_prefix() -> String {
    "UC_".into()
}
fn all_apis() -> Vec<String> {
    vec!["all-apis".into()]
}
fn public() -> String {
    "PUBLIC".into()
}

impl SnowflakeConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.account.trim().is_empty() {
            return Err(ConfigError::key("account", "must not be empty"));
        }
        if self.user.trim().is_empty() {
            return Err(ConfigError::key("user", "must not be empty"));
        }
        self.private_key
            .validate()
            .map_err(|e| e.within("private_key"))?;
        if let Some(p) = &self.private_key_passphrase {
            p.validate()
                .map_err(|e| e.within("private_key_passphrase"))?;
        }
        if let Some(url) = &self.url
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            return Err(ConfigError::key("url", "must be an http(s) URL"));
        }
        if let Some(m) = &self.metadata_table
            && m.trim().is_empty()
        {
            return Err(ConfigError::key("metadata_table", "must not be empty"));
        }
        if let Some(name) = &self.metadata_table_name {
            if self.metadata_table.is_none() {
                return Err(ConfigError::key(
                    "metadata_table_name",
                    "needs `metadata_table`, the location the registered table reads",
                ));
            }
            if name.split('.').count() != 3 || name.split('.').any(str::is_empty) {
                return Err(ConfigError::key(
                    "metadata_table_name",
                    format!("`{name}` is not a catalog.schema.table name"),
                ));
            }
        }
        self.tables.validate().map_err(|e| e.within("tables"))?;
        let c = &self.client;
        if c.max_attempts == 0 {
            return Err(ConfigError::key(
                "client.max_attempts",
                "must be at least 1",
            ));
        }
        if c.statement_timeout_ms == 0 || c.poll_interval_ms == 0 || c.request_timeout_ms == 0 {
            return Err(ConfigError::key(
                "client",
                "statement_timeout_ms, poll_interval_ms and request_timeout_ms must be more than 0",
            ));
        }
        if self.uniform.is_none() && self.delta.is_none() {
            return Err(ConfigError::key(
                "uniform",
                "the section mirrors nothing: give `uniform` (UniForm tables of Unity Catalog), `delta` (Delta tables read from their files), or both",
            ));
        }
        if let Some(u) = &self.uniform {
            u.oauth_client_secret
                .validate()
                .map_err(|e| e.within("uniform.oauth_client_secret"))?;
            if u.oauth_client_id.trim().is_empty() {
                return Err(ConfigError::key(
                    "uniform.oauth_client_id",
                    "must not be empty",
                ));
            }
            if u.scopes.is_empty() {
                return Err(ConfigError::key(
                    "uniform.scopes",
                    "needs at least one scope",
                ));
            }
        }
        if let Some(d) = &self.delta {
            for (key, v) in [
                ("delta.external_volume", &d.external_volume),
                ("delta.integration", &d.integration),
            ] {
                if v.trim().is_empty() {
                    return Err(ConfigError::key(key, "must not be empty"));
                }
            }
        }
        Ok(())
    }

    /// Make a relative key file, metadata table and Delta location absolute against `base`.
    pub(super) fn resolve_paths(&mut self, resolve: impl Fn(&str) -> Option<String>) {
        if let Some(p) = &self.private_key.file
            && let Some(abs) = resolve(&p.to_string_lossy())
        {
            self.private_key.file = Some(PathBuf::from(abs));
        }
        if let Some(pp) = &mut self.private_key_passphrase
            && let Some(p) = &pp.file
            && let Some(abs) = resolve(&p.to_string_lossy())
        {
            pp.file = Some(PathBuf::from(abs));
        }
        if let Some(m) = self.metadata_table.as_deref().and_then(&resolve) {
            self.metadata_table = Some(m);
        }
        if let Some(d) = &mut self.delta
            && let Some(l) = d.location.as_deref().and_then(&resolve)
        {
            d.location = Some(l);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;

    fn load(section: &str) -> Result<Config, crate::ConfigError> {
        Config::from_yaml(
            &format!("source: {{ root: /s }}\ntarget: {{ root: /t }}\nsnowflake: {section}\n"),
            std::iter::empty(),
            &[],
        )
    }

    const KEY: &str = "account: myorg-acct, user: svc, private_key: { file: /k.p8 }";

    #[test]
    fn a_delta_mirror_needs_its_volume_and_integration() {
        let c = load(&format!(
            "{{ {KEY}, delta: {{ external_volume: VOL, integration: DELTA_INT }} }}"
        ))
        .unwrap();
        let s = c.snowflake.unwrap();
        assert!(s.auto_refresh && !s.drop_removed);
        assert_eq!(s.delta.unwrap().schema, "PUBLIC");
        let err = load(&format!(
            "{{ {KEY}, delta: {{ external_volume: '', integration: D }} }}"
        ))
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "config key `snowflake.delta.external_volume`: must not be empty"
        );
    }

    #[test]
    fn secrets_are_references_and_something_is_mirrored() {
        let err = load(&format!("{{ {KEY} }}")).unwrap_err().to_string();
        assert!(
            err.starts_with("config key `snowflake.uniform`: the section mirrors nothing"),
            "{err}"
        );
        let err = load(&format!(
            "{{ {KEY}, uniform: {{ oauth_client_id: sp, oauth_client_secret: 'hunter2' }} }}"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("oauth_client_secret") && err.contains("secret reference"),
            "{err}"
        );
        assert!(!err.contains("hunter2"), "{err}");
        let c = load(&format!(
            "{{ {KEY}, uniform: {{ oauth_client_id: sp, oauth_client_secret: {{ env: UC_SECRET }} }} }}"
        ))
        .unwrap();
        let u = c.snowflake.unwrap().uniform.unwrap();
        assert_eq!(u.integration_prefix, "UC_");
        assert_eq!(u.scopes, ["all-apis"]);
    }
}
