//! The Files API over Unity Catalog volumes, per its documented wire format
//! (<https://docs.databricks.com/api/workspace/files>):
//!
//! - `PUT /api/2.0/fs/files{path}?overwrite=` — the raw body becomes the file (`overwrite`
//!   true or absent replaces, false refuses an existing file with 409 `ALREADY_EXISTS`); the
//!   body is streamed to a temporary file outside the volume and renamed into place, so a
//!   reader never sees half a file and a broken upload leaves the previous one;
//! - `GET …/files{path}` — the bytes, with `Content-Length`, `Last-Modified`, `Range`
//!   (`bytes=a-b`, `bytes=a-`, `bytes=-n`: 206 + `Content-Range`, 416 when unsatisfiable)
//!   and `If-Unmodified-Since` (412 when the file changed since); `HEAD` the same headers;
//!   `DELETE` removes a file;
//! - `GET /api/2.0/fs/directories{path}` — one level: `contents[]` of `path`, `name`,
//!   `is_directory`, `file_size` (files only), `last_modified` (ms since the epoch), sorted by
//!   name, paged with `page_size` (at most 1000) and `next_page_token`; `PUT` creates a
//!   directory and its parents (idempotent); `DELETE` removes an empty one; `HEAD` says
//!   whether it exists.
//!
//! Paths are `/Volumes/<catalog>/<schema>/<volume>/…`; a segment that is empty, `.`, `..`, or
//! holds `/`, `\` or NUL once decoded is refused with 400 before the disk is touched, so no
//! request reaches outside its volume.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use axum::body::Body;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use uuid::Uuid;

use super::server::{error, ok};
use super::state::Inner;

/// A path of the Files API, resolved inside its volume.
struct Target {
    /// `/Volumes/c/s/v`
    root_path: String,
    /// The volume's directory.
    root: PathBuf,
    /// Segments below the root.
    rel: Vec<String>,
}

impl Target {
    fn local(&self) -> PathBuf {
        self.rel.iter().fold(self.root.clone(), |p, s| p.join(s))
    }
    fn api_path(&self, child: Option<&str>) -> String {
        let mut p = self.root_path.clone();
        for s in self.rel.iter().map(String::as_str).chain(child) {
            p.push('/');
            p.push_str(s);
        }
        p
    }
}

fn bad(msg: impl Into<String>) -> Response {
    error(StatusCode::BAD_REQUEST, "INVALID_PARAMETER_VALUE", msg)
}

fn not_found(path: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        format!("The file or directory '{path}' does not exist."),
    )
}

fn internal(e: impl std::fmt::Display) -> Response {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "INTERNAL_ERROR",
        e.to_string(),
    )
}

/// Resolve `Volumes/c/s/v/…` (decoded segments) to a volume directory, refusing any segment
/// that could leave it.
fn resolve(st: &Inner, seg: &[&str]) -> Result<Target, Box<Response>> {
    let [vols, c, s, v, rest @ ..] = seg else {
        return Err(Box::new(bad(
            "paths are /Volumes/<catalog>/<schema>/<volume>/…",
        )));
    };
    if *vols != "Volumes" {
        return Err(Box::new(bad(
            "paths are /Volumes/<catalog>/<schema>/<volume>/…",
        )));
    }
    // A trailing slash (`…/dir/`) names the directory itself.
    let rest = match rest {
        [init @ .., ""] => init,
        r => r,
    };
    for part in rest {
        if part.is_empty() || *part == "." || *part == ".." || part.contains(['/', '\\', '\0']) {
            return Err(Box::new(bad(format!(
                "path segment {part:?} is not allowed: paths may not leave their volume"
            ))));
        }
    }
    let full = format!("{c}.{s}.{v}");
    let root = st
        .world
        .volume_dir(&st.metastore, &full)
        .ok_or_else(|| Box::new(not_found(&format!("/Volumes/{c}/{s}/{v}"))))?;
    Ok(Target {
        root_path: format!("/Volumes/{c}/{s}/{v}"),
        root,
        rel: rest.iter().map(|s| (*s).to_owned()).collect(),
    })
}

fn millis(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn http_date(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t)
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

/// Files API requests; `seg` follows `/api/2.0/fs/`.
pub(super) async fn handle(
    st: &Inner,
    method: &Method,
    seg: &[&str],
    q: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    let (kind, path) = match seg {
        [kind @ ("files" | "directories"), path @ ..] => (*kind, path),
        _ => {
            return error(
                StatusCode::NOT_FOUND,
                "ENDPOINT_NOT_FOUND",
                format!("no endpoint {method} /api/2.0/fs/{}", seg.join("/")),
            );
        }
    };
    let t = match resolve(st, path) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    match (method.as_str(), kind) {
        ("PUT", "files") => upload(st, &t, q, body).await,
        ("GET", "files") => {
            let changed = {
                let mut f = st.faults.lock().unwrap();
                let here = t.api_path(None);
                let i = f.change_on_download.iter().position(|p| *p == here);
                i.map(|i| f.change_on_download.remove(i)).is_some()
            };
            if changed {
                let mut bytes = tokio::fs::read(t.local()).await.unwrap_or_default();
                bytes.push(b'+');
                let _ = tokio::fs::write(t.local(), bytes).await;
            }
            download(&t, headers, true).await
        }
        ("HEAD", "files") => download(&t, headers, false).await,
        ("DELETE", "files") => match tokio::fs::metadata(t.local()).await {
            Ok(m) if m.is_file() => match tokio::fs::remove_file(t.local()).await {
                Ok(()) => StatusCode::NO_CONTENT.into_response(),
                Err(e) => internal(e),
            },
            _ => not_found(&t.api_path(None)),
        },
        ("GET", "directories") => list(st, &t, q).await,
        ("HEAD", "directories") => match tokio::fs::metadata(t.local()).await {
            Ok(m) if m.is_dir() => StatusCode::OK.into_response(),
            _ => StatusCode::NOT_FOUND.into_response(),
        },
        ("PUT", "directories") => match tokio::fs::create_dir_all(t.local()).await {
            Ok(()) => StatusCode::NO_CONTENT.into_response(),
            Err(_) => error(
                StatusCode::CONFLICT,
                "ALREADY_EXISTS",
                format!("a file exists at or above '{}'", t.api_path(None)),
            ),
        },
        ("DELETE", "directories") if t.rel.is_empty() => bad("a volume's root cannot be deleted"),
        ("DELETE", "directories") => match tokio::fs::remove_dir(t.local()).await {
            Ok(()) => StatusCode::NO_CONTENT.into_response(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => not_found(&t.api_path(None)),
            Err(_) => error(
                StatusCode::CONFLICT,
                "DIRECTORY_NOT_EMPTY",
                format!("directory '{}' is not empty", t.api_path(None)),
            ),
        },
        _ => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "ENDPOINT_NOT_FOUND",
            format!("{method} is not served on /api/2.0/fs/{kind}"),
        ),
    }
}

async fn upload(st: &Inner, t: &Target, q: &HashMap<String, String>, body: Body) -> Response {
    if t.rel.is_empty() {
        return bad("a file path is needed");
    }
    let dest = t.local();
    let overwrite = q.get("overwrite").map(String::as_str) != Some("false");
    match tokio::fs::metadata(&dest).await {
        Ok(m) if m.is_dir() => {
            return error(
                StatusCode::CONFLICT,
                "ALREADY_EXISTS",
                format!("'{}' is a directory", t.api_path(None)),
            );
        }
        Ok(_) if !overwrite => {
            return error(
                StatusCode::CONFLICT,
                "ALREADY_EXISTS",
                format!("The file '{}' already exists.", t.api_path(None)),
            );
        }
        _ => {}
    }
    // Streamed to a temporary file outside every volume, renamed into place when complete.
    let root = st.world.metastores.lock().unwrap()[&st.metastore]
        .root
        .join(".uploads");
    if let Err(e) = tokio::fs::create_dir_all(&root).await {
        return internal(e);
    }
    let tmp = root.join(Uuid::new_v4().to_string());
    let written = write_stream(&tmp, body).await;
    let placed = match written {
        Ok(()) => match dest.parent() {
            Some(parent) => match tokio::fs::create_dir_all(parent).await {
                Ok(()) => tokio::fs::rename(&tmp, &dest).await,
                Err(e) => Err(e),
            },
            None => Ok(()),
        },
        Err(e) => Err(e),
    };
    match placed {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            error(
                StatusCode::BAD_REQUEST,
                "INVALID_PARAMETER_VALUE",
                format!("upload of '{}' failed: {e}", t.api_path(None)),
            )
        }
    }
}

async fn write_stream(path: &Path, body: Body) -> std::io::Result<()> {
    let mut f = tokio::fs::File::create(path).await?;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(std::io::Error::other)?;
        f.write_all(&chunk).await?;
    }
    f.flush().await?;
    f.sync_all().await
}

/// `bytes=a-b`, `bytes=a-`, `bytes=-n` over a file of `len` bytes: the inclusive range, or
/// `None` when unsatisfiable.
fn byte_range(spec: &str, len: u64) -> Option<(u64, u64)> {
    let (a, b) = spec.strip_prefix("bytes=")?.split_once('-')?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().ok()?;
            (len.checked_sub(n.min(len))?, len.checked_sub(1)?)
        }
        (s, "") => (s.parse().ok()?, len.checked_sub(1)?),
        (s, e) => (
            s.parse().ok()?,
            e.parse::<u64>().ok()?.min(len.checked_sub(1)?),
        ),
    };
    (start <= end && start < len).then_some((start, end))
}

async fn download(t: &Target, headers: &HeaderMap, with_body: bool) -> Response {
    let path = t.local();
    let meta = match tokio::fs::metadata(&path).await {
        Ok(m) if m.is_file() => m,
        _ => return not_found(&t.api_path(None)),
    };
    let len = meta.len();
    let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    if let Some(since) = headers
        .get(header::IF_UNMODIFIED_SINCE)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| chrono::DateTime::parse_from_rfc2822(h).ok())
        && millis(modified) / 1000 > since.timestamp()
    {
        return error(
            StatusCode::PRECONDITION_FAILED,
            "PRECONDITION_FAILED",
            format!("'{}' was modified since {since}", t.api_path(None)),
        );
    }
    let range = headers.get(header::RANGE).and_then(|h| h.to_str().ok());
    let (status, start, end) = match range {
        None => (StatusCode::OK, 0, len),
        Some(spec) => match byte_range(spec, len) {
            Some((a, b)) => (StatusCode::PARTIAL_CONTENT, a, b + 1),
            None => {
                let mut r = error(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "INVALID_PARAMETER_VALUE",
                    format!("range {spec:?} outside a file of {len} bytes"),
                );
                r.headers_mut().insert(
                    header::CONTENT_RANGE,
                    format!("bytes */{len}").parse().unwrap(),
                );
                return r;
            }
        },
    };
    let mut builder = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, end - start)
        .header(header::LAST_MODIFIED, http_date(modified))
        .header(header::ACCEPT_RANGES, "bytes");
    if status == StatusCode::PARTIAL_CONTENT {
        builder = builder.header(
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{len}", end - 1),
        );
    }
    if !with_body {
        return builder.body(Body::empty()).unwrap();
    }
    let mut file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) => return internal(e),
    };
    if let Err(e) = file.seek(std::io::SeekFrom::Start(start)).await {
        return internal(e);
    }
    let stream = futures::stream::unfold(
        (file.take(end - start), vec![0u8; 64 * 1024]),
        |(mut f, mut buf)| async move {
            match f.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => Some((Ok(bytes_of(&buf[..n])), (f, buf))),
                Err(e) => Some((Err(e), (f, buf))),
            }
        },
    );
    builder.body(Body::from_stream(stream)).unwrap()
}

fn bytes_of(b: &[u8]) -> axum::body::Bytes {
    axum::body::Bytes::copy_from_slice(b)
}

async fn list(st: &Inner, t: &Target, q: &HashMap<String, String>) -> Response {
    let dir = t.local();
    let mut rd = match tokio::fs::read_dir(&dir).await {
        Ok(rd) => rd,
        Err(_) => return not_found(&t.api_path(None)),
    };
    let mut entries: Vec<(String, Value)> = Vec::new();
    loop {
        let e = match rd.next_entry().await {
            Ok(Some(e)) => e,
            Ok(None) => break,
            Err(e) => return internal(e),
        };
        let Ok(meta) = e.metadata().await else {
            continue; // removed while listing
        };
        let name = e.file_name().to_string_lossy().into_owned();
        let mut v = json!({
            "path": t.api_path(Some(&name)),
            "name": name,
            "is_directory": meta.is_dir(),
            "last_modified": millis(meta.modified().unwrap_or(SystemTime::UNIX_EPOCH)),
        });
        if meta.is_file() {
            v["file_size"] = json!(meta.len());
        }
        entries.push((name, v));
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let (forced, empty_pages, inject) = {
        let f = st.faults.lock().unwrap();
        (f.page_size, f.empty_pages, f.listing_inject.clone())
    };
    let here = t.api_path(None);
    for (dir, path) in inject {
        if dir == here {
            let name = path.rsplit('/').next().unwrap_or("").to_owned();
            entries.push((
                name.clone(),
                json!({"path": path, "name": name, "is_directory": false, "file_size": 1, "last_modified": 0}),
            ));
        }
    }
    let asked: usize = q
        .get("page_size")
        .and_then(|p| p.parse().ok())
        .filter(|p| *p > 0)
        .unwrap_or(1000);
    let size = if forced > 0 { forced } else { asked.min(1000) };
    let token = q.get("page_token").map(String::as_str).unwrap_or("");
    let (empty, offset) = match token {
        "" => (empty_pages, 0),
        t => match (t.strip_prefix('e'), t.strip_prefix('o')) {
            (Some(n), _) => (true, n.parse().unwrap_or(0)),
            (_, Some(n)) => (false, n.parse().unwrap_or(0)),
            _ => return bad("bad page_token"),
        },
    };
    if empty {
        return ok(json!({"contents": [], "next_page_token": format!("o{offset}")}));
    }
    let end = (offset + size).min(entries.len());
    let page: Vec<Value> = entries[offset.min(end)..end]
        .iter()
        .map(|(_, v)| v.clone())
        .collect();
    let mut body = json!({ "contents": page });
    if end < entries.len() {
        body["next_page_token"] = json!(if empty_pages {
            format!("e{end}")
        } else {
            format!("o{end}")
        });
    }
    ok(body)
}

#[cfg(test)]
mod tests {
    use super::byte_range;

    #[test]
    fn ranges_follow_rfc_9110() {
        assert_eq!(byte_range("bytes=0-499", 1000), Some((0, 499)));
        assert_eq!(byte_range("bytes=500-", 1000), Some((500, 999)));
        assert_eq!(byte_range("bytes=-100", 1000), Some((900, 999)));
        assert_eq!(byte_range("bytes=900-5000", 1000), Some((900, 999)));
        assert_eq!(byte_range("bytes=1000-", 1000), None);
        assert_eq!(byte_range("bytes=5-2", 1000), None);
        assert_eq!(byte_range("bytes=0-0", 0), None);
        assert_eq!(byte_range("items=0-1", 10), None);
    }
}
