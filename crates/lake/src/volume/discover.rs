//! Volume discovery: the file trees under a root that are not Delta tables.
//!
//! The root is walked level by level as table discovery walks it (`crate::discover`): a
//! directory with a `_delta_log` is a table and is not entered; directories whose name starts
//! with `_` or `.` are not entered either. Then:
//!
//! - a directory with no table anywhere below it, and at least one file, is a **tree
//!   volume** — the largest such directories only, so volumes never nest;
//! - the files lying directly in a directory that also holds tables (below it) form a
//!   **loose-files volume** of that directory (`recursive: false`): synced without its
//!   subdirectories, so the tables' files are never touched, and never silently dropped.
//!
//! Volumes are named like tables: the relative path with `/` replaced by `.`, the root by
//! its last URL segment, and filtered by the same include/exclude globs.

use std::collections::{HashMap, HashSet};

use futures::stream::{self, StreamExt};
use replicator_proto::TableFilter;
use serde::{Deserialize, Serialize};

use super::listing::reserved;
use crate::discover::relative_to;
use crate::{LakeError, TableLocation, TableMatcher};

/// A volume found under a root.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscoveredVolume {
    /// Dotted name (`landing.csv`).
    pub name: String,
    /// Slash-separated path relative to the root (`landing/csv`; empty for the root).
    pub relative: String,
    /// True for a tree volume (every file below it); false for the loose files of a
    /// directory that also holds tables (only the files directly in it). Pass it on as
    /// [`VolumeOptions::recursive`](super::VolumeOptions::recursive).
    pub recursive: bool,
    /// Files and bytes discovery saw (not counting `_`/`.` subdirectories, which it does
    /// not enter but a recursive sync copies).
    pub files: u64,
    pub bytes: u64,
}

/// Directory listings in flight at once.
const LISTINGS_AT_ONCE: usize = 32;

#[derive(Default)]
struct Dir {
    is_table: bool,
    files: u64,
    bytes: u64,
    children: Vec<String>,
    /// Tables at or below it; files below it (computed bottom-up).
    tables_below: bool,
    files_below: u64,
    bytes_below: u64,
}

/// Find the volumes under `root` whose names pass `filter`, sorted by name.
pub async fn discover_volumes(
    root: &TableLocation,
    filter: &TableFilter,
) -> Result<Vec<DiscoveredVolume>, LakeError> {
    let matcher = TableMatcher::new(filter)?;
    if root.local_dir().is_some_and(|d| !d.is_dir()) {
        return Err(LakeError::InvalidLocation {
            location: root.url().to_string(),
            reason: "root does not exist".into(),
        });
    }
    let store = root.object_store().clone();
    let base = root.prefix().clone();
    let mut dirs: HashMap<String, Dir> = HashMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut visited = HashSet::new();
    let mut level = vec![String::new()];
    while !level.is_empty() {
        level.sort();
        let listings: Vec<_> = stream::iter(
            std::mem::take(&mut level)
                .into_iter()
                .map(|rel| {
                    let (store, dir) = (store.clone(), root.object_path(&rel));
                    async move { (rel, store.list_with_delimiter(Some(&dir)).await) }
                })
                .collect::<Vec<_>>(),
        )
        .buffered(LISTINGS_AT_ONCE)
        .collect()
        .await;
        for (rel, listing) in listings {
            // A symlink loop (or a second link to one directory) is walked once.
            if let Some(local) = root.local_dir()
                && let Ok(real) = std::fs::canonicalize(local.join(&rel))
                && !visited.insert(real)
            {
                continue;
            }
            let listing = match listing {
                Ok(l) => l,
                Err(e) if rel.is_empty() => return Err(LakeError::store(root.url(), e)),
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(e) => {
                    tracing::warn!(root = %root.url(), dir = %rel, error = %crate::error::one_line(&e.to_string()), "skipping a directory that cannot be listed");
                    continue;
                }
            };
            let mut dir = Dir {
                is_table: listing
                    .common_prefixes
                    .iter()
                    .any(|p| p.filename() == Some("_delta_log")),
                ..Default::default()
            };
            if !dir.is_table {
                for meta in &listing.objects {
                    dir.files += 1;
                    dir.bytes += meta.size;
                }
                for sub in &listing.common_prefixes {
                    let Some(name) = sub.filename() else { continue };
                    if name.starts_with('_') || name.starts_with('.') || reserved(name) {
                        continue;
                    }
                    let child = relative_to(&base, sub);
                    dir.children.push(child.clone());
                    level.push(child);
                }
            }
            order.push(rel.clone());
            dirs.insert(rel, dir);
        }
    }
    // Bottom-up: deeper directories were listed later.
    for rel in order.iter().rev() {
        let dir = &dirs[rel];
        let (mut tables, mut files, mut bytes) = (dir.is_table, dir.files, dir.bytes);
        for child in &dir.children {
            if let Some(c) = dirs.get(child) {
                tables |= c.tables_below;
                files += c.files_below;
                bytes += c.bytes_below;
            }
        }
        let dir = dirs.get_mut(rel).expect("listed");
        (dir.tables_below, dir.files_below, dir.bytes_below) = (tables, files, bytes);
    }
    let mut found = Vec::new();
    let mut stack = vec![String::new()];
    while let Some(rel) = stack.pop() {
        let Some(dir) = dirs.get(&rel) else { continue };
        let volume = |recursive: bool, files: u64, bytes: u64| DiscoveredVolume {
            name: name_of(root, &rel),
            relative: rel.clone(),
            recursive,
            files,
            bytes,
        };
        if dir.is_table {
            continue;
        }
        if !dir.tables_below {
            if dir.files_below > 0 {
                found.push(volume(true, dir.files_below, dir.bytes_below));
            }
            continue;
        }
        if dir.files > 0 {
            found.push(volume(false, dir.files, dir.bytes));
        }
        stack.extend(dir.children.iter().cloned());
    }
    found.retain(|v| matcher.matches(&v.name));
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

/// A volume's name: its relative path dotted, or the root's last URL segment.
fn name_of(root: &TableLocation, relative: &str) -> String {
    if relative.is_empty() {
        root.url()
            .path_segments()
            .and_then(|mut s| s.rfind(|s| !s.is_empty()))
            .unwrap_or("volume")
            .to_owned()
    } else {
        relative.replace('/', ".")
    }
}
