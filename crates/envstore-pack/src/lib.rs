//! The cold tier's building blocks: content-defined chunks, and the pack files that hold them
//! compressed.
//!
//! A file is cut into chunks with FastCDC (2020, normalization level 1): files of at most
//! [`SINGLE_CHUNK_MAX`] bytes are one chunk (whose id is then the object's id), larger files are
//! cut at content-defined points between [`MIN_CHUNK`] and [`MAX_CHUNK`] bytes, [`AVG_CHUNK`] on
//! average. Cut points are part of the store format: the crate version is pinned exactly and a
//! test vector pins the points themselves.
//!
//! A pack is `PACK_MAGIC` followed by blocks. A block compresses many entries together (small
//! files compress far better side by side than alone) in one zstd frame, so reading one chunk
//! costs at most one block's decompression:
//!
//! ```text
//! block   = "ESBK" count:u32 compressed_len:u32 raw_len:u32 blake3(table ‖ raw):[u8;32]
//!           table = count × (kind:u8 id:[u8;32] len:u32)   zstd frame of `raw`
//! raw     = the entries' bytes, concatenated in header order
//! kind 0  = chunk:  id = blake3(bytes)
//! kind 1  = recipe: id = the object's id; bytes = size:u64 then the object's chunk ids
//! ```
//!
//! Integers are little-endian. There is no footer: the headers can be scanned from the start, and
//! that scan is how the chunk index is rebuilt. A pack is named by the blake3 hash of its bytes,
//! written under a temporary name, synced, and renamed into place; it never changes afterwards.

use std::fs::{self, File};
use std::io::{self, Write};
use std::ops::Range;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};

use envstore_tree::{ChunkId, PackId};
use tempfile::NamedTempFile;

/// Files up to this size are one chunk.
pub const SINGLE_CHUNK_MAX: usize = 64 << 10;
pub const MIN_CHUNK: usize = 16 << 10;
pub const AVG_CHUNK: usize = 64 << 10;
pub const MAX_CHUNK: usize = 256 << 10;
/// A block is sealed once its raw bytes reach this size.
pub const BLOCK_TARGET: usize = 1 << 20;
/// The largest raw block a reader accepts (a writer never makes one above
/// `BLOCK_TARGET + MAX_CHUNK`); bounds the memory a damaged or hostile pack can claim.
pub const BLOCK_MAX_RAW: u32 = 16 << 20;
/// The most entries a reader accepts in one block.
pub const MAX_ENTRIES: u32 = 1 << 16;
/// The zstd level: `zstd -3`, the speed/ratio point the benchmarks compare against.
pub const LEVEL: i32 = 3;

pub const PACK_MAGIC: &[u8; 8] = b"ESPACK\0\x01";
const BLOCK_MAGIC: &[u8; 4] = b"ESBK";
const BLOCK_FIXED: u64 = 4 + 4 + 4 + 4 + 32;
const ENTRY_LEN: u64 = 1 + 32 + 4;

/// Where a file's chunks are: the byte ranges, in order, that together cover it.
pub fn cut(data: &[u8]) -> Vec<Range<usize>> {
    if data.len() <= SINGLE_CHUNK_MAX {
        return std::iter::once(0..data.len()).collect();
    }
    fastcdc::v2020::FastCDC::new(data, MIN_CHUNK, AVG_CHUNK, MAX_CHUNK)
        .map(|c| c.offset..c.offset + c.length)
        .collect()
}

/// The chunks of a file read from `reader`, one at a time (memory stays at a few chunks however
/// large the file): the same cut points as [`cut`] for a file of more than
/// [`SINGLE_CHUNK_MAX`] bytes.
pub fn cut_stream<R: io::Read>(reader: R) -> impl Iterator<Item = io::Result<Vec<u8>>> {
    fastcdc::v2020::StreamCDC::new(reader, MIN_CHUNK, AVG_CHUNK, MAX_CHUNK)
        .map(|chunk| chunk.map(|c| c.data).map_err(io::Error::from))
}

#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("failed to {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{path} is damaged at byte {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
}

fn io_err<'p>(op: &'static str, path: &'p Path) -> impl FnOnce(io::Error) -> PackError + 'p {
    move |source| PackError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// What an entry of a block holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    Chunk,
    Recipe,
}

/// One entry of a block: its kind, id and length in the block's raw bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub kind: EntryKind,
    pub id: [u8; 32],
    pub len: u32,
}

/// A block's header, as read from a pack.
#[derive(Debug, Clone)]
pub struct BlockHeader {
    /// Where the block starts in its pack.
    pub offset: u64,
    table: Vec<u8>,
    pub compressed_len: u32,
    pub raw_len: u32,
    pub hash: [u8; 32],
    pub entries: Vec<Entry>,
}

impl BlockHeader {
    fn header_len(&self) -> u64 {
        BLOCK_FIXED + ENTRY_LEN * self.entries.len() as u64
    }

    /// Where the next block starts.
    pub fn end(&self) -> u64 {
        self.offset + self.header_len() + u64::from(self.compressed_len)
    }

    /// The entries with their offsets in the block's raw bytes.
    pub fn placed(&self) -> impl Iterator<Item = (u32, &Entry)> {
        placed(&self.entries)
    }
}

/// Entries with their offsets in their block's raw bytes (each starts where the last ended).
pub fn placed(entries: &[Entry]) -> impl Iterator<Item = (u32, &Entry)> {
    entries.iter().scan(0u32, |at, e| {
        let start = *at;
        *at += e.len;
        Some((start, e))
    })
}

/// What a block's checksum covers: its entry table (ids of recipes are not hashes of their
/// bytes, so the table needs protecting too) and its raw bytes.
fn block_checksum(table: &[u8], raw: &[u8]) -> blake3::Hash {
    let mut hasher = blake3::Hasher::new();
    hasher.update(table);
    hasher.update(raw);
    hasher.finalize()
}

/// Collects entries for one block.
#[derive(Debug, Default)]
pub struct BlockBuilder {
    raw: Vec<u8>,
    entries: Vec<Entry>,
}

impl BlockBuilder {
    pub fn push(&mut self, kind: EntryKind, id: [u8; 32], bytes: &[u8]) {
        let len = u32::try_from(bytes.len()).expect("entries are at most a chunk or a recipe");
        self.raw.extend_from_slice(bytes);
        self.entries.push(Entry { kind, id, len });
    }

    /// Raw bytes so far.
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether the block should be sealed.
    pub fn full(&self) -> bool {
        self.raw.len() >= BLOCK_TARGET || self.entries.len() as u32 >= MAX_ENTRIES
    }

    /// Compresses the block. CPU-bound: callers run several at once.
    pub fn encode(self) -> io::Result<EncodedBlock> {
        let compressed = zstd::bulk::compress(&self.raw, LEVEL)?;
        let raw_len = self.raw.len() as u32;
        let mut bytes =
            Vec::with_capacity(BLOCK_FIXED as usize + self.entries.len() * 37 + compressed.len());
        bytes.extend_from_slice(BLOCK_MAGIC);
        bytes.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&(compressed.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&raw_len.to_le_bytes());
        let mut table = Vec::with_capacity(self.entries.len() * ENTRY_LEN as usize);
        for e in &self.entries {
            table.push(match e.kind {
                EntryKind::Chunk => 0,
                EntryKind::Recipe => 1,
            });
            table.extend_from_slice(&e.id);
            table.extend_from_slice(&e.len.to_le_bytes());
        }
        bytes.extend_from_slice(block_checksum(&table, &self.raw).as_bytes());
        bytes.extend_from_slice(&table);
        bytes.extend_from_slice(&compressed);
        Ok(EncodedBlock {
            bytes,
            entries: self.entries,
            raw_len,
        })
    }
}

/// A compressed block, ready to append to a pack.
#[derive(Debug)]
pub struct EncodedBlock {
    bytes: Vec<u8>,
    entries: Vec<Entry>,
    raw_len: u32,
}

impl EncodedBlock {
    pub fn raw_len(&self) -> u32 {
        self.raw_len
    }

    pub fn encoded_len(&self) -> usize {
        self.bytes.len()
    }
}

/// The path of pack `id` in `dir`.
pub fn pack_path(dir: &Path, id: &PackId) -> PathBuf {
    dir.join(format!("{}.pack", id.to_hex()))
}

/// The pack id a file name under `packs/` stands for, if it is a pack's name.
pub fn parse_pack_name(name: &str) -> Option<PackId> {
    name.strip_suffix(".pack")?.parse().ok()
}

/// Recipe bytes: the object's size, then its chunk ids in order.
pub fn encode_recipe(size: u64, chunks: &[ChunkId]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + 32 * chunks.len());
    out.extend_from_slice(&size.to_le_bytes());
    for c in chunks {
        out.extend_from_slice(c.as_bytes());
    }
    out
}

/// The size and chunk ids of a recipe; `None` if the bytes are not one.
pub fn decode_recipe(bytes: &[u8]) -> Option<(u64, Vec<ChunkId>)> {
    let (size, rest) = bytes.split_first_chunk::<8>()?;
    if rest.len() % 32 != 0 {
        return None;
    }
    let chunks = rest
        .chunks_exact(32)
        .map(|c| ChunkId::from_bytes(c.try_into().expect("32 bytes")))
        .collect();
    Some((u64::from_le_bytes(*size), chunks))
}

/// A pack being written: a temporary file in the packs directory until [`PackWriter::finish`].
#[derive(Debug)]
pub struct PackWriter {
    tmp: NamedTempFile,
    dir: PathBuf,
    hasher: blake3::Hasher,
    len: u64,
    blocks: Vec<(u64, Vec<Entry>)>,
}

/// A pack on disk, with what it holds.
#[derive(Debug)]
pub struct WrittenPack {
    pub id: PackId,
    pub path: PathBuf,
    pub len: u64,
    /// Each block's offset and entries.
    pub blocks: Vec<(u64, Vec<Entry>)>,
}

impl PackWriter {
    pub fn create(dir: &Path) -> Result<PackWriter, PackError> {
        let tmp = tempfile::Builder::new()
            .prefix(".tmp-pack-")
            .tempfile_in(dir)
            .map_err(io_err("create a temporary file in", dir))?;
        let mut w = PackWriter {
            tmp,
            dir: dir.to_owned(),
            hasher: blake3::Hasher::new(),
            len: 0,
            blocks: Vec::new(),
        };
        w.write(PACK_MAGIC)?;
        Ok(w)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), PackError> {
        let path = self.tmp.path().to_owned();
        self.tmp.write_all(bytes).map_err(io_err("write", &path))?;
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Appends a block; returns its offset.
    pub fn append(&mut self, block: EncodedBlock) -> Result<u64, PackError> {
        let offset = self.len;
        self.write(&block.bytes)?;
        self.blocks.push((offset, block.entries));
        Ok(offset)
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether no block was appended.
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// Makes the pack durable under its final name: sync the data, rename, sync the directory.
    /// Only after this may an index point into it.
    pub fn finish(self) -> Result<WrittenPack, PackError> {
        let id = PackId::from(self.hasher.finalize());
        let path = pack_path(&self.dir, &id);
        // Read-only, like objects: a pack never changes once written.
        self.tmp
            .as_file()
            .set_permissions(fs::Permissions::from_mode(0o444))
            .map_err(io_err("chmod", self.tmp.path()))?;
        self.tmp
            .as_file()
            .sync_all()
            .map_err(io_err("sync", self.tmp.path()))?;
        match self.tmp.persist_noclobber(&path) {
            Ok(_) => {}
            // The same bytes are there already (the name is their hash).
            Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err("publish", &path)(e.error)),
        }
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err("sync", &self.dir))?;
        Ok(WrittenPack {
            id,
            path,
            len: self.len,
            blocks: self.blocks,
        })
    }
}

/// Reads blocks of one pack, checking everything it reads.
#[derive(Debug)]
pub struct PackReader {
    file: File,
    path: PathBuf,
    len: u64,
}

impl PackReader {
    pub fn open(path: &Path) -> Result<PackReader, PackError> {
        let file = File::open(path).map_err(io_err("open", path))?;
        let len = file.metadata().map_err(io_err("stat", path))?.len();
        let reader = PackReader {
            file,
            path: path.to_owned(),
            len,
        };
        let mut magic = [0u8; 8];
        reader.read_exact_at(&mut magic, 0)?;
        if &magic != PACK_MAGIC {
            return Err(reader.corrupt(0, "not an envstore pack (bad magic)"));
        }
        Ok(reader)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len <= PACK_MAGIC.len() as u64
    }

    fn corrupt(&self, offset: u64, reason: impl Into<String>) -> PackError {
        PackError::Corrupt {
            path: self.path.clone(),
            offset,
            reason: reason.into(),
        }
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<(), PackError> {
        if offset + buf.len() as u64 > self.len {
            return Err(self.corrupt(offset, "truncated"));
        }
        self.file
            .read_exact_at(buf, offset)
            .map_err(io_err("read", &self.path))
    }

    /// The blake3 hash of the whole file, which names an intact pack (this catches what a scan
    /// of the blocks cannot: a pack cut short exactly at a block boundary).
    pub fn content_id(&self) -> Result<PackId, PackError> {
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut at = 0u64;
        while at < self.len {
            let n = buf.len().min((self.len - at) as usize);
            self.read_exact_at(&mut buf[..n], at)?;
            hasher.update(&buf[..n]);
            at += n as u64;
        }
        Ok(PackId::from(hasher.finalize()))
    }

    /// The header of the block at `offset`, checked for consistency (lengths within limits,
    /// entries adding up, the block inside the file).
    pub fn header_at(&self, offset: u64) -> Result<BlockHeader, PackError> {
        let mut fixed = [0u8; BLOCK_FIXED as usize];
        self.read_exact_at(&mut fixed, offset)?;
        if &fixed[..4] != BLOCK_MAGIC {
            return Err(self.corrupt(offset, "no block starts here"));
        }
        let u32_at = |i: usize| u32::from_le_bytes(fixed[i..i + 4].try_into().expect("4 bytes"));
        let (count, compressed_len, raw_len) = (u32_at(4), u32_at(8), u32_at(12));
        if count > MAX_ENTRIES || raw_len > BLOCK_MAX_RAW || compressed_len > BLOCK_MAX_RAW {
            return Err(self.corrupt(offset, "block header out of bounds"));
        }
        let mut table = vec![0u8; (ENTRY_LEN * u64::from(count)) as usize];
        self.read_exact_at(&mut table, offset + BLOCK_FIXED)?;
        let mut entries = Vec::with_capacity(count as usize);
        let mut sum = 0u64;
        for e in table.chunks_exact(ENTRY_LEN as usize) {
            let kind = match e[0] {
                0 => EntryKind::Chunk,
                1 => EntryKind::Recipe,
                k => return Err(self.corrupt(offset, format!("unknown entry kind {k}"))),
            };
            let len = u32::from_le_bytes(e[33..37].try_into().expect("4 bytes"));
            sum += u64::from(len);
            entries.push(Entry {
                kind,
                id: e[1..33].try_into().expect("32 bytes"),
                len,
            });
        }
        if sum != u64::from(raw_len) {
            return Err(self.corrupt(offset, "entry lengths do not add up to the block's"));
        }
        let header = BlockHeader {
            offset,
            table,
            compressed_len,
            raw_len,
            hash: fixed[16..48].try_into().expect("32 bytes"),
            entries,
        };
        if header.end() > self.len {
            return Err(self.corrupt(offset, "truncated"));
        }
        Ok(header)
    }

    /// Every block header, in order: the pack's table of contents.
    pub fn headers(&self) -> Result<Vec<BlockHeader>, PackError> {
        let mut out = Vec::new();
        let mut at = PACK_MAGIC.len() as u64;
        while at < self.len {
            let header = self.header_at(at)?;
            at = header.end();
            out.push(header);
        }
        Ok(out)
    }

    /// Decompresses a block and checks it against its checksum.
    pub fn read_block(&self, header: &BlockHeader) -> Result<Vec<u8>, PackError> {
        let mut compressed = vec![0u8; header.compressed_len as usize];
        self.read_exact_at(&mut compressed, header.offset + header.header_len())?;
        let raw = zstd::bulk::decompress(&compressed, header.raw_len as usize)
            .map_err(|e| self.corrupt(header.offset, format!("cannot decompress: {e}")))?;
        if raw.len() != header.raw_len as usize {
            return Err(self.corrupt(header.offset, "block decompresses to the wrong size"));
        }
        if block_checksum(&header.table, &raw).as_bytes() != &header.hash {
            return Err(self.corrupt(header.offset, "block does not match its checksum"));
        }
        Ok(raw)
    }

    /// Reads and checks the block at `offset`: header, checksum, and every chunk's hash.
    pub fn block_at(&self, offset: u64) -> Result<Block, PackError> {
        let header = self.header_at(offset)?;
        let raw = self.read_block(&header)?;
        for (start, e) in header.placed() {
            let bytes = &raw[start as usize..(start + e.len) as usize];
            let ok = match e.kind {
                EntryKind::Chunk => blake3::hash(bytes).as_bytes() == &e.id,
                EntryKind::Recipe => decode_recipe(bytes).is_some(),
            };
            if !ok {
                return Err(self.corrupt(
                    offset,
                    format!("entry {} does not match its id", ChunkId::from_bytes(e.id)),
                ));
            }
        }
        Ok(Block { header, raw })
    }
}

/// A decompressed, checked block.
#[derive(Debug)]
pub struct Block {
    pub header: BlockHeader,
    pub raw: Vec<u8>,
}

impl Block {
    /// The bytes of the entry at `offset` (in the raw block) with length `len`.
    pub fn slice(&self, offset: u32, len: u32) -> Option<&[u8]> {
        self.raw
            .get(offset as usize..(offset as usize).checked_add(len as usize)?)
    }
}

/// Removes a pack file (it is immutable; nothing else is ever done to it).
pub fn remove_pack(path: &Path) -> Result<(), PackError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("remove", path)(e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
