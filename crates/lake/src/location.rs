//! Where a table lives: an object store, a prefix inside it, and the table's URL.
//!
//! Local paths and `file://` URLs share one process-wide local store, so a local-to-local
//! clone is recognised as "same store" and copies files with the filesystem's own copy.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use url::Url;

use crate::LakeError;

/// A table root (or a root of many tables).
#[derive(Clone)]
pub struct TableLocation {
    url: Url,
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    /// Set for local filesystem locations: the directory on disk.
    local_dir: Option<PathBuf>,
}

impl std::fmt::Debug for TableLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableLocation")
            .field("url", &self.url.as_str())
            .finish()
    }
}

impl std::fmt::Display for TableLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.url.as_str())
    }
}

fn local_store() -> Arc<dyn ObjectStore> {
    static STORE: OnceLock<Arc<dyn ObjectStore>> = OnceLock::new();
    STORE
        .get_or_init(|| Arc::new(LocalFileSystem::new().with_automatic_cleanup(true)))
        .clone()
}

impl TableLocation {
    /// Parse a local path (relative to the working directory) or a `file://` URL.
    pub fn parse(location: &str) -> Result<Self, LakeError> {
        let invalid = |reason: String| LakeError::InvalidLocation {
            location: location.to_owned(),
            reason,
        };
        let trimmed = location.trim();
        if trimmed.is_empty() {
            return Err(invalid("empty location".into()));
        }
        let dir: PathBuf = match Url::parse(trimmed) {
            Ok(url) if url.scheme() == "file" => url
                .to_file_path()
                .map_err(|_| invalid("not a valid file:// URL".into()))?,
            Ok(url) if url.scheme().len() > 1 => {
                return Err(invalid(format!(
                    "scheme `{}://` is not supported by this build (local paths and file:// only)",
                    url.scheme()
                )));
            }
            // Not a URL (or a Windows drive letter): a local path.
            _ => PathBuf::from(trimmed),
        };
        let abs = std::path::absolute(&dir).map_err(|e| invalid(e.to_string()))?;
        let abs =
            normalize(&abs).ok_or_else(|| invalid("path escapes the filesystem root".into()))?;
        let url = Url::from_directory_path(&abs)
            .map_err(|_| invalid("cannot form a file:// URL".into()))?;
        let prefix = Path::from_absolute_path(&abs).map_err(|e| invalid(e.to_string()))?;
        Ok(Self {
            url,
            store: local_store(),
            prefix,
            local_dir: Some(abs),
        })
    }

    /// A location over an explicit store (tests wrap stores to inject faults).
    pub fn with_store(url: Url, store: Arc<dyn ObjectStore>, prefix: Path) -> Self {
        let mut url = url;
        if !url.path().ends_with('/') {
            url.set_path(&format!("{}/", url.path()));
        }
        Self {
            url,
            store,
            prefix,
            local_dir: None,
        }
    }

    /// The table URL, always ending in `/`.
    pub fn url(&self) -> &Url {
        &self.url
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The table root inside the store.
    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    pub fn local_dir(&self) -> Option<&std::path::Path> {
        self.local_dir.as_deref()
    }

    /// The object path of `relative` (an already validated, decoded relative path).
    ///
    /// Segments are taken literally (a `%` in a file name stays a `%`), as object keys and
    /// local file names are.
    pub fn object_path(&self, relative: &str) -> Path {
        let relative = relative.trim_matches('/');
        if relative.is_empty() {
            return self.prefix.clone();
        }
        let joined = if self.prefix.as_ref().is_empty() {
            relative.to_owned()
        } else {
            format!("{}/{relative}", self.prefix)
        };
        Path::parse(&joined).unwrap_or_else(|_| {
            // Not a valid raw path (callers validate first); fall back to encoding each part.
            relative
                .split('/')
                .filter(|s| !s.is_empty())
                .fold(self.prefix.clone(), |p, part| p.join(part))
        })
    }

    /// The location of `relative` (slash-separated) under this one.
    pub fn child(&self, relative: &str) -> Result<Self, LakeError> {
        let mut url = self.url.clone();
        {
            let mut segs = url
                .path_segments_mut()
                .map_err(|_| LakeError::Invalid(format!("{} cannot have children", self.url)))?;
            segs.pop_if_empty();
            for part in relative.split('/').filter(|s| !s.is_empty()) {
                segs.push(part);
            }
            segs.push("");
        }
        Ok(Self {
            url,
            store: self.store.clone(),
            prefix: self.object_path(relative),
            local_dir: self.local_dir.as_ref().map(|d| d.join(relative)),
        })
    }

    /// Whether both locations are served by the same store instance (server-side copy works).
    pub fn same_store(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.store, &other.store)
    }

    /// Whether `other` is this location or lies inside it (or the reverse).
    pub fn overlaps(&self, other: &Self) -> bool {
        if !self.same_store(other) {
            return false;
        }
        let a = self.prefix.as_ref();
        let b = other.prefix.as_ref();
        a == b
            || b.starts_with(&format!("{a}/"))
            || a.starts_with(&format!("{b}/"))
            || a.is_empty()
            || b.is_empty()
    }
}

/// Lexically resolve `.` and `..` (no symlink resolution: the target may not exist yet).
fn normalize(p: &std::path::Path) -> Option<PathBuf> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_paths_and_file_urls() {
        let a = TableLocation::parse("/tmp/x/../lake/t1").unwrap();
        assert_eq!(a.url().as_str(), "file:///tmp/lake/t1/");
        assert_eq!(a.prefix().as_ref(), "tmp/lake/t1");
        let b = TableLocation::parse("file:///tmp/lake/t1").unwrap();
        assert_eq!(a.url(), b.url());
        assert!(a.same_store(&b) && a.overlaps(&b));
        let c = a.child("sales/orders").unwrap();
        assert_eq!(c.url().as_str(), "file:///tmp/lake/t1/sales/orders/");
        assert!(a.overlaps(&c));
        assert!(!c.overlaps(&TableLocation::parse("/tmp/lake/t10").unwrap()));
        let err = TableLocation::parse("gs://bucket/t")
            .unwrap_err()
            .to_string();
        assert!(err.contains("gs://"), "{err}");
    }
}
