//! What the warehouse does with a parsed statement, on the Delta tables behind the
//! metastores: `DEEP CLONE` really clones, `COUNT(*)` really counts, `EXCEPT` really compares
//! rows; shared catalogs are followed to their provider's metastore.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use arrow::array::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use replicator_lake::{CloneOptions, TableLocation, deep_clone, inspect};
use uuid::Uuid;

use super::sql::{SqlError, Stmt2, not_found, parse, quoted3};
use super::state::{Catalog, Inner, Metastore, Table};

/// Where a readable table lives, following shared catalogs to their provider's metastore.
fn resolve(ms: &BTreeMap<String, Metastore>, me: &str, n: &[String; 3]) -> Result<Table, SqlError> {
    resolve_shared(ms, me, n).map(|(t, _)| t)
}

/// [`resolve`], and whether the table's history can be read: always for a table of this
/// metastore; through a share only for a table added to it with its history (the Shares API's
/// `history_data_sharing_status: ENABLED`; a schema entry shares its tables without history,
/// the API's default DISABLED).
fn resolve_shared(
    ms: &BTreeMap<String, Metastore>,
    me: &str,
    n: &[String; 3],
) -> Result<(Table, bool), SqlError> {
    let m = &ms[me];
    let cat = m.catalogs.get(&n[0]).ok_or_else(|| not_found(n))?;
    if let Some((provider, share)) = &cat.share {
        let (pid, pm) = ms
            .iter()
            .find(|(_, pm)| &pm.provider_name == provider)
            .ok_or_else(|| not_found(n))?;
        let recipient = pm
            .recipients
            .iter()
            .find(|(_, gid)| *gid == me)
            .map(|(r, _)| r.clone())
            .ok_or_else(|| {
                (
                    "PERMISSION_DENIED".to_owned(),
                    format!("no recipient for this metastore in {pid}"),
                )
            })?;
        let sh = pm.shares.get(share).ok_or_else(|| not_found(n))?;
        if !sh
            .grants
            .get(&recipient)
            .is_some_and(|p| p.contains("SELECT"))
        {
            return Err((
                "PERMISSION_DENIED".into(),
                format!("recipient {recipient} has no SELECT on share {share}"),
            ));
        }
        // A table entry (`catalog.schema.table`) is seen as `schema.table` in the shared
        // catalog; a schema entry (`catalog.schema`) shows all the schema's tables.
        let entry = sh.objects.iter().find_map(|o| {
            let parts: Vec<&str> = o.name.split('.').collect();
            match (o.kind.as_str(), parts.as_slice()) {
                ("TABLE", [c, s, t]) if *s == n[1] && *t == n[2] => {
                    Some((c.to_string(), s.to_string(), o.history))
                }
                ("SCHEMA", [c, s]) if *s == n[1] => Some((c.to_string(), s.to_string(), false)),
                _ => None,
            }
        });
        let (c, s, history) = entry.ok_or_else(|| not_found(n))?;
        return pm
            .catalogs
            .get(&c)
            .and_then(|c| c.schemas.get(&s))
            .and_then(|s| s.get(&n[2]))
            .cloned()
            .map(|t| (t, history))
            .ok_or_else(|| not_found(n));
    }
    cat.schemas
        .get(&n[1])
        .and_then(|s| s.get(&n[2]))
        .cloned()
        .map(|t| (t, true))
        .ok_or_else(|| not_found(n))
}

pub(super) fn location(t: &Table) -> Result<TableLocation, SqlError> {
    TableLocation::parse(&t.location.to_string_lossy())
        .map_err(|e| ("INTERNAL_ERROR".into(), e.to_string()))
}

pub(super) fn lake(e: replicator_lake::LakeError) -> SqlError {
    ("INTERNAL_ERROR".into(), e.to_string())
}

/// Rows of `batches` projected on `cols`, rendered as text.
fn project(batches: &[RecordBatch], cols: &[String]) -> Result<BTreeSet<String>, SqlError> {
    let options = FormatOptions::default().with_null("NULL");
    let mut out = BTreeSet::new();
    for b in batches {
        let schema = b.schema();
        let fmts = cols
            .iter()
            .map(|c| {
                let i = schema.index_of(c).map_err(|_| {
                    (
                        "BAD_REQUEST".to_owned(),
                        format!("[UNRESOLVED_COLUMN] A column `{c}` cannot be resolved"),
                    )
                })?;
                ArrayFormatter::try_new(b.column(i).as_ref(), &options)
                    .map_err(|e| ("INTERNAL_ERROR".to_owned(), e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        for r in 0..b.num_rows() {
            out.insert(
                fmts.iter()
                    .map(|f| f.value(r).to_string())
                    .collect::<Vec<_>>()
                    .join("\u{1}"),
            );
        }
    }
    Ok(out)
}

pub(super) type Rows = (Vec<String>, Vec<Vec<Option<String>>>);

pub(super) async fn execute(st: &Inner, sql: &str) -> Result<Rows, SqlError> {
    if let Some(done) = super::catalog_sql::try_execute(st, sql) {
        return done;
    }
    if let Some(r) = super::volumes::sql(st, sql) {
        return r.map(|()| (vec![], vec![]));
    }
    let stmt = parse(sql)?;
    let me = st.metastore.clone();
    let world = &st.world.metastores;
    match stmt {
        Stmt2::SelectOne => Ok((vec!["ok".into()], vec![vec![Some("1".into())]])),
        Stmt2::History(n, limit) => {
            let t = resolve(&world.lock().unwrap(), &me, &n)?;
            super::history::describe(&t.location, limit).await
        }
        Stmt2::Restore(n, version) => {
            let t = {
                let ms = world.lock().unwrap();
                if ms[&me]
                    .catalogs
                    .get(&n[0])
                    .is_some_and(|c| c.share.is_some())
                {
                    return Err((
                        "BAD_REQUEST".into(),
                        format!("catalog `{}` is a shared catalog and read-only", n[0]),
                    ));
                }
                resolve(&ms, &me, &n)?
            };
            super::history::restore(&location(&t)?, version).await
        }
        Stmt2::CreateCatalog(name, share) => {
            let mut ms = world.lock().unwrap();
            if let Some((prov, sh)) = &share {
                let found = ms
                    .iter()
                    .find(|(_, m)| &m.provider_name == prov)
                    .map(|(id, m)| {
                        (
                            m.recipients.values().any(|g| *g == me),
                            m.shares.contains_key(sh),
                            id.clone(),
                        )
                    });
                match found {
                    Some((true, true, _)) => {}
                    Some((false, _, _)) | None => {
                        return Err((
                            "BAD_REQUEST".into(),
                            format!("[PROVIDER_NOT_FOUND] provider {prov} not found"),
                        ));
                    }
                    Some((true, false, _)) => {
                        return Err((
                            "BAD_REQUEST".into(),
                            format!("[SHARE_NOT_FOUND] share {prov}.{sh} not found"),
                        ));
                    }
                }
            }
            ms.get_mut(&me)
                .unwrap()
                .catalogs
                .entry(name)
                .or_insert_with(|| Catalog {
                    share,
                    schemas: BTreeMap::new(),
                });
            Ok((vec![], vec![]))
        }
        Stmt2::Count(n) => {
            let t = resolve(&world.lock().unwrap(), &me, &n)?;
            let (rows, _, _) = inspect::count_rows(&location(&t)?, None)
                .await
                .map_err(lake)?;
            Ok((vec!["n".into()], vec![vec![Some(rows.to_string())]]))
        }
        Stmt2::Except(a, from, b, other) => {
            let n = except(world, &me, &a, &from, &b, &other).await?.len();
            Ok((vec!["n".into()], vec![vec![Some(n.to_string())]]))
        }
        Stmt2::ExceptRows(a, from, b, other, limit) => {
            let rows = except(world, &me, &a, &from, &b, &other)
                .await?
                .into_iter()
                .take(limit)
                .map(|r| {
                    r.split('\u{1}')
                        .map(|v| (v != "NULL").then(|| v.to_owned()))
                        .collect()
                })
                .collect();
            Ok((a, rows))
        }
        Stmt2::Register(target, at) => {
            let dest = local_path(&at);
            // A table in object storage: its log is read through the store (the lock below
            // is not held across it).
            let cloud_table = if at.contains("://") && !at.starts_with("file://") {
                let loc = TableLocation::parse(&at).map_err(lake)?;
                Some(
                    replicator_lake::inspect::table_info(&loc, None)
                        .await
                        .is_ok(),
                )
            } else {
                None
            };
            let mut ms = world.lock().unwrap();
            let m = ms.get_mut(&me).unwrap();
            let schema = m
                .catalogs
                .get_mut(&target[0])
                .and_then(|c| c.schemas.get_mut(&target[1]))
                .ok_or_else(|| {
                    (
                        "BAD_REQUEST".to_owned(),
                        format!(
                            "[SCHEMA_NOT_FOUND] schema `{}`.`{}` not found",
                            target[0], target[1]
                        ),
                    )
                })?;
            if !schema.contains_key(&target[2]) {
                if !cloud_table.unwrap_or_else(|| dest.join("_delta_log").is_dir()) {
                    return Err((
                        "BAD_REQUEST".into(),
                        format!("[DELTA_TABLE_NOT_FOUND] no Delta table at {at}"),
                    ));
                }
                schema.insert(
                    target[2].clone(),
                    Table {
                        table_type: "EXTERNAL".into(),
                        location: dest,
                        properties: BTreeMap::new(),
                    },
                );
            }
            Ok((vec![], vec![]))
        }
        Stmt2::DeepClone(target, source, as_of, at) => {
            let as_of = as_of.map(|ts| instant(&ts)).transpose()?;
            let (src, dest, existing) = {
                let ms = world.lock().unwrap();
                let (src, history) = resolve_shared(&ms, &me, &source)?;
                if as_of.is_some() && !history {
                    // The docs say only that time travel through a share needs the table shared
                    // with its history; the wording of the error is the emulator's.
                    return Err((
                        "BAD_REQUEST".into(),
                        format!(
                            "time travel on {} needs the table shared WITH HISTORY",
                            quoted3(&source)
                        ),
                    ));
                }
                let m = &ms[&me];
                let cat = m.catalogs.get(&target[0]).ok_or_else(|| {
                    (
                        "BAD_REQUEST".to_owned(),
                        format!(
                            "[NO_SUCH_CATALOG_EXCEPTION] catalog `{}` not found",
                            target[0]
                        ),
                    )
                })?;
                if cat.share.is_some() {
                    return Err((
                        "BAD_REQUEST".into(),
                        format!("catalog `{}` is a shared catalog and read-only", target[0]),
                    ));
                }
                let schema = cat.schemas.get(&target[1]).ok_or_else(|| {
                    (
                        "BAD_REQUEST".to_owned(),
                        format!(
                            "[SCHEMA_NOT_FOUND] schema `{}`.`{}` not found",
                            target[0], target[1]
                        ),
                    )
                })?;
                let existing = schema.get(&target[2]).cloned();
                if let Some(e) = &existing
                    && e.table_type != "MANAGED"
                    && e.table_type != "EXTERNAL"
                {
                    return Err((
                        "BAD_REQUEST".into(),
                        format!(
                            "[STREAMING_TABLE_OPERATION_NOT_ALLOWED] cannot CREATE OR REPLACE {} which is a {}",
                            quoted3(&target),
                            e.table_type
                        ),
                    ));
                }
                // `LOCATION`: an external table at that path; else the table's own, or a new
                // managed one.
                let dest = match &at {
                    Some(at) => local_path(at),
                    None => existing
                        .as_ref()
                        .map(|e| e.location.clone())
                        .unwrap_or_else(|| m.root.join("tables").join(Uuid::new_v4().to_string())),
                };
                (src, dest, existing)
            };
            let src_loc = location(&src)?;
            if let Some(ts) = as_of {
                refuse_after_latest_commit(&src_loc, ts).await?;
            }
            // `CREATE OR REPLACE`: the statement itself says replace.
            let report = deep_clone(
                &src_loc,
                &TableLocation::parse(&dest.to_string_lossy()).map_err(lake)?,
                &CloneOptions {
                    replace: true,
                    timestamp: as_of,
                    ..Default::default()
                },
            )
            .await
            .map_err(lake)?;
            if existing.is_none() || at.is_some() {
                let mut ms = world.lock().unwrap();
                if let Some(schema) = ms
                    .get_mut(&me)
                    .unwrap()
                    .catalogs
                    .get_mut(&target[0])
                    .and_then(|c| c.schemas.get_mut(&target[1]))
                {
                    let table_type = if at.is_some() { "EXTERNAL" } else { "MANAGED" };
                    let t = schema.entry(target[2].clone()).or_insert(Table {
                        table_type: table_type.into(),
                        location: dest.clone(),
                        properties: BTreeMap::new(),
                    });
                    t.table_type = table_type.into();
                    t.location = dest;
                }
            }
            let m = report.metrics;
            let cols = [
                "source_table_size",
                "source_num_of_files",
                "num_removed_files",
                "num_copied_files",
                "removed_files_size",
                "copied_files_size",
            ];
            let vals = [
                m.source_table_size,
                m.source_num_of_files,
                m.num_removed_files,
                m.num_copied_files,
                m.removed_files_size,
                m.copied_files_size,
            ];
            Ok((
                cols.iter().map(|c| c.to_string()).collect(),
                vec![vals.iter().map(|v| Some(v.to_string())).collect()],
            ))
        }
    }
}

/// The directory of a `LOCATION` (a `file://` URL, as Unity Catalog shows local storage, or
/// a path).
fn local_path(at: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(at.strip_prefix("file://").unwrap_or(at))
}

/// The instant of a `TIMESTAMP AS OF` string: an ISO 8601 timestamp with its offset, as a
/// string cast to `TIMESTAMP` reads it.
fn instant(ts: &str) -> Result<chrono::DateTime<chrono::Utc>, SqlError> {
    chrono::DateTime::parse_from_rfc3339(ts)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|_| {
            (
                "BAD_REQUEST".into(),
                format!("[DELTA_TIME_TRAVEL_INVALID_BEGIN_VALUE] The time travel timestamp '{ts}' is not a valid timestamp. SQLSTATE: 42604"),
            )
        })
}

/// Delta refuses to time-travel to an instant later than the table's latest commit
/// (`DELTA_TIMESTAMP_GREATER_THAN_COMMIT`, SQLSTATE 42816; delta-io/delta
/// `DeltaHistoryManager.getActiveCommitAtTime` with `canReturnLastCommit = false`), which
/// delta-rs would answer with the latest version.
async fn refuse_after_latest_commit(
    loc: &TableLocation,
    ts: chrono::DateTime<chrono::Utc>,
) -> Result<(), SqlError> {
    let versions = inspect::version_timestamps(loc).await.map_err(lake)?;
    if let Some(&(_, last)) = versions.iter().max_by_key(|(v, _)| *v)
        && ts.timestamp_millis() > last
    {
        let last = chrono::DateTime::from_timestamp_millis(last).unwrap_or_default();
        return Err((
            "BAD_REQUEST".into(),
            format!(
                "[DELTA_TIMESTAMP_GREATER_THAN_COMMIT] The provided timestamp ({ts}) is after the latest version available to this table ({last}). Please use a timestamp before or at {last}. SQLSTATE: 42816"
            ),
        ));
    }
    Ok(())
}

/// Distinct rows of `a` over `from` that are not rows of `b` over `other`, rendered and
/// sorted.
async fn except(
    world: &Mutex<BTreeMap<String, Metastore>>,
    me: &str,
    a: &[String],
    from: &[String; 3],
    b: &[String],
    other: &[String; 3],
) -> Result<Vec<String>, SqlError> {
    if a.len() != b.len() {
        return Err((
            "BAD_REQUEST".into(),
            "[NUM_COLUMNS_MISMATCH] EXCEPT sides differ".into(),
        ));
    }
    let (ta, tb) = {
        let ms = world.lock().unwrap();
        (resolve(&ms, me, from)?, resolve(&ms, me, other)?)
    };
    let left = project(
        &inspect::read_batches(&location(&ta)?, None)
            .await
            .map_err(lake)?,
        a,
    )?;
    let right = project(
        &inspect::read_batches(&location(&tb)?, None)
            .await
            .map_err(lake)?,
        b,
    )?;
    Ok(left.difference(&right).cloned().collect())
}
