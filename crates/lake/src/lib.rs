//! Table engines. This crate holds the **native Delta engine**: a deep clone that needs no
//! Databricks compute, built on delta-rs (`deltalake`) for reading snapshots and
//! `object_store` for every byte it moves.
//!
//! - [`location`]: where a table lives (a local path or `file://` URL, an object store and a
//!   prefix in it);
//! - [`clone`]: `deep_clone(source, target, options)` with the semantics of Databricks
//!   `CREATE OR REPLACE TABLE t DEEP CLONE s [VERSION AS OF n]`: copy first, commit last; as
//!   a plan (`plan_clone`, a [`ClonePlan`]) and its execution (`clone::execute`);
//! - [`discover`]: find Delta tables at any depth under a root, name them, filter them;
//! - [`inspect`]: row counts (from log statistics or by scanning), schemas, and rows for
//!   comparison;
//! - [`compare`]: key-level reconciliation (missing, extra and changed keys) and
//!   per-partition checksums, streamed with bounded memory;
//! - [`export`]: replace a partition of a Delta table in one commit (audit export);
//! - [`restore`]: `RESTORE TABLE … TO VERSION AS OF n` with one new commit (failover);
//! - [`sync_meta`]: the sync groups' metadata table (one row per group, both regions);
//! - [`unchanged`]: where a table's log stands (a commit's version and fingerprint), read
//!   without a snapshot, to prove a replica pair unchanged since its last deep validation,
//!   and the newest commit after an instant (what a sync group's cut does not cover);
//! - [`volume`]: file trees that are not tables (volumes): discovered under a root, synced
//!   incrementally and atomically file by file, diffed.

pub mod clone;
pub mod compare;
mod delta_rs;
pub mod discover;
pub mod error;
pub mod export;
pub mod inspect;
pub mod location;
pub mod restore;
pub mod sample;
pub mod sync_meta;
pub mod unchanged;
pub mod volume;

pub use clone::{CloneOptions, ClonePlan, CloneProgress, CloneReport, deep_clone, plan_clone};
pub use discover::{DiscoveredTable, TableMatcher, discover};
pub use error::LakeError;
pub use location::{StorageRoots, TableLocation};
pub use volume::{
    DiscoveredVolume, VolumeDiff, VolumeOptions, VolumeSynced, diff_volume, discover_volumes,
    sync_volume,
};
