//! Message contracts shared by every replicator service.
//!
//! Every message carries a [`Header`] (`schema_version`, `message_id`, `run_id`,
//! `created_at`); tasks also carry `task_id` and `attempt`. Messages are JSON on the wire.
//! Unknown fields are ignored so that newer producers can talk to older consumers; a message
//! whose `schema_version` is newer than [`SCHEMA_VERSION`] is refused by [`decode`] and goes
//! to dead letters with the reason, as does anything that does not parse.
//!
//! JSON Schemas for clients in other languages are generated into `proto/schemas/` by
//! `cargo run -p replicator-proto --bin gen-schemas`; a test fails when they are stale.
//!
//! Queue and topic names live in [`names`].
//!
//! The contracts by module, all re-exported here: `header` (the [`Header`], the schema
//! version, [`decode`] and [`encode`]), `requests` (what a client asks for), `tasks` (work
//! items), `results` (what a task produced), `events` (the run's announcements and dead
//! letters) and `summaries` (a finished run, table by table).

mod catalog;
mod events;
mod header;
mod ingest;
pub mod names;
mod requests;
mod results;
mod summaries;
mod tasks;

pub use catalog::{CatalogOutcome, CatalogResult, CatalogTask, ObjectKind, Shard};
pub use events::{DeadLetter, PlannedTable, RunCompleted, RunPlanned, SyncNotice};
pub use header::{DecodeError, Header, Message, SCHEMA_VERSION, decode, encode};
pub use ingest::{IngestMetrics, IngestMode, IngestSource};
pub use requests::{EngineKind, Operation, ReplicationRequest, TableFilter};
pub use results::{
    Check, CloneMetrics, ClonePath, CloneResult, ErrorKind, KeyDiff, Outcome, PartitionDiff,
    ReconcileResult, TaskError, Validation, ValidationDepth,
};
pub use summaries::{RunSummary, TableStatus, TableSummary};
pub use tasks::{CloneTask, ReconcileTask};

macro_rules! message {
    ($($ty:ident => $name:literal),* $(,)?) => {
        $(impl Message for $ty {
            const NAME: &'static str = $name;
            fn header(&self) -> &Header { &self.header }
        })*

        /// JSON Schema of every message, by file name.
        pub fn all_schemas() -> Vec<(&'static str, serde_json::Value)> {
            vec![$(($name, serde_json::to_value(schemars::schema_for!($ty)).expect("schema serializes"))),*]
        }
    };
}

message! {
    ReplicationRequest => "replication_request",
    RunPlanned => "run_planned",
    CloneTask => "clone_task",
    CloneResult => "clone_result",
    ReconcileTask => "reconcile_task",
    ReconcileResult => "reconcile_result",
    RunCompleted => "run_completed",
    DeadLetter => "dead_letter",
    SyncNotice => "sync_notice",
    CatalogTask => "catalog_task",
    CatalogResult => "catalog_result",
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fails when `proto/schemas/` does not match the types: regenerate with
    /// `cargo run -p replicator-proto --bin gen-schemas`.
    #[test]
    fn schemas_are_fresh() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
        for (name, schema) in all_schemas() {
            let path = dir.join(format!("{name}.json"));
            let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
            let expected = serde_json::to_string_pretty(&schema).unwrap() + "\n";
            assert!(
                on_disk == expected,
                "{} is stale: run `cargo run -p replicator-proto --bin gen-schemas`",
                path.display()
            );
        }
    }
}
