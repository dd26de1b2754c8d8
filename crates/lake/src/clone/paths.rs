//! The path rules (`docs/safety.md`, "The log cannot make a clone read files outside the
//! table"): where a path in the source's log may be read from, and what each source `add`
//! becomes in the target (its action, its key, the copies it needs).

use std::path::PathBuf;
use std::sync::Arc;

use deltalake::kernel::{DeletionVectorDescriptor, StorageType};
use object_store::ObjectStore;
use object_store::path::Path;
use serde_json::Value;
use url::Url;

use super::json_err;
use crate::location::{Place, real_path};
use crate::{LakeError, TableLocation};

/// A file to bring into the target.
#[derive(Clone, Debug)]
pub(super) struct CopyItem {
    pub(super) src_store: Arc<dyn ObjectStore>,
    pub(super) src_path: Path,
    /// The source file on local disk, when it is local.
    pub(super) src_file: Option<PathBuf>,
    pub(super) dst_rel: String,
    /// Size from the log (data files); deletion-vector files get theirs from the source.
    pub(super) size: Option<u64>,
    /// The least size the file must have (deletion-vector files: the end of the last
    /// deletion vector the log places in it).
    pub(super) min_size: u64,
    /// For a local file outside the source root (an allowed external root): the real path
    /// of the root it must stay in. Local files of the source stay in the source's root.
    pub(super) confine: Option<PathBuf>,
}

/// One logical file of the source, as it will appear in the target.
pub(super) struct SourceFile {
    pub(super) key: (String, Option<String>),
    pub(super) add: Value,
    pub(super) size: u64,
    pub(super) copies: Vec<CopyItem>,
}

/// The identity of a deletion vector (`storageType + pathOrInlineDv [+ @offset]`).
pub(crate) fn dv_unique_id(dv: &DeletionVectorDescriptor) -> String {
    match dv.offset {
        Some(o) => format!("{}{}@{o}", dv.storage_type, dv.path_or_inline_dv),
        None => format!("{}{}", dv.storage_type, dv.path_or_inline_dv),
    }
}

/// Where a path from the log points.
enum Resolved {
    /// Inside the table root, relative to it (decoded, validated).
    Relative(String),
    /// Outside the table root.
    External(Url),
}

/// Resolve a decoded path from the log against the table root, refusing escapes.
fn resolve(root: &TableLocation, path: &str) -> Result<Resolved, LakeError> {
    let unsafe_path = || LakeError::UnsafePath {
        url: root.url().to_string(),
        path: path.to_owned(),
    };
    if let Ok(url) = Url::parse(path)
        && url.scheme().len() > 1
    {
        if let Some(rest) = url.as_str().strip_prefix(root.url().as_str()) {
            let decoded = percent_decode(rest);
            return check_relative(&decoded)
                .map(Resolved::Relative)
                .ok_or_else(unsafe_path);
        }
        if url
            .path_segments()
            .into_iter()
            .flatten()
            .any(|s| s == ".." || s == ".")
        {
            return Err(unsafe_path());
        }
        return Ok(Resolved::External(url));
    }
    check_relative(path)
        .map(Resolved::Relative)
        .ok_or_else(unsafe_path)
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_owned())
}

/// A relative path is safe when it has no empty, `.` or `..` segments and no backslashes.
pub(super) fn check_relative(path: &str) -> Option<String> {
    if path.is_empty() || path.starts_with('/') || path.contains('\\') {
        return None;
    }
    if path
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return None;
    }
    Some(path.to_owned())
}

/// Where a path from the source's log may be read, by the path rules (`docs/safety.md`):
/// inside the source table root (any spelling of it: relative, or an absolute URL that
/// resolves into the root), or an absolute URL in the source's own store under one of the
/// allowed external `roots`. A `file://` path is never read for a table in an object store,
/// and nothing is read from another store. Returns the relative path, or the copy of an
/// allowed external file and its name in the target.
fn locate(
    source: &TableLocation,
    path: &str,
    roots: &[TableLocation],
) -> Result<Located, LakeError> {
    let url = match resolve(source, path)? {
        Resolved::Relative(rel) => return Ok(Located::Relative(rel)),
        Resolved::External(url) => url,
    };
    let outside = |reason: &str| LakeError::OutsidePath {
        url: source.url().to_string(),
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let source_place = source.place();
    if url.scheme() == "file" && !matches!(source_place, Place::Local(_)) {
        return Err(outside(
            "a file:// path is never read for a table in an object store",
        ));
    }
    let Some(place) = Place::of_url(&url, source.options()) else {
        return Err(outside("its scheme is not one this build reads"));
    };
    // The table root under another spelling (a symbolic link, `s3a://` for `s3://`, …).
    if let Some(rel) = source_place.relative(&place) {
        return check_relative(&rel)
            .map(Located::Relative)
            .ok_or_else(|| outside("it names the table root itself"));
    }
    if !source_place.same_store(&place) {
        return Err(outside(
            "it is in another store than the table (only the table's own store is read)",
        ));
    }
    let Some(root) = roots.iter().find(|r| {
        let p = r.place();
        p.same_store(&source_place) && p.relative(&place).is_some_and(|r| !r.is_empty())
    }) else {
        return Err(outside(
            "it is not under an allowed external root (--allow-external-root, or clone.external_roots in the config)",
        ));
    };
    let name = match &place {
        Place::Local(p) => p.file_name().and_then(|n| n.to_str()).map(str::to_owned),
        Place::Cloud { prefix, .. } | Place::Other { prefix, .. } => prefix.last().cloned(),
    }
    .ok_or_else(|| outside("it has no file name"))?;
    // The name becomes a path in the target: one plain segment (a decoded `%2F..%2F` in an
    // object key must not climb out of the target).
    let name = check_relative(&name)
        .filter(|n| !n.contains('/'))
        .ok_or_else(|| outside("its file name is not a plain name"))?;
    let item = match &place {
        Place::Local(real) => {
            let dir = TableLocation::parse(&real.parent().unwrap_or(real).to_string_lossy())?;
            CopyItem {
                src_store: dir.object_store().clone(),
                src_path: dir.object_path(&name),
                src_file: Some(real.clone()),
                dst_rel: name.clone(),
                size: None,
                min_size: 0,
                confine: root.local_dir().map(real_path),
            }
        }
        Place::Cloud { prefix, .. } | Place::Other { prefix, .. } => {
            let joined = prefix.join("/");
            CopyItem {
                src_store: source.object_store().clone(),
                src_path: Path::parse(&joined)
                    .unwrap_or_else(|_| prefix.iter().map(String::as_str).collect()),
                src_file: None,
                dst_rel: name.clone(),
                size: None,
                min_size: 0,
                confine: None,
            }
        }
    };
    Ok(Located::External(item, name))
}

/// What [`locate`] found.
enum Located {
    /// Inside the source root, relative to it.
    Relative(String),
    /// An allowed file outside the source root: its copy, and its name in the target.
    External(CopyItem, String),
}

fn relative_item(source: &TableLocation, rel: &str, size: Option<u64>) -> CopyItem {
    CopyItem {
        src_store: source.object_store().clone(),
        src_path: source.object_path(rel),
        src_file: source.local_dir().map(|d| d.join(rel)),
        dst_rel: rel.to_owned(),
        size,
        min_size: 0,
        confine: None,
    }
}

/// Turn a source add action into the target's add action and the copies it needs.
pub(super) fn source_file(
    source: &TableLocation,
    target: &TableLocation,
    mut add: deltalake::kernel::Add,
    roots: &[TableLocation],
) -> Result<SourceFile, LakeError> {
    let size = add.size.max(0) as u64;
    let mut copies = Vec::new();
    match locate(source, &add.path, roots)? {
        Located::Relative(rel) => {
            copies.push(relative_item(source, &rel, Some(size)));
            add.path = rel;
        }
        Located::External(mut item, name) => {
            item.size = Some(size);
            copies.push(item);
            add.path = name;
        }
    }
    if let Some(dv) = add.deletion_vector.as_mut() {
        match dv.storage_type {
            StorageType::Inline => {}
            StorageType::UuidRelativePath | StorageType::AbsolutePath => {
                let kernel_dv: delta_kernel::actions::deletion_vector::DeletionVectorDescriptor =
                    dv.clone().try_into().map_err(|e| {
                        LakeError::Invalid(format!("bad deletion vector on {}: {e}", add.path))
                    })?;
                let dv_url = kernel_dv
                    .absolute_path(source.url())
                    .map_err(|e| {
                        LakeError::Invalid(format!("bad deletion vector on {}: {e}", add.path))
                    })?
                    .ok_or_else(|| {
                        LakeError::Invalid(format!("deletion vector of {} has no file", add.path))
                    })?;
                // The file must hold the deletion vector the log places in it: checked like
                // a data file's size, before anything is copied.
                let min_size =
                    dv.offset.unwrap_or(1).max(0) as u64 + 4 + dv.size_in_bytes.max(0) as u64 + 4;
                match locate(source, dv_url.as_str(), roots)? {
                    Located::Relative(rel) => {
                        let mut item = relative_item(source, &rel, None);
                        item.min_size = min_size;
                        copies.push(item);
                        if dv.storage_type == StorageType::AbsolutePath {
                            // Never point into the source: repoint at the copy in the target.
                            dv.path_or_inline_dv = target_url(target, &rel)?;
                        }
                    }
                    Located::External(mut item, name) => {
                        item.min_size = min_size;
                        copies.push(item);
                        dv.storage_type = StorageType::AbsolutePath;
                        dv.path_or_inline_dv = target_url(target, &name)?;
                    }
                }
            }
        }
    }
    add.data_change = true;
    let key = (
        add.path.clone(),
        add.deletion_vector.as_ref().map(dv_unique_id),
    );
    let add_json = serde_json::to_value(&add).map_err(json_err)?;
    Ok(SourceFile {
        key,
        add: add_json,
        size,
        copies,
    })
}

fn target_url(target: &TableLocation, rel: &str) -> Result<String, LakeError> {
    target
        .url()
        .join(rel)
        .map(|u| u.to_string())
        .map_err(|e| LakeError::Invalid(format!("cannot form a target URL for {rel}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_may_not_escape() {
        let root = TableLocation::parse("/tmp/t").unwrap();
        for bad in [
            "../x.parquet",
            "a/../../x",
            "/etc/passwd",
            "a//b",
            "./a",
            "a\\..\\b",
        ] {
            assert!(
                matches!(resolve(&root, bad), Err(LakeError::UnsafePath { .. })),
                "{bad}"
            );
        }
        assert!(
            matches!(resolve(&root, "part=1/x.parquet"), Ok(Resolved::Relative(p)) if p == "part=1/x.parquet")
        );
        assert!(
            matches!(resolve(&root, "file:///tmp/t/a.parquet"), Ok(Resolved::Relative(p)) if p == "a.parquet")
        );
        assert!(matches!(
            resolve(&root, "file:///tmp/other/a.parquet"),
            Ok(Resolved::External(_))
        ));
        assert!(matches!(
            resolve(&root, "file:///tmp/t/../../etc/x"),
            Err(_) | Ok(Resolved::External(_))
        ));
    }

    #[test]
    fn log_paths_follow_the_path_rules() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("t");
        let src = TableLocation::parse(root.to_str().unwrap()).unwrap();
        let outside = TableLocation::parse(dir.path().join("ext").to_str().unwrap()).unwrap();
        let reason = |r: Result<Located, LakeError>| match r {
            Err(LakeError::OutsidePath { reason, .. }) => reason,
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("accepted"),
        };
        let ext = format!("{}a.parquet", outside.url());
        assert!(
            reason(locate(&src, "file:///etc/hostname", &[])).contains("allowed external root")
        );
        assert!(reason(locate(&src, &ext, &[])).contains("allowed external root"));
        assert!(reason(locate(&src, "s3://b/t/a.parquet", &[])).contains("another store"));
        assert!(
            reason(locate(&src, "s3://b/x", std::slice::from_ref(&outside)))
                .contains("another store")
        );
        assert!(matches!(
            locate(&src, &ext, std::slice::from_ref(&outside)),
            Ok(Located::External(item, name)) if name == "a.parquet" && item.confine.is_some()
        ));
        // Not the allowed root itself, nor its parent.
        assert!(locate(&src, outside.url().as_str(), std::slice::from_ref(&outside)).is_err());
        assert!(matches!(
            locate(&src, &format!("{}x/y.parquet", src.url()), &[]),
            Ok(Located::Relative(r)) if r == "x/y.parquet"
        ));

        // A table in an object store: never this machine's files, never another bucket.
        let s3 = TableLocation::parse("s3://bucket/tables/t").unwrap();
        let s3_ext = TableLocation::parse("s3://bucket/shared").unwrap();
        let roots = [s3_ext.clone(), outside.clone()];
        assert!(reason(locate(&s3, "file:///etc/hostname", &roots)).contains("never read"));
        assert!(reason(locate(&s3, &ext, &roots)).contains("never read"));
        assert!(matches!(
            locate(&s3, "s3a://bucket/tables/t/p=1/a.parquet", &[]),
            Ok(Located::Relative(r)) if r == "p=1/a.parquet"
        ));
        assert!(reason(locate(&s3, "s3://bucket/shared/a.parquet", &[])).contains("allowed"));
        assert!(matches!(
            locate(&s3, "s3://bucket/shared/d/a.parquet", &roots),
            Ok(Located::External(item, name))
                if name == "a.parquet" && item.src_path.as_ref() == "shared/d/a.parquet"
                    && Arc::ptr_eq(&item.src_store, s3.object_store())
        ));
        assert!(
            reason(locate(&s3, "s3://other/shared/a.parquet", &roots)).contains("another store")
        );
        assert!(reason(locate(&s3, "gs://bucket/shared/a.parquet", &roots)).contains("scheme"));
    }
}
