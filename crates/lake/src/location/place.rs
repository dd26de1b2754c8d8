//! Where a location really is: local paths with links resolved, object store URLs by kind,
//! account, bucket and key prefix. Overlap and identity are decided on these.

use std::path::PathBuf;

use url::Url;

use super::{Cloud, StorageOptions, cloud_kind};

/// Where a location really is, for comparisons.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Place {
    /// A local path with symbolic links resolved.
    Local(PathBuf),
    /// An object store location.
    Cloud {
        kind: Cloud,
        /// Azure storage account, when known (S3 buckets are global per endpoint).
        account: Option<String>,
        /// Bucket or container, lower case.
        bucket: String,
        /// Decoded key segments.
        prefix: Vec<String>,
    },
    /// A location over an explicit store (tests): the store instance and the key prefix.
    Other { store: usize, prefix: Vec<String> },
}

pub(super) fn segments(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

impl Place {
    /// The place of a URL or local path string; `None` when it is not one this build reads.
    pub(crate) fn of_str(location: &str, options: &StorageOptions) -> Option<Self> {
        let trimmed = location.trim();
        match Url::parse(trimmed) {
            Ok(url) if url.scheme().len() > 1 => Self::of_url(&url, options),
            _ => {
                let abs = std::path::absolute(trimmed).ok()?;
                Some(Place::Local(real_path(&normalize(&abs)?)))
            }
        }
    }

    /// The place of a `file://` or object store URL.
    pub(crate) fn of_url(url: &Url, options: &StorageOptions) -> Option<Self> {
        if url.scheme() == "file" {
            let path = url.to_file_path().ok()?;
            return Some(Place::Local(real_path(&normalize(&path)?)));
        }
        let kind = cloud_kind(url.scheme())?;
        let decoded: Vec<String> = url
            .path_segments()
            .into_iter()
            .flatten()
            .filter(|s| !s.is_empty())
            .map(|s| {
                url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_else(|| s.to_owned())
            })
            .collect();
        if decoded.iter().any(|s| s == ".." || s == ".") {
            return None;
        }
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        let (account, bucket) = match kind {
            Cloud::S3 => (None, host),
            Cloud::Azure if !url.username().is_empty() => (
                host.split('.').next().map(str::to_owned),
                url.username().to_ascii_lowercase(),
            ),
            Cloud::Azure => {
                let from_options = [
                    "azure_storage_account_name",
                    "account_name",
                    "azure_storage_account",
                ]
                .iter()
                .find_map(|k| options.get(*k).cloned());
                let account =
                    from_options.or_else(|| std::env::var("AZURE_STORAGE_ACCOUNT_NAME").ok());
                (account.map(|a| a.to_ascii_lowercase()), host)
            }
        };
        Some(Place::Cloud {
            kind,
            account,
            bucket,
            prefix: decoded,
        })
    }

    /// The store part: two places in one store can reference each other's files.
    pub(crate) fn same_store(&self, other: &Self) -> bool {
        match (self, other) {
            (Place::Local(_), Place::Local(_)) => true,
            (
                Place::Cloud {
                    kind: k1,
                    account: a1,
                    bucket: b1,
                    ..
                },
                Place::Cloud {
                    kind: k2,
                    account: a2,
                    bucket: b2,
                    ..
                },
            ) => {
                k1 == k2
                    && b1 == b2
                    && match (a1, a2) {
                        (Some(a1), Some(a2)) => a1 == a2,
                        // An account we cannot know may be the same one.
                        _ => true,
                    }
            }
            (Place::Other { store: s1, .. }, Place::Other { store: s2, .. }) => s1 == s2,
            _ => false,
        }
    }

    /// `other`'s path relative to this place when it is inside it (empty: the same place).
    pub(crate) fn relative(&self, other: &Self) -> Option<String> {
        if !self.same_store(other) {
            return None;
        }
        match (self, other) {
            (Place::Local(root), Place::Local(p)) => {
                let rest = p.strip_prefix(root).ok()?;
                let parts: Option<Vec<&str>> =
                    rest.components().map(|c| c.as_os_str().to_str()).collect();
                Some(parts?.join("/"))
            }
            (Place::Cloud { prefix: root, .. }, Place::Cloud { prefix: p, .. })
            | (Place::Other { prefix: root, .. }, Place::Other { prefix: p, .. }) => {
                p.strip_prefix(root.as_slice()).map(|rest| rest.join("/"))
            }
            _ => None,
        }
    }

    /// One place is the other or lies inside it.
    pub(crate) fn overlaps(&self, other: &Self) -> bool {
        if let (Place::Local(a), Place::Local(b)) = (self, other) {
            // By path components, so a name that is not UTF-8 cannot make it fail open.
            return a.starts_with(b) || b.starts_with(a);
        }
        self.relative(other).is_some() || other.relative(self).is_some()
    }

    /// The same place.
    pub(crate) fn same(&self, other: &Self) -> bool {
        if let (Place::Local(a), Place::Local(b)) = (self, other) {
            return a == b;
        }
        self.relative(other).is_some_and(|r| r.is_empty())
    }
}

/// `path` with symbolic links resolved: the real path of its nearest existing ancestor
/// followed by the components that do not exist yet (a dangling link is followed to where it
/// points). `path` must be absolute.
pub(crate) fn real_path(path: &std::path::Path) -> PathBuf {
    real_path_at(path, 0)
}

fn real_path_at(path: &std::path::Path, depth: u32) -> PathBuf {
    if let Ok(real) = std::fs::canonicalize(path) {
        return real;
    }
    // A dangling symbolic link: follow it by hand (bounded, as the kernel bounds loops).
    if depth < 40
        && std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
        && let Ok(to) = std::fs::read_link(path)
    {
        let base = path
            .parent()
            .map(|p| real_path_at(p, depth + 1))
            .unwrap_or_default();
        if let Some(next) = normalize(&base.join(to)) {
            return real_path_at(&next, depth + 1);
        }
    }
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => real_path_at(parent, depth).join(name),
        _ => path.to_owned(),
    }
}

/// Lexically resolve `.` and `..` (no symlink resolution: the target may not exist yet).
pub(super) fn normalize(p: &std::path::Path) -> Option<PathBuf> {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    Some(out)
}
