//! The Files API over Unity Catalog volumes (<https://docs.databricks.com/api/workspace/files>):
//!
//! - `GET /api/2.0/fs/directories{path}` lists one directory (`contents[]` of `path`, `name`,
//!   `is_directory`, `file_size`, `last_modified` in ms; `page_size` at most 1000, paged
//!   until `next_page_token` is absent — the number of entries never says the listing ended);
//!   [`WorkspaceClient::list_tree`] walks a volume's whole tree that way;
//! - `GET /api/2.0/fs/files{path}` streams a file (`Range` and `If-Unmodified-Since` are
//!   supported by the server; the download sends `If-Unmodified-Since` so a file changed
//!   since it was listed answers 412 instead of mixed bytes);
//! - `PUT /api/2.0/fs/files{path}?overwrite=true` uploads a file of up to 5 GiB from a
//!   stream, with its `Content-Length` (no whole-file buffering); the docs promise the
//!   resulting file is exactly the bytes sent, and there is no rename in this API;
//! - `HEAD`/`DELETE …/files{path}`, `PUT`/`DELETE …/directories{path}`.
//!
//! Every path is built from a [`VolumeName`] and relative segments checked by
//! [`rel_segments`]: no empty segment, `.`, `..`, backslash or control character, so a path
//! can never leave its volume (the `url` crate silently drops `..` segments, which would
//! otherwise turn `a/../b` into `a/b`). A listed path outside the volume is refused, not
//! followed. Errors name the path; the token never appears in one.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use reqwest::Method;
use reqwest::header::{CONTENT_LENGTH, HeaderMap, HeaderValue, IF_UNMODIFIED_SINCE};
use serde::Deserialize;
use url::Url;

use crate::DatabricksError;

use super::answer::error_answer;
use super::{VolumeName, WorkspaceClient};

/// Largest file one Files API 2.0 upload takes (5 GiB).
pub const MAX_UPLOAD: u64 = 5 * 1024 * 1024 * 1024;

/// One entry of a directory listing, as the API sends it.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct DirectoryEntry {
    pub path: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub is_directory: bool,
    /// Omitted for directories.
    #[serde(default)]
    pub file_size: Option<u64>,
    /// Milliseconds since the epoch.
    #[serde(default)]
    pub last_modified: Option<i64>,
}

/// A file of a volume: its size and last modification (ms since the epoch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileStat {
    pub size: u64,
    pub last_modified: i64,
}

/// A volume's whole tree, by path relative to the volume root (`dir/file.csv`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VolumeTree {
    pub files: BTreeMap<String, FileStat>,
    pub dirs: BTreeSet<String>,
    /// Listed paths that were refused (outside the volume, or a forbidden segment), with why.
    pub refused: Vec<String>,
}

/// A download in progress: the body as a stream, and what the headers said.
pub struct Download {
    pub content_length: Option<u64>,
    pub body: BoxStream<'static, Result<Bytes, DatabricksError>>,
}

/// Check a path relative to a volume root and split it into segments: refused when empty,
/// or when a segment is empty, `.`, `..`, or holds a backslash or a control character.
pub fn rel_segments<'a>(
    volume: &VolumeName,
    rel: &'a str,
) -> Result<Vec<&'a str>, DatabricksError> {
    let refuse = |why: &str| {
        Err(DatabricksError::Refused(format!(
            "path {:?} in volume {volume}: {why}",
            rel.escape_debug().to_string()
        )))
    };
    if rel.is_empty() {
        return refuse("empty path");
    }
    let parts: Vec<&str> = rel.split('/').collect();
    for p in &parts {
        if p.is_empty() || *p == "." || *p == ".." {
            return refuse(
                "empty, `.` and `..` segments are not allowed (a path may not leave its volume)",
            );
        }
        if p.chars().any(|c| c.is_control() || c == '\\') {
            return refuse("backslashes and control characters are not allowed");
        }
    }
    Ok(parts)
}

/// The path of a listed entry relative to `root` (`/Volumes/c/s/v`), if it lies inside it.
fn relative<'a>(volume: &VolumeName, root: &str, path: &'a str) -> Result<&'a str, String> {
    let rel = path
        .strip_prefix(root)
        .and_then(|r| r.strip_prefix('/'))
        .map(|r| r.trim_end_matches('/'))
        .ok_or_else(|| format!("{path:?} is outside volume {volume}"))?;
    rel_segments(volume, rel).map_err(|e| e.to_string())?;
    Ok(rel)
}

/// `Last-Modified`/`If-Unmodified-Since` form of an instant in ms (RFC 9110 HTTP-date).
fn http_date(ms: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%a, %d %b %Y %H:%M:%S GMT").to_string())
}

impl WorkspaceClient {
    fn file_url(&self, kind: &str, volume: &VolumeName, rel: &[&str]) -> Url {
        let mut segments = vec!["api", "2.0", "fs", kind];
        segments.extend(volume.root_segments());
        segments.extend(rel);
        self.url(&segments)
    }

    /// Send one Files API request (authenticated, the OAuth token refreshed once on 401);
    /// non-2xx answers become errors naming the path.
    async fn send_file(
        &self,
        method: Method,
        url: Url,
        headers: HeaderMap,
        body: Option<reqwest::Body>,
    ) -> Result<reqwest::Response, DatabricksError> {
        let path = url.path().to_owned();
        let transport = |e: reqwest::Error| DatabricksError::Transport {
            method: method.to_string(),
            path: path.clone(),
            detail: e.without_url().to_string(),
        };
        let mut token = self.auth.bearer(&self.http, &self.host, None).await?;
        let mut body = body;
        let mut refreshed = false;
        loop {
            let mut req = self
                .transfer
                .request(method.clone(), url.clone())
                .headers(headers.clone())
                .bearer_auth(&token);
            let sent_body = body.is_some();
            if let Some(b) = body.take() {
                req = req.body(b);
            }
            let resp = req.send().await.map_err(transport)?;
            let status = resp.status().as_u16();
            if status == 401 && self.auth.can_refresh() && !refreshed {
                tracing::info!(%path, "access token refused, fetching a new one");
                token = self
                    .auth
                    .bearer(&self.http, &self.host, Some(&token))
                    .await?;
                refreshed = true;
                if !sent_body {
                    continue;
                }
                // A streamed body is sent once: the caller repeats the transfer, which
                // finds the new token cached.
                return Err(DatabricksError::Transport {
                    method: method.to_string(),
                    path: path.clone(),
                    detail: "access token refused mid-upload; a new one was fetched".into(),
                });
            }
            if (200..300).contains(&status) {
                return Ok(resp);
            }
            let retry_after = super::retry_after(resp.headers());
            let text = resp.text().await.unwrap_or_default();
            return Err(error_answer(
                &self.host,
                &method,
                path.clone(),
                status,
                &text,
                retry_after,
            ));
        }
    }

    /// Repeat a request that has no body with the client's retry policy (transient errors).
    async fn retried<T, F, Fut>(&self, op: F) -> Result<T, DatabricksError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, DatabricksError>>,
    {
        let (r, _) = self
            .options
            .retry
            .retry(op, |e: &DatabricksError, d: Duration| {
                tracing::warn!(error = %e, delay_ms = d.as_millis() as u64, "files request failed, retrying");
            })
            .await;
        r
    }

    fn journaled(&self, line: String) -> bool {
        match &self.journal {
            Some(j) => {
                j.push(line);
                true
            }
            None => false,
        }
    }

    /// One directory's entries (every page).
    pub async fn list_directory(
        &self,
        volume: &VolumeName,
        rel: &[&str],
    ) -> Result<Vec<DirectoryEntry>, DatabricksError> {
        #[derive(Deserialize)]
        struct Page {
            #[serde(default)]
            contents: Vec<DirectoryEntry>,
            #[serde(default)]
            next_page_token: Option<String>,
        }
        let url = self.file_url("directories", volume, rel);
        let path = url.path().to_owned();
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        let mut seen = BTreeSet::new();
        loop {
            let mut q = vec![("page_size", "1000".to_owned())];
            if let Some(t) = &token {
                q.push(("page_token", t.clone()));
            }
            let v = self.call(Method::GET, url.clone(), &q, None).await?;
            let page: Page = super::parse(&path, v)?;
            out.extend(page.contents);
            match page.next_page_token.filter(|t| !t.is_empty()) {
                None => return Ok(out),
                Some(t) if !seen.insert(t.clone()) => {
                    return Err(DatabricksError::Protocol {
                        path,
                        detail: format!("page token {t:?} repeated; the listing does not end"),
                    });
                }
                Some(t) => token = Some(t),
            }
        }
    }

    /// A volume's whole tree, directory by directory. Paths ending under `exclude` (relative
    /// prefixes such as `.replicator`) are left out; listed paths outside the volume are
    /// refused and reported in [`VolumeTree::refused`], never followed.
    pub async fn list_tree(
        &self,
        volume: &VolumeName,
        exclude: &[&str],
    ) -> Result<VolumeTree, DatabricksError> {
        let root = volume.root();
        let mut tree = VolumeTree::default();
        let mut pending: Vec<String> = vec![String::new()];
        while let Some(dir) = pending.pop() {
            let segs: Vec<&str> = if dir.is_empty() {
                Vec::new()
            } else {
                dir.split('/').collect()
            };
            for e in self.list_directory(volume, &segs).await? {
                let rel = match relative(volume, &root, &e.path) {
                    Ok(rel) => rel.to_owned(),
                    Err(why) => {
                        tree.refused.push(why);
                        continue;
                    }
                };
                let parent = rel.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
                if parent != dir {
                    tree.refused.push(format!(
                        "{:?} is not in the directory listed ({dir:?})",
                        e.path
                    ));
                    continue;
                }
                if exclude
                    .iter()
                    .any(|x| rel == *x || rel.starts_with(&format!("{x}/")))
                {
                    continue;
                }
                if e.is_directory {
                    tree.dirs.insert(rel.clone());
                    pending.push(rel);
                } else {
                    tree.files.insert(
                        rel,
                        FileStat {
                            size: e.file_size.unwrap_or(0),
                            last_modified: e.last_modified.unwrap_or(0),
                        },
                    );
                }
            }
        }
        Ok(tree)
    }

    /// Stream a file. With `unmodified_since` (ms), a file changed after that second answers
    /// 412 (`PRECONDITION_FAILED`) instead of its new bytes.
    pub async fn download(
        &self,
        volume: &VolumeName,
        rel: &str,
        unmodified_since: Option<i64>,
    ) -> Result<Download, DatabricksError> {
        let segs = rel_segments(volume, rel)?;
        let url = self.file_url("files", volume, &segs);
        let mut headers = HeaderMap::new();
        if let Some(v) = unmodified_since
            .and_then(http_date)
            .and_then(|d| HeaderValue::from_str(&d).ok())
        {
            headers.insert(IF_UNMODIFIED_SINCE, v);
        }
        let resp = self
            .retried(|| self.send_file(Method::GET, url.clone(), headers.clone(), None))
            .await?;
        let content_length = resp.content_length();
        let path = url.path().to_owned();
        let body = resp
            .bytes_stream()
            .map_err(move |e| DatabricksError::Transport {
                method: "GET".into(),
                path: path.clone(),
                detail: e.without_url().to_string(),
            })
            .boxed();
        Ok(Download {
            content_length,
            body,
        })
    }

    /// Upload `len` bytes from `body` to a file, replacing it if it exists. The body is
    /// streamed with its `Content-Length`, so a stream that ends early or runs long fails
    /// the request instead of landing a wrong file. Not retried here: a stream is sent once
    /// (the caller repeats the whole transfer).
    pub async fn upload(
        &self,
        volume: &VolumeName,
        rel: &str,
        len: u64,
        body: BoxStream<'static, Result<Bytes, DatabricksError>>,
    ) -> Result<(), DatabricksError> {
        let segs = rel_segments(volume, rel)?;
        let url = self.file_url("files", volume, &segs);
        if len > MAX_UPLOAD {
            return Err(DatabricksError::Refused(format!(
                "{}: {len} bytes is over the Files API's 5 GiB upload limit",
                url.path()
            )));
        }
        if self.journaled(format!("API PUT {url}?overwrite=true ({len} bytes)")) {
            return Ok(());
        }
        let mut url = url;
        url.query_pairs_mut().append_pair("overwrite", "true");
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
        self.send_file(
            Method::PUT,
            url,
            headers,
            Some(reqwest::Body::wrap_stream(body)),
        )
        .await
        .map(drop)
    }

    /// A file's size and last modification, from `HEAD` (`None` when it does not exist).
    pub async fn file_metadata(
        &self,
        volume: &VolumeName,
        rel: &str,
    ) -> Result<Option<(Option<u64>, Option<String>)>, DatabricksError> {
        let segs = rel_segments(volume, rel)?;
        let url = self.file_url("files", volume, &segs);
        match self
            .retried(|| self.send_file(Method::HEAD, url.clone(), HeaderMap::new(), None))
            .await
        {
            // From the header: a HEAD answer's body is empty, so reqwest's size hint is 0.
            Ok(resp) => Ok(Some((
                resp.headers()
                    .get(CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok()),
                resp.headers()
                    .get(reqwest::header::LAST_MODIFIED)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
            ))),
            // HEAD answers carry no error body: a bare 404 is "no such file" here.
            Err(DatabricksError::NoEndpoint { .. }) => Ok(None),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn delete_file(&self, volume: &VolumeName, rel: &str) -> Result<(), DatabricksError> {
        let segs = rel_segments(volume, rel)?;
        let url = self.file_url("files", volume, &segs);
        if self.journaled(format!("API DELETE {url}")) {
            return Ok(());
        }
        self.retried(|| self.send_file(Method::DELETE, url.clone(), HeaderMap::new(), None))
            .await
            .map(drop)
    }

    /// Create a directory and its parents (idempotent).
    pub async fn create_directory(
        &self,
        volume: &VolumeName,
        rel: &str,
    ) -> Result<(), DatabricksError> {
        let segs = rel_segments(volume, rel)?;
        let url = self.file_url("directories", volume, &segs);
        if self.journaled(format!("API PUT {url}")) {
            return Ok(());
        }
        self.retried(|| self.send_file(Method::PUT, url.clone(), HeaderMap::new(), None))
            .await
            .map(drop)
    }

    /// Delete an empty directory.
    pub async fn delete_directory(
        &self,
        volume: &VolumeName,
        rel: &str,
    ) -> Result<(), DatabricksError> {
        let segs = rel_segments(volume, rel)?;
        let url = self.file_url("directories", volume, &segs);
        if self.journaled(format!("API DELETE {url}")) {
            return Ok(());
        }
        self.retried(|| self.send_file(Method::DELETE, url.clone(), HeaderMap::new(), None))
            .await
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vol() -> VolumeName {
        VolumeName::parse("c.s.v").unwrap()
    }

    #[test]
    fn relative_paths_never_leave_the_volume() {
        let v = vol();
        assert_eq!(
            rel_segments(&v, "a dir/it's `x` é.csv").unwrap(),
            vec!["a dir", "it's `x` é.csv"]
        );
        for bad in [
            "", "..", "a/../b", "./a", "a//b", "/a", "a/", "a\\b", "a\nb", "..\\x",
        ] {
            let e = rel_segments(&v, bad).unwrap_err().to_string();
            assert!(e.contains("in volume c.s.v"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn listed_paths_outside_the_root_are_refused() {
        let v = vol();
        let root = v.root();
        assert_eq!(relative(&v, &root, "/Volumes/c/s/v/a/b.csv"), Ok("a/b.csv"));
        assert_eq!(relative(&v, &root, "/Volumes/c/s/v/dir/"), Ok("dir"));
        for bad in [
            "/Volumes/c/s/v2/x",
            "/Volumes/c/s/v/../v2/x",
            "/Volumes/c/s/v",
            "/etc/passwd",
            "/Volumes/c/s/v/a/./b",
        ] {
            assert!(relative(&v, &root, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn http_dates_are_rfc_9110() {
        assert_eq!(
            http_date(1_700_000_000_123).as_deref(),
            Some("Tue, 14 Nov 2023 22:13:20 GMT")
        );
    }
}
