//! `snapshots/<id>`: a snapshot on the remote. Text lines, then the snapshot's trees as one
//! zstd frame. Published last: a record means every pack it lists (and so every chunk and
//! recipe its objects need) is there.
//!
//! ```text
//! envstore-remote-snapshot 1
//! files <n>
//! dirs <n>
//! symlinks <n>
//! bytes <n>
//! pack <hex>                      (one line per pack holding something it needs)
//! trees <count> <raw length> <compressed length>
//! <zstd frame: (id:[32] len:u32 tree encoding){count}>
//! ```
//!
//! The trees of a large snapshot are tens of megabytes, so both directions stream:
//! [`RecordWriter`] compresses trees one at a time into any writer (a push's temporary file),
//! and [`RecordHead::read`] then [`RecordHead::trees`] hand them out one at a time from any
//! reader (a pull's temporary file). [`Record`] is the whole thing in memory, for small ones.

use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Read, Write};

use envstore_tree::{PackId, SnapshotId, TreeId};

use crate::format::{FormatError, bad};

const RECORD_HEADER: &str = "envstore-remote-snapshot 1";
/// The most uncompressed tree bytes a record may announce (about ten million files): a hostile
/// record cannot make a reader decompress more than this.
const MAX_TREES_RAW: u64 = 1 << 30;
/// The longest text line read.
const MAX_LINE: u64 = 4096;

/// A whole record in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub bytes: u64,
    pub packs: Vec<PackId>,
    pub trees: Vec<(TreeId, Vec<u8>)>,
}

/// A record's text lines: everything but the trees.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecordHead {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub bytes: u64,
    pub packs: Vec<PackId>,
    /// The trees' count, uncompressed and compressed length.
    pub trees: u64,
    pub raw_len: u64,
    pub compressed_len: u64,
}

impl RecordHead {
    /// The text lines, ready to be followed by the trees' frame.
    pub fn encode(&self) -> Vec<u8> {
        let mut text = format!(
            "{RECORD_HEADER}\nfiles {}\ndirs {}\nsymlinks {}\nbytes {}\n",
            self.files, self.dirs, self.symlinks, self.bytes
        );
        for p in &self.packs {
            let _ = writeln!(text, "pack {p}");
        }
        let _ = writeln!(
            text,
            "trees {} {} {}",
            self.trees, self.raw_len, self.compressed_len
        );
        text.into_bytes()
    }

    /// Reads the text lines of the record of `id` from `r`, leaving it at the trees' frame.
    pub fn read(r: &mut impl BufRead, id: &SnapshotId) -> Result<RecordHead, FormatError> {
        let what = format!("the remote record of {id}");
        let mut buf = Vec::new();
        let mut line = |r: &mut dyn BufRead| -> Result<String, FormatError> {
            buf.clear();
            r.take(MAX_LINE)
                .read_until(b'\n', &mut buf)
                .map_err(|e| bad(&what, format!("cannot be read: {e}")))?;
            if buf.pop() != Some(b'\n') {
                return Err(bad(&what, "cut short"));
            }
            String::from_utf8(buf.clone()).map_err(|_| bad(&what, "not UTF-8"))
        };
        if line(r)? != RECORD_HEADER {
            return Err(bad(&what, format!("expected {RECORD_HEADER:?}")));
        }
        let num = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| bad(&what, format!("bad number {v:?}")))
        };
        let mut head = RecordHead::default();
        loop {
            let l = line(r)?;
            let (key, value) = l.split_once(' ').unwrap_or((&l, ""));
            match key {
                "files" => head.files = num(value)?,
                "dirs" => head.dirs = num(value)?,
                "symlinks" => head.symlinks = num(value)?,
                "bytes" => head.bytes = num(value)?,
                "pack" => head.packs.push(
                    value
                        .parse()
                        .map_err(|_| bad(&what, format!("bad pack id {value:?}")))?,
                ),
                "trees" => {
                    let v: Vec<&str> = value.split(' ').collect();
                    if v.len() != 3 {
                        return Err(bad(&what, "bad trees line"));
                    }
                    (head.trees, head.raw_len, head.compressed_len) =
                        (num(v[0])?, num(v[1])?, num(v[2])?);
                    return Ok(head);
                }
                _ => {}
            }
        }
    }

    /// The trees, one at a time, from `rest`: what follows the text lines, `rest_len` bytes.
    /// The trees are not checked against their ids here: the caller does (and must) before
    /// storing them.
    pub fn trees<R: Read>(
        &self,
        rest: R,
        rest_len: u64,
        id: &SnapshotId,
    ) -> Result<RecordTrees<R>, FormatError> {
        let what = format!("the remote record of {id}");
        if self.compressed_len != rest_len || self.raw_len > MAX_TREES_RAW {
            return Err(bad(&what, "the trees do not have the length announced"));
        }
        let decoder = zstd::stream::read::Decoder::new(rest)
            .map_err(|e| bad(&what, format!("the trees do not decompress: {e}")))?;
        Ok(RecordTrees {
            decoder,
            left: self.trees,
            raw_left: self.raw_len,
            what,
            done: false,
        })
    }
}

/// A record's trees, decompressed one at a time (memory follows one tree, not the record).
pub struct RecordTrees<R: Read> {
    decoder: zstd::stream::read::Decoder<'static, BufReader<R>>,
    left: u64,
    raw_left: u64,
    what: String,
    done: bool,
}

impl<R: Read> std::fmt::Debug for RecordTrees<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordTrees")
            .field("left", &self.left)
            .finish_non_exhaustive()
    }
}

impl<R: Read> RecordTrees<R> {
    fn read(&mut self, n: u64) -> Result<Vec<u8>, FormatError> {
        if n > self.raw_left {
            return Err(bad(
                &self.what,
                "the trees do not have the length announced",
            ));
        }
        self.raw_left -= n;
        let mut out = Vec::with_capacity(n.min(1 << 20) as usize);
        (&mut self.decoder)
            .take(n)
            .read_to_end(&mut out)
            .map_err(|e| bad(&self.what, format!("the trees do not decompress: {e}")))?;
        if out.len() as u64 != n {
            return Err(bad(&self.what, "the tree count does not match"));
        }
        Ok(out)
    }

    fn next_tree(&mut self) -> Result<Option<(TreeId, Vec<u8>)>, FormatError> {
        if self.left == 0 {
            // Nothing may follow the last tree, and the lengths must add up.
            let mut more = [0; 1];
            let extra = self
                .decoder
                .read(&mut more)
                .map_err(|e| bad(&self.what, format!("the trees do not decompress: {e}")))?;
            if extra != 0 || self.raw_left != 0 {
                return Err(bad(&self.what, "the tree count does not match"));
            }
            return Ok(None);
        }
        self.left -= 1;
        let head = self.read(36)?;
        let id = TreeId::from_bytes(head[..32].try_into().expect("32 bytes"));
        let len = u32::from_le_bytes(head[32..].try_into().expect("4 bytes"));
        Ok(Some((id, self.read(u64::from(len))?)))
    }
}

impl<R: Read> Iterator for RecordTrees<R> {
    type Item = Result<(TreeId, Vec<u8>), FormatError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let next = self.next_tree().transpose();
        if !matches!(next, Some(Ok(_))) {
            self.done = true;
        }
        next
    }
}

/// Compresses a record's trees one at a time into `W`.
pub struct RecordWriter<W: Write> {
    encoder: zstd::stream::write::Encoder<'static, Counted<W>>,
    trees: u64,
    raw_len: u64,
}

impl<W: Write> std::fmt::Debug for RecordWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordWriter")
            .field("trees", &self.trees)
            .finish_non_exhaustive()
    }
}

/// A writer that counts what passes.
struct Counted<W> {
    inner: W,
    written: u64,
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<W: Write> RecordWriter<W> {
    pub fn new(w: W) -> io::Result<Self> {
        Ok(RecordWriter {
            encoder: zstd::stream::write::Encoder::new(
                Counted {
                    inner: w,
                    written: 0,
                },
                3,
            )?,
            trees: 0,
            raw_len: 0,
        })
    }

    pub fn add(&mut self, id: &TreeId, bytes: &[u8]) -> io::Result<()> {
        let len = u32::try_from(bytes.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a tree over 4 GiB"))?;
        self.encoder.write_all(id.as_bytes())?;
        self.encoder.write_all(&len.to_le_bytes())?;
        self.encoder.write_all(bytes)?;
        self.trees += 1;
        self.raw_len += 36 + bytes.len() as u64;
        Ok(())
    }

    /// Ends the frame: the writer back, and `head` with its trees line filled in.
    pub fn finish(self, head: &mut RecordHead) -> io::Result<W> {
        let mut counted = self.encoder.finish()?;
        counted.flush()?;
        head.trees = self.trees;
        head.raw_len = self.raw_len;
        head.compressed_len = counted.written;
        Ok(counted.inner)
    }
}

impl Record {
    pub fn encode(&self) -> io::Result<Vec<u8>> {
        let mut head = RecordHead {
            files: self.files,
            dirs: self.dirs,
            symlinks: self.symlinks,
            bytes: self.bytes,
            packs: self.packs.clone(),
            ..RecordHead::default()
        };
        let mut w = RecordWriter::new(Vec::new())?;
        for (id, bytes) in &self.trees {
            w.add(id, bytes)?;
        }
        let frame = w.finish(&mut head)?;
        let mut out = head.encode();
        out.extend_from_slice(&frame);
        Ok(out)
    }

    /// The packs a record lists, read from its text lines alone (the trees are not decoded).
    pub fn pack_lines(bytes: &[u8]) -> Result<Vec<PackId>, FormatError> {
        let what = "a remote record";
        let mut packs = Vec::new();
        let mut lines = bytes.split(|&b| b == b'\n');
        if lines.next() != Some(RECORD_HEADER.as_bytes()) {
            return Err(bad(what, format!("expected {RECORD_HEADER:?}")));
        }
        for l in lines {
            if l.starts_with(b"trees ") {
                return Ok(packs);
            }
            if let Some(hex) = l.strip_prefix(b"pack ") {
                let pack = std::str::from_utf8(hex)
                    .ok()
                    .and_then(|h| h.parse().ok())
                    .ok_or_else(|| bad(what, "bad pack id"))?;
                packs.push(pack);
            }
        }
        Err(bad(what, "cut short"))
    }

    /// Decodes a whole record. The trees are not checked against their ids here: the caller
    /// does (and must) before storing them.
    pub fn decode(bytes: &[u8], id: &SnapshotId) -> Result<Record, FormatError> {
        let mut rest = bytes;
        let head = RecordHead::read(&mut rest, id)?;
        let trees = head
            .trees(rest, rest.len() as u64, id)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Record {
            files: head.files,
            dirs: head.dirs,
            symlinks: head.symlinks,
            bytes: head.bytes,
            packs: head.packs,
            trees,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> [u8; 32] {
        [n; 32]
    }

    #[test]
    fn record_round_trip() {
        let r = Record {
            files: 1,
            dirs: 2,
            symlinks: 3,
            bytes: 4,
            packs: vec![PackId::from_bytes(id(5))],
            trees: vec![
                (TreeId::from_bytes(id(6)), b"tree".to_vec()),
                (TreeId::from_bytes(id(7)), Vec::new()),
            ],
        };
        let sid = SnapshotId::from_bytes(id(6));
        let bytes = r.encode().unwrap();
        assert_eq!(Record::decode(&bytes, &sid).unwrap(), r);
        assert_eq!(Record::pack_lines(&bytes).unwrap(), r.packs);
        for cut in 0..bytes.len() {
            assert!(Record::decode(&bytes[..cut], &sid).is_err(), "{cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Record::decode(&longer, &sid).is_err());
    }

    #[test]
    fn a_record_announcing_other_counts_is_refused() {
        let sid = SnapshotId::from_bytes(id(1));
        let r = Record {
            files: 0,
            dirs: 1,
            symlinks: 0,
            bytes: 0,
            packs: Vec::new(),
            trees: vec![(TreeId::from_bytes(id(2)), b"abc".to_vec())],
        };
        let bytes = r.encode().unwrap();
        let start = bytes.windows(7).position(|w| w == b"\ntrees ").unwrap() + 1;
        let end = start + bytes[start..].iter().position(|&b| b == b'\n').unwrap();
        let text = String::from_utf8(bytes[..end].to_vec()).unwrap();
        let frame = &bytes[end + 1..];
        for (from, to) in [("trees 1 39", "trees 2 39"), ("trees 1 39", "trees 1 38")] {
            let mut forged = text.replace(from, to).into_bytes();
            forged.push(b'\n');
            forged.extend_from_slice(frame);
            assert!(Record::decode(&forged, &sid).is_err(), "{to}");
        }
    }
}
