//! Catalog replication on Databricks: the objects around the tables — catalogs, schemas,
//! views, grants, tags, comments, owners, row filters and column masks.
//!
//! - [`inventory`] reads one catalog of a workspace through Unity Catalog's REST API (the
//!   same reads are sent in a dry run), and [`view_order`] sorts its views so each comes
//!   after the views it reads;
//! - [`CatalogSync`] holds a source and a target workspace, a [`Mapping`] and the
//!   [`SyncOptions`]; each of its `sync_*` functions reads the source object and the target
//!   object *now*, computes the difference after mapping, and issues only the statements
//!   needed on the target warehouse — a second run issues none. Each returns an
//!   [`Outcome`]: the statements (issued, or only recorded in a dry run), findings (what is
//!   reported and not applied) and whether anything changed;
//! - [`diff_catalog`] compares a source and a target inventory after mapping (catalog
//!   reconciliation).
//!
//! Grants are diffed, not replayed: only the privileges the target lacks are granted;
//! privileges only the target has are reported and revoked only with
//! [`SyncOptions::revoke_extra`]. Row filters and column masks are applied only when the
//! target has their (mapped) function; otherwise they are reported with the reason. Owners
//! are set only with [`SyncOptions::owners`].

mod diff;
mod grants;
mod inventory;
pub mod sql;
mod sync;

use std::collections::BTreeSet;
use std::sync::Mutex;

use replicator_common::mapping::{Mapping, MappingError};
use replicator_common::retry::Retryable;
use serde::Serialize;

use crate::DatabricksError;
use crate::client::WorkspaceClient;

pub use diff::{Finding, FindingKind, diff_catalog};
pub use inventory::{
    CatalogObject, ColumnObject, Inventory, InventoryFilter, SchemaObject, TableObject, inventory,
    view_order,
};

/// What one sync did (or, in a dry run, would do).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Outcome {
    /// Every statement issued on the target, in order (in a dry run: recorded, not sent).
    pub statements: Vec<String>,
    /// What was reported and not applied, one line each, naming the object.
    pub findings: Vec<String>,
    /// Whether a statement was issued.
    pub changed: bool,
    /// The warehouse's ID of each statement run, in order (none in a dry run), for the
    /// audit.
    pub statement_ids: Vec<String>,
}

/// Switches of catalog replication.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncOptions {
    /// Revoke privileges the target has and the source does not (otherwise reported).
    pub revoke_extra: bool,
    /// Replicate owners (mapped like any principal).
    pub owners: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// What `object` needs (a view's dependency, the table whose tags are synced, the
    /// securable whose grants are) is not on the target yet: retry once it is replicated.
    #[error("{object} waits for {missing}: it is not on the target yet")]
    Waits { object: String, missing: String },
    /// Views that read each other in a circle.
    #[error("views depend on each other in a cycle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
    #[error(transparent)]
    Mapping(#[from] MappingError),
    #[error(transparent)]
    Databricks(#[from] DatabricksError),
    /// An object that cannot be replicated as it is (a name that cannot be quoted, a target
    /// of another kind, a missing source object).
    #[error("{0}")]
    Refused(String),
}

impl Retryable for CatalogError {
    fn is_transient(&self) -> bool {
        match self {
            Self::Waits { .. } => true,
            Self::Databricks(e) => e.is_transient(),
            Self::Cycle(_) | Self::Mapping(_) | Self::Refused(_) => false,
        }
    }
}

/// A source and a target workspace, the mapping between them, and the options.
///
/// In a dry run nothing is created, so objects this run would create (a catalog, a schema,
/// a view) are remembered: later syncs treat them as existing and empty, so the dry run
/// lists every statement a real run would issue, in order.
#[derive(Debug)]
pub struct CatalogSync<'a> {
    pub source: &'a WorkspaceClient,
    pub target: &'a WorkspaceClient,
    pub mapping: &'a Mapping,
    pub options: &'a SyncOptions,
    planned: Mutex<BTreeSet<String>>,
}

impl<'a> CatalogSync<'a> {
    pub fn new(
        source: &'a WorkspaceClient,
        target: &'a WorkspaceClient,
        mapping: &'a Mapping,
        options: &'a SyncOptions,
    ) -> Self {
        Self {
            source,
            target,
            mapping,
            options,
            planned: Mutex::new(BTreeSet::new()),
        }
    }

    /// Remember that this dry run would create the target object `name`.
    fn plan(&self, name: &str) {
        if self.target.is_dry_run() {
            self.planned
                .lock()
                .expect("planned lock")
                .insert(name.to_owned());
        }
    }

    /// Whether this dry run would have created the target object `name`.
    fn planned(&self, name: &str) -> bool {
        self.planned.lock().expect("planned lock").contains(name)
    }

    /// Issue `statements` on the target, in order, and make the outcome. A dry-run client
    /// records them instead.
    async fn apply(
        &self,
        statements: Vec<String>,
        findings: Vec<String>,
    ) -> Result<Outcome, CatalogError> {
        let mut statement_ids = Vec::new();
        for s in &statements {
            let done = self.target.execute(s).await?;
            if !self.target.is_dry_run() {
                statement_ids.push(done.statement_id);
            }
        }
        Ok(Outcome {
            changed: !statements.is_empty(),
            statements,
            findings,
            statement_ids,
        })
    }
}
