//! What the emulated workspaces hold: the metastores of a [`World`], the faults to inject,
//! the statements submitted, and the record of every call.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use uuid::Uuid;

/// A table in an emulated metastore.
#[derive(Clone, Debug)]
pub struct Table {
    /// `MANAGED`, `EXTERNAL`, `STREAMING_TABLE`, `MATERIALIZED_VIEW`, `VIEW`.
    pub table_type: String,
    pub location: PathBuf,
    pub properties: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default)]
pub(super) struct Catalog {
    /// Set for a catalog created `USING SHARE provider.share`.
    pub(super) share: Option<(String, String)>,
    pub(super) schemas: BTreeMap<String, BTreeMap<String, Table>>,
}

#[derive(Clone, Debug, Default)]
pub(super) struct Share {
    pub(super) objects: Vec<SharedObj>,
    pub(super) grants: BTreeMap<String, BTreeSet<String>>,
}

/// An entry of a share: a schema (all its tables, without their history) or a table (with
/// its history when added with `history_data_sharing_status: ENABLED`).
#[derive(Clone, Debug)]
pub(super) struct SharedObj {
    pub(super) name: String,
    /// `SCHEMA` or `TABLE`.
    pub(super) kind: String,
    pub(super) history: bool,
}

#[derive(Clone, Debug)]
pub(super) struct Metastore {
    pub(super) name: String,
    pub(super) root: PathBuf,
    /// The name this metastore has as a provider in other metastores.
    pub(super) provider_name: String,
    pub(super) catalogs: BTreeMap<String, Catalog>,
    /// recipient name -> recipient's global metastore ID
    pub(super) recipients: BTreeMap<String, String>,
    pub(super) shares: BTreeMap<String, Share>,
    /// Comments, owners, tags, grants, views, functions (`catalog_objects.rs`).
    pub(super) objects: super::catalog_objects::Objects,
}

/// Metastores, by global metastore ID, shared by every emulated workspace.
#[derive(Clone, Default)]
pub struct World {
    pub(super) metastores: Arc<Mutex<BTreeMap<String, Metastore>>>,
    /// Volumes, external locations and storage credentials, by global metastore ID.
    pub(super) volumes: Arc<Mutex<BTreeMap<String, super::volumes::VolumeStore>>>,
    /// Credential vending (`credentials.rs`).
    pub(super) vending: Arc<Mutex<super::credentials::Vending>>,
}

impl World {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add a metastore with managed storage under `root`; returns its global ID.
    pub fn add_metastore(&self, name: &str, root: &FsPath) -> String {
        let id = format!("aws:us-east-1:{}", Uuid::new_v4());
        let mut catalogs = BTreeMap::new();
        catalogs.insert("__databricks_internal".to_owned(), Catalog::default());
        self.metastores.lock().unwrap().insert(
            id.clone(),
            Metastore {
                name: name.to_owned(),
                root: root.to_owned(),
                provider_name: format!("{name}_provider"),
                catalogs,
                recipients: BTreeMap::new(),
                shares: BTreeMap::new(),
                objects: Default::default(),
            },
        );
        id
    }

    /// Register a table (creating its catalog and schema as needed).
    pub fn add_table(
        &self,
        metastore: &str,
        catalog: &str,
        schema: &str,
        name: &str,
        table: Table,
    ) {
        let mut ms = self.metastores.lock().unwrap();
        let m = ms.get_mut(metastore).expect("metastore exists");
        m.catalogs
            .entry(catalog.to_owned())
            .or_default()
            .schemas
            .entry(schema.to_owned())
            .or_default()
            .insert(name.to_owned(), table);
    }

    /// Register a streaming table maintained by `pipeline`: the table itself and its backing
    /// table in `__databricks_internal`, both over the Delta directory `location`.
    pub fn add_streaming_table(
        &self,
        metastore: &str,
        catalog: &str,
        schema: &str,
        name: &str,
        pipeline: &str,
        location: &FsPath,
    ) {
        let props = BTreeMap::from([("pipelines.pipelineId".to_owned(), pipeline.to_owned())]);
        self.add_table(
            metastore,
            catalog,
            schema,
            name,
            Table {
                table_type: "STREAMING_TABLE".into(),
                location: location.to_owned(),
                properties: props,
            },
        );
        let internal = format!(
            "__dlt_materialization_schema_{}",
            pipeline.replace('-', "_")
        );
        self.add_table(
            metastore,
            "__databricks_internal",
            &internal,
            name,
            Table {
                table_type: "MANAGED".into(),
                location: location.to_owned(),
                properties: BTreeMap::new(),
            },
        );
    }

    /// Unregister the table `catalog.schema.table` of a metastore (as `DROP TABLE` does to a
    /// table another tool dropped); its files stay. Returns whether it was registered.
    pub fn remove_table(&self, metastore: &str, catalog: &str, schema: &str, name: &str) -> bool {
        let mut ms = self.metastores.lock().unwrap();
        ms.get_mut(metastore)
            .and_then(|m| m.catalogs.get_mut(catalog))
            .and_then(|c| c.schemas.get_mut(schema))
            .and_then(|s| s.remove(name))
            .is_some()
    }

    /// The table `catalog.schema.table` of a metastore, if registered.
    pub fn table(&self, metastore: &str, catalog: &str, schema: &str, name: &str) -> Option<Table> {
        let ms = self.metastores.lock().unwrap();
        ms.get(metastore)?
            .catalogs
            .get(catalog)?
            .schemas
            .get(schema)?
            .get(name)
            .cloned()
    }
}

/// Faults to inject.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Answer this many of the next API requests (the token endpoint excepted) with
    /// `throttle_status` and `Retry-After: retry_after_s`.
    pub throttle: u32,
    /// 429 (default when 0) or 503.
    pub throttle_status: u16,
    pub retry_after_s: u64,
    /// Statements whose text contains the first string fail with the error code in the
    /// second, as many times as the third says.
    pub fail: Vec<(String, String, u32)>,
    /// Statements whose text contains one of these stay RUNNING until cancelled.
    pub hang: Vec<String>,
    /// Polls a statement reports PENDING/RUNNING before its terminal state (default 0).
    pub min_polls: u32,
    /// Insert an empty page (still carrying a next token) before every page of a listing.
    pub empty_pages: bool,
    /// Page size of listings, whatever `max_results` asks (0: as asked).
    pub page_size: usize,
    /// Rows per result chunk (0: one chunk); further chunks are fetched through
    /// `next_chunk_internal_link`.
    pub chunk_rows: usize,
    /// Requests whose path starts with one of these get a bare 404 with an HTML body, as a
    /// gateway or a wrong host answers: no Databricks error object.
    pub bare_404: Vec<String>,
    /// Requests whose path starts with one of these get 404 `ENDPOINT_NOT_FOUND`, as
    /// Databricks answers for an API it does not serve.
    pub endpoint_not_found: Vec<String>,
    /// Names (of a recipient or share to create, or a share to add objects to) that a
    /// concurrent run creates just before this workspace handles the request: the request
    /// then meets the existing object (409 `RESOURCE_ALREADY_EXISTS`). Each entry is used
    /// once.
    pub concurrent_create: Vec<String>,
    /// Which state fields runs carry in `jobs/runs/list` answers.
    pub run_fields: RunFields,
    /// Entries added to Files API directory listings: (directory listed, `path` reported),
    /// e.g. a path escaping the volume, as a broken or hostile server could answer.
    pub listing_inject: Vec<(String, String)>,
    /// Files API paths (`/Volumes/…`) whose file gains a byte just before a download of it
    /// is served, once each: a source file changing between its listing and its copy.
    pub change_on_download: Vec<String>,
}

/// How a run of an emulated job ends, or that it has not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunResult {
    Success,
    /// Terminated with task failures (`FAILED` / `RUN_EXECUTION_ERROR`).
    Failed,
    /// Cancelled by a user (`CANCELED` / `USER_CANCELED`).
    Canceled,
    /// Still going (`RUNNING`); its end time is ignored.
    Running,
    /// Waiting for a slot (`QUEUED`); its end time is ignored.
    Queued,
}

impl RunResult {
    pub(super) fn active(self) -> bool {
        matches!(self, Self::Running | Self::Queued)
    }
}

/// Which state fields runs carry in `jobs/runs/list` answers: both (what Jobs API 2.2
/// sends: `status`, and `state`, deprecated), or one of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RunFields {
    #[default]
    Both,
    /// Only `state` (`life_cycle_state`, `result_state`), as Jobs API 2.1 answers.
    StateOnly,
    /// Only `status` (`state`, `termination_details`).
    StatusOnly,
}

#[derive(Clone, Debug)]
pub(super) struct JobRun {
    pub(super) run_id: i64,
    pub(super) start_ms: i64,
    pub(super) end_ms: i64,
    pub(super) result: RunResult,
}

#[derive(Clone, Debug)]
pub(super) struct Job {
    pub(super) job_id: i64,
    pub(super) name: String,
    pub(super) runs: Vec<JobRun>,
}

/// The jobs of one workspace (jobs belong to a workspace, not to a metastore).
#[derive(Clone, Debug, Default)]
pub(super) struct Jobs {
    pub(super) next_id: i64,
    pub(super) jobs: Vec<Job>,
}

/// How clients may log in.
#[derive(Clone, Debug)]
pub struct WorkspaceAuth {
    pub pat: Option<String>,
    pub oauth: Option<(String, String)>,
    /// Lifetime of issued OAuth tokens, seconds.
    pub token_lifetime_s: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub(super) enum StmtState {
    Pending,
    Running,
    Succeeded(Vec<String>, Vec<Vec<Option<String>>>),
    Failed(String, String),
    Canceled,
}

impl StmtState {
    pub(super) fn terminal(&self) -> bool {
        !matches!(self, Self::Pending | Self::Running)
    }
}

pub(super) struct Stmt {
    pub(super) state: StmtState,
    pub(super) polls: u32,
    pub(super) task: Option<tokio::task::JoinHandle<()>>,
    /// Keeps a never-finishing statement's completion channel open.
    pub(super) hold: Option<watch::Sender<bool>>,
}

/// A recorded request.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    pub method: String,
    pub path: String,
}

pub(super) struct Inner {
    pub(super) world: World,
    pub(super) metastore: String,
    pub(super) warehouse_id: String,
    pub(super) auth: WorkspaceAuth,
    pub(super) faults: Mutex<Faults>,
    /// issued OAuth tokens -> still valid
    pub(super) tokens: Mutex<HashMap<String, bool>>,
    pub(super) token_requests: Mutex<u32>,
    pub(super) statements: Mutex<HashMap<String, Stmt>>,
    pub(super) calls: Mutex<Vec<Call>>,
    pub(super) sql: Mutex<Vec<(String, String)>>,
    pub(super) cancels: Mutex<Vec<String>>,
    pub(super) jobs: Mutex<Jobs>,
}

pub(super) fn state_name(s: &StmtState) -> &'static str {
    match s {
        StmtState::Pending => "PENDING",
        StmtState::Running => "RUNNING",
        StmtState::Succeeded(..) => "SUCCEEDED",
        StmtState::Failed(..) => "FAILED",
        StmtState::Canceled => "CANCELED",
    }
}
