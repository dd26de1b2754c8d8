//! Catalog objects on the Databricks engine (docs/catalog.md): each configured source
//! catalog's schemas, views (in dependency order), materialized views (reported), volumes
//! with their files, the external locations they live in, grants on every securable, and
//! tables' tags and comments — planned from Unity Catalog and applied with
//! `replicator_databricks::ops::{catalog, volumes}`.

use std::collections::BTreeSet;

use replicator_common::config::CatalogSettings;
use replicator_common::mapping::Mapping;
use replicator_databricks::ops::catalog::{
    self as uc, CatalogError, CatalogSync, FindingKind, InventoryFilter, SyncOptions,
};
use replicator_databricks::ops::volumes::{
    self as vols, LocationStatus, PrefixMap, VolumeSyncOptions, covers,
};
use replicator_databricks::{DatabricksError, WorkspacePair};
use replicator_proto::{CatalogTask, ErrorKind, ObjectKind, ReplicationRequest};

use crate::databricks::DatabricksEngine;
use crate::{Applied, DiffState, Difference, EngineError, Failure, ObjectContext, PlannedObject};

/// The mapping of a run: the config's `catalog.mapping`, with `databricks.catalogs`'
/// renames for the catalogs it does not name.
pub(crate) fn mapping_of(pair: &WorkspacePair, settings: &CatalogSettings) -> Mapping {
    let mut m = settings.mapping.clone();
    for c in &pair.config().catalogs {
        m.catalogs
            .entry(c.source.clone())
            .or_insert_with(|| c.target());
    }
    m
}

/// A catalog or mapping error met while planning or diffing: the object cannot be carried as
/// the config says (one line, naming it).
fn refused(e: impl std::fmt::Display) -> EngineError {
    EngineError::Databricks(DatabricksError::Refused(e.to_string()))
}

fn prefix_map(settings: &CatalogSettings) -> PrefixMap {
    PrefixMap {
        prefixes: settings.mapping.locations.clone(),
        credentials: settings.credentials.clone(),
    }
}

fn catalog_failure(e: CatalogError) -> Failure {
    match e {
        CatalogError::Waits { object, missing } => Failure::waits_for(&object, &missing),
        CatalogError::Databricks(d) => databricks_failure(d),
        other => Failure::new(ErrorKind::Permanent, other.to_string(), false),
    }
}

fn databricks_failure(e: DatabricksError) -> Failure {
    let retry = replicator_common::retry::Retryable::is_transient(&e);
    let kind = if retry {
        ErrorKind::Transient
    } else {
        ErrorKind::Permanent
    };
    Failure::new(kind, e.to_string(), retry)
}

impl DatabricksEngine {
    fn object(
        &self,
        kind: ObjectKind,
        name: &str,
        target: &str,
        securable: Option<&str>,
    ) -> PlannedObject {
        let mut o = PlannedObject::new(
            kind,
            name.to_owned(),
            format!("{}/{name}", self.source_root()),
            format!("{}/{target}", self.target_root()),
        );
        o.securable = securable.map(str::to_owned);
        o
    }

    /// Every object of the configured source catalogs in the request's scope (its table
    /// filter applies to views and tables), in the order they are best applied.
    pub(crate) async fn plan_catalog(
        &self,
        request: &ReplicationRequest,
        settings: &CatalogSettings,
    ) -> Result<Vec<PlannedObject>, EngineError> {
        let pair = self.pair();
        let mapping = mapping_of(pair, settings);
        let matcher = replicator_lake::TableMatcher::new(&request.tables)?;
        let carries = |k| settings.carries(k);
        let (mut locations, mut schemas, mut volumes, mut views, mut grants, mut tags) = (
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
        );
        let mut storage = Vec::new();
        for c in &pair.config().catalogs {
            let inv = uc::inventory(&pair.source, &c.source, &InventoryFilter::default())
                .await
                .map_err(refused)?;
            if inv.catalog.is_none() {
                continue;
            }
            let target_catalog = mapping.map_catalog(&c.source, &c.source).map_err(refused)?;
            if carries(ObjectKind::Schema) {
                schemas.push(self.object(
                    ObjectKind::Schema,
                    &c.source,
                    &target_catalog,
                    Some("CATALOG"),
                ));
            }
            if carries(ObjectKind::Grants) {
                grants.push(self.object(
                    ObjectKind::Grants,
                    &c.source,
                    &target_catalog,
                    Some("CATALOG"),
                ));
            }
            for s in inv.schemas.keys() {
                let t = mapping.map_schema(s, s).map_err(refused)?;
                if carries(ObjectKind::Schema) {
                    schemas.push(self.object(ObjectKind::Schema, s, &t, None));
                }
                if carries(ObjectKind::Grants) {
                    grants.push(self.object(ObjectKind::Grants, s, &t, Some("SCHEMA")));
                }
                if carries(ObjectKind::Volume) || carries(ObjectKind::ExternalLocation) {
                    let (cat, schema) = s.split_once('.').unwrap_or((s, ""));
                    let source_volumes = pair.source.list_volumes(cat, schema).await?;
                    // A target volume whose source is gone, with `volumes.delete_extra`: one
                    // task with no source removes it (files, then the volume).
                    if carries(ObjectKind::Volume) && settings.volumes.delete_extra {
                        for gone in extra_volumes(pair, &source_volumes, &t, |n| {
                            matcher.matches(&format!("{cat}.{schema}.{n}"))
                        })
                        .await?
                        {
                            volumes.push(PlannedObject::new(
                                ObjectKind::Volume,
                                gone.clone(),
                                String::new(),
                                format!("{}/{gone}", self.target_root()),
                            ));
                        }
                    }
                    for v in source_volumes {
                        let full = format!("{cat}.{schema}.{}", v.name);
                        if !matcher.matches(&full) {
                            continue;
                        }
                        if let Some(l) = &v.storage_location {
                            storage.push(l.clone());
                        }
                        let t = format!("{t}.{}", v.name);
                        if carries(ObjectKind::Volume) {
                            // A large volume is copied by several tasks, each the files
                            // whose path hashes to its part (`volumes.chunk_files`), as on
                            // the native engine; counting them is one listing of its tree.
                            let name = replicator_databricks::client::VolumeName::parse(&full)
                                .map_err(EngineError::Databricks)?;
                            let files =
                                pair.source.list_tree(&name, &vols::OURS).await?.files.len() as u64;
                            let parts =
                                files.div_ceil(settings.volumes.chunk_files.max(1)).max(1) as u32;
                            for index in 0..parts {
                                let mut o = self.object(ObjectKind::Volume, &full, &t, None);
                                o.shard = (parts > 1).then_some(replicator_proto::Shard {
                                    index,
                                    count: parts,
                                });
                                volumes.push(o);
                            }
                        }
                        if carries(ObjectKind::Grants) {
                            grants.push(self.object(ObjectKind::Grants, &full, &t, Some("VOLUME")));
                        }
                    }
                }
            }
            let order = uc::view_order(&inv).map_err(refused)?;
            for (name, table) in &inv.tables {
                if !matcher.matches(name) {
                    continue;
                }
                let t = mapping.map_name(name, name).map_err(refused)?;
                if table.table_type == "EXTERNAL"
                    && let Some(l) = &table.storage_location
                {
                    storage.push(l.clone());
                }
                let securable = match table.table_type.as_str() {
                    "VIEW" => "VIEW",
                    "MATERIALIZED_VIEW" => {
                        if carries(ObjectKind::MaterializedView) {
                            views.push(self.object(ObjectKind::MaterializedView, name, &t, None));
                        }
                        continue;
                    }
                    _ => {
                        if carries(ObjectKind::Tags) {
                            tags.push(self.object(ObjectKind::Tags, name, &t, None));
                        }
                        "TABLE"
                    }
                };
                if carries(ObjectKind::Grants) {
                    grants.push(self.object(ObjectKind::Grants, name, &t, Some(securable)));
                }
            }
            if carries(ObjectKind::View) {
                for v in order.iter().filter(|v| matcher.matches(v)) {
                    let t = mapping.map_name(v, v).map_err(refused)?;
                    views.push(self.object(ObjectKind::View, v, &t, None));
                }
            }
        }
        if carries(ObjectKind::ExternalLocation) && !storage.is_empty() {
            let mut names = BTreeSet::new();
            for l in pair.source.list_external_locations().await? {
                if storage.iter().any(|s| covers(&l.url, s)) {
                    names.insert(l.name);
                }
            }
            for n in names {
                locations.push(self.object(ObjectKind::ExternalLocation, &n, &n, None));
            }
        }
        // Locations and schemas first, then volumes, views by their dependencies, grants and
        // tags last: what a task needs is usually there when it runs (and waits otherwise).
        Ok([locations, schemas, volumes, views, grants, tags].concat())
    }

    /// One attempt at one object (read both sides, apply the difference; none in a dry run).
    pub(crate) async fn apply_catalog(
        &self,
        task: &CatalogTask,
        ctx: &ObjectContext,
    ) -> Result<Applied, Failure> {
        let dry;
        let pair = if ctx.dry_run {
            dry = WorkspacePair::from_config(self.pair().config(), true)
                .map_err(databricks_failure)?;
            &dry
        } else {
            self.pair()
        };
        let mapping = mapping_of(pair, &ctx.settings);
        let options = SyncOptions {
            revoke_extra: ctx.settings.grants.revoke_extra,
            owners: ctx.settings.owners,
        };
        let sync = CatalogSync::new(&pair.source, &pair.target, &mapping, &options);
        let name = task.name.as_str();
        let outcome = match task.kind {
            ObjectKind::Schema if task.securable.as_deref() == Some("CATALOG") => {
                sync.sync_catalog(name).await
            }
            ObjectKind::Schema => sync.sync_schema(name).await,
            ObjectKind::View => sync.sync_view(name).await,
            ObjectKind::Tags => sync.sync_tags_and_comments(name).await,
            ObjectKind::Grants => {
                let securable = task.securable.as_deref().unwrap_or("TABLE");
                sync.sync_grants(securable, name).await
            }
            ObjectKind::MaterializedView => {
                return Ok(Applied {
                    findings: vec![format!(
                        "materialized view {name} is listed, not replicated: its pipeline recomputes it in the target"
                    )],
                    ..Applied::default()
                });
            }
            ObjectKind::Volume => return self.apply_volume(pair, task, ctx).await,
            ObjectKind::Inventory | ObjectKind::Mirror => {
                return Err(Failure::new(
                    ErrorKind::Permanent,
                    format!(
                        "{} {name}: run by the catalog worker (diff_objects, the Snowflake mirror), not applied by the engine",
                        task.kind
                    ),
                    false,
                ));
            }
            ObjectKind::ExternalLocation => {
                let map = prefix_map(&ctx.settings);
                let o = vols::ensure_external_location(
                    &pair.source,
                    &pair.target,
                    name,
                    &map,
                    ctx.dry_run,
                )
                .await
                .map_err(databricks_failure)?;
                let mut findings = o.findings;
                if o.status == LocationStatus::Missing && findings.is_empty() {
                    findings.push(format!("external location {name} is missing on the target"));
                }
                return Ok(Applied {
                    statements: o.statements,
                    findings,
                    ..Applied::default()
                });
            }
        };
        let o = outcome.map_err(catalog_failure)?;
        Ok(Applied {
            statements: o.statements,
            findings: o.findings,
            ..Applied::default()
        })
    }

    async fn apply_volume(
        &self,
        pair: &WorkspacePair,
        task: &CatalogTask,
        ctx: &ObjectContext,
    ) -> Result<Applied, Failure> {
        let target = crate::databricks::split(&task.target)
            .map(|(_, n)| n.to_owned())
            .unwrap_or_else(|| task.target.clone());
        if task.source.is_empty() {
            // Gone from the source (planned only with `volumes.delete_extra`).
            if !ctx.settings.volumes.delete_extra {
                return Err(Failure::new(
                    ErrorKind::Permanent,
                    format!(
                        "volume {target}: gone from the source; kept (`catalog.volumes.delete_extra` deletes it)"
                    ),
                    false,
                ));
            }
            let r = vols::remove_volume(&pair.target, &target, ctx.dry_run)
                .await
                .map_err(databricks_failure)?;
            return Ok(Applied {
                statements: r.statements,
                files_deleted: r.files_deleted,
                ..Applied::default()
            });
        }
        let opts = VolumeSyncOptions {
            delete_extra: ctx.settings.volumes.delete_extra,
            dry_run: ctx.dry_run,
            parallelism: ctx.parallelism.max(1),
            retry: pair.config().client.retry.clone(),
            shard: task.shard.map(|s| vols::Shard {
                index: s.index,
                count: s.count,
            }),
        };
        let map = prefix_map(&ctx.settings);
        // An external volume needs its location in the target first: make sure of it here
        // too (idempotent), whatever order the fleet runs the tasks in.
        let mut statements = Vec::new();
        let mut findings = Vec::new();
        let source_location = pair
            .source
            .get_volume(&task.name)
            .await
            .map_err(databricks_failure)?
            .and_then(|v| v.storage_location);
        if let Some(location) = &source_location {
            for l in pair
                .source
                .list_external_locations()
                .await
                .map_err(databricks_failure)?
                .into_iter()
                .filter(|l| covers(&l.url, location))
            {
                let o = vols::ensure_external_location(
                    &pair.source,
                    &pair.target,
                    &l.name,
                    &map,
                    ctx.dry_run,
                )
                .await
                .map_err(databricks_failure)?;
                statements.extend(o.statements);
                findings.extend(o.findings);
            }
        }
        if ctx.settings.volumes.direct
            && let Some(location) = &source_location
        {
            return self
                .copy_volume_directly(
                    pair, task, &target, location, &map, ctx, statements, findings,
                )
                .await;
        }
        let o = vols::sync_volume(&pair.source, &pair.target, &task.name, &target, &map, &opts)
            .await
            .map_err(databricks_failure)?;
        statements.extend(o.statements);
        findings.extend(o.findings);
        Ok(Applied {
            statements,
            findings,
            files_copied: o.files_copied,
            bytes_copied: o.bytes_copied,
            files_deleted: o.files_deleted,
            files_unchanged: o.files_unchanged,
            ..Applied::default()
        })
    }

    /// `catalog.volumes.direct`: create the target volume (DDL only), then copy the files
    /// from the source volume's storage location to its mapped one with the native engine's
    /// volume sync — no file passes through either workspace.
    #[allow(clippy::too_many_arguments)]
    async fn copy_volume_directly(
        &self,
        pair: &WorkspacePair,
        task: &CatalogTask,
        target: &str,
        source_location: &str,
        map: &PrefixMap,
        ctx: &ObjectContext,
        mut statements: Vec<String>,
        mut findings: Vec<String>,
    ) -> Result<Applied, Failure> {
        use replicator_databricks::ops::volumes::StorageMap;
        let target_location = map.location(source_location).ok_or_else(|| {
            Failure::new(
                ErrorKind::Permanent,
                format!(
                    "volume {}: its location {source_location} is under no mapped prefix (`catalog.mapping.locations`)",
                    task.name
                ),
                false,
            )
        })?;
        let o = vols::ensure_target_volume(
            &pair.source,
            &pair.target,
            &task.name,
            target,
            map,
            ctx.dry_run,
            &pair.config().client.retry,
        )
        .await
        .map_err(databricks_failure)?;
        statements.extend(o.statements);
        findings.extend(o.findings);
        let (from, to) = (
            replicator_lake::TableLocation::parse(source_location)?,
            replicator_lake::TableLocation::parse(&target_location)?,
        );
        let delete_extra = ctx.settings.volumes.delete_extra;
        let opts = replicator_lake::volume::VolumeOptions {
            parallelism: ctx.parallelism.max(1),
            delete_extra,
            dry_run: ctx.dry_run,
            shard: task.shard.map(|s| (s.index, s.count)),
            verify_every: ctx.settings.volumes.verify_every_duration(),
            ..Default::default()
        };
        let r = replicator_lake::volume::sync_volume(&from, &to, &opts).await?;
        let mut files = crate::native::volume_applied(&r, ctx.dry_run, delete_extra);
        findings.append(&mut files.findings);
        Ok(Applied {
            statements,
            findings,
            ..files
        })
    }

    /// The inventory diff of every configured catalog, and of each volume's files.
    pub(crate) async fn diff_catalog(
        &self,
        request: &ReplicationRequest,
        settings: &CatalogSettings,
    ) -> Result<Vec<Difference>, EngineError> {
        let pair = self.pair();
        let mapping = mapping_of(pair, settings);
        let mut diffs = Vec::new();
        for c in &pair.config().catalogs {
            let target_catalog = mapping.map_catalog(&c.source, &c.source).map_err(refused)?;
            let filter = InventoryFilter::default();
            let src = uc::inventory(&pair.source, &c.source, &filter)
                .await
                .map_err(refused)?;
            let tgt = uc::inventory(&pair.target, &target_catalog, &filter)
                .await
                .map_err(refused)?;
            for f in uc::diff_catalog(&src, &tgt, &mapping) {
                let name = f.source.clone().unwrap_or_else(|| f.object.clone());
                let kind = if src.schemas.contains_key(&name) || tgt.schemas.contains_key(&name) {
                    ObjectKind::Schema
                } else if let Some(t) = src.tables.get(&name).or_else(|| tgt.tables.get(&name)) {
                    match t.table_type.as_str() {
                        "VIEW" => ObjectKind::View,
                        "MATERIALIZED_VIEW" => ObjectKind::MaterializedView,
                        _ => ObjectKind::Tags,
                    }
                } else {
                    ObjectKind::Schema
                };
                let state = match f.kind {
                    FindingKind::Missing => DiffState::Missing,
                    FindingKind::Extra => DiffState::Extra,
                    FindingKind::Different => DiffState::Different,
                    FindingKind::Reported => DiffState::Reported,
                };
                diffs.push(Difference {
                    kind,
                    name,
                    state,
                    detail: f.detail,
                });
            }
            if settings.carries(ObjectKind::Volume) {
                let matcher = replicator_lake::TableMatcher::new(&request.tables)?;
                for s in src.schemas.keys() {
                    let (cat, schema) = s.split_once('.').unwrap_or((s, ""));
                    let t = mapping.map_schema(s, s).map_err(refused)?;
                    let source_volumes = pair.source.list_volumes(cat, schema).await?;
                    for gone in extra_volumes(pair, &source_volumes, &t, |n| {
                        matcher.matches(&format!("{cat}.{schema}.{n}"))
                    })
                    .await?
                    {
                        diffs.push(Difference {
                            kind: ObjectKind::Volume,
                            name: gone,
                            state: DiffState::Extra,
                            detail: "in the target, gone from the source".into(),
                        });
                    }
                    for v in source_volumes {
                        let full = format!("{cat}.{schema}.{}", v.name);
                        if !matcher.matches(&full) {
                            continue;
                        }
                        let target = format!("{t}.{}", v.name);
                        let d =
                            vols::diff_volume(&pair.source, &pair.target, &full, &target).await?;
                        if !d.missing.is_empty() || !d.extra.is_empty() || !d.different.is_empty() {
                            diffs.push(Difference {
                                kind: ObjectKind::Volume,
                                name: full,
                                state: DiffState::Different,
                                detail: format!(
                                    "{} file(s) missing, {} extra, {} of another size",
                                    d.missing.len(),
                                    d.extra.len(),
                                    d.different.len()
                                ),
                            });
                        }
                    }
                }
            }
        }
        diffs.sort();
        Ok(diffs)
    }
}

/// The target volumes of schema `target_schema` (`catalog.schema`, mapped) with no source
/// volume of the same name among `source` (those `wanted` by the request's filter, by
/// name); none when the target schema does not exist.
async fn extra_volumes(
    pair: &WorkspacePair,
    source: &[replicator_databricks::client::VolumeInfo],
    target_schema: &str,
    wanted: impl Fn(&str) -> bool,
) -> Result<Vec<String>, EngineError> {
    let (cat, schema) = target_schema.split_once('.').unwrap_or((target_schema, ""));
    let theirs = match pair.target.list_volumes(cat, schema).await {
        Ok(v) => v,
        Err(e) if e.is_not_found() => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    Ok(theirs
        .into_iter()
        .filter(|t| !source.iter().any(|s| s.name == t.name) && wanted(&t.name))
        .map(|t| format!("{target_schema}.{}", t.name))
        .collect())
}
