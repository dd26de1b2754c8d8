//! The replicator configuration.
//!
//! One YAML file, validated before anything connects:
//! - unknown keys are errors that name the key (`concurrency.colners: unknown field ...`);
//! - every value can be overridden by an environment variable `REPLICATOR__SECTION__KEY`
//!   (`REPLICATOR__CONCURRENCY__CLONERS=4`; values are parsed as YAML scalars) and then by
//!   CLI `--set section.key=value` flags, in that order;
//! - secrets are references ([`SecretRef`]: an environment variable or a file), never inline.
//!
//! Relative paths in a config file (`source.root`, `target.root`, a `sqlite://` state file)
//! resolve against the directory of that file.
//!
//! One module per section, each with its types and a `validate` whose error keys are
//! relative to the section ([`ConfigError::within`] places them); [`Config::validate`] runs
//! them in order. Loading and overrides are in `load`, the size and nesting pre-scan in
//! `shape`, error messages in `error`, secret references in `secret`; a DR sync job's JSON
//! file is converted by `seed` (see [`seed::import`]). A value from a fixed
//! list is an enum with its YAML spelling from serde (`rename_all`); an unknown word is
//! refused in one line that names the key and the accepted words.

use std::path::PathBuf;

use replicator_proto::Operation;
use serde::{Deserialize, Serialize};

use crate::retry::RetryPolicy;

mod bus;
mod catalog;
mod clone;
mod concurrency;
mod console;
mod endpoint;
mod error;
mod ingest;
mod lineage;
mod load;
mod log;
mod notifications;
mod reconciliation;
mod request;
mod retry;
mod secret;
pub mod seed;
mod shape;
mod snowflake;
mod state;
mod sync;
mod tables;

pub use bus::{BusBackend, BusConfig};
pub use catalog::{CatalogSettings, ExternalTables, GrantsSettings, VolumeSettings};
pub use clone::CloneSettings;
pub use concurrency::Concurrency;
pub use console::ConsoleConfig;
pub use endpoint::Endpoint;
pub use error::ConfigError;
pub use ingest::IngestConfig;
pub use lineage::{DEFAULT_LINEAGE_ENDPOINT, LineageConfig};
pub use load::ENV_PREFIX;
pub use log::{Log, LogFormat};
pub use notifications::{
    Email, Group, Notifications, Smtp, SmtpSecurity, Webhook, WebhookFormat, When,
};
pub use reconciliation::{OnMismatch, Period, Reconciliation, TableChecks, TableReconciliation};
pub use secret::{SecretRef, StorageValue};
pub use shape::{MAX_CONFIG_BYTES, MAX_NESTING};
pub use snowflake::{DeltaSettings, SnowflakeClient, SnowflakeConfig, UniformSettings};
pub use state::State;
pub use sync::{Schedule, SyncConfig, SyncGroup, SyncNotify};
pub use tables::Tables;

/// The whole configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Config format version (only 1 exists).
    #[serde(default = "one")]
    pub version: u32,
    /// Where the source tables live (not needed with a `databricks` section only).
    #[serde(default)]
    pub source: Endpoint,
    /// Where the replicas are written (not needed with a `databricks` section only).
    #[serde(default)]
    pub target: Endpoint,
    /// Which tables to replicate.
    #[serde(default)]
    pub tables: Tables,
    /// Default operation for `replicator run` (the CLI's `--operation` wins).
    #[serde(default)]
    pub operation: Operation,
    /// What a clone may overwrite and read (`clone.replace`, `clone.external_roots`).
    #[serde(default, rename = "clone")]
    pub cloning: CloneSettings,
    #[serde(default)]
    pub concurrency: Concurrency,
    /// Retry policy for clone and validation attempts.
    #[serde(default)]
    pub retry: RetryPolicy,
    #[serde(default)]
    pub bus: BusConfig,
    #[serde(default)]
    pub reconciliation: Reconciliation,
    #[serde(default)]
    pub notifications: Notifications,
    #[serde(default)]
    pub state: State,
    #[serde(default)]
    pub log: Log,
    /// Replication between Unity Catalog metastores by the Databricks engine.
    #[serde(default)]
    pub databricks: Option<crate::databricks::DatabricksConfig>,
    /// Disaster-recovery sync groups (docs/sync.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncConfig>,
    /// Carry the catalog's other objects too: schemas, views, volumes, grants, tags
    /// (docs/catalog.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog: Option<CatalogSettings>,
    /// Sources of rows (databases, files) loaded into Delta tables under `target.root`
    /// (docs/ingest.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingest: Option<IngestConfig>,
    /// The operator console (docs/console.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console: Option<ConsoleConfig>,
    /// Mirror tables into Snowflake as Iceberg tables that read them in place
    /// (docs/snowflake.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snowflake: Option<SnowflakeConfig>,
    /// Where OpenLineage events go: a `RunEvent` per task start, completion and failure
    /// (docs/lineage.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lineage: Option<LineageConfig>,
    /// The file this config was loaded from (absolute when it exists), set by
    /// [`Config::load`]; never read from YAML. The notifier names it in its digests.
    #[serde(skip)]
    pub file: Option<PathBuf>,
}

fn one() -> u32 {
    1
}

/// Deserialize a config enum from one word, spelled as its serde derive says
/// (`rename_all`); any other word is refused with `refuse(word)`, one line naming the
/// accepted words (serde's path adds the key). A value that is not a string keeps serde's
/// type error.
fn one_of<'de, D, T>(d: D, refuse: fn(&str) -> String) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    use serde::de::{Error, IntoDeserializer};
    let word = String::deserialize(d)?;
    T::deserialize(word.as_str().into_deserializer())
        .map_err(|_: serde::de::value::Error| D::Error::custom(refuse(&word)))
}

impl Config {
    /// Checks that need more than types, section by section. Runs before anything
    /// connects; the first refusal is returned, naming its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.version != 1 {
            return Err(ConfigError::key(
                "version",
                format!("unsupported config version {}", self.version),
            ));
        }
        if let Some(d) = &self.databricks {
            d.validate().map_err(|e| e.within("databricks"))?;
        }
        // The native engine needs both roots; a `databricks` section alone needs neither,
        // and an `ingest` section needs only the target's.
        let native = self.databricks.is_none() || !self.source.root.trim().is_empty();
        if native && self.source.root.trim().is_empty() && self.ingest.is_none() {
            return Err(ConfigError::key("source.root", "must not be empty"));
        }
        self.source.validate().map_err(|e| e.within("source"))?;
        self.target.validate().map_err(|e| e.within("target"))?;
        if native && self.target.root.trim().is_empty() {
            return Err(ConfigError::key("target.root", "must not be empty"));
        }
        self.concurrency
            .validate()
            .map_err(|e| e.within("concurrency"))?;
        self.cloning.validate().map_err(|e| e.within("clone"))?;
        self.retry.validate().map_err(|e| e.within("retry"))?;
        self.reconciliation
            .validate()
            .map_err(|e| e.within("reconciliation"))?;
        self.bus.validate().map_err(|e| e.within("bus"))?;
        self.tables.validate().map_err(|e| e.within("tables"))?;
        self.notifications
            .validate()
            .map_err(|e| e.within("notifications"))?;
        self.state.validate().map_err(|e| e.within("state"))?;
        // Only the section's own rules: a group with a problem is reported and skipped
        // when syncing (`SyncConfig::check_groups`), it does not refuse the config.
        if let Some(sync) = &self.sync {
            sync.validate().map_err(|e| e.within("sync"))?;
        }
        if let Some(ingest) = &self.ingest {
            ingest.validate().map_err(|e| e.within("ingest"))?;
        }
        if let Some(console) = &self.console {
            console.validate().map_err(|e| e.within("console"))?;
        }
        if let Some(snowflake) = &self.snowflake {
            snowflake.validate().map_err(|e| e.within("snowflake"))?;
        }
        if let Some(lineage) = &self.lineage {
            lineage.validate().map_err(|e| e.within("lineage"))?;
        }
        if let Some(catalog) = &self.catalog {
            catalog.validate().map_err(|e| e.within("catalog"))?;
            // Tables go where `databricks.catalogs` says; the catalog's other objects must
            // go to the same place.
            for c in self.databricks.iter().flat_map(|d| &d.catalogs) {
                if let Some(t) = catalog.mapping.catalogs.get(&c.source)
                    && *t != c.target()
                {
                    return Err(ConfigError::key(
                        format!("catalog.mapping.catalogs.{}", c.source),
                        format!(
                            "maps `{}` to `{t}`, but databricks.catalogs replicates its tables to `{}`",
                            c.source,
                            c.target()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// What the section modules' tests share.
#[cfg(test)]
pub(crate) mod test_support {
    pub const MINIMAL: &str = "source: { root: ./lake/source }\ntarget: { root: ./lake/target }\ntables: { include: [\"*\"], exclude: [] }\n";

    pub fn none() -> Vec<(String, String)> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{MINIMAL, none};
    use super::*;

    #[test]
    fn minimal_config_gets_defaults() {
        let c = Config::from_yaml(MINIMAL, none(), &[]).unwrap();
        assert_eq!(c.source.root, "./lake/source");
        assert_eq!(c.concurrency, Concurrency::default());
        assert_eq!(c.operation, Operation::All);
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = Config::from_yaml(
            &format!("{MINIMAL}concurrency: {{ colners: 3 }}\n"),
            none(),
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("concurrency") && err.contains("colners"),
            "{err}"
        );
        let err = Config::from_yaml(&format!("{MINIMAL}bogus: 1\n"), none(), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("bogus"), "{err}");
    }

    #[test]
    fn only_version_one_exists() {
        assert_eq!(Config::from_yaml(MINIMAL, none(), &[]).unwrap().version, 1);
        let err = Config::from_yaml(MINIMAL, none(), &["version=2".into()])
            .unwrap_err()
            .to_string();
        assert_eq!(err, "config key `version`: unsupported config version 2");
    }

    #[test]
    fn the_native_engine_needs_both_roots() {
        for (set, key) in [
            ("source.root=''", "source.root"),
            ("target.root=' '", "target.root"),
        ] {
            let err = Config::from_yaml(MINIMAL, none(), &[set.into()])
                .unwrap_err()
                .to_string();
            assert_eq!(err, format!("config key `{key}`: must not be empty"));
        }
        // With a `databricks` section and no source root, neither root is needed; with a
        // source root, the target root still is.
        let databricks = "databricks:\n  source: { host: https://a, warehouse_id: w, auth: { token: { env: T } } }\n  target: { host: https://b, warehouse_id: w, auth: { token: { env: T } } }\n  catalogs: [ { source: prod } ]\n";
        assert!(Config::from_yaml(databricks, none(), &[]).is_ok());
        let err = Config::from_yaml(databricks, none(), &["source.root=/s".into()])
            .unwrap_err()
            .to_string();
        assert_eq!(err, "config key `target.root`: must not be empty");
    }

    #[test]
    fn the_operation_is_one_of_three_words() {
        let c = Config::from_yaml(MINIMAL, none(), &["operation=reconciliation".into()]).unwrap();
        assert_eq!(c.operation, Operation::Reconciliation);
        let err = Config::from_yaml(MINIMAL, none(), &["operation=both".into()])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("config key `operation`: unknown variant `both`"),
            "{err}"
        );
    }

    #[test]
    fn a_config_serializes_to_one_that_loads_the_same() {
        let text = format!(
            "{MINIMAL}bus: {{ backend: kafka }}\nlog: {{ format: json }}\nreconciliation: {{ deep_every: 6h }}\n"
        );
        let c = Config::from_yaml(&text, none(), &[]).unwrap();
        let again = Config::from_yaml(&serde_yaml::to_string(&c).unwrap(), none(), &[]).unwrap();
        assert_eq!(again, c);
    }
}
