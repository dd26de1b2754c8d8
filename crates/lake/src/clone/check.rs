//! The checks a plan makes before anything is written: every file to copy is in the source
//! with the size its log records (a local file really inside its root, deletion-vector files
//! large enough for their deletion vectors), and which of them the target already holds.
//! Reads only.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt, stream};
use object_store::ObjectStoreExt;
use object_store::path::Path;

use super::paths::CopyItem;
use crate::location::real_path;
use crate::{LakeError, TableLocation};

/// Check every wanted file exists in the source with the logged size, and drop the ones the
/// target already has. Returns the copies to make with their sizes. Reads only.
pub(super) async fn plan_copies(
    source: &TableLocation,
    target: &TableLocation,
    source_version: u64,
    wanted: Vec<CopyItem>,
    parallelism: usize,
) -> Result<Vec<(CopyItem, u64)>, LakeError> {
    // On an object store, one listing (1,000 keys per request) answers for many files at
    // once where a HEAD per file would cost a round trip each. Local disks stat instead.
    let listed = wanted.len() >= LIST_THRESHOLD;
    let (src_sizes, tgt_sizes) = if listed {
        let src = async {
            if source.local_dir().is_some() {
                Ok(None)
            } else {
                list_sizes(source).await.map(Some)
            }
        };
        let tgt = async {
            if target.local_dir().is_some() {
                Ok(None)
            } else {
                list_sizes(target).await.map(Some)
            }
        };
        tokio::try_join!(src, tgt)?
    } else {
        (None, None)
    };
    let (src_sizes, tgt_sizes) = (Arc::new(src_sizes), Arc::new(tgt_sizes));
    // A local file must really be inside its root: a symbolic link in the table (or a
    // linked directory) must not make the clone read a file elsewhere on this machine.
    let source_root = source.local_dir().map(|d| Arc::new(real_path(d)));
    let dirs_inside: Arc<std::sync::Mutex<HashMap<PathBuf, bool>>> = Default::default();
    // Futures own their inputs (no borrowing closures): keeps the clone future `Send` for
    // every lifetime, which spawning it on a multi-threaded runtime needs.
    let mut checks = Vec::with_capacity(wanted.len());
    for item in wanted {
        let (source, target) = (source.clone(), target.clone());
        let (src_sizes, tgt_sizes) = (src_sizes.clone(), tgt_sizes.clone());
        let (source_root, dirs_inside) = (source_root.clone(), dirs_inside.clone());
        checks.push(async move {
            // Files outside the source root (absolute-path deletion vectors) were not listed.
            let listed_size = (*src_sizes)
                .as_ref()
                .filter(|_| Arc::ptr_eq(&item.src_store, source.object_store()))
                .and_then(|m| m.get(&item.src_path).copied());
            let root = item
                .confine
                .clone()
                .map(Arc::new)
                .or(source_root.filter(|_| item.src_file.is_some()));
            let head = match (listed_size, &item.src_file, root) {
                (Some(size), _, _) => Ok(size),
                (None, Some(file), Some(root)) => {
                    let file = file.clone();
                    let found = tokio::task::spawn_blocking(move || {
                        local_file_size(&file, &root, &dirs_inside)
                    })
                    .await
                    .map_err(|e| LakeError::Invalid(format!("file check failed: {e}")))?;
                    match found {
                        Ok(LocalFile::Size(size)) => Ok(size),
                        Ok(LocalFile::Missing) => Err(object_store::Error::NotFound {
                            path: item.src_path.to_string(),
                            source: "no such file".into(),
                        }),
                        Ok(LocalFile::Outside(real)) => {
                            return Err(LakeError::OutsidePath {
                                url: source.url().to_string(),
                                path: item.dst_rel.clone(),
                                reason: format!(
                                    "it resolves through a symbolic link to {}",
                                    real.display()
                                ),
                            });
                        }
                        Err(e) => Err(object_store::Error::Generic {
                            store: "LocalFileSystem",
                            source: Box::new(e),
                        }),
                    }
                }
                _ => item.src_store.head(&item.src_path).await.map(|m| m.size),
            };
            let actual = match head {
                Ok(size) => size,
                Err(object_store::Error::NotFound { .. }) => {
                    return Err(LakeError::MissingFile {
                        url: source.url().to_string(),
                        path: item.dst_rel.clone(),
                        version: source_version,
                    });
                }
                Err(e) => return Err(LakeError::store(&item.src_path, e)),
            };
            if let Some(expected) = item.size
                && expected != actual
            {
                return Err(LakeError::SizeMismatch {
                    path: item.src_path.to_string(),
                    expected,
                    actual,
                });
            }
            if actual < item.min_size {
                return Err(LakeError::Invalid(format!(
                    "{}: deletion vector file `{}` has {actual} bytes, fewer than the {} its deletion vectors need",
                    source.url(),
                    item.dst_rel,
                    item.min_size
                )));
            }
            let dst = target.object_path(&item.dst_rel);
            let present = match &*tgt_sizes {
                Some(sizes) => sizes.get(&dst) == Some(&actual),
                None => match target.object_store().head(&dst).await {
                    Ok(meta) => meta.size == actual,
                    Err(object_store::Error::NotFound { .. }) => false,
                    Err(e) => return Err(LakeError::store(&dst, e)),
                },
            };
            Ok((!present).then_some((item, actual)))
        });
    }
    let checks = stream::iter(checks)
        .buffer_unordered(parallelism * 2)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(checks.into_iter().flatten().collect())
}

/// What [`local_file_size`] found.
enum LocalFile {
    Size(u64),
    Missing,
    /// The file is, through a symbolic link, at this real path outside its root.
    Outside(PathBuf),
}

/// The size of a local file that must lie inside `root` (a real path): the file itself must
/// not be a symbolic link, and its directory's real path must be inside `root` (cached per
/// directory in `dirs`).
fn local_file_size(
    file: &std::path::Path,
    root: &std::path::Path,
    dirs: &std::sync::Mutex<HashMap<PathBuf, bool>>,
) -> std::io::Result<LocalFile> {
    let meta = match std::fs::symlink_metadata(file) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(LocalFile::Missing),
        Err(e) => return Err(e),
    };
    if meta.file_type().is_symlink() {
        return Ok(LocalFile::Outside(real_path(file)));
    }
    if !meta.is_file() {
        return Ok(LocalFile::Missing);
    }
    let dir = file.parent().unwrap_or(file).to_path_buf();
    let known = dirs.lock().expect("dir cache").get(&dir).copied();
    let inside = match known {
        Some(inside) => inside,
        None => {
            let inside = real_path(&dir).starts_with(root);
            dirs.lock().expect("dir cache").insert(dir, inside);
            inside
        }
    };
    if inside {
        Ok(LocalFile::Size(meta.len()))
    } else {
        Ok(LocalFile::Outside(real_path(file)))
    }
}

/// From this many files to check on, an object store is listed instead of asked per file.
const LIST_THRESHOLD: usize = 16;

/// The size of every object under a table root, from one (paged) listing.
async fn list_sizes(loc: &TableLocation) -> Result<HashMap<Path, u64>, LakeError> {
    loc.object_store()
        .list(Some(loc.prefix()))
        .map_ok(|meta| (meta.location, meta.size))
        .try_collect()
        .await
        .map_err(|e| LakeError::store(loc.prefix(), e))
}
