//! The manifest: what the last syncs copied into a target volume, so that a re-sync tells
//! unchanged files from one listing of each side, reading no file's content.
//!
//! Each entry pairs the source's stamp of a file with the stamp its copy got in the target.
//! A file is unchanged when the source still lists it with that source stamp **and** the
//! target still lists it with that target stamp; anything else is copied again. The manifest
//! is therefore only a cache: an entry that no longer describes the target (the copy was
//! overwritten, or another run wrote the file since) simply does not match.
//!
//! One manifest per shard (`manifest.json`, or `manifest-3-of-8.json`) in
//! `_replicator_volume/` under the target root, written with one `put` (atomic on every
//! store: the local store stages and renames) after the run's copies. A run reads every
//! manifest there that was written for the same source, so changing the shard count, or
//! shards running at once, never makes a file look unchanged when it is not.

use std::collections::{BTreeMap, HashMap};

use futures::{StreamExt, stream};
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use super::listing::{MANIFEST_DIR, Stamp};
use crate::{LakeError, TableLocation};

/// Version of the manifest's format; a manifest of another version is ignored.
const FORMAT: u32 = 1;

/// One copied file: its source's stamp when it was copied, and its copy's stamp.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Entry {
    pub src: Stamp,
    pub dst: Stamp,
}

#[derive(Serialize, Deserialize)]
struct Manifest {
    format: u32,
    /// The source URL the entries were copied from.
    source: String,
    /// When a sync last listed the target and found these entries (Unix seconds); a sync
    /// with `verify_every` trusts the entries instead of listing until it is that old.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    verified: Option<i64>,
    files: BTreeMap<String, Entry>,
}

/// Every entry of every manifest of a target for one source.
#[derive(Default)]
pub(crate) struct Known {
    /// This run's own manifest as read (also to skip rewriting an identical one).
    own: Option<BTreeMap<String, Entry>>,
    /// When this run's manifest was last verified against a listing of the target.
    pub(crate) own_verified: Option<i64>,
    /// The other manifests' entries (other shard counts, or none).
    others: HashMap<String, Vec<Entry>>,
}

impl Known {
    /// The entry proving `relative` unchanged: the source lists it as `src` and the target
    /// as `dst`, exactly as when it was copied.
    pub(crate) fn clean(&self, relative: &str, src: &Stamp, dst: &Stamp) -> Option<&Entry> {
        let matches = |e: &&Entry| &e.src == src && &e.dst == dst;
        self.own
            .as_ref()
            .and_then(|own| own.get(relative))
            .filter(matches)
            .or_else(|| self.others.get(relative)?.iter().find(matches))
    }

    /// The target as this run's manifest records it, when it was verified by a listing
    /// less than `max_age` seconds before `now`: each file's stamp in the target.
    pub(crate) fn trusted_target(&self, now: i64, max_age: i64) -> Option<BTreeMap<String, Stamp>> {
        let verified = self.own_verified?;
        if now.saturating_sub(verified) >= max_age {
            return None;
        }
        let own = self.own.as_ref()?;
        Some(
            own.iter()
                .map(|(k, e)| (k.clone(), e.dst.clone()))
                .collect(),
        )
    }

    /// Whether `files` is what this run's manifest already says.
    pub(crate) fn own_is(&self, files: &BTreeMap<String, Entry>) -> bool {
        self.own.as_ref() == Some(files)
    }
}

/// The manifest's file name for a shard.
fn name(shard: Option<(u32, u32)>) -> String {
    match shard {
        None => "manifest.json".to_owned(),
        Some((i, n)) => format!("manifest-{i}-of-{n}.json"),
    }
}

fn is_manifest(file: &str) -> bool {
    file == "manifest.json"
        || file
            .strip_prefix("manifest-")
            .and_then(|r| r.strip_suffix(".json"))
            .and_then(|r| r.split_once("-of-"))
            .is_some_and(|(i, n)| i.parse::<u32>().is_ok() && n.parse::<u32>().is_ok())
}

/// Read every manifest under `target` written for `source`. An unreadable or foreign
/// manifest is ignored (its files are copied again), never an error.
pub(crate) async fn read(
    target: &TableLocation,
    source: &TableLocation,
    shard: Option<(u32, u32)>,
) -> Result<Known, LakeError> {
    let store = target.object_store();
    let dir = target.object_path(MANIFEST_DIR);
    let listing = match store.list_with_delimiter(Some(&dir)).await {
        Ok(l) => l,
        Err(object_store::Error::NotFound { .. }) => return Ok(Known::default()),
        Err(e) => return Err(LakeError::store(&dir, e)),
    };
    let own = name(shard);
    let reads = listing
        .objects
        .into_iter()
        .filter(|m| m.location.filename().is_some_and(is_manifest))
        .map(|m| async move {
            let bytes = store.get(&m.location).await?.bytes().await?;
            Ok::<_, object_store::Error>((m.location, bytes))
        })
        .collect::<Vec<_>>();
    let mut known = Known::default();
    let mut reads = stream::iter(reads).buffer_unordered(4);
    while let Some(read) = reads.next().await {
        let (path, bytes) = match read {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(target = %target, error = %crate::error::one_line(&e.to_string()), "cannot read a volume manifest: its files will be compared as unknown");
                continue;
            }
        };
        let manifest: Manifest = match serde_json::from_slice(&bytes) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(manifest = %path, error = %e, "ignoring a volume manifest that does not parse");
                continue;
            }
        };
        if manifest.format != FORMAT || !source.is_same_as(&manifest.source) {
            continue;
        }
        if path.filename() == Some(own.as_str()) {
            known.own = Some(manifest.files);
            known.own_verified = manifest.verified;
            continue;
        }
        for (relative, entry) in manifest.files {
            known.others.entry(relative).or_default().push(entry);
        }
    }
    Ok(known)
}

/// Write this run's manifest (one `put`: atomic); `verified`: when the target was last
/// listed to check it.
pub(crate) async fn write(
    target: &TableLocation,
    source: &TableLocation,
    shard: Option<(u32, u32)>,
    files: BTreeMap<String, Entry>,
    verified: Option<i64>,
) -> Result<(), LakeError> {
    let path = target.object_path(&format!("{MANIFEST_DIR}/{}", name(shard)));
    let manifest = Manifest {
        format: FORMAT,
        source: source.url().to_string(),
        verified,
        files,
    };
    let body = serde_json::to_vec(&manifest)
        .map_err(|e| LakeError::Invalid(format!("cannot serialize the manifest {path}: {e}")))?;
    target
        .object_store()
        .put(&path, PutPayload::from(body))
        .await
        .map_err(|e| LakeError::store(&path, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(size: u64) -> Stamp {
        Stamp {
            size,
            etag: Some(format!("e{size}")),
            mtime: 1,
        }
    }

    /// The manifest stands for the target only while its last verification is recent.
    #[test]
    fn a_manifest_is_trusted_only_while_recently_verified() {
        let mut files = BTreeMap::new();
        files.insert(
            "a/b.csv".to_owned(),
            Entry {
                src: stamp(1),
                dst: stamp(2),
            },
        );
        let mut known = Known {
            own: Some(files),
            own_verified: Some(1_000),
            ..Known::default()
        };
        let target = known.trusted_target(1_059, 60).expect("verified 59 s ago");
        assert_eq!(target.get("a/b.csv"), Some(&stamp(2)));
        assert!(known.trusted_target(1_060, 60).is_none(), "60 s old: list");
        known.own_verified = None;
        assert!(
            known.trusted_target(1_001, 60).is_none(),
            "never verified: list"
        );
    }

    #[test]
    fn manifest_names_are_recognised() {
        assert!(is_manifest(&name(None)));
        assert!(is_manifest(&name(Some((3, 8)))));
        for other in ["manifest.json#1", "manifest-x-of-2.json", "notes.json"] {
            assert!(!is_manifest(other), "{other}");
        }
    }
}
