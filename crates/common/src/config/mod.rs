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

use std::io::Read;
use std::path::{Path, PathBuf};

use replicator_proto::{Operation, TableFilter};
use serde::{Deserialize, Serialize};
use serde_yaml::Value;

use crate::retry::RetryPolicy;

/// Prefix of environment overrides.
pub const ENV_PREFIX: &str = "REPLICATOR__";

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
    /// The file this config was loaded from (absolute when it exists), set by
    /// [`Config::load`]; never read from YAML. The notifier names it in its digests.
    #[serde(skip)]
    pub file: Option<PathBuf>,
}

fn one() -> u32 {
    1
}

/// A root holding Delta tables: a local path or a `file://` URL.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    pub root: String,
    /// Object store options for an `s3://`, `az://` or `abfss://` root (object_store keys such
    /// as `aws_region`, `aws_endpoint`, `azure_storage_account_name`). Secrets must be
    /// references: `aws_secret_access_key: { env: PROD_AWS_SECRET }`. The standard
    /// environment variables (`AWS_*`, `AZURE_*`) apply underneath.
    #[serde(default)]
    pub storage: std::collections::BTreeMap<String, StorageValue>,
}

/// A value given inline or read from a secret reference: a storage option, a broker URL,
/// a webhook URL. A string, number or boolean is `Plain`; a map is a [`SecretRef`].
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum StorageValue {
    Plain(String),
    Secret(SecretRef),
}

impl StorageValue {
    /// The value, read from its reference when it is one. Errors never contain the value.
    pub fn resolve(&self) -> Result<String, ConfigError> {
        match self {
            Self::Plain(v) => Ok(v.clone()),
            Self::Secret(s) => s.resolve(),
        }
    }
}

impl From<String> for StorageValue {
    fn from(v: String) -> Self {
        Self::Plain(v)
    }
}

impl From<&str> for StorageValue {
    fn from(v: &str) -> Self {
        Self::Plain(v.to_owned())
    }
}

impl<'de> Deserialize<'de> for StorageValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = StorageValue;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string, or a secret reference ({ env: NAME } or { file: PATH })")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<StorageValue, E> {
                Ok(StorageValue::Plain(v.to_owned()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<StorageValue, E> {
                Ok(StorageValue::Plain(v))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<StorageValue, E> {
                Ok(StorageValue::Plain(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<StorageValue, E> {
                Ok(StorageValue::Plain(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<StorageValue, E> {
                Ok(StorageValue::Plain(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<StorageValue, E> {
                Ok(StorageValue::Plain(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<StorageValue, A::Error> {
                secret_from_map(map).map(StorageValue::Secret)
            }
        }
        d.deserialize_any(Visit)
    }
}

/// Storage option keys whose values are credentials: they must be references.
fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "secret",
        "password",
        "token",
        "access_key",
        "account_key",
        "sas",
        "client_secret",
    ]
    .iter()
    .any(|s| k.contains(s))
        && !k.ends_with("_id")
        && !k.ends_with("_file")
}

impl Endpoint {
    /// The storage options with secrets read from their references.
    pub fn storage_options(
        &self,
    ) -> Result<std::collections::BTreeMap<String, String>, ConfigError> {
        self.storage
            .iter()
            .map(|(k, v)| match v {
                StorageValue::Plain(p) => Ok((k.clone(), p.clone())),
                StorageValue::Secret(s) => Ok((k.clone(), s.resolve()?)),
            })
            .collect()
    }
}

/// Include/exclude glob patterns over dotted table names.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tables {
    #[serde(default = "all_tables")]
    pub include: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
}

fn all_tables() -> Vec<String> {
    vec!["*".into()]
}

impl Default for Tables {
    fn default() -> Self {
        Self {
            include: all_tables(),
            exclude: Vec::new(),
        }
    }
}

impl From<&Tables> for TableFilter {
    fn from(t: &Tables) -> Self {
        TableFilter {
            include: t.include.clone(),
            exclude: t.exclude.clone(),
        }
    }
}

/// What clones may overwrite and read.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CloneSettings {
    /// Replace a target that is a Delta table not cloned from its source (as Databricks'
    /// `CREATE OR REPLACE`). Off by default: such a table fails permanently, untouched.
    pub replace: bool,
    /// Roots outside the source tables that absolute paths in a source's Delta log may
    /// reference (shallow clones' sources, tables with files elsewhere). Only files in the
    /// source's own store are ever read; a `file://` path never for a table in an object
    /// store. Relative local paths resolve against the config file's directory.
    pub external_roots: Vec<String>,
}

/// How much work runs at once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Concurrency {
    /// Tables cloned at once.
    pub cloners: usize,
    /// Tables validated at once.
    pub reconcilers: usize,
    /// Files copied at once within one clone.
    pub copy_parallelism: usize,
    /// Lease on a target while a cloner works on it, in milliseconds (renewed every third
    /// of it; a killed cloner frees its table after at most this long).
    pub lease_ttl_ms: u64,
}

impl Default for Concurrency {
    fn default() -> Self {
        Self {
            cloners: 2,
            reconcilers: 2,
            copy_parallelism: 16,
            lease_ttl_ms: 30_000,
        }
    }
}

/// Message bus settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BusConfig {
    /// `memory` (embedded, one process: the default), `rabbitmq` or `kafka` (a fleet of
    /// processes).
    pub backend: String,
    /// Broker address. RabbitMQ: an `amqp://host:port/vhost` URL (default
    /// `amqp://127.0.0.1:5672/%2f`); Kafka: bootstrap servers (`host:9092,host2:9092`). A
    /// URL carrying a password must be a reference: `url: { env: AMQP_URL }`.
    pub url: Option<StorageValue>,
    /// Prefix of every queue, exchange and topic name, so several fleets share a broker.
    pub prefix: String,
    /// RabbitMQ: declare the work queues as quorum queues.
    pub quorum: bool,
    /// Delays before a nacked message is delivered again, in milliseconds; the last repeats.
    pub retry_delays_ms: Vec<u64>,
    /// Messages a queue holds before publishers wait (memory bus).
    pub queue_capacity: usize,
    /// Deliveries of one message before it is dead-lettered.
    pub max_deliveries: u32,
    /// Kafka: partitions of the topics replicator creates (the most workers one queue can
    /// use at once).
    pub partitions: i32,
    /// Kafka: create missing topics through the admin API; `false` where topics are
    /// provisioned separately (a missing topic is then an error naming it).
    pub create_topics: bool,
}

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            backend: "memory".into(),
            url: None,
            prefix: "replicator".into(),
            quorum: false,
            retry_delays_ms: vec![1_000, 5_000, 30_000],
            queue_capacity: 1024,
            max_deliveries: 5,
            partitions: 6,
            create_topics: true,
        }
    }
}

impl BusConfig {
    /// The broker address with any secret read from its reference.
    pub fn resolved_url(&self) -> Result<String, ConfigError> {
        match &self.url {
            Some(StorageValue::Plain(u)) => Ok(u.clone()),
            Some(StorageValue::Secret(s)) => s.resolve(),
            None if self.backend == "kafka" => Ok("127.0.0.1:9092".into()),
            None => Ok("amqp://127.0.0.1:5672/%2f".into()),
        }
    }
}

/// Whether a URL carries a password (`scheme://user:password@host`).
fn has_inline_password(url: &str) -> bool {
    url.split_once("://")
        .map(|(_, rest)| rest.split(['/', '?']).next().unwrap_or(""))
        .and_then(|authority| authority.rsplit_once('@'))
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

/// Which validations the reconciler runs. The top-level switches apply to every table;
/// `tables` rules (first match wins) refine them per table and give primary keys.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Reconciliation {
    /// Compare row counts (from log statistics when every file has them, else by scanning).
    pub row_counts: bool,
    /// Compare schemas and partition columns.
    pub schema: bool,
    /// Row count and checksum per table partition (the whole table when unpartitioned).
    pub partition_checksums: bool,
    /// Keys kept per category (missing, extra, changed) in a key comparison's result.
    pub sample_size: usize,
    /// Memory one key comparison may use for hash tables and buffers, in MiB; larger
    /// tables spill to temporary files.
    pub memory_mb: u64,
    /// Per-table rules: `tables` globs over dotted table names, `primary_key` turns on the
    /// key comparison, and any of the switches above may be overridden.
    pub tables: Vec<TableReconciliation>,
    /// How often each replica is validated deeply (every configured check on both tables).
    /// In between, a replica whose source and target logs have not changed since a deep
    /// validation that matched gets the cheap check instead: latest versions and commit
    /// fingerprints, no snapshot read. `0` validates deeply every run.
    pub deep_every: Period,
}

impl Default for Reconciliation {
    fn default() -> Self {
        Self {
            row_counts: true,
            schema: true,
            partition_checksums: false,
            sample_size: 10,
            memory_mb: 512,
            tables: Vec::new(),
            deep_every: Period(std::time::Duration::from_secs(24 * 3600)),
        }
    }
}

/// A length of time written `90s`, `30m`, `24h` or `7d` (a whole number of seconds is
/// accepted too; `0` is none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Period(pub std::time::Duration);

impl Period {
    pub fn is_zero(&self) -> bool {
        self.0.is_zero()
    }
}

impl std::str::FromStr for Period {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (digits, unit) = s.split_at(split);
        let n: u64 = digits.parse().map_err(|_| {
            format!(
                "`{s}` is not a period: expected a number and a unit (`90s`, `30m`, `24h`, `7d`)"
            )
        })?;
        let secs = match unit.trim() {
            "" | "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            other => return Err(format!("unknown unit `{other}` in `{s}`: use s, m, h or d")),
        };
        n.checked_mul(secs)
            .map(|secs| Self(std::time::Duration::from_secs(secs)))
            .ok_or_else(|| format!("`{s}` is too long"))
    }
}

impl std::fmt::Display for Period {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.0.as_secs();
        match secs {
            0 => f.write_str("0"),
            s if s % 86_400 == 0 => write!(f, "{}d", s / 86_400),
            s if s % 3600 == 0 => write!(f, "{}h", s / 3600),
            s if s % 60 == 0 => write!(f, "{}m", s / 60),
            s => write!(f, "{s}s"),
        }
    }
}

impl Serialize for Period {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Period {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Secs(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Secs(n) => Ok(Self(std::time::Duration::from_secs(n))),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// Reconciliation settings for the tables matching `tables`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableReconciliation {
    /// Glob patterns over dotted table names (`sales.*`, `*.orders`).
    pub tables: Vec<String>,
    /// Primary-key columns: compare row by row (missing, extra and changed keys).
    #[serde(default)]
    pub primary_key: Vec<String>,
    #[serde(default)]
    pub row_counts: Option<bool>,
    #[serde(default)]
    pub schema: Option<bool>,
    #[serde(default)]
    pub partition_checksums: Option<bool>,
}

/// The checks one table gets (see [`Reconciliation::for_table`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableChecks {
    pub row_counts: bool,
    pub schema: bool,
    pub partition_checksums: bool,
    /// Empty: no key comparison.
    pub primary_key: Vec<String>,
    pub sample_size: usize,
    pub memory_mb: u64,
}

impl Reconciliation {
    /// The checks for `table`: the first rule whose globs match, over the defaults.
    pub fn for_table(&self, table: &str) -> TableChecks {
        let rule = self.tables.iter().find(|r| {
            r.tables.iter().any(|g| {
                globset::Glob::new(g)
                    .map(|g| g.compile_matcher().is_match(table))
                    .unwrap_or(false)
            })
        });
        TableChecks {
            row_counts: rule.and_then(|r| r.row_counts).unwrap_or(self.row_counts),
            schema: rule.and_then(|r| r.schema).unwrap_or(self.schema),
            partition_checksums: rule
                .and_then(|r| r.partition_checksums)
                .unwrap_or(self.partition_checksums),
            primary_key: rule.map(|r| r.primary_key.clone()).unwrap_or_default(),
            sample_size: self.sample_size,
            memory_mb: self.memory_mb,
        }
    }
}

/// Where run summaries go: one digest per run, never one message per table.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Notifications {
    pub webhooks: Vec<Webhook>,
    /// Email over SMTP.
    pub email: Option<Email>,
    /// Owners of groups of tables: they get the failure digest of a run in which one of
    /// their tables failed or did not match (as the DR sync job's sync groups do).
    pub groups: Vec<Group>,
}

/// Which run outcomes a recipient hears about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum When {
    /// Every table succeeded.
    Success,
    /// A table failed or did not match.
    Failure,
}

fn both_outcomes() -> Vec<When> {
    vec![When::Success, When::Failure]
}

/// The body a webhook receives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// The `RunCompleted` message as JSON.
    #[default]
    Json,
    /// A Slack incoming-webhook message (`text` plus blocks).
    Slack,
    /// A Microsoft Teams incoming-webhook message (an Adaptive Card).
    Teams,
}

/// A webhook that receives the run digest (`POST`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    /// The endpoint: inline, or a secret reference (`{ env: SLACK_WEBHOOK_URL }`): Slack and
    /// Teams incoming-webhook URLs are credentials themselves.
    pub url: StorageValue,
    #[serde(default)]
    pub format: WebhookFormat,
    /// Which outcomes to send.
    #[serde(default = "both_outcomes")]
    pub on: Vec<When>,
    /// Sent as `Authorization: Bearer <token>`.
    #[serde(default)]
    pub bearer_token: Option<SecretRef>,
    /// Signs each request: `X-Replicator-Signature: v1=HEX(HMAC-SHA256(secret,
    /// "{timestamp}.{body}"))` with `X-Replicator-Timestamp: {unix seconds}`.
    #[serde(default)]
    pub signing_secret: Option<SecretRef>,
    /// Per-request timeout in milliseconds.
    #[serde(default = "default_webhook_timeout")]
    pub timeout_ms: u64,
}

/// Email digests over SMTP.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Email {
    pub smtp: Smtp,
    /// The sender (`Replicator <replicator@example.com>`).
    pub from: String,
    /// Recipients of the digest of a run in which every table succeeded.
    #[serde(default)]
    pub success_to: Vec<String>,
    /// Recipients of the digest of a run in which a table failed or did not match.
    #[serde(default)]
    pub failure_to: Vec<String>,
}

/// How to reach the SMTP server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Smtp {
    pub host: String,
    /// Default: 587 for `starttls`, 465 for `tls`, 25 for `none`.
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub security: SmtpSecurity,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<SecretRef>,
    /// A PEM file of extra CA certificates to trust (a private CA).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default = "default_webhook_timeout")]
    pub timeout_ms: u64,
}

/// Transport security of the SMTP connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS (required).
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS).
    Tls,
    /// No encryption (a local relay only).
    None,
}

/// A group of tables and who owns them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    pub name: String,
    /// Glob patterns over table names.
    pub tables: Vec<String>,
    /// Email addresses of the owners.
    pub owners: Vec<String>,
}

fn default_webhook_timeout() -> u64 {
    10_000
}

/// Where run state lives.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct State {
    /// `sqlite://PATH` (created if missing; embedded mode) or `postgres://user@host/db`
    /// (fleet mode; the password comes from `PGPASSWORD` or `~/.pgpass`).
    pub url: String,
}

impl Default for State {
    fn default() -> Self {
        Self {
            url: "sqlite://.replicator/state.db".into(),
        }
    }
}

/// Logging.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// `text` or `json`.
    pub format: String,
    /// Default filter (`RUST_LOG` wins).
    pub level: String,
}

impl Default for Log {
    fn default() -> Self {
        Self {
            format: "text".into(),
            level: "warn".into(),
        }
    }
}

/// A secret, read from an environment variable or a file at the moment it is needed.
///
/// Only a reference deserializes: an inline value (a string, a number, …) is refused with
/// a message that names the key (through the error's path) and never contains the value.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SecretRef {
    pub env: Option<String>,
    pub file: Option<PathBuf>,
}

/// The message for a secret given inline; the value is never part of it.
const INLINE_SECRET: &str =
    "must be a secret reference ({ env: NAME } or { file: PATH }), not an inline value";

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = SecretRef;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a secret reference ({ env: NAME } or { file: PATH })")
            }
            // Every scalar is an inline secret: the default errors would print it.
            fn visit_str<E: Error>(self, _: &str) -> Result<SecretRef, E> {
                Err(E::custom(INLINE_SECRET))
            }
            fn visit_bytes<E: Error>(self, _: &[u8]) -> Result<SecretRef, E> {
                Err(E::custom(INLINE_SECRET))
            }
            fn visit_bool<E: Error>(self, _: bool) -> Result<SecretRef, E> {
                Err(E::custom(INLINE_SECRET))
            }
            fn visit_i64<E: Error>(self, _: i64) -> Result<SecretRef, E> {
                Err(E::custom(INLINE_SECRET))
            }
            fn visit_u64<E: Error>(self, _: u64) -> Result<SecretRef, E> {
                Err(E::custom(INLINE_SECRET))
            }
            fn visit_i128<E: Error>(self, _: i128) -> Result<SecretRef, E> {
                Err(E::custom(INLINE_SECRET))
            }
            fn visit_u128<E: Error>(self, _: u128) -> Result<SecretRef, E> {
                Err(E::custom(INLINE_SECRET))
            }
            fn visit_f64<E: Error>(self, _: f64) -> Result<SecretRef, E> {
                Err(E::custom(INLINE_SECRET))
            }
            fn visit_char<E: Error>(self, _: char) -> Result<SecretRef, E> {
                Err(E::custom(INLINE_SECRET))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, _: A) -> Result<SecretRef, A::Error> {
                Err(A::Error::custom(
                    "must be a secret reference ({ env: NAME } or { file: PATH }), not a list",
                ))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<SecretRef, A::Error> {
                secret_from_map(map)
            }
        }
        d.deserialize_any(Visit)
    }
}

/// `{ env: NAME }` or `{ file: PATH }` (whether exactly one is given is checked by
/// [`Config::validate`], which names the key).
fn secret_from_map<'de, A: serde::de::MapAccess<'de>>(mut map: A) -> Result<SecretRef, A::Error> {
    use serde::de::Error;
    let mut out = SecretRef {
        env: None,
        file: None,
    };
    while let Some(k) = map.next_key::<String>()? {
        match k.as_str() {
            "env" if out.env.is_none() => out.env = Some(map.next_value()?),
            "file" if out.file.is_none() => out.file = Some(map.next_value()?),
            "env" | "file" => return Err(A::Error::custom(format!("`{k}` is given twice"))),
            other => {
                return Err(A::Error::custom(format!(
                    "unknown key `{other}` in a secret reference: expected `env` or `file`"
                )));
            }
        }
    }
    Ok(out)
}

impl SecretRef {
    /// The secret's value. Errors never contain the value.
    pub fn resolve(&self) -> Result<String, ConfigError> {
        match (&self.env, &self.file) {
            (Some(var), None) => std::env::var(var).map_err(|_| {
                ConfigError::Invalid(format!("secret environment variable `{var}` is not set"))
            }),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_owned())
                .map_err(|e| {
                    ConfigError::Invalid(format!("secret file `{}`: {e}", path.display()))
                }),
            _ => Err(ConfigError::Invalid(
                "a secret reference needs exactly one of `env` or `file`".into(),
            )),
        }
    }
}

/// Largest config text read (a file, an environment override, a `--set` value), in bytes.
pub const MAX_CONFIG_BYTES: usize = 4 << 20;
/// Deepest nesting a config may have: block indentation levels plus open `[` and `{`.
/// (A parser's time grows faster than linearly with nesting; real configs nest ~6 deep.)
pub const MAX_NESTING: usize = 64;
/// Longest run of a user's value (or key) an error message shows, in characters.
const SHOWN_CHARS: usize = 100;
/// Longest config error message, in characters.
const MESSAGE_CHARS: usize = 600;

/// Why a configuration was refused. Every message is one bounded line: a value is shown
/// up to [`SHOWN_CHARS`] characters, a secret's value never.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {}: {source}", bounded(&.path.display().to_string()))]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config is not valid YAML: {}", bounded(&.0.to_string()))]
    Yaml(#[from] serde_yaml::Error),
    #[error("config key `{}`: {}", elide(.key, 2 * SHOWN_CHARS), bounded(.message))]
    Key { key: String, message: String },
    #[error("invalid override `{}`: expected KEY=VALUE", elide(.0, SHOWN_CHARS))]
    Override(String),
    #[error("invalid config: {}", bounded(.0))]
    Invalid(String),
}

/// `s` on one line (control characters escaped), cut to `max` characters with the count
/// of what was left out.
fn elide(s: &str, max: usize) -> String {
    let mut out = String::new();
    for (shown, c) in s.chars().enumerate() {
        if shown == max {
            let total = s.chars().count();
            out.push_str(&format!("… ({} more characters)", total - max));
            return out;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// A message with every quoted part (`"…"`, as serde quotes a string value, or `` `…` ``,
/// as it quotes a field or variant name) cut to [`SHOWN_CHARS`], on one line, and at most
/// [`MESSAGE_CHARS`] long.
fn bounded(msg: &str) -> String {
    let mut out = String::new();
    let mut rest = msg;
    while let Some(i) = rest.find(['"', '`']) {
        let quote = rest.as_bytes()[i];
        out.push_str(&rest[..=i]);
        let inner = &rest[i + 1..];
        let end = if quote == b'"' {
            // serde writes a string with Debug escapes: skip `\"`.
            let mut escaped = false;
            inner.char_indices().find_map(|(j, c)| {
                let end = !escaped && c == '"';
                escaped = !escaped && c == '\\';
                end.then_some(j)
            })
        } else {
            inner.find('`')
        };
        let end = end.unwrap_or(inner.len());
        out.push_str(&elide(&inner[..end], SHOWN_CHARS));
        rest = inner.get(end..).unwrap_or("");
        if let Some(r) = rest.strip_prefix(quote as char) {
            out.push(quote as char);
            rest = r;
        }
    }
    out.push_str(rest);
    elide(&out, MESSAGE_CHARS)
}

fn too_large() -> String {
    format!(
        "larger than {} MiB, the limit (it keeps parsing time and error messages bounded)",
        MAX_CONFIG_BYTES >> 20
    )
}

/// Refuse a config text too large or too deeply nested to parse quickly.
fn check_shape(text: &str) -> Result<(), String> {
    if text.len() > MAX_CONFIG_BYTES {
        return Err(too_large());
    }
    match nesting_exceeded(text) {
        Some(line) => Err(format!(
            "nested deeper than {MAX_NESTING} levels at line {line}; a config needs no such depth"
        )),
        None => Ok(()),
    }
}

/// The first line at which `text` nests deeper than [`MAX_NESTING`], by a linear scan that
/// follows what YAML needs for it: block indentation (and compact `- ` / `? ` entries),
/// flow `[` / `{` (outside quoted scalars, comments and block scalars).
fn nesting_exceeded(text: &str) -> Option<usize> {
    let mut indents: Vec<usize> = Vec::new();
    let mut flow = 0usize;
    // Inside a `|` / `>` block scalar opened on a line with this indentation.
    let mut block_scalar: Option<usize> = None;
    // Inside a quoted scalar that goes on past the end of a line.
    let mut quote: Option<char> = None;
    for (n, line) in text.lines().enumerate() {
        let indent = line.len() - line.trim_start_matches(' ').len();
        let content = &line[indent..];
        if let Some(parent) = block_scalar {
            if content.is_empty() || indent > parent {
                continue;
            }
            block_scalar = None;
        }
        if quote.is_none() && flow == 0 {
            if content.is_empty() || content.starts_with('#') {
                continue;
            }
            while indents.last().is_some_and(|&c| c > indent) {
                indents.pop();
            }
            if indents.last() != Some(&indent) {
                indents.push(indent);
            }
        }
        // At the start of a node: where `[`, `{`, quotes, `|`, `>`, `-` and `?` are indicators.
        let mut node_start = true;
        let mut after_space = true;
        let mut chars = content.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            let next = chars.peek().map(|&(_, c)| c);
            if let Some(q) = quote {
                match c {
                    '\\' if q == '"' => {
                        chars.next();
                    }
                    '\'' if q == '\'' && next == Some('\'') => {
                        chars.next();
                    }
                    c if c == q => {
                        quote = None;
                        node_start = false;
                    }
                    _ => {}
                }
                after_space = false;
                continue;
            }
            let spaced = next.is_none_or(|c| c == ' ' || c == '\t');
            match c {
                ' ' | '\t' => {
                    after_space = true;
                    continue;
                }
                '#' if after_space => break,
                '"' | '\'' if node_start => quote = Some(c),
                '[' | '{' if node_start || flow > 0 => {
                    flow += 1;
                    if indents.len() + flow > MAX_NESTING {
                        return Some(n + 1);
                    }
                    node_start = true;
                }
                ']' | '}' if flow > 0 => {
                    flow -= 1;
                    node_start = false;
                }
                ',' if flow > 0 => node_start = true,
                ':' if spaced || flow > 0 => node_start = true,
                '-' | '?' if node_start && spaced => {
                    if flow == 0 {
                        // A compact nested entry (`- - x`, `- key: v`) is one level deeper.
                        let after = &content[i + 1..];
                        let col =
                            indent + i + 1 + after.len() - after.trim_start_matches(' ').len();
                        if indents.last().is_some_and(|&c| c < col) {
                            indents.push(col);
                            if indents.len() > MAX_NESTING {
                                return Some(n + 1);
                            }
                        }
                    }
                    node_start = true;
                }
                '|' | '>' if node_start && flow == 0 => {
                    block_scalar = Some(indent);
                    break;
                }
                '&' | '!' if node_start => {
                    // An anchor or tag: the node starts after it.
                    while chars.peek().is_some_and(|&(_, c)| c != ' ' && c != '\t') {
                        chars.next();
                    }
                }
                _ => node_start = false,
            }
            after_space = false;
        }
        if indents.len() + flow > MAX_NESTING {
            return Some(n + 1);
        }
    }
    None
}

impl Config {
    /// Load a config file, applying environment and CLI overrides, then validate it.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self, ConfigError> {
        // Read at most one byte past the limit: from_yaml refuses a text that long.
        let read_error = |source| ConfigError::Read {
            path: path.to_owned(),
            source,
        };
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_CONFIG_BYTES as u64 + 1).read_to_end(&mut bytes))
            .map_err(read_error)?;
        if bytes.len() > MAX_CONFIG_BYTES {
            return Err(ConfigError::Invalid(format!(
                "the config is {}",
                too_large()
            )));
        }
        let text = String::from_utf8(bytes)
            .map_err(|e| read_error(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
        let mut config = Self::from_yaml(&text, std::env::vars(), overrides)?;
        if let Some(dir) = path.parent() {
            config.resolve_paths(dir);
        }
        config.file = Some(std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned()));
        Ok(config)
    }

    /// Make relative local paths absolute against `base`.
    pub fn resolve_paths(&mut self, base: &Path) {
        let resolve = |p: &str| -> Option<String> {
            let is_url = p.contains("://") || p.starts_with("file:");
            (!is_url && !p.is_empty() && Path::new(p).is_relative())
                .then(|| base.join(p).to_string_lossy().into_owned())
        };
        if let Some(p) = resolve(&self.source.root) {
            self.source.root = p;
        }
        if let Some(p) = resolve(&self.target.root) {
            self.target.root = p;
        }
        for root in &mut self.cloning.external_roots {
            if let Some(p) = resolve(root) {
                *root = p;
            }
        }
        if let Some(path) = self.state.url.strip_prefix("sqlite://")
            && !path.is_empty()
            && Path::new(path).is_relative()
            && !path.starts_with(':')
        {
            self.state.url = format!("sqlite://{}", base.join(path).display());
        }
    }

    /// Parse `text`, apply `env` (only `REPLICATOR__*` entries matter) and `overrides`
    /// (`section.key=value`), deserialize and validate.
    pub fn from_yaml(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &[String],
    ) -> Result<Self, ConfigError> {
        check_shape(text).map_err(|m| ConfigError::Invalid(format!("the config is {m}")))?;
        let mut doc: Value = serde_yaml::from_str(text)?;
        if doc.is_null() {
            doc = Value::Mapping(Default::default());
        }
        let mut env: Vec<_> = env
            .into_iter()
            .filter_map(|(k, v)| {
                k.strip_prefix(ENV_PREFIX).map(|rest| {
                    (
                        rest.split("__").map(str::to_lowercase).collect::<Vec<_>>(),
                        v,
                    )
                })
            })
            .collect();
        env.sort();
        for (path, value) in env {
            let value = parse_override(
                &format!("{ENV_PREFIX}{}", path.join("__").to_uppercase()),
                &value,
            )?;
            set_path(&mut doc, &path, value)?;
        }
        for o in overrides {
            let (key, value) = o
                .split_once('=')
                .ok_or_else(|| ConfigError::Override(o.clone()))?;
            let path: Vec<String> = key.trim().split('.').map(str::to_owned).collect();
            set_path(&mut doc, &path, parse_override(key.trim(), value)?)?;
        }
        let config: Config = serde_path_to_error::deserialize(doc).map_err(|e| {
            let key = e.path().to_string();
            ConfigError::Key {
                key: if key == "." {
                    "(top level)".into()
                } else {
                    key
                },
                message: e.into_inner().to_string(),
            }
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks that need more than types. Runs before anything connects.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let key = |key: &str, message: String| ConfigError::Key {
            key: key.into(),
            message,
        };
        // A secret reference names exactly one place to read the secret from.
        let check_ref = |path: &str, s: &SecretRef| {
            if s.env.is_some() == s.file.is_some() {
                Err(key(path, "needs exactly one of `env` or `file`".into()))
            } else {
                Ok(())
            }
        };
        if self.version != 1 {
            return Err(key(
                "version",
                format!("unsupported config version {}", self.version),
            ));
        }
        if let Some(d) = &self.databricks {
            d.validate()?;
        }
        let native = self.databricks.is_none() || !self.source.root.trim().is_empty();
        if native && self.source.root.trim().is_empty() {
            return Err(key("source.root", "must not be empty".into()));
        }
        for (name, ep) in [("source", &self.source), ("target", &self.target)] {
            for (k, v) in &ep.storage {
                let key_path = format!("{name}.storage.{k}");
                match v {
                    StorageValue::Plain(_) if is_secret_key(k) => {
                        return Err(key(
                            &key_path,
                            "is a credential: reference it ({ env: VAR } or { file: PATH }), never inline it".into(),
                        ));
                    }
                    StorageValue::Secret(s) => check_ref(&key_path, s)?,
                    StorageValue::Plain(_) => {}
                }
            }
        }
        if native && self.target.root.trim().is_empty() {
            return Err(key("target.root", "must not be empty".into()));
        }
        for (name, value) in [
            ("concurrency.cloners", self.concurrency.cloners),
            ("concurrency.reconcilers", self.concurrency.reconcilers),
            (
                "concurrency.copy_parallelism",
                self.concurrency.copy_parallelism,
            ),
            ("bus.queue_capacity", self.bus.queue_capacity),
        ] {
            if value == 0 {
                return Err(key(name, "must be at least 1".into()));
            }
        }
        if let Some(i) = self
            .cloning
            .external_roots
            .iter()
            .position(|r| r.trim().is_empty())
        {
            return Err(key(
                &format!("clone.external_roots[{i}]"),
                "must not be empty".into(),
            ));
        }
        if self.retry.max_attempts == 0 {
            return Err(key("retry.max_attempts", "must be at least 1".into()));
        }
        if self.reconciliation.memory_mb < 16 {
            return Err(key(
                "reconciliation.memory_mb",
                "must be at least 16".into(),
            ));
        }
        for (i, rule) in self.reconciliation.tables.iter().enumerate() {
            let path = format!("reconciliation.tables[{i}]");
            if rule.tables.is_empty() {
                return Err(key(
                    &path,
                    "needs `tables`: glob patterns over table names".into(),
                ));
            }
            for g in &rule.tables {
                globset::Glob::new(g)
                    .map_err(|e| key(&format!("{path}.tables"), format!("bad glob `{g}`: {e}")))?;
            }
            if rule.primary_key.iter().any(|c| c.trim().is_empty()) {
                return Err(key(
                    &format!("{path}.primary_key"),
                    "column names must not be empty".into(),
                ));
            }
        }
        if self.bus.max_deliveries == 0 {
            return Err(key("bus.max_deliveries", "must be at least 1".into()));
        }
        if !matches!(self.bus.backend.as_str(), "memory" | "rabbitmq" | "kafka") {
            return Err(key(
                "bus.backend",
                format!(
                    "unknown backend `{}` (expected `memory`, `rabbitmq` or `kafka`)",
                    self.bus.backend
                ),
            ));
        }
        match &self.bus.url {
            Some(StorageValue::Plain(u)) if has_inline_password(u) => {
                return Err(key(
                    "bus.url",
                    "carries a password: reference it ({ env: VAR } or { file: PATH }), never inline it".into(),
                ));
            }
            Some(StorageValue::Secret(s)) => check_ref("bus.url", s)?,
            _ => {}
        }
        if self.bus.prefix.is_empty()
            || !self
                .bus
                .prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(key(
                "bus.prefix",
                "must be non-empty ASCII letters, digits, `-`, `_` or `.`".into(),
            ));
        }
        for (i, p) in self
            .tables
            .include
            .iter()
            .chain(&self.tables.exclude)
            .enumerate()
        {
            globset::Glob::new(p)
                .map_err(|e| key(&format!("tables[{i}]"), format!("bad glob `{p}`: {e}")))?;
        }
        for (i, w) in self.notifications.webhooks.iter().enumerate() {
            let url_key = format!("notifications.webhooks[{i}].url");
            match &w.url {
                // Not echoed: a Slack or Teams webhook URL is a credential.
                StorageValue::Plain(u)
                    if !(u.starts_with("http://") || u.starts_with("https://")) =>
                {
                    return Err(key(&url_key, "must be an http:// or https:// URL".into()));
                }
                StorageValue::Secret(s) => check_ref(&url_key, s)?,
                StorageValue::Plain(_) => {}
            }
            for (name, secret) in [
                ("bearer_token", &w.bearer_token),
                ("signing_secret", &w.signing_secret),
            ] {
                if let Some(s) = secret {
                    check_ref(&format!("notifications.webhooks[{i}].{name}"), s)?;
                }
            }
        }
        if let Some(e) = &self.notifications.email {
            if e.smtp.host.trim().is_empty() {
                return Err(key(
                    "notifications.email.smtp.host",
                    "must not be empty".into(),
                ));
            }
            if let Some(s) = &e.smtp.password {
                check_ref("notifications.email.smtp.password", s)?;
            }
            if e.smtp.password.is_some() != e.smtp.username.is_some() {
                return Err(key(
                    "notifications.email.smtp",
                    "give both `username` and `password`, or neither".into(),
                ));
            }
            for (name, list) in [
                ("from", std::slice::from_ref(&e.from)),
                ("success_to", &e.success_to[..]),
                ("failure_to", &e.failure_to[..]),
            ] {
                if let Some(bad) = list.iter().find(|a| !a.contains('@')) {
                    return Err(key(
                        &format!("notifications.email.{name}"),
                        format!("`{bad}` is not an email address"),
                    ));
                }
            }
        }
        for (i, g) in self.notifications.groups.iter().enumerate() {
            for p in &g.tables {
                globset::Glob::new(p).map_err(|e| {
                    key(
                        &format!("notifications.groups[{i}].tables"),
                        format!("bad glob `{p}`: {e}"),
                    )
                })?;
            }
            if let Some(bad) = g.owners.iter().find(|a| !a.contains('@')) {
                return Err(key(
                    &format!("notifications.groups[{i}].owners"),
                    format!("`{bad}` is not an email address"),
                ));
            }
            if !g.owners.is_empty() && self.notifications.email.is_none() {
                return Err(key(
                    &format!("notifications.groups[{i}].owners"),
                    "owners are emailed: configure notifications.email".into(),
                ));
            }
        }
        let url = &self.state.url;
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            // Only the scheme is shown: the rest may hold a password.
            let message = match url.split_once("://") {
                Some((scheme, _)) if scheme.chars().all(|c| c.is_ascii_alphanumeric()) => {
                    format!("scheme `{scheme}` is neither sqlite: nor postgres://")
                }
                _ => "must be a sqlite: or postgres:// URL".to_owned(),
            };
            return Err(key("state.url", message));
        }
        if has_inline_password(url) {
            return Err(key(
                "state.url",
                "carries a password: give it in PGPASSWORD or a .pgpass file, never inline".into(),
            ));
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(key("log.format", "must be `text` or `json`".into()));
        }
        Ok(())
    }
}

/// An override's value parsed as YAML (a string when it is not YAML), bounded like a
/// config file; `name` is the variable or `--set` key.
fn parse_override(name: &str, v: &str) -> Result<Value, ConfigError> {
    check_shape(v).map_err(|m| ConfigError::Key {
        key: name.to_owned(),
        message: format!("the override's value is {m}"),
    })?;
    Ok(serde_yaml::from_str(v).unwrap_or_else(|_| Value::String(v.to_owned())))
}

fn set_path(doc: &mut Value, path: &[String], value: Value) -> Result<(), ConfigError> {
    let mut cur = doc;
    for (i, part) in path.iter().enumerate() {
        if part.is_empty() {
            return Err(ConfigError::Override(path.join(".")));
        }
        if !cur.is_mapping() {
            if cur.is_null() {
                *cur = Value::Mapping(Default::default());
            } else {
                return Err(ConfigError::Key {
                    key: path[..i].join("."),
                    message: "is not a section, cannot override a key inside it".into(),
                });
            }
        }
        let map = cur.as_mapping_mut().expect("checked above");
        let k = Value::String(part.clone());
        if i + 1 == path.len() {
            map.insert(k, value);
            return Ok(());
        }
        cur = map.entry(k).or_insert(Value::Null);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "source: { root: ./lake/source }\ntarget: { root: ./lake/target }\ntables: { include: [\"*\"], exclude: [] }\n";

    fn none() -> Vec<(String, String)> {
        Vec::new()
    }

    #[test]
    fn deep_every_is_a_period_with_a_unit() {
        let day = Period(std::time::Duration::from_secs(86_400));
        let c = Config::from_yaml(MINIMAL, none(), &[]).unwrap();
        assert_eq!(c.reconciliation.deep_every, day, "default");
        for (text, secs) in [
            ("90s", 90),
            ("30m", 1800),
            ("6h", 21_600),
            ("7d", 604_800),
            ("0", 0),
            ("45", 45),
        ] {
            let c = Config::from_yaml(
                MINIMAL,
                none(),
                &[format!("reconciliation.deep_every={text}")],
            )
            .unwrap();
            assert_eq!(c.reconciliation.deep_every.0.as_secs(), secs, "{text}");
        }
        let env = vec![(
            "REPLICATOR__RECONCILIATION__DEEP_EVERY".to_owned(),
            "12h".to_owned(),
        )];
        let c = Config::from_yaml(MINIMAL, env, &[]).unwrap();
        assert_eq!(c.reconciliation.deep_every.to_string(), "12h");
        assert_eq!(day.to_string(), "1d");
        for bad in ["1w", "h", "-1h", "1.5h"] {
            let err = Config::from_yaml(
                MINIMAL,
                none(),
                &[format!("reconciliation.deep_every={bad}")],
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains("reconciliation.deep_every"), "{bad}: {err}");
        }
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = Config::from_yaml(MINIMAL, none(), &[]).unwrap();
        assert_eq!(c.source.root, "./lake/source");
        assert_eq!(c.concurrency, Concurrency::default());
        assert_eq!(c.operation, Operation::All);
    }

    #[test]
    fn broker_and_database_passwords_are_never_inline() {
        let ok = Config::from_yaml(
            &format!("{MINIMAL}bus: {{ backend: rabbitmq, url: \"amqp://10.0.0.1:5672/%2f\" }}\nstate: {{ url: \"postgres://replicator@db/replicator\" }}\n"),
            none(),
            &[],
        )
        .unwrap();
        assert_eq!(ok.bus.resolved_url().unwrap(), "amqp://10.0.0.1:5672/%2f");
        let err = Config::from_yaml(
            &format!("{MINIMAL}bus: {{ backend: rabbitmq, url: \"amqp://u:hunter2@h/%2f\" }}\n"),
            none(),
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("bus.url") && !err.contains("hunter2"), "{err}");
        let err = Config::from_yaml(
            &format!("{MINIMAL}state: {{ url: \"postgres://u:hunter2@db/x\" }}\n"),
            none(),
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("state.url") && err.contains("PGPASSWORD"),
            "{err}"
        );
        // A reference is read at connect time.
        let c = Config::from_yaml(
            &format!(
                "{MINIMAL}bus: {{ backend: kafka, url: {{ env: REPLICATOR_TEST_UNSET_VAR }} }}\n"
            ),
            none(),
            &[],
        )
        .unwrap();
        let err = c.bus.resolved_url().unwrap_err().to_string();
        assert!(err.contains("REPLICATOR_TEST_UNSET_VAR"), "{err}");
        for (bad, key) in [
            ("bus: { backend: nats }", "bus.backend"),
            ("bus: { prefix: \"a b\" }", "bus.prefix"),
            ("state: { url: \"mysql://db\" }", "state.url"),
        ] {
            let err = Config::from_yaml(&format!("{MINIMAL}{bad}\n"), none(), &[])
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{bad}: {err}");
        }
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
    fn env_then_cli_overrides() {
        let env = vec![
            (
                "REPLICATOR__CONCURRENCY__CLONERS".to_owned(),
                "7".to_owned(),
            ),
            (
                "REPLICATOR__TARGET__ROOT".to_owned(),
                "/elsewhere".to_owned(),
            ),
            ("UNRELATED".to_owned(), "x".to_owned()),
        ];
        let c = Config::from_yaml(MINIMAL, env.clone(), &[]).unwrap();
        assert_eq!(c.concurrency.cloners, 7);
        assert_eq!(c.target.root, "/elsewhere");
        let c = Config::from_yaml(MINIMAL, env, &["concurrency.cloners=9".into()]).unwrap();
        assert_eq!(c.concurrency.cloners, 9);
        let err = Config::from_yaml(
            MINIMAL,
            vec![("REPLICATOR__RETRY__MAX_ATEMPTS".into(), "2".into())],
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("max_atempts"), "{err}");
    }

    #[test]
    fn validation_names_the_key() {
        let err =
            Config::from_yaml(MINIMAL, none(), &["concurrency.cloners=0".into()]).unwrap_err();
        assert!(err.to_string().contains("concurrency.cloners"), "{err}");
        let err = Config::from_yaml(
            &format!("{MINIMAL}notifications: {{ webhooks: [ {{ url: ftp://x }} ] }}\n"),
            none(),
            &[],
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("notifications.webhooks[0].url"),
            "{err}"
        );
    }

    #[test]
    fn storage_credentials_must_be_references() {
        let inline = MINIMAL.replace(
            "target: { root: ./lake/target }",
            "target: { root: \"s3://dr\", storage: { aws_region: eu-west-1, aws_secret_access_key: hunter2 } }",
        );
        let err = Config::from_yaml(&inline, none(), &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("target.storage.aws_secret_access_key") && !err.contains("hunter2"),
            "{err}"
        );
        let by_ref = inline.replace("hunter2", "{ env: REPLICATOR_TEST_SECRET_UNSET }");
        let c = Config::from_yaml(&by_ref, none(), &[]).unwrap();
        assert_eq!(
            c.target.storage["aws_region"],
            StorageValue::Plain("eu-west-1".into())
        );
        let err = c.target.storage_options().unwrap_err().to_string();
        assert!(err.contains("REPLICATOR_TEST_SECRET_UNSET"), "{err}");
    }

    #[test]
    fn secrets_come_from_env_or_file_never_inline() {
        let err = Config::from_yaml(
            &format!("{MINIMAL}notifications: {{ webhooks: [ {{ url: http://x, bearer_token: hunter2 }} ] }}\n"),
            none(),
            &[],
        )
        .unwrap_err();
        assert!(err.to_string().contains("bearer_token"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("tok");
        std::fs::write(&f, "s3cr3t\n").unwrap();
        let s = SecretRef {
            env: None,
            file: Some(f),
        };
        assert_eq!(s.resolve().unwrap(), "s3cr3t");
        let missing = SecretRef {
            env: Some("REPLICATOR_TEST_UNSET_VAR".into()),
            file: None,
        };
        assert!(
            missing
                .resolve()
                .unwrap_err()
                .to_string()
                .contains("REPLICATOR_TEST_UNSET_VAR")
        );
    }

    #[test]
    fn inline_secrets_are_refused_by_key_and_never_echoed() {
        const SECRET: &str = "hunter2-do-not-print";
        let hooks = |k: &str| {
            format!(
                "{MINIMAL}notifications: {{ webhooks: [ {{ url: \"https://x\", {k}: \"{SECRET}\" }} ] }}\n"
            )
        };
        let databricks = |auth: &str| {
            format!(
                "databricks:\n  source: {{ host: https://a, warehouse_id: w, auth: {auth} }}\n  target: {{ host: https://b, warehouse_id: w, auth: {{ token: {{ env: T }} }} }}\n  catalogs: [ {{ source: prod }} ]\n"
            )
        };
        let cases = [
            (
                hooks("bearer_token"),
                "notifications.webhooks[0].bearer_token",
            ),
            (
                hooks("signing_secret"),
                "notifications.webhooks[0].signing_secret",
            ),
            (
                format!(
                    "{MINIMAL}notifications: {{ email: {{ smtp: {{ host: h, username: u, password: \"{SECRET}\" }}, from: a@b }} }}\n"
                ),
                "notifications.email.smtp.password",
            ),
            (
                databricks(&format!("{{ token: \"{SECRET}\" }}")),
                "databricks.source.auth.token",
            ),
            (
                databricks(&format!("{{ client_id: sp, client_secret: \"{SECRET}\" }}")),
                "databricks.source.auth.client_secret",
            ),
            // Numbers and lists are inline values too.
            (
                databricks("{ token: 1234567890123 }"),
                "databricks.source.auth.token",
            ),
            (
                databricks(&format!("{{ token: [ \"{SECRET}\" ] }}")),
                "databricks.source.auth.token",
            ),
        ];
        for (text, key) in cases {
            let err = Config::from_yaml(&text, none(), &[])
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&format!("`{key}`")) && err.contains("must be a secret reference"),
                "{key}: {err}"
            );
            assert!(
                !err.contains(SECRET) && !err.contains("1234567890123"),
                "{err}"
            );
            assert!(!err.contains('\n'), "{err}");
        }
        // The same through an environment override.
        let err = Config::from_yaml(
            &hooks("bearer_token").replace(&format!("bearer_token: \"{SECRET}\""), "on: [failure]"),
            vec![(
                "REPLICATOR__NOTIFICATIONS__EMAIL__SMTP__PASSWORD".to_owned(),
                SECRET.to_owned(),
            )],
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("must be a secret reference") && !err.contains(SECRET),
            "{err}"
        );
        // A reference map with a stray key is named, not dumped.
        let err = Config::from_yaml(
            &hooks("bearer_token").replace(&format!("\"{SECRET}\""), "{ env: A, value: x }"),
            none(),
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown key `value`"), "{err}");
    }

    #[test]
    fn webhook_urls_may_be_secret_references() {
        let c = Config::from_yaml(
            &format!("{MINIMAL}notifications: {{ webhooks: [ {{ url: {{ env: REPLICATOR_TEST_HOOK_URL_UNSET }}, format: slack }} ] }}\n"),
            none(),
            &[],
        )
        .unwrap();
        let url = &c.notifications.webhooks[0].url;
        assert!(matches!(url, StorageValue::Secret(_)));
        let err = url.resolve().unwrap_err().to_string();
        assert!(err.contains("REPLICATOR_TEST_HOOK_URL_UNSET"), "{err}");
        // An inline URL that is not http(s) is refused without being shown.
        let err = Config::from_yaml(
            &format!("{MINIMAL}notifications: {{ webhooks: [ {{ url: \"hooks.slack.com/services/T0/B0/s3cr3t\" }} ] }}\n"),
            none(),
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("notifications.webhooks[0].url") && !err.contains("s3cr3t"),
            "{err}"
        );
    }

    #[test]
    fn deep_nesting_is_refused_before_parsing() {
        // 300 KB of flow nesting: the YAML parser's time grows with the cube of the depth.
        let depth = 150_000;
        let flow = format!("{MINIMAL}x: {}{}\n", "[".repeat(depth), "]".repeat(depth));
        let started = std::time::Instant::now();
        let err = Config::from_yaml(&flow, none(), &[])
            .unwrap_err()
            .to_string();
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert!(
            err.contains("nested deeper than 64 levels at line 4"),
            "{err}"
        );
        assert!(err.len() < 200, "{err}");
        // Block nesting, one level per line.
        let mut block = String::from(MINIMAL);
        for i in 0..2_000 {
            block.push_str(&format!("{}k{i}:\n", " ".repeat(i)));
        }
        let err = Config::from_yaml(&block, none(), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("nested deeper than 64 levels"), "{err}");
        // Compact sequences (`- - - x`) count too.
        let compact = format!("{MINIMAL}x:\n  {}1\n", "- ".repeat(100));
        let err = Config::from_yaml(&compact, none(), &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("nested deeper than 64 levels"), "{err}");
        // An override is bounded the same way, and named.
        let err = Config::from_yaml(
            MINIMAL,
            none(),
            &[format!("tables.include={}", "[".repeat(depth))],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("`tables.include`") && err.contains("nested deeper"),
            "{err}"
        );
        // Brackets inside quotes, comments and block scalars, and ordinary depth, are fine.
        let fine = format!(
            "{MINIMAL}reconciliation:\n  tables:\n    - tables: [\"{q}\", '{q}']  # {q}\n      primary_key: [a]\nnotifications:\n  groups:\n    - {{ name: g, tables: [\"a.*\"], owners: [] }}\nlog: {{ level: \"info\" }}\n",
            q = "[".repeat(100)
        );
        assert!(nesting_exceeded(&fine).is_none());
        let literal = format!("x: |\n  {}\ny: 1\n", "[".repeat(100));
        assert!(nesting_exceeded(&literal).is_none());
        let nested: String = (0..60)
            .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
            .collect();
        assert!(nesting_exceeded(&nested).is_none());
    }

    #[test]
    fn error_messages_are_bounded() {
        // Over the size limit: refused before parsing, in one short line.
        let huge = format!("{MINIMAL}x: \"{}\"\n", "a".repeat(MAX_CONFIG_BYTES));
        let err = Config::from_yaml(&huge, none(), &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("larger than 4 MiB") && err.len() < 200,
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.yaml");
        std::fs::write(&path, &huge).unwrap();
        let err = Config::load(&path, &[]).unwrap_err().to_string();
        assert!(
            err.contains("larger than 4 MiB") && err.len() < 200,
            "{err}"
        );
        // A wrong-typed value, an unknown variant and an unknown key, each a megabyte long.
        let long = "x".repeat(1 << 20);
        for (text, key) in [
            (
                format!("{MINIMAL}concurrency: {{ cloners: \"{long}\" }}\n"),
                "concurrency.cloners",
            ),
            (format!("{MINIMAL}operation: \"{long}\"\n"), "operation"),
            // (YAML keys are at most 1024 characters.)
            (
                format!("{MINIMAL}concurrency: {{ {}: 1 }}\n", &long[..1000]),
                "concurrency",
            ),
            (
                format!("{MINIMAL}bus: {{ backend: \"{long}\" }}\n"),
                "bus.backend",
            ),
            (
                format!("{MINIMAL}state: {{ url: \"{long}\" }}\n"),
                "state.url",
            ),
        ] {
            let err = Config::from_yaml(&text, none(), &[])
                .unwrap_err()
                .to_string();
            assert!(err.len() < 800, "{key}: {} bytes: {err}", err.len());
            assert!(err.contains(key) && !err.contains('\n'), "{err}");
        }
        // A short value is still shown whole.
        let err = Config::from_yaml(
            &format!("{MINIMAL}concurrency: {{ cloners: many }}\n"),
            none(),
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("\"many\""), "{err}");
    }
}
