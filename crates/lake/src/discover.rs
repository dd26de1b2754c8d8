//! Table discovery: a source root holds Delta tables at any depth. A table is a directory
//! with a `_delta_log`; its name is its path relative to the root with `/` replaced by `.`
//! (`sales/orders` → `sales.orders`), and its target is the same relative path under the
//! target root. Discovery does not descend into tables, nor into directories whose name
//! starts with `_` or `.`.

use futures::stream::{self, StreamExt};
use globset::{Glob, GlobSet, GlobSetBuilder};
use object_store::path::Path;
use replicator_proto::TableFilter;

use crate::{LakeError, TableLocation};

/// A table found under a root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiscoveredTable {
    /// Dotted name (`sales.orders`).
    pub name: String,
    /// Slash-separated path relative to the root (`sales/orders`).
    pub relative: String,
}

/// Include/exclude globs over dotted table names.
#[derive(Clone, Debug)]
pub struct TableMatcher {
    include: GlobSet,
    exclude: GlobSet,
}

impl TableMatcher {
    pub fn new(filter: &TableFilter) -> Result<Self, LakeError> {
        let build = |patterns: &[String]| -> Result<GlobSet, LakeError> {
            let mut b = GlobSetBuilder::new();
            for p in patterns {
                b.add(
                    Glob::new(p)
                        .map_err(|e| LakeError::Invalid(format!("bad table pattern `{p}`: {e}")))?,
                );
            }
            b.build().map_err(|e| LakeError::Invalid(e.to_string()))
        };
        Ok(Self {
            include: build(&filter.include)?,
            exclude: build(&filter.exclude)?,
        })
    }

    pub fn matches(&self, name: &str) -> bool {
        self.include.is_match(name) && !self.exclude.is_match(name)
    }
}

/// Directory listings in flight at once during discovery.
const LISTINGS_AT_ONCE: usize = 32;

/// Find every Delta table under `root` whose name passes `filter`, sorted by name.
pub async fn discover(
    root: &TableLocation,
    filter: &TableFilter,
) -> Result<Vec<DiscoveredTable>, LakeError> {
    let matcher = TableMatcher::new(filter)?;
    if root.local_dir().is_some_and(|d| !d.is_dir()) {
        return Err(LakeError::InvalidLocation {
            location: root.url().to_string(),
            reason: "source root does not exist".into(),
        });
    }
    if let Some(dir) = root.local_dir() {
        let (dir, url) = (dir.to_path_buf(), root.url().clone());
        return tokio::task::spawn_blocking(move || discover_local(&dir, &url, &matcher))
            .await
            .map_err(|e| LakeError::Invalid(format!("table discovery stopped: {e}")))?;
    }
    let store = root.object_store().clone();
    let base = root.prefix().clone();
    let mut found = Vec::new();
    let list = |dir: Path| {
        let store = store.clone();
        async move {
            let res = store.list_with_delimiter(Some(&dir)).await;
            (dir, res)
        }
    };
    // An object store (a local root takes `discover_local`): level by level, each level's
    // listings concurrently, handled in name order.
    let mut level = vec![base.clone()];
    while !level.is_empty() {
        level.sort_by(|a, b| a.as_ref().cmp(b.as_ref()));
        let listings: Vec<_> = stream::iter(std::mem::take(&mut level).into_iter().map(list))
            .buffered(LISTINGS_AT_ONCE)
            .collect()
            .await;
        for (dir, res) in listings {
            let listing = match res {
                Ok(l) => l,
                Err(object_store::Error::NotFound { .. }) if dir == base => {
                    return Err(LakeError::InvalidLocation {
                        location: root.url().to_string(),
                        reason: "source root does not exist".into(),
                    });
                }
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(e) if dir == base => return Err(LakeError::store(root.url(), e)),
                // One unreadable directory never hides the rest of the estate.
                Err(e) => {
                    tracing::warn!(
                        root = %root.url(),
                        dir = %relative_to(&base, &dir),
                        error = %crate::error::one_line(&e.to_string()),
                        "skipping a directory that cannot be listed"
                    );
                    continue;
                }
            };
            let is_table = listing
                .common_prefixes
                .iter()
                .any(|p| p.filename() == Some("_delta_log"));
            if is_table {
                let relative = relative_to(&base, &dir);
                let name = if relative.is_empty() {
                    root_name(root.url())
                } else {
                    relative.replace('/', ".")
                };
                if matcher.matches(&name) {
                    found.push(DiscoveredTable { name, relative });
                }
                continue;
            }
            for sub in listing.common_prefixes {
                let skip = sub
                    .filename()
                    .is_none_or(|n| n.starts_with('_') || n.starts_with('.'));
                if !skip {
                    level.push(sub);
                }
            }
        }
    }

    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

/// The name of a table at the root itself: the root's last path segment.
fn root_name(url: &url::Url) -> String {
    url.path_segments()
        .and_then(|mut s| s.rfind(|s| !s.is_empty()))
        .unwrap_or("table")
        .to_owned()
}

/// [`discover`] on a local root, with the same rules and names, by `read_dir`: an entry
/// carries its type, so a directory costs one listing — no `stat` of every entry, no
/// `canonicalize` of every directory, no thread hop per listing (object_store's local
/// listing does all three, which made discovery most of planning a large estate). A
/// directory's real path is its parent's joined with its name; only a symbolic link is
/// resolved, so a loop or a second link to one directory is still walked once, the first
/// in name order keeping it. Names are the directories' names, as the store's listing gives them.
fn discover_local(
    root: &std::path::Path,
    url: &url::Url,
    matcher: &TableMatcher,
) -> Result<Vec<DiscoveredTable>, LakeError> {
    use std::fs::FileType;
    let invalid = |reason: String| LakeError::InvalidLocation {
        location: url.to_string(),
        reason,
    };
    let real_root = std::fs::canonicalize(root).map_err(|e| {
        invalid(if e.kind() == std::io::ErrorKind::NotFound {
            "source root does not exist".into()
        } else {
            e.to_string()
        })
    })?;
    // (relative path, directory, its real path)
    let mut level = vec![(String::new(), root.to_path_buf(), real_root)];
    let mut visited = std::collections::HashSet::new();
    let mut found = Vec::new();
    while !level.is_empty() {
        level.sort_by(|a, b| a.0.cmp(&b.0));
        for (relative, dir, real) in std::mem::take(&mut level) {
            if !visited.insert(real.clone()) {
                tracing::warn!(
                    root = %url,
                    path = %dir.display(),
                    real = %real.display(),
                    "skipping a directory already discovered through another path (a symlink loop or a second link)"
                );
                continue;
            }
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if relative.is_empty() => return Err(invalid(e.to_string())),
                Err(e) => {
                    tracing::warn!(root = %url, dir = %relative, error = %e, "skipping a directory that cannot be listed");
                    continue;
                }
            };
            let mut subdirs: Vec<(String, FileType)> = Vec::new();
            let mut is_table = false;
            for entry in entries {
                let Ok(entry) = entry else { continue };
                let Ok(kind) = entry.file_type() else {
                    continue;
                };
                let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                    tracing::warn!(root = %url, dir = %relative, "skipping an entry whose name is not UTF-8");
                    continue;
                };
                if name == "_delta_log"
                    && (kind.is_dir() || (kind.is_symlink() && entry.path().is_dir()))
                {
                    is_table = true;
                    break;
                }
                if (kind.is_dir() || kind.is_symlink())
                    && !name.starts_with('_')
                    && !name.starts_with('.')
                {
                    subdirs.push((name, kind));
                }
            }
            if is_table {
                let name = if relative.is_empty() {
                    root_name(url)
                } else {
                    relative.replace('/', ".")
                };
                if matcher.matches(&name) {
                    found.push(DiscoveredTable { name, relative });
                }
                continue;
            }
            for (name, kind) in subdirs {
                let path = dir.join(&name);
                let real = if kind.is_dir() {
                    real.join(&name)
                } else {
                    match std::fs::canonicalize(&path) {
                        Ok(r) if r.is_dir() => r,
                        Ok(_) => continue,
                        Err(e) => {
                            tracing::warn!(root = %url, path = %path.display(), error = %e, "skipping a directory that cannot be resolved");
                            continue;
                        }
                    }
                };
                let relative = if relative.is_empty() {
                    name
                } else {
                    format!("{relative}/{name}")
                };
                level.push((relative, path, real));
            }
        }
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

pub(crate) fn relative_to(base: &Path, dir: &Path) -> String {
    dir.prefix_match(base)
        .map(|parts| {
            parts
                .map(|p| p.as_ref().to_owned())
                .collect::<Vec<_>>()
                .join("/")
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(dir: &std::path::Path) {
        std::fs::create_dir_all(dir.join("_delta_log")).unwrap();
        std::fs::write(dir.join("_delta_log/00000000000000000000.json"), "{}\n").unwrap();
    }

    #[tokio::test]
    async fn symlink_loops_are_skipped_and_every_table_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        table(&root.join("sales/orders"));
        table(&root.join("hr/people"));
        // A loop back up the tree, a second link to a directory, and a dangling link.
        std::os::unix::fs::symlink(&root, root.join("sales/loop")).unwrap();
        std::os::unix::fs::symlink(root.join("hr"), root.join("hr_again")).unwrap();
        std::os::unix::fs::symlink(root.join("gone"), root.join("dangling")).unwrap();
        let found = discover(
            &TableLocation::parse(root.to_str().unwrap()).unwrap(),
            &TableFilter::default(),
        )
        .await
        .unwrap();
        let names: Vec<_> = found.iter().map(|t| t.name.as_str()).collect();
        // `hr` and `hr_again` are one directory: the first in name order names it.
        assert_eq!(names, ["hr.people", "sales.orders"]);
    }

    /// The `read_dir` walk of a local root finds what object_store's listing of the same
    /// tree finds, names with odd characters and paths alike.
    #[tokio::test]
    async fn the_local_walk_matches_the_store_listing() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        for t in [
            "sales/orders",
            "sales/eu/orders 2024",
            "odd/a#b%c{d}",
            "deep/x/y/z/t",
            "_hidden/t",
            ".dot/t",
        ] {
            table(&root.join(t));
        }
        std::fs::create_dir_all(root.join("empty/dir")).unwrap();
        std::fs::write(root.join("sales/readme.txt"), "x").unwrap();
        let local = discover(
            &TableLocation::parse(root.to_str().unwrap()).unwrap(),
            &TableFilter::default(),
        )
        .await
        .unwrap();
        let store: std::sync::Arc<dyn object_store::ObjectStore> =
            std::sync::Arc::new(object_store::local::LocalFileSystem::new());
        let via_store = TableLocation::with_store(
            url::Url::from_directory_path(&root).unwrap(),
            store,
            Path::from_absolute_path(&root).unwrap(),
        );
        assert!(via_store.local_dir().is_none());
        let listed = discover(&via_store, &TableFilter::default()).await.unwrap();
        assert_eq!(local, listed);
        let names: Vec<_> = local.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names.len(), 4, "{names:?}");
        assert!(names.contains(&"deep.x.y.z.t") && names.contains(&"sales.orders"));
    }
}
