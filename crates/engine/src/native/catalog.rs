//! Catalog objects on the native engine: volumes — the file trees under the source root that
//! are not Delta tables (`replicator_lake::volume`, docs/volumes.md). A large volume is split
//! into parts (`catalog.volumes.chunk_files`), one task each.

use replicator_common::config::CatalogSettings;
use replicator_lake::TableLocation;
use replicator_lake::volume::{
    DiscoveredVolume, VolumeOptions, VolumeSynced, diff_volume, discover_volumes, sync_volume,
};
use replicator_proto::{CatalogTask, ErrorKind, ObjectKind, ReplicationRequest, Shard};

use super::NativeEngine;
use crate::{Applied, DiffState, Difference, EngineError, Failure, ObjectContext, PlannedObject};

/// Names listed in a finding (counts are complete).
const NAMES_SHOWN: usize = 5;

fn shown(names: &[String], total: u64) -> String {
    let mut s = names
        .iter()
        .take(NAMES_SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if total as usize > NAMES_SHOWN.min(names.len()) {
        s.push_str(", …");
    }
    s
}

fn locations_of(
    source: &TableLocation,
    target: &TableLocation,
    v: &DiscoveredVolume,
) -> Result<(TableLocation, TableLocation), EngineError> {
    if v.relative.is_empty() {
        return Ok((source.clone(), target.clone()));
    }
    Ok((source.child(&v.relative)?, target.child(&v.relative)?))
}

/// What a volume sync did, as a catalog task reports it (in a dry run: what it would do);
/// extra target files kept, and source files gone mid-sync, are findings.
pub(crate) fn volume_applied(r: &VolumeSynced, dry_run: bool, delete_extra: bool) -> Applied {
    let mut applied = Applied {
        files_copied: if dry_run {
            r.files_planned
        } else {
            r.files_copied
        },
        bytes_copied: if dry_run {
            r.bytes_planned
        } else {
            r.bytes_copied
        },
        files_deleted: if dry_run && delete_extra {
            r.files_extra
        } else {
            r.files_deleted
        },
        files_unchanged: r.files_unchanged,
        ..Applied::default()
    };
    if r.files_extra > 0 && !delete_extra {
        applied.findings.push(format!(
            "{} file(s) in the target that the source does not have, kept (`catalog.volumes.delete_extra` deletes them): {}",
            r.files_extra,
            shown(&r.extra, r.files_extra)
        ));
    }
    if r.files_vanished > 0 {
        applied.findings.push(format!(
            "{} file(s) deleted from the source while the volume was synced",
            r.files_vanished
        ));
    }
    applied
}

impl NativeEngine {
    /// One task per volume under the source root (one per part of a large one).
    pub(super) async fn plan_volumes(
        &self,
        request: &ReplicationRequest,
        settings: &CatalogSettings,
    ) -> Result<Vec<PlannedObject>, EngineError> {
        if !settings.carries(ObjectKind::Volume) {
            return Ok(Vec::new());
        }
        let source = self.resolve(&request.source_root)?;
        let target = self.resolve(&request.target_root)?;
        let mut planned = Vec::new();
        let ours = discover_volumes(&source, &request.tables).await?;
        // A volume gone from the source, with `volumes.delete_extra`: one task that syncs it
        // from nothing, so its files are deleted from the target. Only when the source root
        // still holds volumes: an emptied (or unmounted) source root deletes nothing.
        if settings.volumes.delete_extra
            && !ours.is_empty()
            && target.local_dir().is_none_or(|d| d.is_dir())
        {
            for t in discover_volumes(&target, &request.tables).await? {
                if ours.iter().any(|v| v.relative == t.relative) || t.files == 0 {
                    continue;
                }
                let (_, d) = locations_of(&source, &target, &t)?;
                // No source: the volume is gone from it (see `apply_volume`).
                let mut o = PlannedObject::new(
                    ObjectKind::Volume,
                    t.name.clone(),
                    String::new(),
                    d.url().to_string(),
                );
                o.loose = !t.recursive;
                planned.push(o);
            }
        }
        for v in ours {
            let (s, t) = locations_of(&source, &target, &v)?;
            let parts = v.files.div_ceil(settings.volumes.chunk_files).max(1) as u32;
            for index in 0..parts {
                let mut o = PlannedObject::new(
                    ObjectKind::Volume,
                    v.name.clone(),
                    s.url().to_string(),
                    t.url().to_string(),
                );
                o.shard = (parts > 1).then_some(Shard {
                    index,
                    count: parts,
                });
                o.loose = !v.recursive;
                planned.push(o);
            }
        }
        Ok(planned)
    }

    /// Sync one volume (or one part of it).
    pub(super) async fn apply_volume(
        &self,
        task: &CatalogTask,
        ctx: &ObjectContext,
    ) -> Result<Applied, Failure> {
        if task.kind != ObjectKind::Volume {
            return Err(Failure::new(
                ErrorKind::Permanent,
                format!(
                    "{} {}: the native engine carries volumes only",
                    task.kind, task.name
                ),
                false,
            ));
        }
        let target = self.resolve(&task.target)?;
        let delete_extra = ctx.settings.volumes.delete_extra;
        // A volume gone from the source (planned with no source, `volumes.delete_extra` on):
        // synced from an empty directory, so every file of it is deleted from the target.
        let empty;
        let source = if task.source.is_empty() {
            if !delete_extra {
                return Err(Failure::new(
                    ErrorKind::Permanent,
                    format!(
                        "volume {}: gone from the source; kept (`catalog.volumes.delete_extra` deletes it)",
                        task.name
                    ),
                    false,
                ));
            }
            empty = tempfile::tempdir().map_err(|e| {
                Failure::new(
                    ErrorKind::Transient,
                    format!("volume {}: a temporary directory: {e}", task.name),
                    true,
                )
            })?;
            TableLocation::parse(&empty.path().to_string_lossy())?
        } else {
            self.resolve(&task.source)?
        };
        let opts = VolumeOptions {
            parallelism: ctx.parallelism.max(1),
            delete_extra,
            dry_run: ctx.dry_run,
            shard: task.shard.map(|s| (s.index, s.count)),
            recursive: !task.loose,
            verify_every: ctx.settings.volumes.verify_every_duration(),
            source_gone: task.source.is_empty(),
            ..VolumeOptions::default()
        };
        let r = sync_volume(&source, &target, &opts).await?;
        Ok(volume_applied(&r, ctx.dry_run, delete_extra))
    }

    /// Volumes missing, extra or different (by file names and sizes) on the target.
    pub(super) async fn diff_volumes(
        &self,
        request: &ReplicationRequest,
        settings: &CatalogSettings,
    ) -> Result<Vec<Difference>, EngineError> {
        if !settings.carries(ObjectKind::Volume) {
            return Ok(Vec::new());
        }
        let source = self.resolve(&request.source_root)?;
        let target = self.resolve(&request.target_root)?;
        let (ours, theirs) = futures::try_join!(
            discover_volumes(&source, &request.tables),
            discover_volumes(&target, &request.tables)
        )?;
        let mut diffs = Vec::new();
        for v in &ours {
            let Some(t) = theirs.iter().find(|t| t.relative == v.relative) else {
                diffs.push(Difference {
                    kind: ObjectKind::Volume,
                    name: v.name.clone(),
                    state: DiffState::Missing,
                    detail: format!("{} file(s)", v.files),
                });
                continue;
            };
            let (s, d) = locations_of(&source, &target, v)?;
            let opts = VolumeOptions {
                recursive: v.recursive && t.recursive,
                ..VolumeOptions::default()
            };
            let diff = diff_volume(&s, &d, &opts).await?;
            if !diff.is_empty() {
                let mut parts = Vec::new();
                if diff.files_missing > 0 {
                    parts.push(format!(
                        "{} missing: {}",
                        diff.files_missing,
                        shown(&diff.missing, diff.files_missing)
                    ));
                }
                if diff.files_extra > 0 {
                    parts.push(format!(
                        "{} extra: {}",
                        diff.files_extra,
                        shown(&diff.extra, diff.files_extra)
                    ));
                }
                if diff.files_different > 0 {
                    parts.push(format!(
                        "{} of another size: {}",
                        diff.files_different,
                        shown(&diff.different, diff.files_different)
                    ));
                }
                diffs.push(Difference {
                    kind: ObjectKind::Volume,
                    name: v.name.clone(),
                    state: DiffState::Different,
                    detail: parts.join("; "),
                });
            }
        }
        for t in theirs
            .iter()
            .filter(|t| t.files > 0 && !ours.iter().any(|v| v.relative == t.relative))
        {
            diffs.push(Difference {
                kind: ObjectKind::Volume,
                name: t.name.clone(),
                state: DiffState::Extra,
                detail: format!("{} file(s)", t.files),
            });
        }
        diffs.sort();
        Ok(diffs)
    }
}
