//! Planning for the Databricks engine: the source is expanded through Unity Catalog and,
//! unless this is a dry run, Delta Sharing is set up (idempotently) so that every clone task
//! can run on its own.

use replicator_proto::ReplicationRequest;
use uuid::Uuid;

use crate::{Plan, PlanError, PlannedItem};

pub(crate) async fn plan(request: &ReplicationRequest, dry_run: bool) -> Result<Plan, PlanError> {
    let tables = replicator_databricks::fleet::plan(&request.source_root, !dry_run).await?;
    Ok(Plan {
        run_id: request.header.run_id,
        operation: request.operation,
        items: tables
            .into_iter()
            .map(|t| PlannedItem {
                task_id: Uuid::now_v7(),
                table: t.table,
                source: t.source,
                target: t.target,
                source_version: None,
                would: None,
                problem: None,
            })
            .collect(),
    })
}
