//! Deletion vectors (the Delta protocol's "Deletion Vector Format"): the rows of a target file
//! a deletion vector removes, read from the table, and the merge's own written as one file.
//!
//! Read: inline vectors (`i`) and vectors in a file beside the table (`u`: an optional prefix
//! and a Z85-encoded UUID naming `deletion_vector_<uuid>.bin` under the table root). A vector
//! at an absolute path (`p`) is refused: a path from the log never leaves the table's root.
//! Write: the kernel's `StreamingDeletionVectorWriter` (version byte, then per vector its size,
//! the RoaringBitmapArray magic, the portable bitmap and a CRC), in one file per commit.

use delta_kernel::actions::deletion_vector_writer::{
    KernelDeletionVector, StreamingDeletionVectorWriter,
};
use deltalake::kernel::{DeletionVectorDescriptor, StorageType};
use object_store::ObjectStoreExt;
use replicator_lake::TableLocation;
use roaring::RoaringTreemap;

use crate::error::IngestError;

/// The magic number of a RoaringBitmapArray in its portable serialization.
const MAGIC: u32 = 1_681_511_377;

/// The largest serialized deletion vector read.
const MAX_BYTES: u64 = 512 << 20;

/// The length of a Z85-encoded UUID.
const UUID_Z85: usize = 20;

fn invalid(table: &str, file: &str, why: impl std::fmt::Display) -> IngestError {
    IngestError::target(table, format!("file {file}: deletion vector {why}"))
}

/// The rows `d` deletes from `file` of the table at `loc`.
pub(crate) async fn read(
    loc: &TableLocation,
    file: &str,
    d: &DeletionVectorDescriptor,
) -> Result<RoaringTreemap, IngestError> {
    let table = loc.url().as_str();
    let bitmap = match d.storage_type {
        StorageType::Inline => z85::decode(&d.path_or_inline_dv)
            .map_err(|e| invalid(table, file, format!("inline data is not Z85: {e}")))?,
        StorageType::UuidRelativePath => {
            let rel = relative_path(&d.path_or_inline_dv)
                .ok_or_else(|| invalid(table, file, "has an unreadable path"))?;
            let offset = d.offset.unwrap_or(1).max(0) as u64;
            let size = u64::try_from(d.size_in_bytes)
                .map_err(|_| invalid(table, file, "has a negative size"))?;
            // A bitmap of every row of a file of 2^32 rows takes about 512 MiB; a larger
            // size in the log is not a deletion vector this merge will hold in memory.
            if size > MAX_BYTES {
                return Err(invalid(
                    table,
                    file,
                    format!("is {size} bytes, more than the {MAX_BYTES} a merge reads"),
                ));
            }
            let object = loc.object_path(&rel);
            let bytes = loc
                .object_store()
                .get_range(&object, offset..offset + 4 + size)
                .await
                .map_err(|e| invalid(table, file, format!("{rel}: {e}")))?;
            let stored = u32::from_be_bytes(bytes[..4].try_into().expect("four bytes"));
            if u64::from(stored) != size {
                return Err(invalid(
                    table,
                    file,
                    format!("{rel}: size {stored} where the log says {size}"),
                ));
            }
            bytes[4..].to_vec()
        }
        StorageType::AbsolutePath => {
            return Err(invalid(
                table,
                file,
                "is stored at an absolute path, which ingestion does not follow",
            ));
        }
    };
    let rows = parse(&bitmap).map_err(|e| invalid(table, file, e))?;
    if rows.len() != d.cardinality as u64 {
        return Err(invalid(
            table,
            file,
            format!(
                "holds {} rows where the log says {}",
                rows.len(),
                d.cardinality
            ),
        ));
    }
    Ok(rows)
}

/// The magic number, then a portable RoaringTreemap.
fn parse(bytes: &[u8]) -> Result<RoaringTreemap, String> {
    if bytes.len() < 4 {
        return Err("is truncated".into());
    }
    let magic = u32::from_le_bytes(bytes[..4].try_into().expect("four bytes"));
    if magic != MAGIC {
        return Err(format!("has magic {magic}, not a RoaringBitmapArray"));
    }
    RoaringTreemap::deserialize_from(&bytes[4..]).map_err(|e| e.to_string())
}

/// `<prefix><uuid>` → `<prefix>/deletion_vector_<uuid>.bin` (no prefix: no directory). The
/// prefix is a few letters and digits (Spark's random prefixes); anything else is refused.
fn relative_path(encoded: &str) -> Option<String> {
    let split = encoded.len().checked_sub(UUID_Z85)?;
    let (prefix, id) = (encoded.get(..split)?, encoded.get(split..)?);
    if !prefix.chars().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    let uuid = uuid::Uuid::from_slice(&z85::decode(id).ok()?).ok()?;
    Some(if prefix.is_empty() {
        format!("deletion_vector_{uuid}.bin")
    } else {
        format!("{prefix}/deletion_vector_{uuid}.bin")
    })
}

/// The merge's deletion vectors, written into one file beside the table.
pub(crate) struct Written {
    /// Relative to the table root.
    pub path: String,
    pub bytes: Vec<u8>,
    pub descriptors: Vec<DeletionVectorDescriptor>,
}

/// Serialize `vectors` into one deletion-vector file with a new UUID.
pub(crate) fn write<'a>(
    table: &str,
    vectors: impl IntoIterator<Item = &'a RoaringTreemap>,
) -> Result<Written, IngestError> {
    let uuid = uuid::Uuid::new_v4();
    let encoded = z85::encode(uuid.as_bytes());
    let mut bytes = Vec::new();
    let mut descriptors = Vec::new();
    {
        let mut w = StreamingDeletionVectorWriter::new(&mut bytes);
        for v in vectors {
            let mut dv = KernelDeletionVector::new();
            dv.add_deleted_row_indexes(v.iter());
            let r = w
                .write_deletion_vector(dv)
                .map_err(|e| IngestError::target(table, format!("deletion vector: {e}")))?;
            descriptors.push(DeletionVectorDescriptor {
                storage_type: StorageType::UuidRelativePath,
                path_or_inline_dv: encoded.clone(),
                offset: Some(r.offset),
                size_in_bytes: r.size_in_bytes,
                cardinality: r.cardinality,
            });
        }
        w.finalize()
            .map_err(|e| IngestError::target(table, format!("deletion vector: {e}")))?;
    }
    Ok(Written {
        path: format!("deletion_vector_{uuid}.bin"),
        bytes,
        descriptors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn written_vectors_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let loc = TableLocation::parse(dir.path().to_str().unwrap()).unwrap();
        let a: RoaringTreemap = [0u64, 5, 6, 7, 100_000].into_iter().collect();
        let b: RoaringTreemap = (10u64..20).chain([5_000_000_000]).collect();
        let w = write("t", [&a, &b]).unwrap();
        std::fs::write(dir.path().join(&w.path), &w.bytes).unwrap();
        assert_eq!(
            relative_path(&w.descriptors[0].path_or_inline_dv).unwrap(),
            w.path
        );
        assert_eq!(read(&loc, "f", &w.descriptors[0]).await.unwrap(), a);
        assert_eq!(read(&loc, "f", &w.descriptors[1]).await.unwrap(), b);

        // A count that does not match the log, and paths that would leave the root.
        let mut wrong = w.descriptors[0].clone();
        wrong.cardinality = 4;
        let e = read(&loc, "f", &wrong).await.unwrap_err().to_string();
        assert!(e.contains("holds 5 rows where the log says 4"), "{e}");
        assert!(relative_path("../x").is_none());
        assert!(relative_path(&format!("a/{}", &wrong.path_or_inline_dv)).is_none());
        let mut huge = w.descriptors[0].clone();
        huge.size_in_bytes = i32::MAX;
        let e = read(&loc, "f", &huge).await.unwrap_err().to_string();
        assert!(e.contains("more than the"), "{e}");
        let mut absolute = w.descriptors[0].clone();
        absolute.storage_type = StorageType::AbsolutePath;
        absolute.path_or_inline_dv = "file:///etc/passwd".into();
        assert!(read(&loc, "f", &absolute).await.is_err());
    }
}
