//! Sets of 32-byte ids (objects, trees) too large to hold in memory: a store-wide pass over
//! millions of files must not keep a `HashSet` of every id.
//!
//! [`IdSet`] collects ids in a bounded buffer; when it fills, the buffer is sorted, deduplicated
//! and written to an anonymous temporary file (a sorted run). [`IdSet::finish`] merges the runs
//! into one ascending stream without duplicates, and [`Cursor`] answers "is this id in the set"
//! for ids asked in ascending order (a merge join against another sorted listing, such as a
//! store's shard directories). Memory: the buffer plus one small read buffer per run.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};

mod table;
pub use table::{STRIDE, Table, TableBuilder};

/// One id: 32 bytes, ordered as bytes (which is the order of their hex names).
pub type Id = [u8; 32];

/// Ids held in memory before a run is written: 4 MiB.
pub const DEFAULT_BUFFER: usize = 128 << 10;

/// Ids held in memory before a run is written: `ENVSTORE_SORT_BUFFER` ids if set (a tuning
/// knob, and how tests make small sets spill), else [`DEFAULT_BUFFER`].
pub fn buffer() -> usize {
    std::env::var("ENVSTORE_SORT_BUFFER")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(DEFAULT_BUFFER)
}

/// Set once a run could not be written (a full or unwritable scratch directory) and a set was
/// kept in memory instead: the caller's memory bound did not hold, and it should say so.
static FELL_BACK: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Why a set was last kept in memory instead of spilled, if one was (and clears it).
pub fn take_fallback() -> Option<String> {
    FELL_BACK.lock().unwrap_or_else(|e| e.into_inner()).take()
}

fn fell_back(dir: &Path, e: &io::Error) {
    *FELL_BACK.lock().unwrap_or_else(|e| e.into_inner()) = Some(format!(
        "cannot write sorted runs in {}: {e}",
        dir.display()
    ));
}

/// Read buffer per run while merging.
const RUN_BUF: usize = 32 << 10;

/// A set of ids under construction. Insert in any order, with repeats.
#[derive(Debug)]
pub struct IdSet {
    dir: PathBuf,
    buf: Vec<Id>,
    cap: usize,
    runs: Vec<File>,
}

impl IdSet {
    /// A set that spills runs into anonymous files in `dir` (nothing named is left behind)
    /// once `cap` ids are buffered.
    pub fn new(dir: &Path, cap: usize) -> IdSet {
        IdSet {
            dir: dir.to_owned(),
            buf: Vec::new(),
            cap: cap.max(1),
            runs: Vec::new(),
        }
    }

    pub fn insert(&mut self, id: Id) -> io::Result<()> {
        if self.buf.len() >= self.cap {
            self.spill()?;
        }
        self.buf.push(id);
        Ok(())
    }

    /// How many sorted runs were written to disk so far.
    pub fn runs(&self) -> usize {
        self.runs.len()
    }

    /// Writes the buffer as a sorted run. Where no run can be written (a full disk, an
    /// unwritable directory), the set stays in memory and grows instead: a pass that must
    /// answer (verify on a full disk) still answers, and [`take_fallback`] says why.
    fn spill(&mut self) -> io::Result<()> {
        self.buf.sort_unstable();
        self.buf.dedup();
        match self.write_run() {
            Ok(file) => {
                self.runs.push(file);
                self.buf.clear();
            }
            Err(e) => {
                fell_back(&self.dir, &e);
                self.cap = self.cap.saturating_mul(2);
            }
        }
        Ok(())
    }

    fn write_run(&self) -> io::Result<File> {
        let file = tempfile::tempfile_in(&self.dir)?;
        let mut out = BufWriter::with_capacity(RUN_BUF, file);
        for id in &self.buf {
            out.write_all(id)?;
        }
        let mut file = out.into_inner().map_err(io::IntoInnerError::into_error)?;
        file.rewind()?;
        Ok(file)
    }

    /// The set's ids in ascending order, each once.
    pub fn finish(mut self) -> io::Result<Sorted> {
        self.buf.sort_unstable();
        self.buf.dedup();
        self.buf.shrink_to_fit();
        merge(self.runs, self.buf)
    }
}

/// A finished set that can be read more than once: its sorted runs (anonymous files, freed
/// when it is dropped) and the rest in memory, merged again on each read. Nothing more is
/// written to finish it, so it needs no space a full disk may lack, and memory stays the
/// buffer's.
#[derive(Debug)]
pub struct SortedFile {
    runs: Vec<File>,
    memory: Vec<Id>,
}

impl IdSet {
    /// Finishes the set for reading more than once (see [`SortedFile`]).
    pub fn finish_to_file(mut self) -> io::Result<SortedFile> {
        self.buf.sort_unstable();
        self.buf.dedup();
        Ok(SortedFile {
            runs: self.runs,
            memory: self.buf,
        })
    }
}

impl SortedFile {
    /// The ids, ascending and distinct, read from the start. One read at a time: the runs'
    /// descriptors are shared between reads.
    pub fn iter(&self) -> io::Result<Sorted> {
        let runs = self
            .runs
            .iter()
            .map(|run| {
                let mut file = run.try_clone()?;
                file.rewind()?;
                Ok(file)
            })
            .collect::<io::Result<Vec<File>>>()?;
        merge(runs, self.memory.clone())
    }
}

/// Merges sorted runs and a sorted, deduplicated buffer into one ascending stream.
fn merge(runs: Vec<File>, memory: Vec<Id>) -> io::Result<Sorted> {
    let mut readers = Vec::with_capacity(runs.len());
    let mut heap = BinaryHeap::new();
    for (i, file) in runs.into_iter().enumerate() {
        let mut reader = BufReader::with_capacity(RUN_BUF, file);
        if let Some(id) = read_id(&mut reader)? {
            heap.push(Reverse((id, i)));
        }
        readers.push(reader);
    }
    Ok(Sorted {
        memory: memory.into_iter(),
        next_memory: None,
        readers,
        heap,
        last: None,
    })
}

fn read_id(reader: &mut impl Read) -> io::Result<Option<Id>> {
    let mut id = [0; 32];
    match reader.read_exact(&mut id) {
        Ok(()) => Ok(Some(id)),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
    }
}

/// The ids of an [`IdSet`], ascending and distinct.
#[derive(Debug)]
pub struct Sorted {
    memory: std::vec::IntoIter<Id>,
    next_memory: Option<Id>,
    readers: Vec<BufReader<File>>,
    heap: BinaryHeap<Reverse<(Id, usize)>>,
    last: Option<Id>,
}

impl Sorted {
    fn next_any(&mut self) -> io::Result<Option<Id>> {
        if self.next_memory.is_none() {
            self.next_memory = self.memory.next();
        }
        let from_runs = self.heap.peek().map(|Reverse((id, _))| *id);
        match (self.next_memory, from_runs) {
            (Some(m), Some(r)) if m <= r => Ok(self.next_memory.take()),
            (Some(_), None) => Ok(self.next_memory.take()),
            (_, Some(_)) => {
                let Reverse((id, i)) = self.heap.pop().expect("peeked");
                if let Some(next) = read_id(&mut self.readers[i])? {
                    self.heap.push(Reverse((next, i)));
                }
                Ok(Some(id))
            }
            (None, None) => Ok(None),
        }
    }
}

impl Iterator for Sorted {
    type Item = io::Result<Id>;

    fn next(&mut self) -> Option<io::Result<Id>> {
        loop {
            match self.next_any() {
                Ok(Some(id)) if self.last == Some(id) => continue,
                Ok(Some(id)) => {
                    self.last = Some(id);
                    return Some(Ok(id));
                }
                Ok(None) => return None,
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// Membership tests against a [`Sorted`] stream, for ids asked in ascending order (a merge
/// join), which can also say which ids of the set were never asked for.
#[derive(Debug)]
pub struct Cursor {
    ids: Sorted,
    current: Option<Id>,
    /// Whether `current` was asked for (and found).
    found: bool,
    started: bool,
}

impl Cursor {
    pub fn new(ids: Sorted) -> Cursor {
        Cursor {
            ids,
            current: None,
            found: false,
            started: false,
        }
    }

    fn advance(&mut self) -> io::Result<()> {
        self.current = self.ids.next().transpose()?;
        self.found = false;
        Ok(())
    }

    /// Whether `id` is in the set. Each call must ask for an id no smaller than the last (the
    /// same one again is fine). Ids of the set passed over without being asked for are handed
    /// to `unasked`.
    pub fn seek(&mut self, id: &Id, unasked: &mut dyn FnMut(Id)) -> io::Result<bool> {
        if !self.started {
            self.started = true;
            self.advance()?;
        }
        while let Some(current) = self.current {
            if &current == id {
                self.found = true;
                return Ok(true);
            }
            if &current > id {
                return Ok(false);
            }
            if !self.found {
                unasked(current);
            }
            self.advance()?;
        }
        Ok(false)
    }

    /// Like [`Cursor::seek`], ignoring the ids passed over.
    pub fn contains(&mut self, id: &Id) -> io::Result<bool> {
        self.seek(id, &mut |_| {})
    }

    /// Hands the ids of the set never asked for, from here to the end, to `unasked`.
    pub fn rest(&mut self, unasked: &mut dyn FnMut(Id)) -> io::Result<()> {
        if !self.started {
            self.started = true;
            self.advance()?;
        }
        while let Some(current) = self.current {
            if !self.found {
                unasked(current);
            }
            self.advance()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn id(n: u64) -> Id {
        let mut id = [0; 32];
        id[..8].copy_from_slice(&n.to_be_bytes());
        id[31] = (n % 251) as u8;
        id
    }

    #[test]
    fn merges_runs_into_one_sorted_distinct_stream() {
        let dir = tempfile::tempdir().unwrap();
        for cap in [1, 3, 7, 1000] {
            let mut set = IdSet::new(dir.path(), cap);
            let mut expected = BTreeSet::new();
            let mut x = 12345u64;
            for _ in 0..500 {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let n = x % 200; // many repeats, across runs too
                set.insert(id(n)).unwrap();
                expected.insert(id(n));
            }
            assert_eq!(set.runs() > 0, cap < 500, "cap {cap}");
            let got: Vec<Id> = set.finish().unwrap().map(Result::unwrap).collect();
            assert_eq!(got, expected.into_iter().collect::<Vec<_>>(), "cap {cap}");
        }
        // Anonymous runs: nothing is left in the directory.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn cursor_answers_membership_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut set = IdSet::new(dir.path(), 4);
        for n in [9, 3, 5, 3, 11, 1] {
            set.insert(id(n)).unwrap();
        }
        let mut cursor = Cursor::new(set.finish().unwrap());
        let asked: Vec<bool> = (0..13).map(|n| cursor.contains(&id(n)).unwrap()).collect();
        let expected: Vec<bool> = (0..13).map(|n| [1, 3, 5, 9, 11].contains(&n)).collect();
        assert_eq!(asked, expected);

        let mut set = IdSet::new(dir.path(), 2);
        for n in [1, 2, 4, 8, 9] {
            set.insert(id(n)).unwrap();
        }
        let mut cursor = Cursor::new(set.finish().unwrap());
        let mut unasked = Vec::new();
        let mut note = |i| unasked.push(i);
        assert!(!cursor.seek(&id(3), &mut note).unwrap());
        assert!(cursor.seek(&id(4), &mut note).unwrap());
        assert!(
            cursor.seek(&id(4), &mut note).unwrap(),
            "asking twice is fine"
        );
        assert!(cursor.seek(&id(8), &mut note).unwrap());
        cursor.rest(&mut note).unwrap();
        assert_eq!(unasked, vec![id(1), id(2), id(9)]);
    }

    #[test]
    fn a_set_kept_in_a_file_reads_the_same_twice() {
        let dir = tempfile::tempdir().unwrap();
        let mut set = IdSet::new(dir.path(), 2);
        for n in [5, 1, 5, 3, 2] {
            set.insert(id(n)).unwrap();
        }
        let file = set.finish_to_file().unwrap();
        for _ in 0..2 {
            let got: Vec<Id> = file.iter().unwrap().map(Result::unwrap).collect();
            assert_eq!(got, vec![id(1), id(2), id(3), id(5)]);
        }
        drop(file);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn an_empty_set_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let set = IdSet::new(dir.path(), 8);
        assert_eq!(set.finish().unwrap().count(), 0);
        let mut cursor = Cursor::new(IdSet::new(dir.path(), 8).finish().unwrap());
        assert!(!cursor.contains(&id(1)).unwrap());
    }

    #[test]
    fn a_set_whose_runs_cannot_be_written_stays_in_memory_and_stays_right() {
        // No directory to spill into: as on a full disk, every run fails.
        let mut set = IdSet::new(Path::new("/nonexistent/envstore-idset"), 3);
        let ids: Vec<Id> = (0..50u8).rev().map(|i| [i; 32]).collect();
        for id in ids.iter().chain(ids.iter()) {
            set.insert(*id).unwrap();
        }
        let reused = set.finish_to_file().unwrap();
        let got: Vec<Id> = reused.iter().unwrap().collect::<io::Result<_>>().unwrap();
        let mut want = ids.clone();
        want.sort();
        assert_eq!(got, want);
        let again: Vec<Id> = reused.iter().unwrap().collect::<io::Result<_>>().unwrap();
        assert_eq!(again, want);
        assert!(take_fallback().is_some_and(|why| why.contains("/nonexistent")));
    }
}
