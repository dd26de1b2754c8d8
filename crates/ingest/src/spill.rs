//! `(key, row hash, tag)` records hash-partitioned by key, in buffers that spill to
//! anonymous temporary files past a chunk; each partition is read back whole on its own, so
//! memory holds one chunk per partition plus the partition being joined. The tag is the
//! record's origin: a target file's index, or a source row's ordinal.

use std::io::{BufReader, Read, Seek, Write};

use twox_hash::XxHash3_64;

use crate::error::IngestError;

const PARTITION_SEED: u64 = 0x1a6e_5717;

fn spill_err(e: std::io::Error) -> IngestError {
    IngestError::Data {
        table: "(spill)".into(),
        detail: format!("cannot use a temporary spill file: {e}"),
    }
}

pub(crate) struct Spill {
    buffers: Vec<Vec<u8>>,
    files: Vec<Option<std::fs::File>>,
    chunk: usize,
    pub(crate) spilled: u64,
}

impl Spill {
    pub(crate) fn new(partitions: usize, chunk: usize) -> Self {
        Self {
            buffers: (0..partitions.max(1)).map(|_| Vec::new()).collect(),
            files: (0..partitions.max(1)).map(|_| None).collect(),
            chunk,
            spilled: 0,
        }
    }

    pub(crate) fn partitions(&self) -> usize {
        self.buffers.len()
    }

    fn partition_of(&self, key: &[u8]) -> usize {
        let h = XxHash3_64::oneshot_with_seed(PARTITION_SEED, key);
        ((h as u128 * self.buffers.len() as u128) >> 64) as usize
    }

    pub(crate) fn push(&mut self, key: &[u8], hash: u64, tag: u64) -> Result<(), IngestError> {
        let len = u16::try_from(key.len()).map_err(|_| IngestError::Data {
            table: "(keys)".into(),
            detail: format!(
                "a primary key value takes {} bytes; at most 65535 are supported",
                key.len()
            ),
        })?;
        let p = self.partition_of(key);
        let b = &mut self.buffers[p];
        b.extend_from_slice(&len.to_le_bytes());
        b.extend_from_slice(key);
        b.extend_from_slice(&hash.to_le_bytes());
        b.extend_from_slice(&tag.to_le_bytes());
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

    /// Everything pushed to partition `p`, in order, read whole.
    pub(crate) fn take(&mut self, p: usize) -> Result<Records, IngestError> {
        let rest = std::mem::take(&mut self.buffers[p]);
        let mut data = Vec::new();
        if let Some(mut f) = self.files[p].take() {
            f.rewind().map_err(spill_err)?;
            BufReader::with_capacity(1 << 20, f)
                .read_to_end(&mut data)
                .map_err(spill_err)?;
        }
        data.extend_from_slice(&rest);
        Ok(Records { data })
    }
}

/// One partition's records.
pub(crate) struct Records {
    data: Vec<u8>,
}

impl Records {
    /// `(key, hash, tag)` of each record, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&[u8], u64, u64)> + '_ {
        let d = &self.data;
        let mut o = 0;
        std::iter::from_fn(move || {
            if o + 2 > d.len() {
                return None;
            }
            let len = u16::from_le_bytes([d[o], d[o + 1]]) as usize;
            let k = &d[o + 2..o + 2 + len];
            let h = u64::from_le_bytes(d[o + 2 + len..o + 10 + len].try_into().expect("8 bytes"));
            let t = u64::from_le_bytes(d[o + 10 + len..o + 18 + len].try_into().expect("8 bytes"));
            o += 18 + len;
            Some((k, h, t))
        })
    }

    pub(crate) fn len_bytes(&self) -> usize {
        self.data.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_come_back_from_memory_and_disk() {
        let mut s = Spill::new(3, 64);
        for i in 0..100u64 {
            s.push(&i.to_be_bytes(), i * 7, i).unwrap();
        }
        assert!(s.spilled > 0);
        let mut seen = Vec::new();
        for p in 0..s.partitions() {
            let r = s.take(p).unwrap();
            for (k, h, t) in r.iter() {
                assert_eq!(u64::from_be_bytes(k.try_into().unwrap()), t);
                assert_eq!(h, t * 7);
                seen.push(t);
            }
        }
        seen.sort();
        assert_eq!(seen, (0..100).collect::<Vec<_>>());
    }
}
