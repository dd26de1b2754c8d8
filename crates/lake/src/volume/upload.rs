//! One local file streamed into one S3 `PUT`, made visible only as a whole, unchanged file.
//!
//! A multipart upload keeps a half-written file from ever appearing (the object appears at
//! `CompleteMultipartUpload`), but costs a request per part and, on some stores, a join of
//! the parts at the end. Below the volume's `upload_cutoff` a local file instead goes as one
//! `PUT` streamed from the file (as rclone sends files below its `--s3-upload-cutoff`), with
//! the same guarantee kept another way: S3 stores an object only when it has received the
//! whole `Content-Length`, so the **last chunk is held back** until the file has been
//! `stat`ed again and found unchanged. A change (or a file that shrank) fails the body
//! before its last byte: the store never sees a complete request, and nothing appears at
//! the final name. The bytes sent are hashed on the way; where S3's ETag is the body's MD5
//! (single `PUT`, no KMS or customer key), a mismatch deletes the object and fails the copy.
//!
//! object_store cannot stream a body into a single `PUT` (its payloads are in memory), so the
//! request is presigned by the store (its credentials, endpoint and addressing style) and
//! sent by a shared HTTP client. Errors never carry the presigned URL.

use std::path::Path as FsPath;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use md5::{Digest, Md5};
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::io::AsyncReadExt;

use super::copy::{Attempt, local_error};
use super::listing::Stamp;
use crate::LakeError;

/// Bytes read from the file and handed to the request at a time.
const CHUNK: usize = 1 << 20;

/// Memory one streamed upload holds, in MiB: the chunk being read and the one being sent.
pub(super) const HELD_MIB: u32 = 2;

/// How long a presigned upload URL stays valid: the request starts at once.
const URL_VALID: Duration = Duration::from_secs(3600);

/// What the body found about the file, for the caller to tell a changed source from a
/// failed request.
const OK: u8 = 0;
const CHANGED: u8 = 1;
const GONE: u8 = 2;

fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        // No request timeout (a large file takes as long as its link needs): `put_file`
        // watches for a stalled upload instead.
        reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .expect("an HTTP client with default TLS")
    })
}

/// An upload that sends no byte for this long (the store stopped reading), or gets no answer
/// this long after its last byte, is abandoned: the request is dropped before its end, so
/// nothing appears, and the file fails with a transient error.
pub(super) const STALLED: Duration = Duration::from_secs(120);

/// `PUT` the local file `file` (listed as `before`) at `to`, streamed.
pub(super) async fn put_file(
    signer: &dyn Signer,
    store: &dyn ObjectStore,
    to: &Path,
    file: &FsPath,
    before: &Stamp,
    stalled: Duration,
) -> Result<(), Attempt> {
    let failed = |e: object_store::Error| Attempt::Failed(LakeError::store(to, e));
    let url = signer
        .signed_url(reqwest::Method::PUT, to, URL_VALID)
        .await
        .map_err(failed)?;
    let handle = match tokio::fs::File::open(file).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Attempt::Gone),
        Err(e) => return Err(Attempt::Failed(local_error(file, e))),
    };
    let found = Arc::new(AtomicU8::new(OK));
    let sent = Arc::new(std::sync::Mutex::new(Md5::new()));
    let started = Instant::now();
    let moved = Arc::new(AtomicU64::new(0));
    let body = Body {
        file: handle,
        path: file.to_path_buf(),
        left: before.size,
        before: before.clone(),
        found: found.clone(),
        sent: sent.clone(),
        started,
        moved: moved.clone(),
    };
    let request = client()
        .put(url)
        .header(reqwest::header::CONTENT_LENGTH, before.size)
        .body(reqwest::Body::wrap_stream(body.into_stream()))
        .send();
    tokio::pin!(request);
    let response = loop {
        tokio::select! {
            r = &mut request => break r,
            () = tokio::time::sleep(stalled / 4) => {
                let idle = started.elapsed().saturating_sub(Duration::from_millis(moved.load(Ordering::Relaxed)));
                if idle >= stalled {
                    return Err(Attempt::Failed(LakeError::store(to, object_store::Error::Generic {
                        store: "S3",
                        source: format!("upload stalled: nothing moved for {} s; abandoned before its end", idle.as_secs()).into(),
                    })));
                }
            }
        }
    };
    match found.load(Ordering::SeqCst) {
        CHANGED => return Err(Attempt::Changed),
        GONE => return Err(Attempt::Gone),
        _ => {}
    }
    let response = response.map_err(|e| failed(http_error(e)))?;
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        return Err(failed(s3_error(status, &text)));
    }
    let md5 = format!("{:x}", sent.lock().expect("hash").clone().finalize());
    if let Some(etag) = plain_etag(response.headers())
        && etag != md5
    {
        // The store holds other bytes than were read: take them away, fail the copy.
        let _ = store.delete(to).await;
        return Err(Attempt::Failed(LakeError::Invalid(format!(
            "{to}: the upload arrived altered (the store's MD5 {etag}, the bytes sent {md5}); removed, to be copied again"
        ))));
    }
    Ok(())
}

/// The ETag of a single-`PUT` response when S3 defines it as the body's MD5 (not with KMS or
/// a customer key).
fn plain_etag(headers: &reqwest::header::HeaderMap) -> Option<String> {
    let sse = headers
        .get("x-amz-server-side-encryption")
        .and_then(|v| v.to_str().ok());
    if sse.is_some_and(|v| v != "AES256")
        || headers.contains_key("x-amz-server-side-encryption-customer-algorithm")
    {
        return None;
    }
    let etag = headers.get(reqwest::header::ETAG)?.to_str().ok()?;
    let etag = etag.trim_matches('"').to_ascii_lowercase();
    (etag.len() == 32 && etag.bytes().all(|b| b.is_ascii_hexdigit())).then_some(etag)
}

/// The file's bytes as the request body: `left` bytes in chunks, the last one released only
/// once the file is seen unchanged.
struct Body {
    file: tokio::fs::File,
    path: std::path::PathBuf,
    left: u64,
    before: Stamp,
    found: Arc<AtomicU8>,
    sent: Arc<std::sync::Mutex<Md5>>,
    started: Instant,
    /// When a chunk was last handed to the request, in ms after `started`.
    moved: Arc<AtomicU64>,
}

impl Body {
    fn into_stream(self) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send {
        futures::stream::try_unfold(self, |mut body| async move {
            if body.left == 0 {
                return Ok(None);
            }
            let want = body.left.min(CHUNK as u64) as usize;
            let mut chunk = BytesMut::with_capacity(want);
            while chunk.len() < want {
                let mut limited = (&mut body.file).take((want - chunk.len()) as u64);
                if limited.read_buf(&mut chunk).await? == 0 {
                    // Shorter than listed: it changed.
                    return Err(body.refuse(CHANGED));
                }
            }
            body.left -= want as u64;
            if body.left == 0 {
                // The last chunk goes only if the file is still the one listed.
                match tokio::fs::metadata(&body.path).await {
                    Ok(m) if Stamp::of_local(&m) == body.before => {}
                    Ok(_) => return Err(body.refuse(CHANGED)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return Err(body.refuse(GONE));
                    }
                    Err(e) => return Err(e),
                }
            }
            body.sent.lock().expect("hash").update(&chunk);
            let now = body.started.elapsed().as_millis() as u64;
            body.moved.store(now, Ordering::Relaxed);
            Ok(Some((chunk.freeze(), body)))
        })
    }

    fn refuse(&self, why: u8) -> std::io::Error {
        self.found.store(why, Ordering::SeqCst);
        std::io::Error::other("the source file changed while it was uploaded")
    }
}

/// A transport error without its URL (which holds the presigned signature).
fn http_error(e: reqwest::Error) -> object_store::Error {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    object_store::Error::Generic {
        store: "S3",
        source: text.into(),
    }
}

/// An S3 error response (`<Error><Code>…</Code><Message>…</Message></Error>`) as one line.
fn s3_error(status: reqwest::StatusCode, body: &str) -> object_store::Error {
    let field = |tag: &str| {
        let open = format!("<{tag}>");
        let start = body.find(&open)? + open.len();
        let end = body[start..].find(&format!("</{tag}>"))? + start;
        Some(
            body[start..end]
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
        )
    };
    let text = match (field("Code"), field("Message")) {
        (Some(code), Some(message)) => format!("PUT failed with {status}: {code}: {message}"),
        (Some(code), None) => format!("PUT failed with {status}: {code}"),
        _ => format!("PUT failed with {status}"),
    };
    object_store::Error::Generic {
        store: "S3",
        source: crate::error::one_line(&text).into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against the moto S3 server: a file that changes, shrinks or goes while it is streamed
    /// never replaces what is at the name; an unchanged one arrives whole, in one `PUT`.
    #[tokio::test]
    async fn a_changed_file_never_appears_half_written() {
        let moto = replicator_tests::servers::Moto::shared();
        let url = format!("{}/up", moto.bucket("upload-streamed"));
        let target = crate::TableLocation::parse_with(&url, moto.options()).unwrap();
        let signer = target.signer().expect("plain S3 presigns").clone();
        let store = target.object_store().clone();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f.bin");
        let content: Vec<u8> = (0..3 * CHUNK + 17).map(|i| (i % 251) as u8).collect();
        std::fs::write(&file, &content).unwrap();
        let stamp = || Stamp::of_local(&std::fs::metadata(&file).unwrap());
        let to = target.object_path("dir/f.bin");
        store.put(&to, b"old".to_vec().into()).await.unwrap();
        let at_name = async || store.get(&to).await.unwrap().bytes().await.unwrap();
        let put = async |listed: &Stamp| {
            put_file(signer.as_ref(), store.as_ref(), &to, &file, listed, STALLED).await
        };

        // Changed after it was listed (same size, another stamp): three chunks go, the last
        // is held back, the request never completes.
        let mut listed = stamp();
        listed.etag = Some("another version".into());
        assert!(matches!(put(&listed).await, Err(Attempt::Changed)));
        assert_eq!(at_name().await.as_ref(), b"old");

        // Shrunk after it was listed: the body ends short of its length.
        let listed = stamp();
        std::fs::write(&file, &content[..CHUNK + 5]).unwrap();
        assert!(matches!(put(&listed).await, Err(Attempt::Changed)));
        assert_eq!(at_name().await.as_ref(), b"old");

        // Gone.
        std::fs::remove_file(&file).unwrap();
        assert!(matches!(put(&listed).await, Err(Attempt::Gone)));

        // Unchanged: the whole file, in one `PUT` (its ETag is its MD5, not a multipart one).
        std::fs::write(&file, &content).unwrap();
        assert!(put(&stamp()).await.is_ok());
        assert_eq!(at_name().await.as_ref(), &content[..]);
        let etag = store.head(&to).await.unwrap().e_tag.unwrap();
        assert_eq!(
            etag.trim_matches('"'),
            format!("{:x}", Md5::digest(&content))
        );
    }

    /// Signs every request to one URL (a test server).
    #[derive(Debug)]
    struct To(url::Url);

    #[async_trait::async_trait]
    impl Signer for To {
        async fn signed_url(
            &self,
            _: reqwest::Method,
            _: &Path,
            _: Duration,
        ) -> object_store::Result<url::Url> {
            Ok(self.0.clone())
        }
    }

    /// A store that accepts the connection and never reads: the upload is abandoned once
    /// nothing moved for the stall time, and fails as a store error naming the object.
    #[tokio::test]
    async fn a_stalled_upload_is_abandoned() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let held = std::thread::spawn(move || listener.accept().map(|(s, _)| s));
        let signer = To(format!("http://127.0.0.1:{port}/b/k").parse().unwrap());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f.bin");
        // Far more than the loopback socket buffers take in without the peer reading.
        std::fs::write(&file, vec![7u8; 64 << 20]).unwrap();
        let listed = Stamp::of_local(&std::fs::metadata(&file).unwrap());
        let store = object_store::memory::InMemory::new();
        let key = Path::from("b/k");
        let put = put_file(
            &signer,
            &store,
            &key,
            &file,
            &listed,
            Duration::from_secs(1),
        );
        // A guard against a hang, not a measurement: the stall is found after about 1 s.
        let r = tokio::time::timeout(Duration::from_secs(60), put)
            .await
            .expect("the stalled upload was never abandoned");
        match r {
            Err(Attempt::Failed(e)) => {
                let e = e.to_string();
                assert!(e.contains("upload stalled") && e.contains("b/k"), "{e}");
            }
            _ => panic!("a stalled upload must fail"),
        }
        drop(held.join());
    }

    #[test]
    fn etags_that_are_md5s() {
        use reqwest::header::{ETAG, HeaderMap, HeaderValue};
        let mut h = HeaderMap::new();
        h.insert(
            ETAG,
            HeaderValue::from_static("\"9E107D9D372BB6826BD81D3542A419D6\""),
        );
        assert_eq!(
            plain_etag(&h).as_deref(),
            Some("9e107d9d372bb6826bd81d3542a419d6")
        );
        h.insert(
            "x-amz-server-side-encryption",
            HeaderValue::from_static("AES256"),
        );
        assert!(plain_etag(&h).is_some());
        h.insert(
            "x-amz-server-side-encryption",
            HeaderValue::from_static("aws:kms"),
        );
        assert_eq!(plain_etag(&h), None);
        let mut multipart = HeaderMap::new();
        multipart.insert(
            ETAG,
            HeaderValue::from_static("\"9e107d9d372bb6826bd81d3542a419d6-3\""),
        );
        assert_eq!(plain_etag(&multipart), None);
    }

    #[test]
    fn s3_errors_are_one_line() {
        let body = "<?xml version=\"1.0\"?>\n<Error><Code>AccessDenied</Code>\n<Message>Access\nDenied</Message></Error>";
        let e = s3_error(reqwest::StatusCode::FORBIDDEN, body).to_string();
        assert!(e.contains("AccessDenied: Access Denied"), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }
}
