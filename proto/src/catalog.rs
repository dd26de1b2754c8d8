//! Catalog objects beyond tables (docs/catalog.md): a schema, a view, a volume and its
//! files, the grants on a securable, a table's tags and comments, an external location. One
//! task per object; the worker reads the object on both sides, applies the difference, and
//! reports the statements it ran (or, in a dry run, would run) and what it could only report.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{EngineKind, Header, TaskError};

/// What kind of catalog object a task carries.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    /// An external location (and the storage credential it names, by reference).
    ExternalLocation,
    /// A schema: comment, properties, owner.
    Schema,
    /// A view: its definition with catalog and schema names mapped.
    View,
    /// A materialized view: listed and reported, not replicated.
    MaterializedView,
    /// A volume and its files (on the native engine: a plain file tree under the root).
    Volume,
    /// The privileges on one securable (catalog, schema, table, view, volume).
    Grants,
    /// A table's tags and comments (table and columns), row filter and column masks.
    Tags,
    /// Catalog reconciliation: the inventory diff of the run's scope, once every other
    /// catalog object of the run has settled (the last catalog task of a run).
    Inventory,
    /// The Snowflake mirror (docs/snowflake.md): the run's tables exposed in Snowflake as
    /// Iceberg tables that read them in place, and the mirror's metadata table.
    Mirror,
}

impl ObjectKind {
    /// Every kind.
    pub const ALL: [ObjectKind; 9] = [
        Self::ExternalLocation,
        Self::Schema,
        Self::View,
        Self::MaterializedView,
        Self::Volume,
        Self::Grants,
        Self::Tags,
        Self::Inventory,
        Self::Mirror,
    ];

    /// The kind named `s` (as [`ObjectKind::as_str`] writes it); `None` for anything else
    /// (`table`).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ExternalLocation => "external_location",
            Self::Schema => "schema",
            Self::View => "view",
            Self::MaterializedView => "materialized_view",
            Self::Volume => "volume",
            Self::Grants => "grants",
            Self::Tags => "tags",
            Self::Inventory => "inventory",
            Self::Mirror => "mirror",
        }
    }
}

impl std::fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One part of a large volume: the files whose path hashes to `index` modulo `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

/// Work item: bring one catalog object of the target in line with the source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CatalogTask {
    #[serde(flatten)]
    pub header: Header,
    pub task_id: Uuid,
    pub attempt: u32,
    pub kind: ObjectKind,
    /// The object's name in the source (`catalog.schema.view`; a volume's relative path on
    /// the native engine).
    pub name: String,
    /// Source object (URL or `workspace/full_name`).
    pub source: String,
    /// Target object, after the mappings.
    pub target: String,
    /// For `grants`: the securable type (`CATALOG`, `SCHEMA`, `TABLE`, `VIEW`, `VOLUME`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub securable: Option<String>,
    /// For a large volume: the part of its files this task copies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
    /// For a volume on the native engine: only the files directly in the directory (the
    /// loose files of a directory that also holds tables), not its subdirectories.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub loose: bool,
    /// The engine that applies this object.
    #[serde(default)]
    pub engine: EngineKind,
}

/// How a catalog task ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CatalogOutcome {
    /// Statements ran (or files moved): the target now matches.
    Applied,
    /// Nothing to do: the target already matched.
    Unchanged,
    /// Nothing applied, but something could only be reported (see `findings`).
    Reported,
    /// The inventory check found the target's catalog different from the source's (see
    /// `findings`).
    Mismatched,
    Failed,
}

/// Event: a catalog task finished (after its retries).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CatalogResult {
    #[serde(flatten)]
    pub header: Header,
    pub task_id: Uuid,
    pub attempt: u32,
    pub kind: ObjectKind,
    pub name: String,
    pub source: String,
    pub target: String,
    pub outcome: CatalogOutcome,
    /// The DDL / GRANT / REVOKE statements that ran, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub statements: Vec<String>,
    /// What could not be applied and is only reported (extra privileges on the target, a
    /// row filter whose function the target lacks, a materialized view, extra files).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<String>,
    /// Volumes: files and bytes copied, files deleted, files already in place.
    #[serde(default)]
    pub files_copied: u64,
    #[serde(default)]
    pub bytes_copied: u64,
    #[serde(default)]
    pub files_deleted: u64,
    #[serde(default)]
    pub files_unchanged: u64,
    /// Inventory check: how many `findings` (listed first) are differences, not objects
    /// reported by design.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub mismatches: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<TaskError>,
    /// Retries before the final outcome.
    #[serde(default)]
    pub retries: u32,
    pub duration_ms: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}
