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
    // Local directories already walked, by canonical path: a symlink back up the tree (or
    // two links to one directory) is walked once, not followed until the path is too long.
    // The walk goes level by level, each level's listings run concurrently and are handled
    // in name order, so which of two paths to one directory is kept never depends on timing.
    let mut visited = std::collections::HashSet::new();
    let mut level = vec![base.clone()];
    while !level.is_empty() {
        level.sort_by(|a, b| a.as_ref().cmp(b.as_ref()));
        let listings: Vec<_> = stream::iter(std::mem::take(&mut level).into_iter().map(list))
            .buffered(LISTINGS_AT_ONCE)
            .collect()
            .await;
        for (dir, res) in listings {
            if let Some(local) = root.local_dir() {
                let path = local.join(relative_to(&base, &dir));
                match std::fs::canonicalize(&path) {
                    Ok(real) if !visited.insert(real.clone()) => {
                        tracing::warn!(
                            root = %root.url(),
                            path = %path.display(),
                            real = %real.display(),
                            "skipping a directory already discovered through another path (a symlink loop or a second link)"
                        );
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) if dir != base => {
                        tracing::warn!(root = %root.url(), path = %path.display(), error = %e, "skipping a directory that cannot be resolved");
                        continue;
                    }
                    Err(_) => {}
                }
            }
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
                    root.url()
                        .path_segments()
                        .and_then(|mut s| s.rfind(|s| !s.is_empty()))
                        .unwrap_or("table")
                        .to_owned()
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
}
