//! Listing a volume: every file under its root (or only those directly in it), by relative
//! path, each with the [`Stamp`] that tells a changed file without reading it. Relative paths
//! are checked before anything uses them: one that could leave the root is an error naming
//! the file.

use std::collections::BTreeMap;

use futures::{StreamExt, TryStreamExt, stream};
use object_store::ObjectMeta;
use object_store::path::Path;
use serde::{Deserialize, Serialize};

use crate::{LakeError, TableLocation};

/// The directory under a target volume's root holding its manifests.
pub(crate) const MANIFEST_DIR: &str = "_replicator_volume";

/// Names at a volume's root that belong to the replicator, never to the volume: the
/// manifests and the staging directory of local targets. Skipped on both sides, so a
/// volume that is itself a replica can be a source.
pub(crate) fn reserved(name: &str) -> bool {
    name == MANIFEST_DIR || name == crate::clone::STAGING_DIR
}

/// Directory listings in flight at once for one recursive listing.
const LISTINGS_AT_ONCE: usize = 16;

/// What a listing says of a file: its size, its ETag (object stores: a content hash or a
/// version tag; the local store: inode, mtime and size) and its modification time. Two
/// equal stamps mean the same content for every store this crate reaches (see
/// `docs/volumes.md`, "Change detection", for the limits).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Stamp {
    #[serde(rename = "s")]
    pub size: u64,
    #[serde(rename = "e", default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// Nanoseconds since the Unix epoch.
    #[serde(rename = "m")]
    pub mtime: i64,
}

impl Stamp {
    pub(crate) fn of(meta: &ObjectMeta) -> Self {
        Self {
            size: meta.size,
            etag: meta.e_tag.clone(),
            mtime: nanos(meta.last_modified),
        }
    }

    /// The stamp the local object store gives the file `meta` describes (same ETag
    /// formula as `object_store::local`), without a second `stat`.
    pub(crate) fn of_local(meta: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        let modified = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
        let micros = modified
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros();
        Self {
            size: meta.len(),
            etag: Some(format!("{:x}-{micros:x}-{:x}", meta.ino(), meta.len())),
            mtime: nanos(modified.into()),
        }
    }
}

fn nanos(t: chrono::DateTime<chrono::Utc>) -> i64 {
    t.timestamp_nanos_opt().unwrap_or(i64::MAX)
}

/// Files by relative path.
pub(crate) type Listing = BTreeMap<String, Stamp>;

/// Which files of a listing one run handles: all, or one shard of `count`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Scope {
    pub recursive: bool,
    pub shard: Option<(u32, u32)>,
}

impl Scope {
    pub(crate) fn holds(&self, relative: &str) -> bool {
        self.shard
            .is_none_or(|(index, count)| shard_of(relative, count) == index)
    }
}

/// The shard of a relative path among `count`: a stable hash (XXH3-64 of the UTF-8 path),
/// the same in every process and release.
pub fn shard_of(relative: &str, count: u32) -> u32 {
    (twox_hash::XxHash3_64::oneshot(relative.as_bytes()) % u64::from(count.max(1))) as u32
}

/// List the files of `root` in `scope`. A root that does not exist lists nothing.
pub(crate) async fn list(root: &TableLocation, scope: Scope) -> Result<Listing, LakeError> {
    if let Some(dir) = root.local_dir() {
        return super::local::list(root, dir, scope).await;
    }
    let store = root.object_store();
    let base = root.prefix().clone();
    let top = match store.list_with_delimiter(Some(&base)).await {
        Ok(l) => l,
        Err(object_store::Error::NotFound { .. }) => return Ok(Listing::new()),
        Err(e) => return Err(LakeError::store(root.url(), e)),
    };
    let mut files = Listing::new();
    for meta in &top.objects {
        add(&mut files, root, &base, meta, scope)?;
    }
    if !scope.recursive {
        return Ok(files);
    }
    // Each top-level directory is listed as one flat stream, several at once: an object
    // store lists a thousand keys a request, whatever the depth.
    let dirs = top
        .common_prefixes
        .into_iter()
        .filter(|d| d.filename().is_none_or(|n| !reserved(n)));
    let mut lists = stream::iter(
        dirs.map(|dir| {
            let store = store.clone();
            async move {
                match store.list(Some(&dir)).try_collect::<Vec<_>>().await {
                    Ok(v) => Ok(v),
                    Err(object_store::Error::NotFound { .. }) => Ok(Vec::new()),
                    Err(e) => Err(LakeError::store(&dir, e)),
                }
            }
        })
        .collect::<Vec<_>>(),
    )
    .buffer_unordered(LISTINGS_AT_ONCE);
    while let Some(metas) = lists.next().await {
        for meta in &metas? {
            add(&mut files, root, &base, meta, scope)?;
        }
    }
    Ok(files)
}

fn add(
    files: &mut Listing,
    root: &TableLocation,
    base: &Path,
    meta: &ObjectMeta,
    scope: Scope,
) -> Result<(), LakeError> {
    let relative = relative(root, base, &meta.location)?;
    if relative.split('/').next().is_some_and(reserved) {
        return Ok(());
    }
    if scope.holds(&relative) {
        files.insert(relative, Stamp::of(meta));
    }
    Ok(())
}

/// The path of `location` relative to `base`, checked.
fn relative(root: &TableLocation, base: &Path, location: &Path) -> Result<String, LakeError> {
    let unsafe_path = |reason: &str| LakeError::UnsafeVolumePath {
        url: root.url().to_string(),
        path: location.to_string(),
        reason: reason.to_owned(),
    };
    let parts = location
        .prefix_match(base)
        .ok_or_else(|| unsafe_path("it is outside the listed prefix"))?;
    let relative = parts
        .map(|p| p.as_ref().to_owned())
        .collect::<Vec<_>>()
        .join("/");
    check_relative(&relative).map_err(|reason| LakeError::UnsafeVolumePath {
        url: root.url().to_string(),
        path: relative.clone(),
        reason: reason.to_owned(),
    })?;
    Ok(relative)
}

/// Whether `relative` stays under the root it is joined to, whatever store or filesystem it
/// lands in: not empty, not absolute, no empty, `.` or `..` segment (nor one that decodes to
/// them), no control character.
pub(crate) fn check_relative(relative: &str) -> Result<(), &'static str> {
    if relative.is_empty() {
        return Err("the path is empty");
    }
    if relative.starts_with('/') {
        return Err("the path is absolute");
    }
    if relative.chars().any(char::is_control) {
        return Err("the path holds a control character");
    }
    for segment in relative.split('/') {
        let decoded = segment.replace("%2E", ".").replace("%2e", ".");
        if segment.is_empty() || matches!(decoded.as_str(), "." | "..") {
            return Err("the path has an empty, `.` or `..` segment");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_could_leave_the_root_are_refused() {
        for bad in [
            "",
            "/etc/passwd",
            "a/../b",
            "..",
            "a/./b",
            "a//b",
            "a/%2E%2E/b",
            "a/%2e./b",
            "a\u{7}b",
            "a\nb",
            "a/",
        ] {
            assert!(check_relative(bad).is_err(), "{bad:?}");
        }
        for good in [
            "a.b/c d.csv",
            "it's/`x`/\"q\".txt",
            "ünï/çødé.bin",
            "...",
            "a..b",
            "%2E%2E%2E",
        ] {
            assert!(check_relative(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn shards_are_stable_and_cover_every_path() {
        // The hash must not change between releases: shards of a running fleet would move.
        assert_eq!(shard_of("a/b.csv", 1), 0);
        let pinned: Vec<u32> = ["a/b.csv", "models/v1.bin", "ünï/x"]
            .iter()
            .map(|p| shard_of(p, 1000))
            .collect();
        assert_eq!(
            pinned,
            [451, 601, 443],
            "XXH3-64 of the path modulo the count"
        );
        let mut counts = [0u32; 4];
        for i in 0..4000 {
            counts[shard_of(&format!("dir/file-{i}.csv"), 4) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c > 800), "{counts:?}");
    }

    #[tokio::test]
    async fn a_local_stamp_is_the_one_the_local_store_lists() {
        use object_store::ObjectStoreExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"hello").unwrap();
        let loc = TableLocation::parse(dir.path().to_str().unwrap()).unwrap();
        let meta = loc
            .object_store()
            .head(&loc.object_path("f"))
            .await
            .unwrap();
        let local = Stamp::of_local(&std::fs::metadata(dir.path().join("f")).unwrap());
        assert_eq!(Stamp::of(&meta), local);
    }
}
