//! OpenLineage for replicator (docs/lineage.md): a `RunEvent` (START, COMPLETE, FAIL) per
//! clone, ingest, mirror and reconciliation task, linked to its replication run by the
//! `parent` facet, with input and output datasets named as OpenLineage's naming spec says
//! for their store, and sent over HTTP (Marquez's `POST /api/v1/lineage`) by an
//! [`Emitter`] that never blocks a worker.
//!
//! - [`model`]: the event and the facets replicator sends;
//! - [`naming`]: dataset namespace and name from a location ([`dataset`]);
//! - [`TaskLineage`] / [`RunLineage`]: the events, one call each;
//! - [`Emitter`]: the bounded queue and the background sender, with retries.
//!
//! ```no_run
//! # async fn example(config: &replicator_common::config::LineageConfig) -> Result<(), replicator_lineage::LineageError> {
//! use replicator_lineage::{Emitter, TaskLineage, TaskMetrics};
//! let lineage = Emitter::new(config)?;
//! let (run_id, task_id) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
//! let task = TaskLineage::new(run_id, task_id, "clone sales.orders")
//!     .input("s3://prod-lake/sales/orders")
//!     .output("/lake/replica/sales/orders");
//! lineage.task_started(&task);
//! // … the clone …
//! lineage.task_completed(&task, &TaskMetrics { bytes_copied: Some(1 << 20), ..Default::default() });
//! lineage.flush(std::time::Duration::from_secs(5)).await;
//! # Ok(()) }
//! ```

mod emitter;
pub mod model;
pub mod naming;
mod task;

pub use emitter::{Emitter, LineageError};
pub use model::{EventType, PRODUCER, RunEvent};
pub use naming::{Dataset, dataset, dataset_with_account, table_dataset};
pub use task::{Check, REPLICATION_JOB, Reconciliation, RunLineage, TaskLineage, TaskMetrics};
