//! A map from 32-byte ids to small fixed-size values, too large to hold in memory: built once
//! (records spilled to disk in sorted runs, as [`crate::IdSet`] spills ids), then merged into
//! one sorted file that answers lookups in any order with one positioned read each.
//!
//! Memory: the build buffer while building; afterwards a sparse index of every
//! [`STRIDE`]th key (1/64 of the keys), a Bloom filter of about 10 bits per key (so that most
//! lookups of an absent id read nothing), and one stride of records per lookup. The records
//! live in an anonymous temporary file (nothing named is left behind), read with `pread`, so
//! the page cache holds them, not the process.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, Write};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use crate::Id;

/// Records per sparse-index entry: a lookup reads this many records (3 KiB of 48-byte ones).
pub const STRIDE: usize = 64;

/// Builds a [`Table`] of records of `N` bytes, each an id (the first 32 bytes) and its value.
#[derive(Debug)]
pub struct TableBuilder<const N: usize> {
    dir: PathBuf,
    buf: Vec<[u8; N]>,
    cap: usize,
    runs: Vec<File>,
}

/// A finished table: records sorted by id, one per id (the first inserted wins). The default
/// is the empty table.
#[derive(Debug, Default)]
pub struct Table<const N: usize> {
    file: Option<File>,
    len: usize,
    /// The first id of every `STRIDE` records.
    sparse: Vec<Id>,
    bloom: Bloom,
}

/// A Bloom filter over ids that are hashes already: its probes are the id's own bits.
#[derive(Debug, Default)]
struct Bloom {
    bits: Vec<u64>,
}

impl Bloom {
    /// About 10 bits per id for `ids` ids (1% false positives with 4 probes).
    fn with_capacity(ids: usize) -> Bloom {
        let bits = (ids.saturating_mul(10)).next_power_of_two().max(64);
        Bloom {
            bits: vec![0; bits / 64],
        }
    }

    fn probes(&self, id: &Id) -> impl Iterator<Item = (usize, u64)> + use<> {
        let mask = (self.bits.len() * 64 - 1) as u64;
        let id = *id;
        (0..4).map(move |i| {
            let p = u64::from_le_bytes(id[i * 8..i * 8 + 8].try_into().expect("8 bytes")) & mask;
            ((p >> 6) as usize, 1 << (p & 63))
        })
    }

    fn insert(&mut self, id: &Id) {
        for (word, bit) in self.probes(id) {
            self.bits[word] |= bit;
        }
    }

    fn may_contain(&self, id: &Id) -> bool {
        !self.bits.is_empty()
            && self
                .probes(id)
                .all(|(word, bit)| self.bits[word] & bit != 0)
    }
}

impl<const N: usize> TableBuilder<N> {
    /// A builder that spills into anonymous files in `dir` once `cap` records are buffered.
    pub fn new(dir: &Path, cap: usize) -> Self {
        const { assert!(N >= 32, "a record starts with its 32-byte id") };
        TableBuilder {
            dir: dir.to_owned(),
            buf: Vec::new(),
            cap: cap.max(1),
            runs: Vec::new(),
        }
    }

    /// A builder that starts with `table`'s records (kept before anything inserted later:
    /// its file becomes the first run, nothing is copied until [`TableBuilder::finish`]).
    pub fn from_table(table: Table<N>, dir: &Path, cap: usize) -> io::Result<Self> {
        let mut builder = TableBuilder::new(dir, cap);
        if let Some(mut file) = table.file {
            file.rewind()?;
            builder.runs.push(file);
        }
        Ok(builder)
    }

    /// Adds `value` for `id`. Of several values for one id, the first inserted is kept.
    pub fn insert(&mut self, id: &Id, value: &[u8]) -> io::Result<()> {
        assert_eq!(value.len(), N - 32, "a value of the table's width");
        if self.buf.len() >= self.cap {
            self.spill()?;
        }
        let mut record = [0; N];
        record[..32].copy_from_slice(id);
        record[32..].copy_from_slice(value);
        self.buf.push(record);
        Ok(())
    }

    /// Sorts the buffer by id (stably: the first inserted of an id first) and drops repeats.
    fn sort(&mut self) {
        self.buf.sort_by(|a, b| a[..32].cmp(&b[..32]));
        self.buf.dedup_by(|b, a| a[..32] == b[..32]);
    }

    fn spill(&mut self) -> io::Result<()> {
        self.sort();
        let file = tempfile::tempfile_in(&self.dir)?;
        let mut out = BufWriter::with_capacity(RUN_BUF, file);
        for r in &self.buf {
            out.write_all(r)?;
        }
        let mut file = out.into_inner().map_err(io::IntoInnerError::into_error)?;
        file.rewind()?;
        self.runs.push(file);
        self.buf.clear();
        Ok(())
    }

    /// Merges what was inserted into one sorted file.
    pub fn finish(mut self) -> io::Result<Table<N>> {
        self.sort();
        if self.runs.is_empty() && self.buf.is_empty() {
            return Ok(Table::default());
        }
        // At most this many ids (fewer when some repeat).
        let mut most = self.buf.len();
        for run in &self.runs {
            most += (run.metadata()?.len() / N as u64) as usize;
        }
        // Runs in the order written, then the buffer (inserted last): ties go to the earliest.
        let mut sources: Vec<Box<dyn Iterator<Item = io::Result<[u8; N]>>>> = Vec::new();
        for run in self.runs.drain(..) {
            let mut reader = BufReader::with_capacity(RUN_BUF, run);
            sources.push(Box::new(std::iter::from_fn(move || {
                let mut r = [0; N];
                match reader.read_exact(&mut r) {
                    Ok(()) => Some(Ok(r)),
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => None,
                    Err(e) => Some(Err(e)),
                }
            })));
        }
        sources.push(Box::new(std::mem::take(&mut self.buf).into_iter().map(Ok)));
        // Ordered by id, then by source: the earliest source wins among equal ids (the record
        // itself is never compared, as no two entries share both).
        let id_of = |r: &[u8; N]| -> Id { r[..32].try_into().expect("32 bytes") };
        let mut heap = BinaryHeap::new();
        for (i, s) in sources.iter_mut().enumerate() {
            if let Some(r) = s.next().transpose()? {
                heap.push(Reverse((id_of(&r), i, r)));
            }
        }
        let file = tempfile::tempfile_in(&self.dir)?;
        let mut out = BufWriter::with_capacity(RUN_BUF, file);
        let mut table = Table {
            file: None,
            len: 0,
            sparse: Vec::new(),
            bloom: Bloom::with_capacity(most),
        };
        let mut last: Option<Id> = None;
        while let Some(Reverse((id, i, r))) = heap.pop() {
            if let Some(next) = sources[i].next().transpose()? {
                heap.push(Reverse((id_of(&next), i, next)));
            }
            if last == Some(id) {
                continue;
            }
            last = Some(id);
            if table.len % STRIDE == 0 {
                table.sparse.push(id);
            }
            table.bloom.insert(&id);
            out.write_all(&r)?;
            table.len += 1;
        }
        table.file = Some(out.into_inner().map_err(io::IntoInnerError::into_error)?);
        Ok(table)
    }
}

/// Read and write buffer of a run.
const RUN_BUF: usize = 64 << 10;

impl<const N: usize> Table<N> {
    /// How many ids it holds.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every record, in order of id.
    pub fn records(&self) -> io::Result<impl Iterator<Item = io::Result<[u8; N]>> + use<N>> {
        let mut reader = match &self.file {
            Some(file) => {
                let mut file = file.try_clone()?;
                file.rewind()?;
                Some(BufReader::with_capacity(RUN_BUF, file))
            }
            None => None,
        };
        let mut left = self.len;
        Ok(std::iter::from_fn(move || {
            let reader = reader.as_mut()?;
            if left == 0 {
                return None;
            }
            left -= 1;
            let mut r = [0; N];
            Some(reader.read_exact(&mut r).map(|()| r))
        }))
    }

    /// The value of `id`, if the table holds it: one read of at most [`STRIDE`] records.
    pub fn get(&self, id: &Id) -> io::Result<Option<[u8; N]>> {
        let Some(file) = &self.file else {
            return Ok(None);
        };
        if !self.bloom.may_contain(id) {
            return Ok(None);
        }
        // The last stride whose first id is <= id.
        let stride = self.sparse.partition_point(|first| first <= id);
        if stride == 0 {
            return Ok(None);
        }
        let start = (stride - 1) * STRIDE;
        let count = STRIDE.min(self.len - start);
        let mut block = vec![0; count * N];
        file.read_exact_at(&mut block, (start * N) as u64)?;
        let records: Vec<&[u8]> = block.chunks_exact(N).collect();
        Ok(records
            .binary_search_by(|r| r[..32].cmp(id))
            .ok()
            .map(|i| records[i].try_into().expect("N bytes")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn id(n: u64) -> Id {
        let mut id = [0; 32];
        id[..8].copy_from_slice(&n.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
        id[31] = n as u8;
        id
    }

    #[test]
    fn finds_every_id_inserted_and_no_other_whatever_the_spilling() {
        let dir = tempfile::tempdir().unwrap();
        for cap in [1, 5, 64, 100_000] {
            let mut b = TableBuilder::<40>::new(dir.path(), cap);
            let mut expected = HashMap::new();
            for n in 0..3000u64 {
                let key = n % 1700; // repeats, across runs too: the first value stays
                b.insert(&id(key), &n.to_le_bytes()).unwrap();
                expected.entry(key).or_insert(n);
            }
            let t = b.finish().unwrap();
            assert_eq!(t.len(), 1700, "cap {cap}");
            for (key, n) in &expected {
                let r = t.get(&id(*key)).unwrap().expect("present");
                assert_eq!(r[..32], id(*key));
                assert_eq!(r[32..], n.to_le_bytes(), "cap {cap}: the first value wins");
            }
            for key in 1700..2000 {
                assert_eq!(t.get(&id(key)).unwrap(), None);
            }
            assert_eq!(
                t.get(&[0; 32])
                    .unwrap()
                    .map(|r| r[32..] == 0u64.to_le_bytes()),
                Some(true)
            );
            assert_eq!(t.get(&[0xff; 32]).unwrap(), None);
        }
        // Anonymous files: nothing is left in the directory.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn records_come_back_in_order_of_id() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = TableBuilder::<36>::new(dir.path(), 7);
        for n in (0..100u32).rev() {
            b.insert(&id(u64::from(n)), &n.to_le_bytes()).unwrap();
        }
        let t = b.finish().unwrap();
        let got: Vec<[u8; 36]> = t.records().unwrap().map(Result::unwrap).collect();
        assert_eq!(got.len(), 100);
        assert!(got.windows(2).all(|w| w[0][..32] < w[1][..32]));
        assert_eq!(t.records().unwrap().count(), 100, "read twice");
    }

    #[test]
    fn a_table_grows_by_merging_and_keeps_its_first_values() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = TableBuilder::<36>::new(dir.path(), 1000).finish().unwrap();
        for round in 0..5u32 {
            let mut b = TableBuilder::from_table(t, dir.path(), 1000).unwrap();
            for n in 0..100u32 {
                b.insert(&id(u64::from(round * 50 + n)), &round.to_le_bytes())
                    .unwrap();
            }
            t = b.finish().unwrap();
        }
        assert_eq!(t.len(), 4 * 50 + 100);
        for n in 0..300u32 {
            let r = t.get(&id(u64::from(n))).unwrap().unwrap();
            let first = if n < 100 { 0 } else { (n - 100) / 50 + 1 };
            assert_eq!(r[32..], first.to_le_bytes(), "{n}: the earliest round");
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn an_empty_table_holds_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let t = TableBuilder::<48>::new(dir.path(), 8).finish().unwrap();
        assert!(t.is_empty());
        assert_eq!(t.get(&id(1)).unwrap(), None);
    }
}
