//! Run, task and audit state.
//!
//! The store records runs, their tasks (one per table), every attempt of every stage, the
//! result of each stage verbatim, and the last source version cloned into each target. It
//! is the source of truth for "is this run finished?": the notifier completes a run when no
//! task of it is left in a non-terminal state, whichever process recorded the last result.
//!
//! Embedded mode uses a SQLite file (WAL, `synchronous = NORMAL`, one connection, created on
//! first use); fleet mode uses PostgreSQL. The schema lives in `migrations/` and is applied
//! on open.
//!
//! - [`open`](Store::open) (`open.rs`): the backend a URL names, the pool, the migrations.
//! - `runs.rs`: a run and its tasks created at once; progress, summary, completion.
//! - `tasks.rs`: each stage's result, recorded once (the first result stands); task status.
//! - `attempts.rs`: every attempt with its worker and [`AttemptOutcome`].
//! - `leases.rs`: one clone of a target at a time, per [`LeaseToken`].
//! - `notifications.rs`, `validations.rs` (the last deep validation of each pair),
//!   `audit.rs` (the trail as typed tables).
//! - `state.rs`: [`TaskStatus`], [`AttemptOutcome`] and [`Stage`], stored as the same words
//!   as ever (`queued`, `succeeded`, …).

use chrono::Utc;
use sqlx::AnyPool;

mod attempts;
mod audit;
mod catalog;
mod console;
mod error;
mod ingest;
mod leases;
mod notifications;
mod open;
#[cfg(test)]
mod plans;
mod runs;
mod state;
mod sync;
mod tasks;
#[cfg(test)]
mod testing;
mod validations;

pub use attempts::{AttemptEnd, AttemptLog, AttemptRecord, StageEnd, Started};
pub use audit::{AUDIT_TABLES, AuditTable, AuditType, AuditValue};
pub use catalog::catalog_detail;
pub use console::{RunOverview, TargetTask};
pub use error::StoreError;
pub use leases::LeaseToken;
pub use notifications::NotificationRecord;
pub use open::Backend;
pub use runs::{NewRun, NewTask, RunProgress, RunRecord};
pub use state::{AttemptOutcome, Stage, TaskStatus, UnknownState};
pub(crate) use state::{clone_pending_sql, terminal_sql};
pub use sync::{CutTable, Fire, GroupState, SyncStatus};
pub use tasks::{Recorded, TaskRecord};
pub use validations::DeepValidation;

/// Handle to the state database.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

/// Now, as stored: RFC 3339 with microseconds, UTC.
fn now() -> String {
    Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// A time as stored by [`now`], if there is one and it parses.
fn parse_time(s: Option<String>) -> Option<chrono::DateTime<Utc>> {
    s.and_then(|s| chrono::DateTime::parse_from_rfc3339(&s).ok())
        .map(|d| d.with_timezone(&Utc))
}

fn opt_i64(v: Option<u64>) -> Option<i64> {
    v.map(|v| v as i64)
}
