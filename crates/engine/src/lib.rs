//! The engine seam: what a worker does with a task, whatever engine runs it.
//!
//! An [`Engine`] plans a request into tasks, runs one attempt of a clone task, checks a
//! replica, and probes access. The services hold an [`Engines`] value — built once from the
//! config and handed in at spawn — and ask it for the engine a message names; they never
//! branch on the engine themselves. Two implementations:
//!
//! - [`native::NativeEngine`]: Delta tables on object stores (local, S3, Azure) through
//!   `replicator-lake`, no Databricks compute;
//! - [`databricks::DatabricksEngine`]: Unity Catalog tables, cloned by `DEEP CLONE` on the
//!   warehouses over the SQL Statement Execution, Unity Catalog and Delta Sharing APIs.
//!
//! A new kind of work (a view, a volume, a grant set, an ingested SQL table, a Snowflake
//! mirror entry) is a new implementation or a new task kind behind this seam: see
//! `docs/architecture.md`.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use replicator_common::config::{CatalogSettings, Reconciliation};
use replicator_common::retry::Retryable;
use replicator_lake::clone::ProgressFn;
use replicator_proto::EngineKind;
use replicator_proto::{
    CatalogTask, Check, CloneMetrics, CloneTask, ErrorKind, KeyDiff, PartitionDiff, ReconcileTask,
    ReplicationRequest, TaskError, Validation, ValidationDepth,
};
use replicator_store::Store;
use uuid::Uuid;

mod catalog;
pub mod databricks;
mod databricks_catalog;
mod databricks_storage;
pub mod mirror;
pub mod native;

pub use catalog::{
    Applied, DiffState, Difference, ObjectContext, PlannedObject, inventory_applied,
};

pub use databricks::DatabricksEngine;
pub use native::NativeEngine;

/// Why a request could not be planned or probed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Lake(#[from] replicator_lake::LakeError),
    #[error("databricks: {0}")]
    Databricks(replicator_databricks::DatabricksError),
    /// An engine could not be set up from the config (its message says which section).
    #[error(transparent)]
    Setup(replicator_databricks::DatabricksError),
    #[error("a pinned version needs exactly one table, but {0} matched")]
    PinnedVersion(usize),
    /// The request names an engine this process was not configured for.
    #[error("{0}")]
    NotConfigured(String),
}

/// A config problem found while setting an engine up.
fn setup(e: replicator_common::ConfigError) -> EngineError {
    EngineError::Setup(replicator_databricks::DatabricksError::Config(
        e.to_string(),
    ))
}

impl From<replicator_databricks::DatabricksError> for EngineError {
    fn from(e: replicator_databricks::DatabricksError) -> Self {
        Self::Databricks(e)
    }
}

/// One table (or object) of a plan: what one task will replicate.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedItem {
    pub task_id: Uuid,
    pub table: String,
    pub source: String,
    pub target: String,
    /// Filled by dry runs: the source version and what the clone would do.
    pub source_version: Option<u64>,
    pub would: Option<CloneMetrics>,
    /// Filled by dry runs when the table cannot be cloned.
    pub problem: Option<String>,
    /// An ingestion (docs/ingest.md): `source` names the source, `target` the Delta table.
    pub ingest: Option<replicator_proto::IngestSource>,
    /// Filled by dry runs of an ingestion: the target's version (none: a full load).
    pub target_version: Option<u64>,
}

impl PlannedItem {
    /// An item with a fresh task ID and nothing worked out yet.
    pub fn new(table: String, source: String, target: String) -> Self {
        Self {
            task_id: Uuid::now_v7(),
            table,
            source,
            target,
            source_version: None,
            would: None,
            problem: None,
            ingest: None,
            target_version: None,
        }
    }

    /// The ingestion of `src` into its table under `target_root`, named by its target path;
    /// a definition that is not valid is refused naming the source and the key.
    pub fn ingestion(
        src: &replicator_proto::IngestSource,
        target_root: &replicator_lake::TableLocation,
    ) -> Result<Self, EngineError> {
        let def = native::ingest_definition(src)
            .map_err(|f| EngineError::NotConfigured(f.error.message))?;
        let table = def.target.trim_matches('/').to_owned();
        let target = target_root.child(&table)?.url().to_string();
        Ok(Self {
            ingest: Some(src.clone()),
            ..Self::new(table, src.name.clone(), target)
        })
    }
}

/// What one clone attempt did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Cloned {
    pub source_version: Option<u64>,
    pub target_version: Option<u64>,
    /// A new target version was committed (false: the target was already up to date).
    pub committed: bool,
    pub metrics: Option<CloneMetrics>,
    /// Warehouse statements that ran, in order (Databricks engine).
    pub statement_ids: Vec<String>,
    /// An ingestion's account (docs/ingest.md).
    pub ingest: Option<replicator_proto::IngestMetrics>,
    /// Databricks engine: how the files moved (docs/databricks.md, `clone_mode`).
    pub path: Option<replicator_proto::ClonePath>,
}

/// What checking a replica found (the checks ran; they may have failed).
#[derive(Clone, Debug, PartialEq)]
pub struct Checked {
    pub source_version: Option<u64>,
    pub target_version: Option<u64>,
    pub source_rows: Option<u64>,
    pub target_rows: Option<u64>,
    pub checks: Vec<Check>,
    pub keys: Option<KeyDiff>,
    pub partitions: Vec<PartitionDiff>,
    pub depth: ValidationDepth,
    pub statement_ids: Vec<String>,
}

impl Checked {
    /// `matched` when every check passed, else `mismatched`.
    pub fn outcome(&self) -> Validation {
        if self.checks.iter().all(|c| c.passed) {
            Validation::Matched
        } else {
            Validation::Mismatched
        }
    }
}

/// Why an attempt failed: the error as the result message carries it, whether another
/// attempt may help, and the statements that ran before it failed.
#[derive(Clone, Debug, PartialEq)]
pub struct Failure {
    pub error: TaskError,
    /// Not a failure yet: the object depends on one still missing on the target (a view's
    /// table still being cloned). The worker defers the task, up to `catalog.wait_minutes`.
    pub waits: bool,
    /// Another attempt may succeed (a storage hiccup, a commit conflict). An engine that
    /// retries inside (the Databricks engine retries each statement) says `false`.
    pub retry: bool,
    pub statement_ids: Vec<String>,
}

impl Failure {
    pub fn new(kind: ErrorKind, message: impl Into<String>, retry: bool) -> Self {
        Self {
            error: TaskError {
                kind,
                message: message.into(),
            },
            retry,
            waits: false,
            statement_ids: Vec::new(),
        }
    }

    /// The object depends on `what`, which the target does not have yet.
    pub fn waits_for(object: &str, what: &str) -> Self {
        Self {
            waits: true,
            ..Self::new(
                ErrorKind::Transient,
                format!("{object} waits for {what}, which the target does not have"),
                false,
            )
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.error.message)
    }
}

impl Retryable for Failure {
    fn is_transient(&self) -> bool {
        self.retry
    }
}

impl From<replicator_lake::LakeError> for Failure {
    fn from(e: replicator_lake::LakeError) -> Self {
        Self::new(e.kind(), e.to_string(), e.is_transient())
    }
}

/// What a clone attempt is given besides its task.
#[derive(Clone, Default)]
pub struct CloneContext {
    /// Files copied at once within the clone.
    pub parallelism: usize,
    /// Observer of copy progress.
    pub progress: Option<ProgressFn>,
    /// An ingestion with a watermark column: the watermark its target's last load stored.
    pub last_watermark: Option<String>,
}

/// What a check is given besides its task.
pub struct CheckContext<'a> {
    /// The configured checks (per table) and how often to validate deeply.
    pub checks: &'a Reconciliation,
    /// Where the last deep validation of each pair is remembered.
    pub store: &'a Store,
}

/// What a worker does with a task, for one engine.
#[async_trait]
pub trait Engine: Send + Sync {
    /// The engine a message names to reach this one.
    fn kind(&self) -> EngineKind;

    /// Expand a request into one item per table. With `dry_run`, also work out (reads only)
    /// what each clone would do, and prepare nothing.
    async fn plan(
        &self,
        request: &ReplicationRequest,
        dry_run: bool,
        parallelism: usize,
    ) -> Result<Vec<PlannedItem>, EngineError>;

    /// One attempt at a clone task. Idempotent: a rerun converges to the same target.
    async fn clone_table(&self, task: &CloneTask, ctx: &CloneContext) -> Result<Cloned, Failure>;

    /// Check a replica against its source.
    async fn check(&self, task: &ReconcileTask, ctx: &CheckContext<'_>)
    -> Result<Checked, Failure>;

    /// Check what can be checked without changing anything (roots, access, the objects a
    /// request selects); returns what was found (table names, or the checks that passed).
    async fn probe(&self, request: &ReplicationRequest) -> anyhow::Result<Vec<String>>;

    /// The newest commit of the source table at `location` after `instant` — what a cut at
    /// `instant` does not cover — as (version, commit time). `None` when the table has no
    /// later commit, or the engine cannot tell.
    async fn newest_commit_after(
        &self,
        _location: &str,
        _instant: DateTime<Utc>,
    ) -> Result<Option<(u64, DateTime<Utc>)>, EngineError> {
        Ok(None)
    }

    /// When the newest successful run of `workflow` ended, if it ended after `since` (any
    /// time with `None`): a sync group's workflow trigger.
    async fn workflow_ended(
        &self,
        workflow: &str,
        _since: Option<DateTime<Utc>>,
    ) -> Result<Option<DateTime<Utc>>, EngineError> {
        Err(EngineError::NotConfigured(format!(
            "workflow `{workflow}`: workflow triggers need the Databricks engine"
        )))
    }

    /// Runs of `workflow` active in the secondary region (which should be passive).
    async fn secondary_activity(&self, _workflow: &str) -> Result<Vec<String>, EngineError> {
        Ok(Vec::new())
    }

    /// The latest version of the table at `location` (a source or a target table).
    async fn table_version(&self, location: &str) -> Result<u64, EngineError>;

    /// The columns (name, type) of the table at `location`, for the lineage schema facet
    /// (docs/lineage.md). Empty when the engine cannot tell.
    async fn table_columns(&self, _location: &str) -> Result<Vec<(String, String)>, EngineError> {
        Ok(Vec::new())
    }

    /// Bring the target table at `location` back to `version` with a new commit (history is
    /// kept), as `RESTORE TABLE … TO VERSION AS OF` does. Returns what it did.
    async fn restore(&self, location: &str, version: u64) -> Result<String, EngineError>;

    /// The catalog objects a request carries besides its tables (docs/catalog.md), in the
    /// order they are best applied (external locations and schemas first, grants and tags
    /// last). None by default.
    async fn plan_objects(
        &self,
        _request: &ReplicationRequest,
        _settings: &CatalogSettings,
    ) -> Result<Vec<PlannedObject>, EngineError> {
        Ok(Vec::new())
    }

    /// One attempt at a catalog object: read it on both sides, apply the difference (none in
    /// a dry run). Idempotent: a second attempt finds nothing to do.
    async fn apply_object(
        &self,
        task: &CatalogTask,
        _ctx: &ObjectContext,
    ) -> Result<Applied, Failure> {
        Err(Failure::new(
            ErrorKind::Permanent,
            format!(
                "{} {}: this engine does not carry {}s",
                task.kind, task.name, task.kind
            ),
            false,
        ))
    }

    /// Catalog reconciliation: every object of the request's scope missing, extra or
    /// different on the target (tables are the reconciler's).
    async fn diff_objects(
        &self,
        _request: &ReplicationRequest,
        _settings: &CatalogSettings,
    ) -> Result<Vec<Difference>, EngineError> {
        Ok(Vec::new())
    }
}

/// The config's ingestion settings (its defaults without an `ingest` section).
fn ingest_settings(config: &replicator_common::Config) -> native::IngestSettings {
    config
        .ingest
        .as_ref()
        .map(native::IngestSettings::from_config)
        .unwrap_or_default()
}

/// The OpenLineage emitter of a config (its API key read now, from its reference).
fn lineage(config: &replicator_common::Config) -> Result<replicator_lineage::Emitter, EngineError> {
    replicator_lineage::Emitter::from_config(config)
        .map_err(|e| EngineError::NotConfigured(format!("lineage: {e}")))
}

/// The engines of one process, built once from its config and handed to every service.
#[derive(Clone)]
pub struct Engines {
    native: Arc<NativeEngine>,
    databricks: Option<Arc<DatabricksEngine>>,
    /// How catalog objects are carried (the config's `catalog` section, or its defaults).
    catalog: Arc<CatalogSettings>,
    /// The Snowflake mirror (the config's `snowflake` section).
    mirror: Option<Arc<mirror::Mirror>>,
    /// Where the workers send OpenLineage events (the config's `lineage` section; a
    /// disabled emitter without it). One per process.
    lineage: replicator_lineage::Emitter,
}

impl Default for Engines {
    /// The native engine with no configured roots (options from the environment only).
    fn default() -> Self {
        Self::native(replicator_lake::StorageRoots::default())
    }
}

impl Engines {
    /// The native engine over `storage`, and the Databricks engine if the config has a
    /// `databricks` section (its secrets are read now, from their references).
    pub fn from_config(config: &replicator_common::Config) -> Result<Self, EngineError> {
        let storage = replicator_lake::StorageRoots::from_config(config)?;
        let databricks = match &config.databricks {
            Some(d) => Some(Arc::new(
                DatabricksEngine::with_catalog(d, config.catalog.as_ref())
                    .map_err(EngineError::Setup)?
                    .with_storage_options(
                        config.source.storage_options().map_err(setup)?,
                        config.target.storage_options().map_err(setup)?,
                    ),
            )),
            None => None,
        };
        Ok(Self {
            native: Arc::new(NativeEngine::new(storage).with_ingest(ingest_settings(config))),
            databricks,
            catalog: Arc::new(config.catalog.clone().unwrap_or_default()),
            mirror: mirror::Mirror::from_config(config)?.map(Arc::new),
            lineage: lineage(config)?,
        })
    }

    /// The native engine, and the engine `kind` (read from the config only when needed:
    /// checking a native config reads no Databricks secret).
    pub fn only_for(
        config: &replicator_common::Config,
        kind: EngineKind,
    ) -> Result<Self, EngineError> {
        match kind {
            EngineKind::Native => Ok(Self {
                catalog: Arc::new(config.catalog.clone().unwrap_or_default()),
                native: Arc::new(
                    NativeEngine::new(replicator_lake::StorageRoots::from_config(config)?)
                        .with_ingest(ingest_settings(config)),
                ),
                databricks: None,
                mirror: mirror::Mirror::from_config(config)?.map(Arc::new),
                lineage: lineage(config)?,
            }),
            EngineKind::Databricks => Self::from_config(config),
        }
    }

    /// Only the native engine, over `storage` (tests, the one-table commands).
    pub fn native(storage: replicator_lake::StorageRoots) -> Self {
        Self {
            native: Arc::new(NativeEngine::new(storage)),
            databricks: None,
            catalog: Arc::default(),
            mirror: None,
            lineage: replicator_lineage::Emitter::disabled(),
        }
    }

    /// Where OpenLineage events go (docs/lineage.md); disabled without a `lineage` section.
    pub fn lineage(&self) -> &replicator_lineage::Emitter {
        &self.lineage
    }

    /// The Databricks engine, when the config has a `databricks` section.
    pub fn databricks(&self) -> Option<&DatabricksEngine> {
        self.databricks.as_deref()
    }

    /// The Snowflake mirror, when the config has a `snowflake` section.
    pub fn mirror(&self) -> Option<&mirror::Mirror> {
        self.mirror.as_deref()
    }

    /// One attempt at a catalog task with the engine it names; the Snowflake mirror's task
    /// (`mirror`) with the mirror, over that engine's tables.
    pub async fn apply_object(
        &self,
        task: &CatalogTask,
        ctx: &ObjectContext,
    ) -> Result<Applied, Failure> {
        let permanent = |e: EngineError| Failure::new(ErrorKind::Permanent, e.to_string(), false);
        if task.kind == replicator_proto::ObjectKind::Mirror {
            let mirror = self.mirror().ok_or_else(|| {
                permanent(EngineError::NotConfigured(format!(
                    "mirror {}: this worker's config has no `snowflake` section",
                    task.name
                )))
            })?;
            let sources = mirror.sources(self, task.engine).await;
            let databricks = match task.engine {
                EngineKind::Databricks => self.databricks(),
                EngineKind::Native => None,
            };
            return mirror
                .apply(task, sources, &self.native, databricks, ctx)
                .await;
        }
        self.get_for(task.engine, &task.source)
            .map_err(permanent)?
            .apply_object(task, ctx)
            .await
    }

    /// How catalog objects are carried (docs/catalog.md).
    pub fn catalog_settings(&self) -> &CatalogSettings {
        &self.catalog
    }

    /// The native engine.
    pub fn native_engine(&self) -> &NativeEngine {
        &self.native
    }

    /// The engine a message names, for a task or request at `location` (named in the error
    /// when this process has no such engine).
    pub fn get_for(&self, kind: EngineKind, location: &str) -> Result<&dyn Engine, EngineError> {
        match kind {
            EngineKind::Native => Ok(self.native.as_ref()),
            EngineKind::Databricks => match &self.databricks {
                Some(d) => Ok(d.as_ref()),
                None => {
                    let root = databricks::split(location).map_or(location, |(r, _)| r);
                    Err(EngineError::Setup(
                        replicator_databricks::DatabricksError::Config(format!(
                            "no Databricks engine for {root}: this worker's config needs the same `databricks` section"
                        )),
                    ))
                }
            },
        }
    }

    /// The engine of a table location: a `databricks:` location names the Databricks
    /// engine, any other the native one.
    pub fn for_location(&self, location: &str) -> Result<&dyn Engine, EngineError> {
        let kind = if location.starts_with(databricks::SCHEME) {
            EngineKind::Databricks
        } else {
            EngineKind::Native
        };
        self.get_for(kind, location)
    }

    /// The columns of the table at `location` by its engine, for the lineage schema facet;
    /// empty when they cannot be read (lineage never fails a task).
    pub async fn columns_of(&self, location: &str) -> Vec<(String, String)> {
        match self.for_location(location) {
            Ok(engine) => engine.table_columns(location).await.unwrap_or_default(),
            Err(_) => Vec::new(),
        }
    }

    /// The engine a message names.
    pub fn get(&self, kind: EngineKind) -> Result<&dyn Engine, EngineError> {
        self.get_for(kind, "databricks:")
    }
}
