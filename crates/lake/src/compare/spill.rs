//! The `(key, row hash)` records of one side, hash-partitioned by key, in buffers that
//! spill to anonymous temporary files past a chunk, read back whole per partition.

use std::io::{BufReader, Read, Seek, Write};

use twox_hash::XxHash3_64;

use crate::LakeError;

/// Records `(u16 key length, key, u64 row hash)`, hash-partitioned by key, in buffers that
/// spill to anonymous temporary files.
pub(super) struct Spill {
    pub(super) buffers: Vec<Vec<u8>>,
    pub(super) files: Vec<Option<std::fs::File>>,
    chunk: usize,
    /// Bytes written to the spill files.
    pub(super) spilled: u64,
}

impl Spill {
    pub(super) fn new(partitions: usize, chunk: usize) -> Self {
        Self {
            buffers: (0..partitions).map(|_| Vec::new()).collect(),
            files: (0..partitions).map(|_| None).collect(),
            chunk,
            spilled: 0,
        }
    }

    fn partition_of(&self, key: &[u8]) -> usize {
        let h = XxHash3_64::oneshot_with_seed(PARTITION_SEED, key);
        ((h as u128 * self.buffers.len() as u128) >> 64) as usize
    }

    pub(super) fn push(&mut self, key: &[u8], row_hash: u64) -> Result<(), LakeError> {
        let len = u16::try_from(key.len()).map_err(|_| {
            LakeError::Invalid(format!(
                "a primary key value takes {} bytes; at most 65535 are supported",
                key.len()
            ))
        })?;
        let p = self.partition_of(key);
        let b = &mut self.buffers[p];
        b.extend_from_slice(&len.to_le_bytes());
        b.extend_from_slice(key);
        b.extend_from_slice(&row_hash.to_le_bytes());
        if b.len() >= self.chunk {
            let file = match &mut self.files[p] {
                Some(f) => f,
                slot => slot.insert(tempfile::tempfile().map_err(spill_err)?),
            };
            file.write_all(b).map_err(spill_err)?;
            self.spilled += b.len() as u64;
            b.clear();
        }
        Ok(())
    }

    /// Everything written to partition `p`, in order.
    pub(super) fn take(&mut self, p: usize) -> Result<impl Read + use<>, LakeError> {
        let rest = std::io::Cursor::new(std::mem::take(&mut self.buffers[p]));
        let file = match self.files[p].take() {
            Some(mut f) => {
                f.rewind().map_err(spill_err)?;
                Some(BufReader::with_capacity(1 << 20, f))
            }
            None => None,
        };
        Ok(OptionalRead(file).chain(rest))
    }
}

const PARTITION_SEED: u64 = 0x9a27_1710;

struct OptionalRead<R>(Option<R>);

impl<R: Read> Read for OptionalRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.as_mut().map_or(Ok(0), |r| r.read(buf))
    }
}

pub(super) fn spill_err(e: std::io::Error) -> LakeError {
    LakeError::Invalid(format!("cannot use a temporary spill file: {e}"))
}

/// The records of a spilled partition, read whole, parsed in place.
pub(super) struct Records {
    pub(super) data: Vec<u8>,
}

impl Records {
    pub(super) fn read(mut r: impl Read) -> Result<Self, LakeError> {
        let mut data = Vec::new();
        r.read_to_end(&mut data).map_err(spill_err)?;
        Ok(Self { data })
    }

    /// The key and row hash of the record at byte `o`.
    pub(super) fn record_at(&self, o: usize) -> (&[u8], u64) {
        let d = &self.data;
        let len = u16::from_le_bytes([d[o], d[o + 1]]) as usize;
        let hash = u64::from_le_bytes(d[o + 2 + len..o + 10 + len].try_into().expect("8 bytes"));
        (&d[o + 2..o + 2 + len], hash)
    }

    /// `(offset, key, row hash)` of each record, in order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (usize, &[u8], u64)> + '_ {
        let mut o = 0;
        std::iter::from_fn(move || {
            if o + 2 > self.data.len() {
                return None;
            }
            let (at, (key, hash)) = (o, self.record_at(o));
            o += 10 + key.len();
            Some((at, key, hash))
        })
    }

    pub(super) fn key_at(&self, offset: u32) -> &[u8] {
        self.record_at(offset as usize).0
    }

    pub(super) fn hash_at(&self, offset: u32) -> u64 {
        self.record_at(offset as usize).1
    }
}
