//! Copying one volume file, atomically and only as one whole version of the source.
//!
//! Every way of copying places the file under its final name in one step, and only after
//! checking that the source still has the stamp it was listed with:
//!
//! - local → local: the filesystem's copy (`copy_file_range`, a reflink where possible) into
//!   the target's staging directory, the source `stat`ed again, then a rename;
//! - into a local target from another store: streamed into a staged file, the source's stamp
//!   checked, then a rename;
//! - within one object store: a server-side copy (atomic on the store), then the source's
//!   stamp checked (a changed source means the copy is redone);
//! - into an object store from elsewhere: a small file is read whole, checked, then put; a
//!   local file up to `upload_cutoff` into S3 is streamed into one `PUT` whose last chunk is
//!   sent only after the check ([`super::upload`]); a larger one is read in ranges of
//!   `part_size` and uploaded as a multipart upload that is completed (made visible,
//!   atomically) only after the check, and aborted otherwise.
//!
//! Reads from an object store also carry `If-Match` with the listed ETag, so a source
//! replaced mid-copy fails the read at once. A change means another attempt with the new
//! stamp; after [`ATTEMPTS`] the file fails with [`LakeError::SourceChanged`].

use std::ops::Range;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use futures::stream::FuturesUnordered;
use futures::{StreamExt, stream};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload};
use replicator_common::shutdown::CancellationToken;
use tokio::sync::Semaphore;

use super::listing::Stamp;
use super::manifest::Entry;
use crate::clone::{STAGING_DIR, copy_file, staged_file};
use crate::{LakeError, TableLocation};

/// Attempts at copying a file whose source keeps changing.
pub(crate) const ATTEMPTS: u32 = 3;

/// Parts of one multipart copy being uploaded at once; with the part being read and the part
/// waiting for a slot, a large file holds at most `UPLOADS_IN_FLIGHT + 2` parts. Four, as
/// rclone's `--s3-upload-concurrency`: against a store that answers each request slowly
/// (moto; a distant region), parts in flight hide the latency (bench/RESULTS.md, volumes).
const UPLOADS_IN_FLIGHT: usize = 4;

/// Large files streamed into one `PUT` each at once, whatever the parallelism: four, as
/// rclone's `--transfers`. Against a store that answers slowly per byte (moto: 20 × 100 MB in
/// 8.1 s with four at once, 9.7 s with sixteen) more only share the same bandwidth.
pub(crate) const STREAMS_AT_ONCE: usize = 4;

/// Parts of memory one multipart copy reserves from the budget.
const PARTS_HELD: u32 = UPLOADS_IN_FLIGHT as u32 + 2;

/// What became of one file.
pub(crate) enum Outcome {
    Copied(Entry),
    /// The source file was deleted after it was listed: nothing was copied.
    Vanished,
}

/// Why one attempt did not place the file.
pub(super) enum Attempt {
    Changed,
    Gone,
    Failed(LakeError),
}

impl From<LakeError> for Attempt {
    fn from(e: LakeError) -> Self {
        Self::Failed(e)
    }
}

/// Copies files of one volume into another.
pub(crate) struct Copier {
    pub source: TableLocation,
    pub target: TableLocation,
    pub part_size: u64,
    /// A local file up to this size goes into an S3 target as one streamed `PUT`
    /// ([`super::upload`]), not a multipart upload.
    pub upload_cutoff: u64,
    /// Streamed `PUT`s in flight ([`STREAMS_AT_ONCE`]).
    pub streams: Arc<Semaphore>,
    /// Buffer memory, in MiB, shared by every copy in flight.
    pub budget: Arc<Semaphore>,
    pub budget_mib: u32,
    pub cancel: CancellationToken,
}

fn mib(bytes: u64) -> u32 {
    bytes.div_ceil(1 << 20).max(1) as u32
}

impl Copier {
    /// The memory budget for `part_size`: room for two large files at once (96 MiB at
    /// the default part size, the clone's budget).
    pub(crate) fn budget_for(part_size: u64) -> u32 {
        (2 * PARTS_HELD * mib(part_size)).max(96)
    }

    /// Copy `relative`, listed in the source as `listed`.
    pub(crate) async fn copy(&self, relative: &str, listed: Stamp) -> Result<Outcome, LakeError> {
        let from = self.source.object_path(relative);
        let mut before = listed;
        for _ in 0..ATTEMPTS {
            match self.attempt(relative, &from, &before).await {
                Ok(dst) => return Ok(Outcome::Copied(Entry { src: before, dst })),
                Err(Attempt::Gone) => return Ok(Outcome::Vanished),
                Err(Attempt::Failed(e)) => return Err(e),
                Err(Attempt::Changed) => match self.source_stamp(&from).await {
                    Ok(Some(now)) => {
                        tracing::debug!(
                            file = relative,
                            "source changed during its copy: copying it again"
                        );
                        before = now;
                    }
                    Ok(None) => return Ok(Outcome::Vanished),
                    Err(e) => return Err(e),
                },
            }
        }
        Err(LakeError::SourceChanged {
            path: format!("{}{relative}", self.source.url()),
            attempts: ATTEMPTS,
        })
    }

    /// The source's stamp now; `None` when it is gone.
    async fn source_stamp(&self, from: &Path) -> Result<Option<Stamp>, LakeError> {
        match self.source.object_store().head(from).await {
            Ok(m) => Ok(Some(Stamp::of(&m))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(LakeError::store(from, e)),
        }
    }

    /// After a failed read or copy: a changed or deleted source explains it.
    async fn explain(&self, from: &Path, before: &Stamp, error: LakeError) -> Attempt {
        match self.source_stamp(from).await {
            Ok(Some(now)) if &now != before => Attempt::Changed,
            Ok(Some(_)) => Attempt::Failed(error),
            Ok(None) => Attempt::Gone,
            Err(e) => Attempt::Failed(e),
        }
    }

    /// Fails with `Changed` unless the source still has the stamp `before`.
    async fn unchanged(&self, from: &Path, before: &Stamp) -> Result<(), Attempt> {
        match self.source_stamp(from).await? {
            Some(now) if &now == before => Ok(()),
            Some(_) => Err(Attempt::Changed),
            None => Err(Attempt::Gone),
        }
    }

    fn read_error(&self, from: &Path, e: object_store::Error) -> Attempt {
        match e {
            object_store::Error::Precondition { .. } => Attempt::Changed,
            object_store::Error::NotFound { .. } => Attempt::Gone,
            e => Attempt::Failed(LakeError::store(from, e)),
        }
    }

    async fn attempt(&self, relative: &str, from: &Path, before: &Stamp) -> Result<Stamp, Attempt> {
        if self.cancel.is_cancelled() {
            return Err(Attempt::Failed(LakeError::Invalid(
                "volume sync interrupted".into(),
            )));
        }
        let to = self.target.object_path(relative);
        if let Some(dir) = self.target.local_dir() {
            let (dest, staging) = (dir.join(relative), dir.join(STAGING_DIR));
            if let Some(src_dir) = self.source.local_dir() {
                let (src, before) = (src_dir.join(relative), before.clone());
                return tokio::task::spawn_blocking(move || {
                    local_to_local(&src, &dest, &staging, &before)
                })
                .await
                .map_err(|e| {
                    Attempt::Failed(LakeError::Invalid(format!("copy task failed: {e}")))
                })?;
            }
            return self.download(from, before, &dest, &staging).await;
        }
        let store = self.target.object_store();
        if Arc::ptr_eq(self.source.object_store(), store) {
            // Server-side: atomic on the store, but of whatever version the source had then.
            if let Err(e) = store.copy(from, &to).await {
                let e = LakeError::store(&to, e);
                return Err(self.explain(from, before, e).await);
            }
            self.unchanged(from, before).await?;
        } else if before.size <= self.part_size {
            let _buffers = self.reserve(mib(before.size)).await;
            let bytes = self
                .source
                .object_store()
                .get_opts(from, if_match(before, None))
                .await
                .map_err(|e| self.read_error(from, e))?
                .bytes()
                .await
                .map_err(|e| self.read_error(from, e))?;
            self.unchanged(from, before).await?;
            store
                .put(&to, PutPayload::from(bytes))
                .await
                .map_err(|e| Attempt::Failed(LakeError::store(&to, e)))?;
        } else if let (Some(signer), Some(dir)) = (self.target.signer(), self.source.local_dir())
            && before.size <= self.upload_cutoff
        {
            let _stream = self.streams.acquire().await.expect("never closed");
            let _buffers = self.reserve(super::upload::HELD_MIB).await;
            let file = dir.join(relative);
            let stalled = super::upload::STALLED;
            super::upload::put_file(signer.as_ref(), store.as_ref(), &to, &file, before, stalled)
                .await?;
        } else {
            let _buffers = self.reserve(PARTS_HELD * mib(self.part_size)).await;
            self.multipart(from, &to, before).await?;
        }
        let placed = store
            .head(&to)
            .await
            .map_err(|e| Attempt::Failed(LakeError::store(&to, e)))?;
        check_size(&to, before.size, placed.size)?;
        Ok(Stamp::of(&placed))
    }

    async fn reserve(&self, mib: u32) -> tokio::sync::SemaphorePermit<'_> {
        self.budget
            .acquire_many(mib.min(self.budget_mib))
            .await
            .expect("the budget is never closed")
    }

    /// Stream the source into a staged file of a local target, check, rename into place.
    async fn download(
        &self,
        from: &Path,
        before: &Stamp,
        dest: &FsPath,
        staging: &FsPath,
    ) -> Result<Stamp, Attempt> {
        use tokio::io::AsyncWriteExt;
        let io = |p: &FsPath, e: std::io::Error| Attempt::Failed(local_error(p, e));
        let staged = staged_file(staging, dest).map_err(|e| io(dest, e))?;
        let result = async {
            let mut file = tokio::fs::File::create(&staged)
                .await
                .map_err(|e| io(&staged, e))?;
            let mut body = self
                .source
                .object_store()
                .get_opts(from, if_match(before, None))
                .await
                .map_err(|e| self.read_error(from, e))?
                .into_stream();
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| self.read_error(from, e))?;
                file.write_all(&chunk).await.map_err(|e| io(&staged, e))?;
            }
            file.flush().await.map_err(|e| io(&staged, e))?;
            drop(file);
            self.unchanged(from, before).await?;
            place(&staged, dest, before.size).map_err(Attempt::Failed)
        }
        .await;
        if result.is_err() {
            let _ = std::fs::remove_file(&staged);
        }
        result
    }

    /// Ranged reads of `part_size` uploaded as parts; completed only if the source is
    /// unchanged at the end, aborted otherwise.
    async fn multipart(&self, from: &Path, to: &Path, before: &Stamp) -> Result<(), Attempt> {
        let target = self.target.object_store();
        let mut upload = target
            .put_multipart(to)
            .await
            .map_err(|e| Attempt::Failed(LakeError::store(to, e)))?;
        let result = async {
            let ranges = (0..before.size.div_ceil(self.part_size))
                .map(|i| i * self.part_size..((i + 1) * self.part_size).min(before.size));
            let source = self.source.object_store().clone();
            let reads: Vec<_> = ranges
                .map(|r| read_range(source.clone(), from.clone(), before, r))
                .collect();
            let mut reads = stream::iter(reads).buffered(1);
            let mut uploads = FuturesUnordered::new();
            while let Some(part) = reads.next().await {
                let part = part.map_err(|e| self.read_error(from, e))?;
                if self.cancel.is_cancelled() {
                    return Err(Attempt::Failed(LakeError::Invalid(
                        "volume sync interrupted".into(),
                    )));
                }
                while uploads.len() >= UPLOADS_IN_FLIGHT {
                    if let Some(Err(e)) = uploads.next().await {
                        return Err(Attempt::Failed(LakeError::store(to, e)));
                    }
                }
                uploads.push(upload.put_part(PutPayload::from(part)));
            }
            while let Some(done) = uploads.next().await {
                done.map_err(|e| Attempt::Failed(LakeError::store(to, e)))?;
            }
            self.unchanged(from, before).await
        }
        .await;
        match result {
            Ok(()) => {
                upload
                    .complete()
                    .await
                    .map_err(|e| Attempt::Failed(LakeError::store(to, e)))?;
                Ok(())
            }
            Err(a) => {
                if let Err(e) = upload.abort().await {
                    tracing::warn!(path = %to, error = %crate::error::one_line(&e.to_string()), "could not abort a multipart upload");
                }
                Err(a)
            }
        }
    }
}

fn if_match(before: &Stamp, range: Option<Range<u64>>) -> GetOptions {
    GetOptions {
        if_match: before.etag.clone(),
        range: range.map(GetRange::Bounded),
        ..Default::default()
    }
}

async fn read_range(
    store: Arc<dyn ObjectStore>,
    from: Path,
    before: &Stamp,
    range: Range<u64>,
) -> Result<bytes::Bytes, object_store::Error> {
    store
        .get_opts(&from, if_match(before, Some(range)))
        .await?
        .bytes()
        .await
}

fn check_size(path: &dyn std::fmt::Display, expected: u64, actual: u64) -> Result<(), Attempt> {
    if expected == actual {
        return Ok(());
    }
    Err(Attempt::Failed(LakeError::SizeMismatch {
        path: path.to_string(),
        expected,
        actual,
    }))
}

pub(super) fn local_error(path: &FsPath, e: std::io::Error) -> LakeError {
    LakeError::Store {
        path: path.display().to_string(),
        source: object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(e),
        },
    }
}

/// Rename a staged file into place (creating its directory); its stamp there.
fn place(staged: &FsPath, dest: &FsPath, size: u64) -> Result<Stamp, LakeError> {
    let parent = dest.parent().unwrap_or(dest);
    std::fs::create_dir_all(parent).map_err(|e| local_error(parent, e))?;
    std::fs::rename(staged, dest).map_err(|e| local_error(dest, e))?;
    let meta = std::fs::metadata(dest).map_err(|e| local_error(dest, e))?;
    if meta.len() != size {
        return Err(LakeError::SizeMismatch {
            path: dest.display().to_string(),
            expected: size,
            actual: meta.len(),
        });
    }
    Ok(Stamp::of_local(&meta))
}

/// The whole local → local copy of one file, on a blocking thread.
fn local_to_local(
    src: &FsPath,
    dest: &FsPath,
    staging: &FsPath,
    before: &Stamp,
) -> Result<Stamp, Attempt> {
    let stamp = |p: &FsPath| match std::fs::metadata(p) {
        Ok(m) => Ok(Stamp::of_local(&m)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Attempt::Gone),
        Err(e) => Err(Attempt::Failed(local_error(p, e))),
    };
    if &stamp(src)? != before {
        return Err(Attempt::Changed);
    }
    let staged: PathBuf =
        staged_file(staging, dest).map_err(|e| Attempt::Failed(local_error(dest, e)))?;
    let copied = copy_file(src, &staged);
    let result = match (copied, stamp(src)) {
        (_, Err(a)) => Err(a),
        (Ok(()), Ok(after)) if &after == before => {
            place(&staged, dest, before.size).map_err(Attempt::Failed)
        }
        (_, Ok(after)) if &after != before => Err(Attempt::Changed),
        (Ok(()), Ok(_)) => Err(Attempt::Changed),
        (Err(e), Ok(_)) => Err(Attempt::Failed(local_error(src, e))),
    };
    if result.is_err() {
        let _ = std::fs::remove_file(&staged);
    }
    result
}
