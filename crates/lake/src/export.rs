//! Writing rows into Delta tables with delta-rs's own writer: creating a table from a batch's
//! schema, and replacing a set of its files (a partition, or everything) with new rows in
//! one atomic commit. `replicator audit export` lands the store's history this way, where a
//! Databricks user can query it with SQL; [`crate::sample`] builds test tables with it.

use std::collections::HashMap;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType as ArrowType, Schema};
use deltalake::DeltaTable;
use deltalake::kernel::transaction::CommitBuilder;
use deltalake::kernel::{Action, DataType, StructField};
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};

use crate::clone::{has_delta_log, load};
use crate::{LakeError, TableLocation};

pub(crate) fn delta(loc: &TableLocation, e: deltalake::DeltaTableError) -> LakeError {
    LakeError::from_delta(loc.url().as_str(), None, e)
}

/// Create an empty table (version 0) with `schema`'s columns, partitioned by `partitions`.
/// Arrow types map to Delta `long`, `double`, `timestamp_ntz`, `timestamp`, else `string`.
pub(crate) async fn create_table(
    loc: &TableLocation,
    schema: &Schema,
    partitions: &[&str],
) -> Result<DeltaTable, LakeError> {
    let columns: Vec<StructField> = schema
        .fields()
        .iter()
        .map(|f| {
            let ty = match f.data_type() {
                ArrowType::Int64 => DataType::LONG,
                ArrowType::Float64 => DataType::DOUBLE,
                ArrowType::Timestamp(_, None) => DataType::TIMESTAMP_NTZ,
                ArrowType::Timestamp(_, Some(_)) => DataType::TIMESTAMP,
                _ => DataType::STRING,
            };
            StructField::new(f.name().clone(), ty, f.is_nullable())
        })
        .collect();
    if let Some(dir) = loc.local_dir() {
        std::fs::create_dir_all(dir)
            .map_err(|e| LakeError::Invalid(format!("cannot create {}: {e}", dir.display())))?;
    }
    DeltaTable::try_from_url(loc.url().clone())
        .await
        .map_err(|e| delta(loc, e))?
        .create()
        .with_columns(columns)
        .with_partition_columns(partitions.iter().map(|p| p.to_string()))
        .with_save_mode(SaveMode::ErrorIfExists)
        .await
        .map_err(|e| delta(loc, e))
}

/// In one commit, remove the active files whose partition values `remove` selects and add
/// `batch`'s rows. Returns the new version (the current one when there is nothing to do).
pub(crate) async fn replace_files(
    loc: &TableLocation,
    batch: &RecordBatch,
    remove: impl Fn(&HashMap<String, Option<String>>) -> bool,
    operation: DeltaOperation,
) -> Result<u64, LakeError> {
    let table = load(loc, None).await?;
    let snap = table.snapshot().map_err(|e| delta(loc, e))?;
    let mut actions: Vec<Action> = snap
        .log_data()
        .iter()
        .filter(|f| remove(&f.partition_values_map()))
        .map(|f| Action::Remove(f.remove_action(true)))
        .collect();
    if batch.num_rows() > 0 {
        let mut writer = RecordBatchWriter::for_table(&table).map_err(|e| delta(loc, e))?;
        writer
            .write(batch.clone())
            .await
            .map_err(|e| delta(loc, e))?;
        actions.extend(
            writer
                .flush()
                .await
                .map_err(|e| delta(loc, e))?
                .into_iter()
                .map(Action::Add),
        );
    }
    if actions.is_empty() {
        return Ok(snap.version() as u64);
    }
    let done = CommitBuilder::default()
        .with_actions(actions)
        .build(Some(snap), table.log_store(), operation)
        .await
        .map_err(|e| delta(loc, e))?;
    Ok(done.version as u64)
}

/// Make `loc` hold `batch` in place of its rows whose `partition` column equals `only`
/// (every row when `only` is `None`), in one commit. The table is created, partitioned by
/// `partition`, when it does not exist. Returns the new version.
pub async fn replace_partition(
    loc: &TableLocation,
    batch: &RecordBatch,
    partition: &str,
    only: Option<&str>,
) -> Result<u64, LakeError> {
    if !has_delta_log(loc).await? {
        create_table(loc, &batch.schema(), &[partition]).await?;
    }
    let predicate = only.map(|v| format!("{partition} = '{}'", v.replace('\'', "''")));
    replace_files(
        loc,
        batch,
        |values| {
            only.is_none_or(|value| {
                values
                    .get(partition)
                    .is_some_and(|v| v.as_deref() == Some(value))
            })
        },
        DeltaOperation::Write {
            mode: SaveMode::Overwrite,
            partition_by: Some(vec![partition.to_owned()]),
            predicate,
        },
    )
    .await
}
