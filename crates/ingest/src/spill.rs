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

/// Which of a record's numbers are stored (a record without one reads it back as 0): key-only
/// scans need neither, a target read for its keys alone no row hash — less to spill and read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Layout {
    hash: bool,
    tag: bool,
}

impl Layout {
    fn size(self, key: usize) -> usize {
        2 + key + 8 * (usize::from(self.hash) + usize::from(self.tag))
    }
}

pub(crate) struct Spill {
    buffers: Vec<Vec<u8>>,
    files: Vec<Option<std::fs::File>>,
    chunk: usize,
    layout: Layout,
    pub(crate) spilled: u64,
}

impl Spill {
    /// Records of key, row hash and tag.
    pub(crate) fn new(partitions: usize, chunk: usize) -> Self {
        Self::with_layout(
            partitions,
            chunk,
            Layout {
                hash: true,
                tag: true,
            },
        )
    }

    /// Records of key and tag (the hash pushed is not kept).
    pub(crate) fn without_hash(partitions: usize, chunk: usize) -> Self {
        Self::with_layout(
            partitions,
            chunk,
            Layout {
                hash: false,
                tag: true,
            },
        )
    }

    /// Records of the key alone (the hash and tag pushed are not kept).
    pub(crate) fn keys_only(partitions: usize, chunk: usize) -> Self {
        Self::with_layout(
            partitions,
            chunk,
            Layout {
                hash: false,
                tag: false,
            },
        )
    }

    fn with_layout(partitions: usize, chunk: usize, layout: Layout) -> Self {
        Self {
            buffers: (0..partitions.max(1)).map(|_| Vec::new()).collect(),
            files: (0..partitions.max(1)).map(|_| None).collect(),
            chunk,
            layout,
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
        if self.layout.hash {
            b.extend_from_slice(&hash.to_le_bytes());
        }
        if self.layout.tag {
            b.extend_from_slice(&tag.to_le_bytes());
        }
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
            let len = f.seek(std::io::SeekFrom::End(0)).map_err(spill_err)?;
            data.reserve_exact(len as usize + rest.len());
            f.rewind().map_err(spill_err)?;
            BufReader::with_capacity(1 << 20, f)
                .read_to_end(&mut data)
                .map_err(spill_err)?;
        }
        data.extend_from_slice(&rest);
        Ok(Records {
            data,
            layout: self.layout,
        })
    }
}

/// One partition's records.
pub(crate) struct Records {
    data: Vec<u8>,
    layout: Layout,
}

impl Records {
    /// `(key, hash, tag)` of each record, in order (0 for a number the layout does not keep).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&[u8], u64, u64)> + '_ {
        let d = &self.data;
        let layout = self.layout;
        let mut o = 0;
        std::iter::from_fn(move || {
            if o + 2 > d.len() {
                return None;
            }
            let len = u16::from_le_bytes([d[o], d[o + 1]]) as usize;
            let k = &d[o + 2..o + 2 + len];
            o += 2 + len;
            // The next stored number, or 0 where the layout keeps none.
            let mut number = |stored: bool| {
                if !stored {
                    return 0;
                }
                o += 8;
                u64::from_le_bytes(d[o - 8..o].try_into().expect("8 bytes"))
            };
            let (h, t) = (number(layout.hash), number(layout.tag));
            Some((k, h, t))
        })
    }

    pub(crate) fn len_bytes(&self) -> usize {
        self.data.len()
    }

    /// About how many records there are, for sizing (exact when every key has `key_len` bytes).
    pub(crate) fn estimated_len(&self, key_len: usize) -> usize {
        self.data.len() / self.layout.size(key_len)
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

    #[test]
    fn records_keep_only_what_their_layout_stores() {
        for (mut s, hash, tag) in [
            (Spill::without_hash(2, 40), false, true),
            (Spill::keys_only(2, 40), false, false),
        ] {
            for i in 0..50u64 {
                // Keys of several lengths, every byte the record's number.
                s.push(&vec![i as u8; 1 + (i % 8) as usize], i * 7, i + 1)
                    .unwrap();
            }
            assert!(s.spilled > 0);
            let mut seen = Vec::new();
            for p in 0..s.partitions() {
                for (k, h, t) in s.take(p).unwrap().iter() {
                    let i = u64::from(k[0]);
                    assert_eq!(k, vec![i as u8; 1 + (i % 8) as usize]);
                    assert_eq!(h, if hash { i * 7 } else { 0 });
                    assert_eq!(t, if tag { i + 1 } else { 0 });
                    seen.push(i);
                }
            }
            seen.sort();
            assert_eq!(seen, (0..50).collect::<Vec<_>>());
        }
    }
}
