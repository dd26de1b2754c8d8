//! Writing rows into a Delta table partitioned by one column, replacing a partition (or
//! the whole table) in one atomic commit: how `replicator audit export` lands the store's
//! history where a Databricks user can query it with SQL.

use arrow::array::RecordBatch;
use arrow::datatypes::DataType as ArrowType;
use deltalake::DeltaTable;
use deltalake::kernel::transaction::CommitBuilder;
use deltalake::kernel::{Action, DataType, StructField};
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};

use crate::clone::{has_delta_log, load};
use crate::{LakeError, TableLocation};

fn delta(loc: &TableLocation, e: deltalake::DeltaTableError) -> LakeError {
    LakeError::from_delta(loc.url().as_str(), None, e)
}

/// Make `loc` hold `batch` in place of its rows whose `partition` column equals `only`
/// (every row when `only` is `None`), in one commit. The table is created, partitioned by
/// `partition`, when it does not exist. Columns map to Delta `long` (Int64) or `string`.
/// Returns the new version.
pub async fn replace_partition(
    loc: &TableLocation,
    batch: &RecordBatch,
    partition: &str,
    only: Option<&str>,
) -> Result<u64, LakeError> {
    if !has_delta_log(loc).await? {
        if let Some(dir) = loc.local_dir() {
            std::fs::create_dir_all(dir)
                .map_err(|e| LakeError::Invalid(format!("cannot create {}: {e}", dir.display())))?;
        }
        let schema = batch.schema();
        let columns = schema.fields().iter().map(|f| {
            let ty = match f.data_type() {
                ArrowType::Int64 => DataType::LONG,
                _ => DataType::STRING,
            };
            StructField::new(f.name().clone(), ty, true)
        });
        DeltaTable::try_from_url(loc.url().clone())
            .await
            .map_err(|e| delta(loc, e))?
            .create()
            .with_columns(columns.collect::<Vec<_>>())
            .with_partition_columns([partition.to_owned()])
            .with_save_mode(SaveMode::ErrorIfExists)
            .await
            .map_err(|e| delta(loc, e))?;
    }
    let table = load(loc, None).await?;
    let snap = table.snapshot().map_err(|e| delta(loc, e))?;
    let mut actions: Vec<Action> = snap
        .log_data()
        .iter()
        .filter(|f| {
            only.is_none_or(|value| {
                f.partition_values_map()
                    .get(partition)
                    .is_some_and(|v| v.as_deref() == Some(value))
            })
        })
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
    let predicate = only.map(|v| format!("{partition} = '{}'", v.replace('\'', "''")));
    let done = CommitBuilder::default()
        .with_actions(actions)
        .build(
            Some(snap),
            table.log_store(),
            DeltaOperation::Write {
                mode: SaveMode::Overwrite,
                partition_by: Some(vec![partition.to_owned()]),
                predicate,
            },
        )
        .await
        .map_err(|e| delta(loc, e))?;
    Ok(done.version as u64)
}
