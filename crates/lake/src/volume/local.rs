//! Listing a local volume straight from the filesystem: `readdir` and one `stat` per file,
//! giving the stamps the local object store would give (`Stamp::of_local`), without its
//! per-entry URL round trip. Each top-level directory is walked on its own blocking thread.
//! Symbolic links are followed as the local store follows them; a link back to an ancestor
//! (a loop) is not entered.

use std::path::{Path as FsPath, PathBuf};

use futures::{StreamExt, stream};

use super::listing::{Listing, Scope, Stamp, check_relative, reserved};
use crate::{LakeError, TableLocation};

/// Directory walks in flight at once.
const WALKS_AT_ONCE: usize = 4;

/// List the files of the local directory `dir` (the root of `root`) in `scope`.
pub(super) async fn list(
    root: &TableLocation,
    dir: &FsPath,
    scope: Scope,
) -> Result<Listing, LakeError> {
    let url = root.url().to_string();
    let (top_dir, top_url) = (dir.to_path_buf(), url.clone());
    let top = tokio::task::spawn_blocking(move || read_level(&top_dir, "", &top_url))
        .await
        .map_err(|e| LakeError::Invalid(format!("listing task failed: {e}")))??;
    let mut files = Listing::new();
    let mut dirs = Vec::new();
    for (relative, entry) in top {
        match entry {
            Entry::File(stamp) if scope.holds(&relative) => {
                files.insert(relative, stamp);
            }
            Entry::File(_) => {}
            Entry::Dir(_) if reserved(&relative) || !scope.recursive => {}
            Entry::Dir(path) => dirs.push((relative, path)),
        }
    }
    let root_real = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mut walks = stream::iter(
        dirs.into_iter()
            .map(|(relative, path)| {
                let (url, root_real) = (url.clone(), root_real.clone());
                tokio::task::spawn_blocking(move || walk(path, relative, &url, &root_real))
            })
            .collect::<Vec<_>>(),
    )
    .buffer_unordered(WALKS_AT_ONCE);
    while let Some(found) = walks.next().await {
        let found =
            found.map_err(|e| LakeError::Invalid(format!("listing task failed: {e}")))??;
        files.extend(found.into_iter().filter(|(r, _)| scope.holds(r)));
    }
    Ok(files)
}

enum Entry {
    File(Stamp),
    Dir(PathBuf),
}

fn io_error(path: &FsPath, e: std::io::Error) -> LakeError {
    LakeError::Store {
        path: path.display().to_string(),
        source: object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(e),
        },
    }
}

/// The entries of one directory, by relative path. A root that does not exist is empty.
fn read_level(dir: &FsPath, prefix: &str, url: &str) -> Result<Vec<(String, Entry)>, LakeError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && prefix.is_empty() => {
            return Ok(Vec::new());
        }
        Err(e) => return Err(io_error(dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_error(dir, e))?;
        let path = entry.path();
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            return Err(LakeError::UnsafeVolumePath {
                url: url.to_owned(),
                path: path.display().to_string(),
                reason: "the name is not UTF-8".into(),
            });
        };
        let relative = if prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{prefix}/{name}")
        };
        // Followed like the local store follows links; a dangling link is no file.
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_error(&path, e)),
        };
        if meta.is_dir() {
            out.push((relative, Entry::Dir(path)));
        } else if meta.is_file() && !store_staging_name(name) {
            check_relative(&relative).map_err(|reason| LakeError::UnsafeVolumePath {
                url: url.to_owned(),
                path: relative.clone(),
                reason: reason.to_owned(),
            })?;
            out.push((relative, Entry::File(Stamp::of_local(&meta))));
        }
    }
    Ok(out)
}

/// Names the local object store keeps for its own uploads (`name#3`) and cannot read:
/// skipped, as its listing skips them.
fn store_staging_name(name: &str) -> bool {
    name.rsplit_once('#')
        .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Every file below `dir` (whose relative path is `relative`). A directory that is one of
/// its own ancestors (a link loop) is not entered again; two links to one directory are two
/// directories, as in the local store's listing.
fn walk(
    dir: PathBuf,
    relative: String,
    url: &str,
    root_real: &FsPath,
) -> Result<Vec<(String, Stamp)>, LakeError> {
    let mut files = Vec::new();
    let mut stack = vec![(relative, dir, vec![root_real.to_path_buf()])];
    while let Some((relative, dir, mut ancestors)) = stack.pop() {
        let real = std::fs::canonicalize(&dir).map_err(|e| io_error(&dir, e))?;
        if ancestors.contains(&real) {
            tracing::warn!(url, dir = %relative, "skipping a directory link back to its own ancestor");
            continue;
        }
        ancestors.push(real);
        for (rel, entry) in read_level(&dir, &relative, url)? {
            match entry {
                Entry::File(stamp) => files.push((rel, stamp)),
                Entry::Dir(path) => stack.push((rel, path, ancestors.clone())),
            }
        }
    }
    Ok(files)
}
