//! The `databricks:` config section: replication between two Unity Catalog metastores by the
//! Databricks engine (`replicator-databricks`). Secrets are references, as everywhere.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, SecretRef};
use crate::retry::RetryPolicy;

/// Source and target workspaces, what to replicate, and how the two are linked.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabricksConfig {
    /// The workspace whose tables are replicated (backup runs here).
    pub source: Workspace,
    /// The workspace that receives the replicas (replication and reconciliation run here).
    pub target: Workspace,
    /// Catalogs to replicate.
    pub catalogs: Vec<CatalogMapping>,
    #[serde(default)]
    pub sharing: Sharing,
    /// Refuse to replace a target table whose schema differs from its source (the
    /// differences are reported). Streaming tables are always checked: their backing table
    /// must keep the schema their pipeline expects.
    #[serde(default = "yes")]
    pub enforce_schema: bool,
    /// Key columns for the missing-rows check, by source table (`catalog.schema.table`);
    /// tables not listed compare every column.
    #[serde(default)]
    pub reconciliation_keys: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub client: ClientTuning,
    /// How a table's files move: `warehouse` (a `DEEP CLONE` on the target's SQL warehouse,
    /// the default) or `storage` (Unity Catalog vends short-lived storage credentials for
    /// the source table and the target path, the native engine copies the files between the
    /// object stores, and the target warehouse only registers a new table). docs/databricks.md.
    #[serde(default)]
    pub clone_mode: CloneMode,
    /// `clone_mode: storage`: where a table that is new in the target is placed, under an
    /// external location of the target metastore (`s3://dr-bucket/replicas`): the table goes
    /// to `<storage_location>/<catalog>/<schema>/<table>`. An external source table whose
    /// location the `catalog.mapping` rewrites goes to its mapped location instead; a
    /// target table that exists as an external table stays where it is.
    #[serde(default)]
    pub storage_location: Option<String>,
}

/// Whether `url` is in S3 or Azure storage, where `clone_mode: storage` copies with vended
/// credentials (`s3`, `s3a`, `abfss`, `abfs`, `az`, `azure`).
pub fn in_object_storage(url: &str) -> bool {
    url.split_once("://").is_some_and(|(scheme, _)| {
        matches!(
            scheme.to_ascii_lowercase().as_str(),
            "s3" | "s3a" | "abfss" | "abfs" | "az" | "azure"
        )
    })
}

/// How the Databricks engine moves a table's files (`databricks.clone_mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CloneMode {
    /// `CREATE OR REPLACE TABLE … DEEP CLONE …` on the target warehouse.
    #[default]
    Warehouse,
    /// The native engine copies the files with credentials Unity Catalog vends; the
    /// warehouse only registers the table. Falls back to `warehouse`, saying why, when the
    /// credentials APIs refuse or the table cannot be copied that way.
    Storage,
}

impl CloneMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Warehouse => "warehouse",
            Self::Storage => "storage",
        }
    }
}

fn yes() -> bool {
    true
}

/// One workspace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workspace {
    /// `https://<workspace>.cloud.databricks.com` or `https://adb-….azuredatabricks.net`.
    pub host: String,
    /// SQL warehouse that runs the statements.
    pub warehouse_id: String,
    pub auth: WorkspaceAuth,
}

/// A personal access token, or an OAuth service principal (client credentials).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceAuth {
    #[serde(default)]
    pub token: Option<SecretRef>,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub client_secret: Option<SecretRef>,
}

/// One source catalog and the names of everything derived from it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogMapping {
    /// Catalog in the source metastore.
    pub source: String,
    /// Catalog in the target metastore (default: the source's name).
    #[serde(default)]
    pub target: Option<String>,
    /// Source-side catalog holding streaming-table backups (default `{source}_backup`).
    #[serde(default)]
    pub backup: Option<String>,
    /// Share of the source catalog's schemas (default `replicator_{source}`).
    #[serde(default)]
    pub share: Option<String>,
    /// Share of the backup catalog's schemas (default `replicator_{source}_backup`).
    #[serde(default)]
    pub backup_share: Option<String>,
    /// Target-side catalog created from `share` (default `{source}_shared`).
    #[serde(default)]
    pub shared: Option<String>,
    /// Target-side catalog created from `backup_share` (default `{source}_backup_shared`).
    #[serde(default)]
    pub shared_backup: Option<String>,
    /// Schemas to replicate; empty means all (`information_schema` is never replicated).
    #[serde(default)]
    pub schemas: Vec<String>,
}

impl CatalogMapping {
    pub fn target(&self) -> String {
        self.target.clone().unwrap_or_else(|| self.source.clone())
    }
    pub fn backup(&self) -> String {
        self.backup
            .clone()
            .unwrap_or_else(|| format!("{}_backup", self.source))
    }
    pub fn share(&self) -> String {
        self.share
            .clone()
            .unwrap_or_else(|| format!("replicator_{}", self.source))
    }
    pub fn backup_share(&self) -> String {
        self.backup_share
            .clone()
            .unwrap_or_else(|| format!("replicator_{}_backup", self.source))
    }
    pub fn shared(&self) -> String {
        self.shared
            .clone()
            .unwrap_or_else(|| format!("{}_shared", self.source))
    }
    pub fn shared_backup(&self) -> String {
        self.shared_backup
            .clone()
            .unwrap_or_else(|| format!("{}_backup_shared", self.source))
    }
}

/// Whether replicator creates the Delta Sharing objects or uses existing ones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SharingMode {
    /// Create what is missing: recipient, shares, schemas in shares, grants, shared catalogs.
    #[default]
    Auto,
    /// Bring your own: everything must exist; replicator only checks it.
    Byo,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Sharing {
    pub mode: SharingMode,
    /// Recipient (in the source metastore) for the target metastore.
    pub recipient: String,
    /// Provider name of the source metastore as the target sees it; found by the source's
    /// global metastore ID when absent.
    pub provider: Option<String>,
}

impl Default for Sharing {
    fn default() -> Self {
        Self {
            mode: SharingMode::Auto,
            recipient: "replicator".into(),
            provider: None,
        }
    }
}

/// Client timing; the defaults suit real workspaces.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientTuning {
    /// Interval between polls of a running statement.
    pub poll_interval_ms: u64,
    /// A statement running longer is cancelled and its table fails.
    pub statement_timeout_ms: u64,
    /// Server-side wait on submit: 0 or 5 to 50 seconds.
    pub wait_timeout_s: u64,
    /// Longest wait a `Retry-After` header is honoured for.
    pub max_retry_after_ms: u64,
    pub request_timeout_ms: u64,
    /// Unity Catalog listing page size.
    pub page_size: u32,
    /// Retries of throttled (429/503) and failed (5xx) requests.
    pub retry: RetryPolicy,
    /// Tables processed at once by the `replicator databricks` command.
    pub concurrency: usize,
}

impl Default for ClientTuning {
    fn default() -> Self {
        Self {
            poll_interval_ms: 1_000,
            statement_timeout_ms: 2 * 3600 * 1000,
            wait_timeout_s: 10,
            max_retry_after_ms: 120_000,
            request_timeout_ms: 60_000,
            page_size: 100,
            retry: RetryPolicy {
                max_attempts: 8,
                base_delay_ms: 500,
                max_delay_ms: 30_000,
            },
            concurrency: 4,
        }
    }
}

impl DatabricksConfig {
    /// The source and target roots of this section: `databricks:<workspace URL>`.
    pub fn roots(&self) -> (String, String) {
        let root = |host: &str| format!("databricks:{}", host.trim_end_matches('/'));
        (root(&self.source.host), root(&self.target.host))
    }

    /// Checks beyond types: secrets are references, each workspace has one way to log in.
    /// Keys are relative to the section (`source.host`); [`crate::Config::validate`] places
    /// them under `databricks`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (side, ws) in [("source", &self.source), ("target", &self.target)] {
            ws.validate().map_err(|e| e.within(side))?;
        }
        if self.catalogs.is_empty() {
            return Err(ConfigError::key("catalogs", "list at least one catalog"));
        }
        if self.client.concurrency == 0 {
            return Err(ConfigError::key("client.concurrency", "must be at least 1"));
        }
        if self.sharing.recipient.trim().is_empty() {
            return Err(ConfigError::key("sharing.recipient", "must not be empty"));
        }
        if let Some(at) = &self.storage_location
            && (!in_object_storage(at) || at.split('/').any(|s| s == ".." || s == "."))
        {
            return Err(ConfigError::key(
                "storage_location",
                "must be an s3:// or abfss:// URL of an external location, without `.` or `..` segments",
            ));
        }
        Ok(())
    }
}

impl Workspace {
    /// An http(s) host, a warehouse, and one way to log in.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.host.starts_with("https://") && !self.host.starts_with("http://") {
            return Err(ConfigError::key("host", "must be an https:// URL"));
        }
        if self.warehouse_id.trim().is_empty() {
            return Err(ConfigError::key("warehouse_id", "must not be empty"));
        }
        self.auth.validate().map_err(|e| e.within("auth"))
    }
}

impl WorkspaceAuth {
    /// Either a token or a service principal (id and secret), with references that name
    /// one source each.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match (&self.token, &self.client_id, &self.client_secret) {
            (Some(_), None, None) | (None, Some(_), Some(_)) => {}
            _ => {
                return Err(ConfigError::key(
                    "",
                    "give either `token` or both `client_id` and `client_secret`",
                ));
            }
        }
        for s in self.token.iter().chain(&self.client_secret) {
            if s.env.is_some() == s.file.is_some() {
                return Err(ConfigError::key(
                    "",
                    "a secret reference needs exactly one of `env` or `file`",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    const BASE: &str = "databricks:\n  source: { host: https://a.example.com, warehouse_id: w1, auth: { token: { env: SRC_TOKEN } } }\n  target: { host: https://b.example.com, warehouse_id: w2, auth: { client_id: sp, client_secret: { file: /s } } }\n  catalogs: [ { source: prod } ]\n";

    fn load(text: &str) -> Result<Config, crate::ConfigError> {
        Config::from_yaml(text, Vec::new(), &[])
    }

    #[test]
    fn a_databricks_only_config_needs_no_roots_and_derives_names() {
        let c = load(BASE).unwrap();
        let d = c.databricks.unwrap();
        let m = &d.catalogs[0];
        assert_eq!(
            (
                m.target(),
                m.backup(),
                m.share(),
                m.shared(),
                m.shared_backup()
            ),
            (
                "prod".to_owned(),
                "prod_backup".to_owned(),
                "replicator_prod".to_owned(),
                "prod_shared".to_owned(),
                "prod_backup_shared".to_owned()
            )
        );
        assert!(d.enforce_schema);
        // Without the section, the roots are still required.
        assert!(load("log: { level: info }\n").is_err());
    }

    #[test]
    fn secrets_must_be_references_and_auth_unambiguous() {
        let inline = BASE.replace("{ token: { env: SRC_TOKEN } }", "{ token: dapi123 }");
        let err = load(&inline).unwrap_err().to_string();
        assert!(err.contains("databricks.source.auth.token"), "{err}");
        let both = BASE.replace(
            "{ token: { env: SRC_TOKEN } }",
            "{ token: { env: T }, client_id: x, client_secret: { env: S } }",
        );
        let err = load(&both).unwrap_err().to_string();
        assert!(err.contains("databricks.source.auth"), "{err}");
        let unknown = BASE.replace("warehouse_id: w1", "warehouse: w1");
        let err = load(&unknown).unwrap_err().to_string();
        assert!(err.contains("warehouse"), "{err}");
        let no_catalogs = BASE.replace("catalogs: [ { source: prod } ]", "catalogs: []");
        assert!(
            load(&no_catalogs)
                .unwrap_err()
                .to_string()
                .contains("databricks.catalogs")
        );
    }

    #[test]
    fn each_rule_names_its_key() {
        for (from, to, message) in [
            (
                "host: https://a.example.com",
                "host: a.example.com",
                "`databricks.source.host`: must be an https:// URL",
            ),
            (
                "warehouse_id: w2",
                "warehouse_id: \" \"",
                "`databricks.target.warehouse_id`: must not be empty",
            ),
            (
                "{ token: { env: SRC_TOKEN } }",
                "{ client_id: sp }",
                "`databricks.source.auth`: give either `token` or both",
            ),
            (
                "{ client_id: sp, client_secret: { file: /s } }",
                "{ client_secret: { file: /s } }",
                "`databricks.target.auth`: give either `token` or both",
            ),
            (
                "{ token: { env: SRC_TOKEN } }",
                "{ token: { env: SRC_TOKEN, file: /t } }",
                "`databricks.source.auth`: a secret reference needs exactly one",
            ),
            (
                "client_secret: { file: /s }",
                "client_secret: {}",
                "`databricks.target.auth`: a secret reference needs exactly one",
            ),
            (
                "catalogs: [ { source: prod } ]",
                "catalogs: [ { source: prod } ]\n  client: { concurrency: 0 }",
                "`databricks.client.concurrency`: must be at least 1",
            ),
            (
                "catalogs: [ { source: prod } ]",
                "catalogs: [ { source: prod } ]\n  sharing: { recipient: \"\" }",
                "`databricks.sharing.recipient`: must not be empty",
            ),
            (
                "catalogs: [ { source: prod } ]",
                "catalogs: [ { source: prod } ]\n  sharing: { mode: manual }",
                "`databricks.sharing.mode`: unknown variant `manual`",
            ),
        ] {
            let text = BASE.replacen(from, to, 1);
            assert_ne!(text, BASE, "{from}");
            let err = load(&text).unwrap_err().to_string();
            assert!(err.contains(message), "{to}: {err}");
        }
    }

    #[test]
    fn defaults_and_overrides() {
        let c = load(BASE).unwrap().databricks.unwrap();
        assert_eq!(c.sharing, Sharing::default());
        assert_eq!(c.client, ClientTuning::default());
        assert!(c.validate().is_ok());
        let c = Config::from_yaml(
            BASE,
            vec![(
                "REPLICATOR__DATABRICKS__SHARING__MODE".to_owned(),
                "byo".to_owned(),
            )],
            &["databricks.client.concurrency=9".into()],
        )
        .unwrap()
        .databricks
        .unwrap();
        assert_eq!(
            (c.sharing.mode, c.client.concurrency),
            (SharingMode::Byo, 9)
        );
        let err = Config::from_yaml(
            BASE,
            Vec::new(),
            &["databricks.client.concurrency=0".into()],
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "config key `databricks.client.concurrency`: must be at least 1"
        );
    }
}
