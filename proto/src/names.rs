//! Queue, topic and routing-key names. A deployment may prefix them (`bus.prefix`) so that
//! several fleets, or parallel tests, share one broker.

/// Work queue for [`crate::ReplicationRequest`]s, consumed by planners.
pub const REQUESTS: &str = "requests";
/// Work queue for [`crate::CloneTask`]s, consumed by cloners.
pub const CLONE_TASKS: &str = "tasks.clone";
/// Work queue for [`crate::ReconcileTask`]s, consumed by reconcilers.
pub const RECONCILE_TASKS: &str = "tasks.reconcile";
/// Work queue for [`crate::CatalogTask`]s (schemas, views, volumes, grants, tags), consumed
/// by cloners.
pub const CATALOG_TASKS: &str = "tasks.catalog";

/// Routing keys on the events topic.
pub mod events {
    pub const RUN_PLANNED: &str = "run.planned";
    pub const RUN_COMPLETED: &str = "run.completed";
    pub const CLONE_SUCCEEDED: &str = "clone.succeeded";
    pub const CLONE_FAILED: &str = "clone.failed";
    pub const RECONCILE_MATCHED: &str = "reconcile.matched";
    pub const RECONCILE_MISMATCHED: &str = "reconcile.mismatched";
    pub const RECONCILE_FAILED: &str = "reconcile.failed";
    pub const CATALOG_APPLIED: &str = "catalog.applied";
    pub const CATALOG_FAILED: &str = "catalog.failed";
    pub const DEAD_LETTER: &str = "dead_letter";
    pub const SYNC_SUCCEEDED: &str = "sync.succeeded";
    pub const SYNC_FAILED: &str = "sync.failed";
    pub const SYNC_LAGGING: &str = "sync.lagging";
}
