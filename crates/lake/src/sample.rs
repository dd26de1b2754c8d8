//! Writing small Delta tables: the `replicator demo` estate, test fixtures and benchmark
//! data. Uses delta-rs's own writer, so the tables are ordinary Delta tables.

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType as ArrowType, Field, Schema};
use deltalake::DeltaTable;
use deltalake::kernel::transaction::CommitBuilder;
use deltalake::kernel::{Action, DataType, StructField};
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};

use crate::clone::load;
use crate::export::{create_table, delta, replace_files};
use crate::{LakeError, TableLocation};

/// Rows of the sample `orders` shape: `id`, `customer`, `region`, `amount`.
pub fn orders(start: i64, n: usize, region: &str) -> RecordBatch {
    let ids: Vec<i64> = (start..start + n as i64).collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", ArrowType::Int64, false),
        Field::new("customer", ArrowType::Utf8, true),
        Field::new("region", ArrowType::Utf8, true),
        Field::new("amount", ArrowType::Float64, true),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(ids.clone())),
        Arc::new(StringArray::from(
            ids.iter()
                .map(|i| format!("customer-{}", i % 97))
                .collect::<Vec<_>>(),
        )),
        Arc::new(StringArray::from(vec![region; n])),
        Arc::new(Float64Array::from(
            ids.iter().map(|i| (*i as f64) * 1.25).collect::<Vec<_>>(),
        )),
    ];
    RecordBatch::try_new(schema, columns).expect("columns match the schema")
}

/// Create a table with the schema of `batch` (partitioned by `partitions`) and write `batch`
/// as version 1 (version 0 is the empty create).
pub async fn create(
    loc: &TableLocation,
    batch: &RecordBatch,
    partitions: &[&str],
) -> Result<u64, LakeError> {
    let table = create_table(loc, &batch.schema(), partitions).await?;
    append_to(table, loc, batch).await
}

/// Append `batch` as a new version.
pub async fn append(loc: &TableLocation, batch: &RecordBatch) -> Result<u64, LakeError> {
    append_to(load(loc, None).await?, loc, batch).await
}

async fn append_to(
    mut table: DeltaTable,
    loc: &TableLocation,
    batch: &RecordBatch,
) -> Result<u64, LakeError> {
    let mut writer = RecordBatchWriter::for_table(&table).map_err(|e| delta(loc, e))?;
    writer
        .write(batch.clone())
        .await
        .map_err(|e| delta(loc, e))?;
    let v = writer
        .flush_and_commit(&mut table)
        .await
        .map_err(|e| delta(loc, e))?;
    Ok(v as u64)
}

/// Remove the active files whose path matches `pred` (a file-level delete). Returns the new
/// version and how many files were removed.
pub async fn delete_files(
    loc: &TableLocation,
    pred: impl Fn(&str) -> bool,
) -> Result<(u64, usize), LakeError> {
    let table = load(loc, None).await?;
    let snap = table.snapshot().map_err(|e| delta(loc, e))?;
    let removes: Vec<Action> = snap
        .log_data()
        .iter()
        .filter(|f| pred(&f.path()))
        .map(|f| Action::Remove(f.remove_action(true)))
        .collect();
    let n = removes.len();
    let done = CommitBuilder::default()
        .with_actions(removes)
        .build(
            Some(snap),
            table.log_store(),
            DeltaOperation::Delete { predicate: None },
        )
        .await
        .map_err(|e| delta(loc, e))?;
    Ok((done.version as u64, n))
}

/// Replace every row with `batch` in one commit (removes plus adds).
pub async fn overwrite(loc: &TableLocation, batch: &RecordBatch) -> Result<u64, LakeError> {
    replace_files(
        loc,
        batch,
        |_| true,
        DeltaOperation::Write {
            mode: SaveMode::Overwrite,
            partition_by: None,
            predicate: None,
        },
    )
    .await
}

/// The demo estate: four tables in two schemas under `root`
/// (`sales.orders` partitioned by region with three versions, `sales.customers`,
/// `marketing.campaigns`, `marketing.events`). Returns the dotted table names.
pub async fn demo_estate(root: &TableLocation) -> Result<Vec<String>, LakeError> {
    let orders = root.child("sales/orders")?;
    create(&orders, &self::orders(0, 500, "emea"), &["region"]).await?;
    append(&orders, &self::orders(500, 300, "amer")).await?;
    append(&orders, &self::orders(800, 200, "apac")).await?;
    create(
        &root.child("sales/customers")?,
        &self::orders(0, 97, "all"),
        &[],
    )
    .await?;
    create(
        &root.child("marketing/campaigns")?,
        &self::orders(0, 40, "emea"),
        &[],
    )
    .await?;
    let events = root.child("marketing/events")?;
    create(&events, &self::orders(0, 1000, "emea"), &[]).await?;
    append(&events, &self::orders(1000, 1000, "emea")).await?;
    Ok(vec![
        "marketing.campaigns".into(),
        "marketing.events".into(),
        "sales.customers".into(),
        "sales.orders".into(),
    ])
}

/// Schema evolution: add a nullable string column.
pub async fn add_string_column(loc: &TableLocation, name: &str) -> Result<u64, LakeError> {
    let table = load(loc, None)
        .await?
        .add_columns()
        .with_fields([StructField::new(name.to_owned(), DataType::STRING, true)])
        .await
        .map_err(|e| delta(loc, e))?;
    Ok(table.version().unwrap_or_default() as u64)
}

/// Set table properties (a protocol upgrade when a property needs a feature, such as
/// `delta.enableChangeDataFeed`).
pub async fn set_properties(loc: &TableLocation, props: &[(&str, &str)]) -> Result<u64, LakeError> {
    let table = load(loc, None)
        .await?
        .set_tbl_properties()
        .with_properties(
            props
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
        .await
        .map_err(|e| delta(loc, e))?;
    Ok(table.version().unwrap_or_default() as u64)
}

/// Write a checkpoint of the table at `version` (after which older commits may be deleted).
pub async fn checkpoint(loc: &TableLocation, version: u64) -> Result<(), LakeError> {
    let table = load(loc, Some(version)).await?;
    deltalake::checkpoints::create_checkpoint(&table, None)
        .await
        .map_err(|e| delta(loc, e))
}
