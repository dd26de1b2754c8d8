//! Reading what a table holds: version, schema, row counts (from log statistics when every
//! file has them, otherwise by scanning), and the rows themselves for comparisons.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use delta_kernel::engine::arrow_data::ArrowEngineData;
use serde_json::Value;

use crate::clone::load;
use crate::{LakeError, TableLocation};

/// A summary of one snapshot of a table: its version, shape, files and statistics row count.
/// (Unity Catalog's description of a table is `replicator_databricks::TableInfo`.)
#[derive(Clone, Debug, PartialEq)]
pub struct SnapshotSummary {
    pub version: u64,
    /// Top-level columns: (name, type as JSON, nullable).
    pub columns: Vec<(String, Value, bool)>,
    pub partition_columns: Vec<String>,
    pub num_files: u64,
    /// Rows according to the log's statistics, when every file has `numRecords`
    /// (deletion vectors' cardinalities subtracted).
    pub stats_rows: Option<u64>,
}

/// How a row count was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CountMethod {
    /// Sum of `numRecords` from the log: cost grows with files, not rows.
    Stats,
    /// Read every row.
    Scan,
}

impl std::fmt::Display for CountMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Stats => "log statistics",
            Self::Scan => "scan",
        })
    }
}

/// A loaded table's snapshot and its metadata action as JSON.
fn snapshot_and_metadata<'a>(
    table: &'a deltalake::DeltaTable,
    url: &str,
    version: Option<u64>,
) -> Result<(&'a deltalake::table::state::DeltaTableState, Value), LakeError> {
    let snap = table
        .snapshot()
        .map_err(|e| LakeError::from_delta(url, version, e))?;
    let metadata = serde_json::to_value(snap.metadata())
        .map_err(|e| LakeError::Invalid(format!("cannot read metadata of {url}: {e}")))?;
    Ok((snap, metadata))
}

/// Version, schema, files and (when available) statistics row count of a table.
pub async fn table_info(
    loc: &TableLocation,
    version: Option<u64>,
) -> Result<SnapshotSummary, LakeError> {
    let table = load(loc, version).await?;
    let url = loc.url().as_str();
    let (snap, metadata) = snapshot_and_metadata(&table, url, version)?;
    let schema: Value = metadata["schemaString"]
        .as_str()
        .and_then(|s| serde_json::from_str(s).ok())
        .ok_or_else(|| LakeError::Invalid(format!("{url} has no readable schemaString")))?;
    let columns = fields_of(&schema);
    let partition_columns = metadata["partitionColumns"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    let mut num_files = 0u64;
    let mut stats_rows = Some(0u64);
    for view in snap.log_data().iter() {
        num_files += 1;
        let deleted = view
            .deletion_vector_descriptor()
            .map_or(0, |d| d.cardinality.max(0) as u64);
        stats_rows = match (stats_rows, view.num_records()) {
            (Some(total), Some(n)) => Some(total + (n as u64).saturating_sub(deleted)),
            _ => None,
        };
    }
    Ok(SnapshotSummary {
        version: snap.version(),
        columns,
        partition_columns,
        num_files,
        stats_rows,
    })
}

/// Row count, from statistics when possible and by scanning otherwise.
pub async fn count_rows(
    loc: &TableLocation,
    version: Option<u64>,
) -> Result<(u64, CountMethod, SnapshotSummary), LakeError> {
    let info = table_info(loc, version).await?;
    if let Some(n) = info.stats_rows {
        return Ok((n, CountMethod::Stats, info));
    }
    let batches = read_batches(loc, Some(info.version)).await?;
    Ok((
        batches.iter().map(|b| b.num_rows() as u64).sum(),
        CountMethod::Scan,
        info,
    ))
}

/// Every row of a snapshot (deletion vectors and column mapping applied), as Arrow batches.
pub async fn read_batches(
    loc: &TableLocation,
    version: Option<u64>,
) -> Result<Vec<RecordBatch>, LakeError> {
    let table = load(loc, version).await?;
    let url_s = loc.url().to_string();
    let snap_version = table
        .snapshot()
        .map_err(|e| LakeError::from_delta(&url_s, version, e))?
        .version() as u64;
    let engine = table.log_store().engine(None);
    let url = table.table_url().to_string();
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        scan_each(&url, snap_version, &engine, |batch| {
            out.push(batch.clone());
            Ok(())
        })?;
        Ok(out)
    })
    .await
    .map_err(|e| LakeError::Invalid(format!("scan task failed: {e}")))?
}

/// Stream every row of the snapshot of `url` at `version` (deletion vectors and column
/// mapping applied) through `each`, batch by batch. Blocking: run it on a blocking thread.
pub(crate) fn scan_each(
    url: &str,
    version: u64,
    engine: &Arc<dyn delta_kernel::Engine>,
    mut each: impl FnMut(&RecordBatch) -> Result<(), LakeError>,
) -> Result<(), LakeError> {
    let scan_err = |e: delta_kernel::Error| LakeError::Log {
        url: url.to_owned(),
        detail: format!("scan failed: {e}"),
        transient: false,
    };
    let snap = delta_kernel::Snapshot::builder_for(url)
        .at_version(version)
        .build(engine.as_ref())
        .map_err(scan_err)?;
    let scan = snap.scan_builder().build().map_err(scan_err)?;
    for data in scan.execute(engine.clone()).map_err(scan_err)? {
        let data =
            ArrowEngineData::try_from_engine_data(data.map_err(scan_err)?).map_err(scan_err)?;
        each(data.record_batch())?;
    }
    Ok(())
}

/// Rows rendered as text (`col=value|…`), sorted: two tables hold the same rows exactly when
/// these lists are equal.
pub fn sorted_rows(batches: &[RecordBatch]) -> Result<Vec<String>, LakeError> {
    let options = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for batch in batches {
        let schema = batch.schema();
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| LakeError::Invalid(format!("cannot render rows: {e}")))?;
        for i in 0..batch.num_rows() {
            let row: Vec<String> = formatters
                .iter()
                .zip(schema.fields())
                .map(|(f, field)| format!("{}={}", field.name(), f.value(i)))
                .collect();
            rows.push(row.join("|"));
        }
    }
    rows.sort();
    Ok(rows)
}

/// The differences between two tables' schemas and partitioning, one line each; empty when
/// they match. Struct columns are compared field by field (`address.city`), so a change
/// deep in a nested column is named precisely.
pub fn schema_diff(source: &SnapshotSummary, target: &SnapshotSummary) -> Vec<String> {
    let mut out = Vec::new();
    diff_fields("", &source.columns, &target.columns, &mut out);
    if source.partition_columns != target.partition_columns {
        out.push(format!(
            "partition columns differ: source {:?}, target {:?}",
            source.partition_columns, target.partition_columns
        ));
    }
    out
}

/// (name, type, nullable) of a struct type's fields, when `ty` is a struct.
fn struct_fields(ty: &Value) -> Option<Vec<(String, Value, bool)>> {
    (ty["type"] == "struct").then(|| fields_of(ty))
}

/// (name, type, nullable) of the `fields` of a schema or struct type, as JSON.
fn fields_of(ty: &Value) -> Vec<(String, Value, bool)> {
    ty["fields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            (
                f["name"].as_str().unwrap_or_default().to_owned(),
                f["type"].clone(),
                f["nullable"].as_bool().unwrap_or(true),
            )
        })
        .collect()
}

/// A type as people write it: `long`, `struct<…>`, `array<string>`.
fn type_name(ty: &Value) -> String {
    match ty {
        Value::String(s) => s.clone(),
        Value::Object(o) => match o.get("type").and_then(Value::as_str) {
            Some("struct") => "struct<…>".into(),
            Some("array") => format!("array<{}>", type_name(&ty["elementType"])),
            Some("map") => format!(
                "map<{}, {}>",
                type_name(&ty["keyType"]),
                type_name(&ty["valueType"])
            ),
            Some(other) => other.to_owned(),
            None => ty.to_string(),
        },
        other => other.to_string(),
    }
}

fn diff_fields(
    prefix: &str,
    source: &[(String, Value, bool)],
    target: &[(String, Value, bool)],
    out: &mut Vec<String>,
) {
    for (name, ty, nullable) in source {
        let path = format!("{prefix}{name}");
        match target.iter().find(|(n, _, _)| n == name) {
            None => out.push(format!("column `{path}` is missing in the target")),
            Some((_, t, n)) => {
                match (struct_fields(ty), struct_fields(t)) {
                    (Some(sf), Some(tf)) => diff_fields(&format!("{path}."), &sf, &tf, out),
                    _ if t != ty => out.push(format!(
                        "column `{path}` has type {} in the target, {} in the source",
                        type_name(t),
                        type_name(ty)
                    )),
                    _ => {}
                }
                if n != nullable {
                    out.push(format!(
                        "column `{path}` is {} in the target, {} in the source",
                        if *n { "nullable" } else { "NOT NULL" },
                        if *nullable { "nullable" } else { "NOT NULL" },
                    ));
                }
            }
        }
    }
    for (name, _, _) in target {
        if !source.iter().any(|(n, _, _)| n == name) {
            out.push(format!("column `{prefix}{name}` exists only in the target"));
        }
    }
}

/// What a snapshot's log says, for comparing a clone with its source: active files (decoded
/// path → size and deletion-vector cardinality), schema, partition columns, configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct LogFacts {
    pub version: u64,
    pub files: std::collections::BTreeMap<String, (i64, Option<i64>)>,
    pub schema_string: String,
    pub partition_columns: Vec<String>,
    pub configuration: std::collections::BTreeMap<String, Option<String>>,
}

/// Read the [`LogFacts`] of a table at `version` (latest when `None`).
pub async fn log_facts(loc: &TableLocation, version: Option<u64>) -> Result<LogFacts, LakeError> {
    let table = load(loc, version).await?;
    let url = loc.url().as_str();
    let (snap, metadata) = snapshot_and_metadata(&table, url, version)?;
    let files = snap
        .log_data()
        .iter()
        .map(|f| {
            let dv = f.deletion_vector_descriptor().map(|d| d.cardinality);
            (f.path().into_owned(), (f.size(), dv))
        })
        .collect();
    Ok(LogFacts {
        version: snap.version(),
        files,
        schema_string: metadata["schemaString"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        partition_columns: serde_json::from_value(metadata["partitionColumns"].clone())
            .unwrap_or_default(),
        configuration: serde_json::from_value(metadata["configuration"].clone())
            .unwrap_or_default(),
    })
}

/// The commit timestamp (milliseconds since the epoch) of every version still in the log,
/// as time travel by timestamp sees them (in-commit timestamps when enabled, otherwise the
/// commit file's modification time).
pub async fn version_timestamps(loc: &TableLocation) -> Result<Vec<(u64, i64)>, LakeError> {
    let table = load(loc, None).await?;
    let url = loc.url().as_str();
    let snap = table
        .snapshot()
        .map_err(|e| LakeError::from_delta(url, None, e))?;
    Ok((0..=snap.version())
        .filter_map(|v| snap.version_timestamp(v as _).map(|t| (v, t)))
        .collect())
}
