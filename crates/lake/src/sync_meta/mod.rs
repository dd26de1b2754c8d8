//! The sync groups' metadata table: one row per group, kept in both regions (the seed's
//! "metadata tables"), as a small ordinary Delta table written by this engine.
//!
//! Columns (the seed's, in its order):
//!
//! | column | Delta type | null |
//! |---|---|---|
//! | `group_name` | string | no |
//! | `workflow` | string | yes |
//! | `tables` | string: the group's table names (or globs) joined by `,` | no |
//! | `date_created` | timestamp | no |
//! | `date_updated` | timestamp | no |
//! | `sync_start_timestamp` | timestamp | yes |
//! | `sync_end_timestamp` | timestamp | yes |
//! | `current_sync_status` | string: `never`, `in-progress`, `success`, `failed` | no |
//! | `message` | string | yes |
//!
//! The table is tiny, so every write rewrites its whole content in one commit: `remove` of
//! every active file and `add` of one new file written by delta-rs's `RecordBatchWriter`,
//! committed put-if-absent at the version after the one read (the clone's commit helper). A
//! concurrent writer is therefore a [`LakeError::CommitConflict`], transient: the caller
//! re-reads and retries, and no update is ever lost. A write that changes nothing commits
//! nothing. Every [`CHECKPOINT_EVERY`] versions a checkpoint is written, so reading the table
//! stays cheap however many status changes it has seen.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType as ArrowType, Field, Schema, TimeUnit, TimestampMicrosecondType};
use chrono::{DateTime, Utc};
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use serde_json::{Value, json};

use crate::clone::{
    CloneOptions, deep_clone, has_delta_log, json_err, load, new_commit_info, put_commit,
};
use crate::export::{create_table, delta};
use crate::{LakeError, TableLocation};

/// `current_sync_status` of a group that has never been synced.
pub const NEVER: &str = "never";
/// `current_sync_status` while a cut is being cloned.
pub const IN_PROGRESS: &str = "in-progress";
/// `current_sync_status` after a cut every table of which succeeded.
pub const SUCCESS: &str = "success";
/// `current_sync_status` after a cut a table of which failed (the timestamps stay those of
/// the last good cut).
pub const FAILED: &str = "failed";
/// Every status the table holds.
pub const STATUSES: [&str; 4] = [NEVER, IN_PROGRESS, SUCCESS, FAILED];

/// A checkpoint is written at every version that is a multiple of this.
pub const CHECKPOINT_EVERY: u64 = 100;

/// One row of the metadata table: a sync group, its config and its sync state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupRow {
    pub group_name: String,
    pub workflow: Option<String>,
    /// Table names or globs, as configured (stored joined by `,`).
    pub tables: Vec<String>,
    pub date_created: DateTime<Utc>,
    pub date_updated: DateTime<Utc>,
    /// Start of the last successful cut's sync.
    pub sync_start_timestamp: Option<DateTime<Utc>>,
    /// End of the last successful cut's sync.
    pub sync_end_timestamp: Option<DateTime<Utc>>,
    /// One of [`STATUSES`].
    pub current_sync_status: String,
    pub message: Option<String>,
}

/// The config columns of a group, merged into the table by [`merge_config`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupConfigRow {
    pub group_name: String,
    pub workflow: Option<String>,
    pub tables: Vec<String>,
}

/// The table's Arrow schema (Delta `string` and `timestamp` columns).
pub fn schema() -> Arc<Schema> {
    let ts = || ArrowType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("group_name", ArrowType::Utf8, false),
        Field::new("workflow", ArrowType::Utf8, true),
        Field::new("tables", ArrowType::Utf8, false),
        Field::new("date_created", ts(), false),
        Field::new("date_updated", ts(), false),
        Field::new("sync_start_timestamp", ts(), true),
        Field::new("sync_end_timestamp", ts(), true),
        Field::new("current_sync_status", ArrowType::Utf8, false),
        Field::new("message", ArrowType::Utf8, true),
    ]))
}

/// Make sure the metadata table exists in both locations: created where it is missing in
/// both; deep-cloned from the one that has it into the other when only one does; left as it
/// is when both have it.
pub async fn ensure(primary: &TableLocation, secondary: &TableLocation) -> Result<(), LakeError> {
    let (p, s) = tokio::try_join!(has_delta_log(primary), has_delta_log(secondary))?;
    match (p, s) {
        (true, true) => Ok(()),
        (true, false) => copy(primary, secondary).await,
        (false, true) => copy(secondary, primary).await,
        (false, false) => {
            create(primary).await?;
            create(secondary).await
        }
    }
}

/// Create an empty metadata table at `loc`; another writer creating it first is fine.
async fn create(loc: &TableLocation) -> Result<(), LakeError> {
    match create_table(loc, &schema(), &[]).await {
        Ok(_) => Ok(()),
        Err(e) => {
            if has_delta_log(loc).await.unwrap_or(false) {
                Ok(())
            } else {
                Err(e)
            }
        }
    }
}

async fn copy(from: &TableLocation, to: &TableLocation) -> Result<(), LakeError> {
    deep_clone(from, to, &CloneOptions::default()).await?;
    tracing::info!(%from, %to, "sync metadata table copied to the other region");
    Ok(())
}

/// Upsert the config columns (`workflow`, `tables`) of `rows` into the table at `loc`: a new
/// group gets `current_sync_status = never` and `date_created = date_updated = now`; an
/// existing group whose config changed gets its new config and `date_updated = now`, and
/// keeps its `sync_start_timestamp`, `sync_end_timestamp`, `current_sync_status` and
/// `message`. Groups in the table but not in `rows` are kept. Commits nothing when nothing
/// changed. Two rows naming one group are refused.
pub async fn merge_config(
    loc: &TableLocation,
    rows: &[GroupConfigRow],
    now: DateTime<Utc>,
) -> Result<(), LakeError> {
    let now = micros(now);
    let (version, mut table) = read_at(loc).await?;
    let mut seen = std::collections::HashSet::new();
    let mut changed = false;
    for row in rows {
        if !seen.insert(row.group_name.as_str()) {
            return Err(LakeError::Invalid(format!(
                "sync group `{}` is configured twice",
                row.group_name
            )));
        }
        check_tables(&row.group_name, &row.tables)?;
        match table.iter_mut().find(|r| r.group_name == row.group_name) {
            Some(existing) => {
                if existing.workflow != row.workflow || existing.tables != row.tables {
                    existing.workflow = row.workflow.clone();
                    existing.tables = row.tables.clone();
                    existing.date_updated = now;
                    changed = true;
                }
            }
            None => {
                table.push(GroupRow {
                    group_name: row.group_name.clone(),
                    workflow: row.workflow.clone(),
                    tables: row.tables.clone(),
                    date_created: now,
                    date_updated: now,
                    sync_start_timestamp: None,
                    sync_end_timestamp: None,
                    current_sync_status: NEVER.to_owned(),
                    message: None,
                });
                changed = true;
            }
        }
    }
    if changed {
        write(
            loc,
            version,
            &table,
            "MERGE",
            json!({ "predicate": "target.group_name = source.group_name" }),
        )
        .await?;
    }
    Ok(())
}

/// Set `group`'s `current_sync_status` (one of [`STATUSES`]) and `message`, and
/// `date_updated` to now. Unless `keep_timestamps`, `sync_start_timestamp` and
/// `sync_end_timestamp` become `start` and `end` (`None` clears one); with it they stay as
/// they are — what a failed sync does (the seed: "keep the old timestamp"), and what marking
/// a sync in progress does. A group not in the table is an error.
pub async fn set_status(
    loc: &TableLocation,
    group: &str,
    status: &str,
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
    message: Option<&str>,
    keep_timestamps: bool,
) -> Result<(), LakeError> {
    if !STATUSES.contains(&status) {
        return Err(LakeError::Invalid(format!(
            "`{status}` is not a sync status (one of {})",
            STATUSES.join(", ")
        )));
    }
    let (version, mut table) = read_at(loc).await?;
    let Some(row) = table.iter_mut().find(|r| r.group_name == group) else {
        return Err(LakeError::Invalid(format!(
            "sync group `{group}` is not in the sync metadata table {loc}"
        )));
    };
    row.current_sync_status = status.to_owned();
    row.message = message.map(str::to_owned);
    row.date_updated = micros(Utc::now());
    if !keep_timestamps {
        row.sync_start_timestamp = start.map(micros);
        row.sync_end_timestamp = end.map(micros);
    }
    let predicate = format!("group_name = '{}'", group.replace('\'', "''"));
    write(
        loc,
        version,
        &table,
        "UPDATE",
        json!({ "predicate": predicate }),
    )
    .await?;
    Ok(())
}

/// Every row of the metadata table at `loc`, ordered by group name.
pub async fn read(loc: &TableLocation) -> Result<Vec<GroupRow>, LakeError> {
    Ok(read_at(loc).await?.1)
}

/// The table's latest version and its rows (ordered by group name).
async fn read_at(loc: &TableLocation) -> Result<(u64, Vec<GroupRow>), LakeError> {
    let table = load(loc, None).await?;
    let version = table.snapshot().map_err(|e| delta(loc, e))?.version() as u64;
    let batches = crate::inspect::read_batches(loc, Some(version)).await?;
    let mut rows = Vec::new();
    for batch in &batches {
        rows.extend(rows_of(loc, batch)?);
    }
    rows.sort_by(|a, b| a.group_name.cmp(&b.group_name));
    Ok((version, rows))
}

/// Rewrite the table's content as `rows`, in one commit at `read_version + 1`.
async fn write(
    loc: &TableLocation,
    read_version: u64,
    rows: &[GroupRow],
    operation: &str,
    parameters: Value,
) -> Result<u64, LakeError> {
    let table = load(loc, Some(read_version)).await?;
    let snap = table.snapshot().map_err(|e| delta(loc, e))?;
    let mut actions: Vec<Value> = Vec::new();
    for view in snap.log_data().iter() {
        let remove = view.remove_action(true);
        actions.push(json!({ "remove": serde_json::to_value(&remove).map_err(json_err)? }));
    }
    if !rows.is_empty() {
        let mut writer = RecordBatchWriter::for_table(&table).map_err(|e| delta(loc, e))?;
        writer
            .write(batch_of(rows)?)
            .await
            .map_err(|e| delta(loc, e))?;
        for add in writer.flush().await.map_err(|e| delta(loc, e))? {
            actions.push(json!({ "add": serde_json::to_value(&add).map_err(json_err)? }));
        }
    }
    let info = new_commit_info(
        operation,
        parameters,
        json!({ "numOutputRows": rows.len().to_string() }),
        Some(read_version),
        None,
    );
    let version = put_commit(loc, read_version + 1, info, actions).await?;
    if version % CHECKPOINT_EVERY == 0 {
        // Best effort: a table without this checkpoint is still correct, only slower to read.
        let checkpoint = async {
            let table = load(loc, Some(version)).await?;
            deltalake::checkpoints::create_checkpoint(&table, None)
                .await
                .map_err(|e| delta(loc, e))
        };
        if let Err(e) = checkpoint.await {
            tracing::warn!(table = %loc, version, error = %e, "sync metadata checkpoint failed");
        }
    }
    Ok(version)
}

/// A table name holding a `,` could not be read back from the joined column.
fn check_tables(group: &str, tables: &[String]) -> Result<(), LakeError> {
    match tables
        .iter()
        .find(|t| t.contains(',') || t.trim() != *t || t.is_empty())
    {
        Some(t) => Err(LakeError::Invalid(format!(
            "sync group `{group}`: table `{t}` cannot be stored in the metadata table (empty, a `,`, or surrounding spaces)"
        ))),
        None => Ok(()),
    }
}

/// A timestamp cut to microseconds, the precision of a Delta timestamp.
fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

fn batch_of(rows: &[GroupRow]) -> Result<RecordBatch, LakeError> {
    let strings = |f: &dyn Fn(&GroupRow) -> Option<String>| -> ArrayRef {
        Arc::new(rows.iter().map(f).collect::<StringArray>())
    };
    let times = |f: &dyn Fn(&GroupRow) -> Option<DateTime<Utc>>| -> ArrayRef {
        Arc::new(
            rows.iter()
                .map(|r| f(r).map(|t| t.timestamp_micros()))
                .collect::<TimestampMicrosecondArray>()
                .with_timezone("UTC"),
        )
    };
    let columns = vec![
        strings(&|r| Some(r.group_name.clone())),
        strings(&|r| r.workflow.clone()),
        strings(&|r| Some(r.tables.join(","))),
        times(&|r| Some(r.date_created)),
        times(&|r| Some(r.date_updated)),
        times(&|r| r.sync_start_timestamp),
        times(&|r| r.sync_end_timestamp),
        strings(&|r| Some(r.current_sync_status.clone())),
        strings(&|r| r.message.clone()),
    ];
    RecordBatch::try_new(schema(), columns)
        .map_err(|e| LakeError::Invalid(format!("cannot build sync metadata rows: {e}")))
}

fn rows_of(loc: &TableLocation, batch: &RecordBatch) -> Result<Vec<GroupRow>, LakeError> {
    let column = |name: &str, ty: &ArrowType| -> Result<ArrayRef, LakeError> {
        let c = batch.column_by_name(name).ok_or_else(|| {
            LakeError::Invalid(format!(
                "{loc} is not a sync metadata table: it has no column `{name}`"
            ))
        })?;
        arrow::compute::cast(c, ty).map_err(|e| {
            LakeError::Invalid(format!(
                "{loc} is not a sync metadata table: column `{name}`: {e}"
            ))
        })
    };
    let ts_type = ArrowType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let text = |name: &str| column(name, &ArrowType::Utf8);
    let time = |name: &str| column(name, &ts_type);
    let (group, workflow, tables, status, message) = (
        text("group_name")?,
        text("workflow")?,
        text("tables")?,
        text("current_sync_status")?,
        text("message")?,
    );
    let (created, updated, start, end) = (
        time("date_created")?,
        time("date_updated")?,
        time("sync_start_timestamp")?,
        time("sync_end_timestamp")?,
    );
    let s = |a: &ArrayRef, i: usize| {
        let a = a.as_string::<i32>();
        (!a.is_null(i)).then(|| a.value(i).to_owned())
    };
    let t = |a: &ArrayRef, i: usize| {
        let a = a.as_primitive::<TimestampMicrosecondType>();
        (!a.is_null(i))
            .then(|| DateTime::from_timestamp_micros(a.value(i)))
            .flatten()
    };
    let required = |v: Option<String>, name: &str| {
        v.ok_or_else(|| LakeError::Invalid(format!("{loc}: sync metadata row without `{name}`")))
    };
    let epoch = DateTime::<Utc>::UNIX_EPOCH;
    (0..batch.num_rows())
        .map(|i| {
            Ok(GroupRow {
                group_name: required(s(&group, i), "group_name")?,
                workflow: s(&workflow, i),
                tables: s(&tables, i)
                    .map(|t| {
                        t.split(',')
                            .map(str::trim)
                            .filter(|t| !t.is_empty())
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default(),
                date_created: t(&created, i).unwrap_or(epoch),
                date_updated: t(&updated, i).unwrap_or(epoch),
                sync_start_timestamp: t(&start, i),
                sync_end_timestamp: t(&end, i),
                current_sync_status: s(&status, i).unwrap_or_else(|| NEVER.to_owned()),
                message: s(&message, i),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
