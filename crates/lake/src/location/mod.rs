//! Where a table lives: an object store, a prefix inside it, and the table's URL.
//!
//! Local paths and `file://` URLs share one process-wide local store, so a local-to-local
//! clone is recognised as "same store" and copies files with the filesystem's own copy.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::signer::Signer;
use url::Url;

use crate::LakeError;

mod place;
mod roots;
pub mod vended;

pub(crate) use place::{Place, real_path};
use place::{normalize, segments};
pub use roots::StorageRoots;

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
    /// The store is this location's own (vended credentials): delta-rs must read through it,
    /// not through the per-bucket store its URL would resolve to.
    own_store: bool,
    /// Presigns requests for the store, when it is S3 configured so that a plain presigned
    /// `PUT` writes what the store's own `put` would (no server-side encryption settings, no
    /// requester-pays, signed requests): lets a large file stream into one `PUT`.
    signer: Option<Arc<dyn Signer>>,
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

pub(super) fn cloud_kind(scheme: &str) -> Option<Cloud> {
    match scheme {
        "s3" | "s3a" => Some(Cloud::S3),
        "az" | "azure" | "abfs" | "abfss" | "adl" => Some(Cloud::Azure),
        _ => None,
    }
}

/// A bucket's store, and its signer where presigned uploads are safe (see
/// [`TableLocation::signer`]).
#[derive(Clone)]
pub(crate) struct CloudStore {
    pub store: Arc<dyn ObjectStore>,
    pub signer: Option<Arc<dyn Signer>>,
}

/// One store per bucket/container (scheme + authority), shared by every location in it, so
/// that a copy within one bucket is a server-side copy.
pub(crate) fn cloud_store(
    url: &Url,
    options: &StorageOptions,
) -> Result<CloudStore, object_store::Error> {
    type Cache = std::collections::HashMap<String, (StorageOptions, CloudStore)>;
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
    let store = match cloud_kind(url.scheme()) {
        Some(Cloud::S3) => {
            let mut b = object_store::aws::AmazonS3Builder::from_env().with_url(url.as_str());
            for (k, v) in options.iter() {
                b = b.with_config(k.to_ascii_lowercase().parse()?, v);
            }
            let presign = plain_puts(&b);
            let s3 = Arc::new(b.build()?);
            CloudStore {
                store: s3.clone(),
                signer: presign.then_some(s3 as Arc<dyn Signer>),
            }
        }
        _ => {
            let mut b =
                object_store::azure::MicrosoftAzureBuilder::from_env().with_url(url.as_str());
            for (k, v) in options.iter() {
                b = b.with_config(k.to_ascii_lowercase().parse()?, v);
            }
            CloudStore {
                store: Arc::new(b.build()?),
                signer: None,
            }
        }
    };
    stores.insert(key, (options.clone(), store.clone()));
    Ok(store)
}

/// Whether a presigned `PUT` without extra headers, sent by the worker's own HTTP client,
/// stores an object as the configured store's own `put` would: no server-side encryption
/// settings (they travel as headers the presigned URL does not carry), no requester-pays,
/// requests signed, no checksum header asked for (`aws_checksum_algorithm`: Object Lock
/// buckets need one), and none of the client settings that client would not share (invalid
/// certificates allowed, a configured proxy, HTTP/2 only, a default content type).
fn plain_puts(b: &object_store::aws::AmazonS3Builder) -> bool {
    let value = |key: &str| {
        key.parse::<object_store::aws::AmazonS3ConfigKey>()
            .ok()
            .and_then(|k| b.get_config_value(&k))
    };
    let on = |key: &str| value(key).is_some_and(|v| v.eq_ignore_ascii_case("true"));
    [
        "aws_server_side_encryption",
        "aws_sse_kms_key_id",
        "aws_sse_bucket_key_enabled",
        "aws_sse_customer_key_base64",
    ]
    .into_iter()
    .all(|k| value(k).is_none())
        && !on("aws_request_payer")
        && !on("aws_skip_signature")
        && !on("aws_allow_invalid_certificates")
        && !on("aws_http2_only")
        && [
            "aws_proxy_url",
            "aws_proxy_ca_certificate",
            "aws_default_content_type",
            "aws_checksum_algorithm",
        ]
        .into_iter()
        .all(|k| value(k).is_none())
}

/// An object store URL as a location's: ending in `/`, no `.` or `..` segment, and its
/// path as the prefix inside the bucket.
pub(crate) fn cloud_url(location: &str, mut url: Url) -> Result<(Url, Path), LakeError> {
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
    let prefix = Path::parse(url.path().trim_matches('/')).map_err(|e| invalid(e.to_string()))?;
    Ok((url, prefix))
}

fn cloud(location: &str, url: Url, options: StorageOptions) -> Result<TableLocation, LakeError> {
    let (url, prefix) = cloud_url(location, url)?;
    let CloudStore { store, signer } =
        cloud_store(&url, &options).map_err(|e| LakeError::InvalidLocation {
            location: location.to_owned(),
            reason: e.to_string(),
        })?;
    crate::delta_rs::register(url.scheme());
    Ok(TableLocation {
        url,
        store,
        prefix,
        local_dir: None,
        options,
        own_store: false,
        signer,
    })
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
            own_store: false,
            signer: None,
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
            own_store: false,
            signer: None,
        }
    }

    /// The table URL, always ending in `/`.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The object store the location lives in.
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
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

    /// Whether the store is this location's own (vended credentials), which delta-rs must
    /// be handed rather than resolve from the URL.
    pub fn has_own_store(&self) -> bool {
        self.own_store
    }

    /// Presigns uploads into this location's store, where a presigned `PUT` stores what the
    /// store's own `put` would (plain S3 stores built from the URL; `None` otherwise).
    pub(crate) fn signer(&self) -> Option<&Arc<dyn Signer>> {
        self.signer.as_ref()
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
            own_store: self.own_store,
            signer: self.signer.clone(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_s3_stores_presign_uploads() {
        let with = |bucket: &str, extra: &[(&str, &str)]| {
            let mut o = std::collections::BTreeMap::from([
                ("aws_region".to_owned(), "us-east-1".to_owned()),
                ("aws_access_key_id".to_owned(), "k".to_owned()),
                ("aws_secret_access_key".to_owned(), "s".to_owned()),
            ]);
            o.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            TableLocation::parse_with(&format!("s3://{bucket}/p"), Arc::new(o)).unwrap()
        };
        assert!(with("presign-plain", &[]).signer().is_some());
        for (i, option) in [
            ("aws_server_side_encryption", "aws:kms"),
            ("aws_sse_kms_key_id", "key"),
            ("aws_request_payer", "true"),
            ("aws_skip_signature", "true"),
            ("aws_allow_invalid_certificates", "true"),
            ("aws_proxy_url", "http://proxy:3128"),
            ("aws_checksum_algorithm", "sha256"),
        ]
        .into_iter()
        .enumerate()
        {
            let loc = with(&format!("presign-{i}"), &[option]);
            assert!(loc.signer().is_none(), "{option:?}");
        }
        assert!(TableLocation::parse("/tmp/x").unwrap().signer().is_none());
    }

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
