//! The catalog part of the seam (docs/catalog.md): the objects of a request besides its
//! tables, one attempt at one of them, and the inventory diff of catalog reconciliation.

use replicator_common::config::CatalogSettings;
use replicator_proto::{CatalogOutcome, ObjectKind, Shard};
use serde::Serialize;
use uuid::Uuid;

/// One catalog object of a plan: what one catalog task will apply.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedObject {
    pub task_id: Uuid,
    pub kind: ObjectKind,
    /// The object's name in the source.
    pub name: String,
    pub source: String,
    /// The target object, after the mappings.
    pub target: String,
    /// For grants: the securable type.
    pub securable: Option<String>,
    /// For a large volume: the part of its files this task copies.
    pub shard: Option<Shard>,
    /// A native volume of loose files (see `CatalogTask::loose`).
    pub loose: bool,
}

impl PlannedObject {
    pub fn new(kind: ObjectKind, name: String, source: String, target: String) -> Self {
        Self {
            task_id: Uuid::now_v7(),
            kind,
            name,
            source,
            target,
            securable: None,
            shard: None,
            loose: false,
        }
    }
}

/// What one attempt at a catalog object did (or, in a dry run, would do).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Applied {
    /// DDL / GRANT / REVOKE statements run (dry run: that would run), in order.
    pub statements: Vec<String>,
    /// What could only be reported.
    pub findings: Vec<String>,
    /// Files moved (volumes).
    pub files_copied: u64,
    pub bytes_copied: u64,
    pub files_deleted: u64,
    pub files_unchanged: u64,
    /// Inventory check: how many of the findings are differences (missing, extra,
    /// different) rather than objects reported by design.
    pub mismatches: u64,
}

impl Applied {
    /// How the task ended, from what it did.
    pub fn outcome(&self) -> CatalogOutcome {
        if self.mismatches > 0 {
            CatalogOutcome::Mismatched
        } else if !self.statements.is_empty() || self.files_copied > 0 || self.files_deleted > 0 {
            CatalogOutcome::Applied
        } else if !self.findings.is_empty() {
            CatalogOutcome::Reported
        } else {
            CatalogOutcome::Unchanged
        }
    }
}

/// What an attempt at a catalog object is given besides its task.
#[derive(Clone, Debug)]
pub struct ObjectContext {
    /// Read both sides and work out the difference, change nothing.
    pub dry_run: bool,
    pub settings: CatalogSettings,
    /// Files copied at once within a volume.
    pub parallelism: usize,
}

/// One difference between the source's catalog and the target's.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Difference {
    pub kind: ObjectKind,
    /// The object (its source name).
    pub name: String,
    /// `missing`, `extra` or `different`.
    pub state: DiffState,
    /// What differs, in a line.
    pub detail: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DiffState {
    Missing,
    Extra,
    Different,
    /// On the source, not replicated by design (a materialized view, a row filter whose
    /// function the target lacks) or not mappable.
    Reported,
}

impl Difference {
    /// Whether this is a real difference (the target's catalog is not the source's), not
    /// an object reported by design.
    pub fn is_mismatch(&self) -> bool {
        self.state != DiffState::Reported
    }
}

/// The inventory check's account of the differences found: every difference a finding,
/// those that are not by design counted as mismatches.
/// The differences come first, then what is reported by design.
pub fn inventory_applied(diffs: &[Difference]) -> Applied {
    let (differences, reported): (Vec<&Difference>, Vec<&Difference>) =
        diffs.iter().partition(|d| d.is_mismatch());
    Applied {
        mismatches: differences.len() as u64,
        findings: differences
            .into_iter()
            .chain(reported)
            .map(ToString::to_string)
            .collect(),
        ..Applied::default()
    }
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state {
            DiffState::Missing => "missing on the target",
            DiffState::Extra => "extra on the target",
            DiffState::Different => "different",
            DiffState::Reported => "reported, not replicated",
        };
        write!(f, "{} {}: {state}", self.kind, self.name)?;
        if !self.detail.is_empty() {
            write!(f, " ({})", self.detail)?;
        }
        Ok(())
    }
}
