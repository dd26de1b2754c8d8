//! Table discovery: a source root holds Delta tables at any depth. A table is a directory
//! with a `_delta_log`; its name is its path relative to the root with `/` replaced by `.`
//! (`sales/orders` → `sales.orders`), and its target is the same relative path under the
//! target root. Discovery does not descend into tables, nor into directories whose name
//! starts with `_` or `.`.

use futures::stream::{FuturesUnordered, StreamExt};
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
    let store = root.store().clone();
    let base = root.prefix().clone();
    let mut found = Vec::new();
    let mut pending = FuturesUnordered::new();
    let list = |dir: Path| {
        let store = store.clone();
        async move {
            let res = store.list_with_delimiter(Some(&dir)).await;
            (dir, res)
        }
    };
    pending.push(list(base.clone()));
    while let Some((dir, res)) = pending.next().await {
        let listing = match res {
            Ok(l) => l,
            Err(object_store::Error::NotFound { .. }) if dir == base => {
                return Err(LakeError::InvalidLocation {
                    location: root.url().to_string(),
                    reason: "source root does not exist".into(),
                });
            }
            Err(object_store::Error::NotFound { .. }) => continue,
            Err(e) => return Err(LakeError::store(&dir, e)),
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
                pending.push(list(sub));
            }
        }
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

fn relative_to(base: &Path, dir: &Path) -> String {
    dir.prefix_match(base)
        .map(|parts| {
            parts
                .map(|p| p.as_ref().to_owned())
                .collect::<Vec<_>>()
                .join("/")
        })
        .unwrap_or_default()
}
