//! `replicator audit export RUN_ID|--all TARGET`: the store's history — runs, tasks,
//! attempts, results (each stage's result message as JSON) and notifications — as Delta
//! tables under `TARGET` (`TARGET/runs`, `TARGET/tasks`, …), partitioned by `run_id`.
//!
//! Exporting one run replaces that run's partition in each table in one commit; `--all`
//! replaces every table's contents. Both are idempotent: exporting again gives the same
//! rows, never duplicates.

use std::sync::Arc;

use anyhow::Context;
use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use replicator_common::Config;
use replicator_lake::export::replace_partition;
use replicator_store::{AUDIT_TABLES, AuditTable, AuditType, AuditValue, Store};
use uuid::Uuid;

/// What one audit table received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exported {
    pub table: String,
    pub location: String,
    pub rows: usize,
    pub version: u64,
}

/// Export one run (or all runs) from the config's state store to Delta tables under
/// `target`.
pub async fn export(
    config: &Config,
    run_id: Option<Uuid>,
    target: &str,
) -> anyhow::Result<Vec<Exported>> {
    let root = replicator_lake::StorageRoots::from_config(config)?.resolve(target)?;
    let store = Store::open(&config.state.url)
        .await
        .context("opening the state store")?;
    if let Some(id) = run_id {
        store
            .run(id)
            .await?
            .with_context(|| format!("run {id} is not in the state store"))?;
    }
    let mut out = Vec::new();
    for table in AUDIT_TABLES {
        let rows = store.audit_rows(table, run_id).await?;
        let batch = to_batch(table, &rows)?;
        let loc = root.child(table.name)?;
        let only = run_id.map(|r| r.to_string());
        let version = replace_partition(&loc, &batch, "run_id", only.as_deref())
            .await
            .with_context(|| format!("writing {}", loc.url()))?;
        out.push(Exported {
            table: table.name.to_owned(),
            location: loc.url().to_string(),
            rows: rows.len(),
            version,
        });
    }
    Ok(out)
}

fn to_batch(table: &AuditTable, rows: &[Vec<AuditValue>]) -> anyhow::Result<RecordBatch> {
    let fields: Vec<Field> = table
        .columns
        .iter()
        .map(|(name, t)| {
            let ty = match t {
                AuditType::Text => DataType::Utf8,
                AuditType::Int => DataType::Int64,
            };
            Field::new(*name, ty, true)
        })
        .collect();
    let columns: Vec<ArrayRef> = table
        .columns
        .iter()
        .enumerate()
        .map(|(i, (_, t))| -> ArrayRef {
            match t {
                AuditType::Text => Arc::new(
                    rows.iter()
                        .map(|r| match &r[i] {
                            AuditValue::Text(v) => v.clone(),
                            AuditValue::Int(v) => v.map(|n| n.to_string()),
                        })
                        .collect::<StringArray>(),
                ),
                AuditType::Int => Arc::new(
                    rows.iter()
                        .map(|r| match &r[i] {
                            AuditValue::Int(v) => *v,
                            AuditValue::Text(v) => v.as_deref().and_then(|s| s.parse().ok()),
                        })
                        .collect::<Int64Array>(),
                ),
            }
        })
        .collect();
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}
