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
    /// Object store options (endpoint, region, …) for cloud locations.
    options: StorageOptions,
}

/// Object store configuration keys (`aws_endpoint`, `azure_storage_account_name`, …) on top
/// of what the standard environment variables say. Shared, cheap to clone.
pub type StorageOptions = Arc<std::collections::BTreeMap<String, String>>;

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

/// Object stores this build can reach besides the local filesystem.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cloud {
    S3,
    Azure,
}

fn cloud_kind(scheme: &str) -> Option<Cloud> {
    match scheme {
        "s3" | "s3a" => Some(Cloud::S3),
        "az" | "azure" | "abfs" | "abfss" | "adl" => Some(Cloud::Azure),
        _ => None,
    }
}

/// One store per bucket/container (scheme + authority), shared by every location in it, so
/// that a copy within one bucket is a server-side copy.
pub(crate) fn cloud_store(
    url: &Url,
    options: &StorageOptions,
) -> Result<Arc<dyn ObjectStore>, object_store::Error> {
    type Cache = std::collections::HashMap<String, (StorageOptions, Arc<dyn ObjectStore>)>;
    static STORES: OnceLock<std::sync::Mutex<Cache>> = OnceLock::new();
    // Keyed by bucket alone: a lookup without options (delta-rs resolving a URL we already
    // opened) must find the configured store, never build an unconfigured one.
    let key = format!("{}://{}", url.scheme(), url.authority());
    let mut stores = STORES
        .get_or_init(Default::default)
        .lock()
        .expect("store cache");
    if let Some((opts, s)) = stores.get(&key)
        && (options.is_empty() || opts == options)
    {
        return Ok(s.clone());
    }
    // Credentials and endpoints come from the standard environment variables (AWS_*,
    // AZURE_*), never from the config file.
    let store: Arc<dyn ObjectStore> = match cloud_kind(url.scheme()) {
        Some(Cloud::S3) => {
            let mut b = object_store::aws::AmazonS3Builder::from_env().with_url(url.as_str());
            for (k, v) in options.iter() {
                b = b.with_config(k.to_ascii_lowercase().parse()?, v);
            }
            Arc::new(b.build()?)
        }
        _ => {
            let mut b =
                object_store::azure::MicrosoftAzureBuilder::from_env().with_url(url.as_str());
            for (k, v) in options.iter() {
                b = b.with_config(k.to_ascii_lowercase().parse()?, v);
            }
            Arc::new(b.build()?)
        }
    };
    stores.insert(key, (options.clone(), store.clone()));
    Ok(store)
}

fn cloud(
    location: &str,
    mut url: Url,
    options: StorageOptions,
) -> Result<TableLocation, LakeError> {
    if !url.path().ends_with('/') {
        url.set_path(&format!("{}/", url.path()));
    }
    let invalid = |reason: String| LakeError::InvalidLocation {
        location: location.to_owned(),
        reason,
    };
    if url.path().split('/').any(|s| s == ".." || s == ".") {
        return Err(invalid("path escapes the bucket".into()));
    }
    let store = cloud_store(&url, &options).map_err(|e| invalid(e.to_string()))?;
    let prefix = Path::parse(url.path().trim_matches('/')).map_err(|e| invalid(e.to_string()))?;
    crate::delta_rs::register(url.scheme());
    Ok(TableLocation {
        url,
        store,
        prefix,
        local_dir: None,
        options,
    })
}

/// The storage options of configured roots: every location at or under a root gets its
/// root's options (endpoint, region, account…), including the locations a worker reads from
/// a task message, which never carries them. Built once from the config and handed to the
/// engines (no process-wide registry); cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct StorageRoots {
    roots: Arc<Vec<(String, StorageOptions)>>,
}

impl StorageRoots {
    /// Roots with their options (object_store config keys; secrets already read from their
    /// references). Roots without options are left out: they need nothing.
    pub fn new(
        roots: impl IntoIterator<Item = (String, std::collections::BTreeMap<String, String>)>,
    ) -> Result<Self, LakeError> {
        let mut out: Vec<(String, StorageOptions)> = Vec::new();
        for (root, options) in roots {
            if options.is_empty() || root.trim().is_empty() {
                continue;
            }
            let options: StorageOptions = Arc::new(options);
            let loc = TableLocation::parse_with(&root, options.clone())?;
            out.retain(|(r, _)| r != loc.url().as_str());
            out.push((loc.url().to_string(), options));
        }
        Ok(Self {
            roots: Arc::new(out),
        })
    }

    /// The source and target roots' storage options of a config (secrets read from their
    /// references now).
    pub fn from_config(config: &replicator_common::Config) -> Result<Self, LakeError> {
        let mut roots = Vec::new();
        for (name, ep) in [("source", &config.source), ("target", &config.target)] {
            let options = ep
                .storage_options()
                .map_err(|e| LakeError::Invalid(format!("{name}.storage: {e}")))?;
            roots.push((ep.root.clone(), options));
        }
        Self::new(roots)
    }

    /// Parse `location` with the options of the longest configured root it lies under (none:
    /// the standard environment variables only, as [`TableLocation::parse`]).
    pub fn resolve(&self, location: &str) -> Result<TableLocation, LakeError> {
        let options = Url::parse(location.trim())
            .ok()
            .filter(|u| cloud_kind(u.scheme()).is_some())
            .map(|mut url| {
                if !url.path().ends_with('/') {
                    url.set_path(&format!("{}/", url.path()));
                }
                self.options_for(&url)
            })
            .unwrap_or_default();
        TableLocation::parse_with(location, options)
    }

    fn options_for(&self, url: &Url) -> StorageOptions {
        self.roots
            .iter()
            .filter(|(root, _)| url.as_str().starts_with(root.as_str()))
            .max_by_key(|(root, _)| root.len())
            .map(|(_, o)| o.clone())
            .unwrap_or_default()
    }
}

impl TableLocation {
    /// Parse a local path (relative to the working directory) or a `file://` URL.
    pub fn parse(location: &str) -> Result<Self, LakeError> {
        Self::parse_with(location, StorageOptions::default())
    }

    /// Parse a location, configuring a cloud store with `options` (object_store config keys;
    /// credentials otherwise come from the standard environment variables).
    pub fn parse_with(location: &str, options: StorageOptions) -> Result<Self, LakeError> {
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
            Ok(url) if cloud_kind(url.scheme()).is_some() => return cloud(location, url, options),
            Ok(url) if url.scheme().len() > 1 => {
                return Err(invalid(format!(
                    "scheme `{}://` is not supported (use a local path, file://, s3://, az://, abfss://)",
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
            options: StorageOptions::default(),
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
            options: StorageOptions::default(),
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

    /// The object store options this location was parsed with.
    pub fn options(&self) -> &StorageOptions {
        &self.options
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
            options: self.options.clone(),
        })
    }

    /// Whether both locations are served by the same store instance (server-side copy works).
    pub fn same_store(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.store, &other.store)
    }

    /// Whether `other` is this location or lies inside it (or the reverse), comparing what
    /// the paths really are: local paths with symbolic links resolved (for a path that does
    /// not exist yet, its nearest existing ancestor), object store URLs by store kind,
    /// account, bucket or container and key prefix (`s3a://` is `s3://`; `az://c` and
    /// `abfss://c@account.dfs.core.windows.net` name one container).
    pub fn overlaps(&self, other: &Self) -> bool {
        self.place().overlaps(&other.place())
    }

    /// Whether `url` (a table URL as a log records it, e.g. a CLONE commit's `source`) names
    /// this location, compared as [`overlaps`](Self::overlaps) does.
    pub fn is_same_as(&self, url: &str) -> bool {
        match Place::of_str(url, &self.options) {
            Some(p) => p.same(&self.place()),
            None => false,
        }
    }

    /// Where this location really is.
    pub(crate) fn place(&self) -> Place {
        if let Some(dir) = &self.local_dir {
            return Place::Local(real_path(dir));
        }
        Place::of_url(&self.url, &self.options).unwrap_or_else(|| Place::Other {
            store: Arc::as_ptr(&self.store) as *const () as usize,
            prefix: segments(self.prefix.as_ref()),
        })
    }
}

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

fn segments(path: &str) -> Vec<String> {
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

    #[test]
    fn overlap_is_decided_on_real_paths() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let base = real_path(dir.path());
        let real = base.join("real");
        std::fs::create_dir_all(real.join("src")).unwrap();
        symlink(&real, base.join("alias")).unwrap();
        symlink(real.join("src"), base.join("link")).unwrap();
        symlink(real.join("src/not-yet"), base.join("dangling")).unwrap();
        let at = |p: PathBuf| TableLocation::parse(p.to_str().unwrap()).unwrap();
        let src = at(real.join("src"));
        for overlapping in [
            base.join("link"),
            base.join("alias/src"),
            base.join("alias/src/sub/deeper"),
            base.join("alias"),
            base.join("dangling"),
        ] {
            assert!(src.overlaps(&at(overlapping.clone())), "{overlapping:?}");
            assert!(at(overlapping.clone()).overlaps(&src), "{overlapping:?}");
        }
        for apart in [
            base.join("real/src2"),
            base.join("alias/other"),
            base.join("x"),
        ] {
            assert!(!src.overlaps(&at(apart.clone())), "{apart:?}");
        }
        // A URL recorded in a log names the source whatever its spelling.
        assert!(src.is_same_as(&format!("file://{}/alias/src/", base.display())));
        assert!(src.is_same_as(&format!("{}/link", base.display())));
        assert!(!src.is_same_as(&format!("file://{}/alias/", base.display())));
        assert!(!src.is_same_as("s3://bucket/src"));
    }

    #[test]
    fn object_store_urls_are_compared_normalized() {
        let none = StorageOptions::default();
        let acct: StorageOptions = Arc::new(
            [("azure_storage_account_name".to_owned(), "acct".to_owned())]
                .into_iter()
                .collect(),
        );
        let other: StorageOptions = Arc::new(
            [("azure_storage_account_name".to_owned(), "other".to_owned())]
                .into_iter()
                .collect(),
        );
        let p = |u: &str, o: &StorageOptions| Place::of_str(u, o).unwrap();
        assert!(p("s3://b/t", &none).overlaps(&p("s3a://b/t/sub", &none)));
        assert!(p("s3://b/t/", &none).same(&p("s3a://b/t", &none)));
        assert!(!p("s3://b/t", &none).overlaps(&p("s3://b/t2", &none)));
        assert!(!p("s3://b/t", &none).overlaps(&p("s3://c/t", &none)));
        assert!(p("s3://b/", &none).overlaps(&p("s3://b/t", &none)));
        let abfss = p("abfss://c@acct.dfs.core.windows.net/t", &none);
        assert!(abfss.overlaps(&p("az://c/t/x", &acct)));
        assert!(abfss.overlaps(&p("azure://c/t", &none)));
        assert!(!abfss.overlaps(&p("az://c/t", &other)));
        assert!(!abfss.overlaps(&p("s3://c/t", &none)));
        assert!(!p("file:///c/t", &none).overlaps(&p("s3://c/t", &none)));
        assert_eq!(
            p("s3://b/t", &none).relative(&p("s3a://b/t/x/y.parquet", &none)),
            Some("x/y.parquet".into())
        );
    }
}
