//! The cold tier: packing snapshots into content-defined chunks in zstd packs, and rehydrating
//! them into loose objects when they are materialized again.
//!
//! Crash safety follows the hot tier's rules. `pack` writes each pack under a temporary name,
//! syncs it, renames it, syncs `packs/`, and only then records it in the index; snapshot records
//! are marked `packed` after the index knows every chunk they need; loose objects are freed last,
//! under the store lock held exclusively, and only when the index confirms they can be rebuilt.
//! A kill at any point leaves at worst an unreferenced temporary file (a leftover) or a pack the
//! index does not know yet (indexed by the next `pack` or `verify --repair`).
//!
//! Packing holds `pack.lock` (one packer at a time) and the store lock shared while it writes,
//! so builds keep running; materializing holds the store lock shared while it rehydrates, so the
//! freeing step cannot take an object away from under it.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{self, Read};
use std::path::PathBuf;
use std::time::SystemTime;

use envstore_index::{ChunkLoc, ColdTotals, Index};
use envstore_lock::{FileLock, LockKind};
use envstore_objects::ObjectError;
use envstore_pack::{
    BlockBuilder, EncodedBlock, Entry, EntryKind, PackReader, PackWriter, WrittenPack,
    decode_recipe, encode_recipe, parse_pack_name,
};
use envstore_tree::{ChunkId, ObjectId, PackId, SnapshotId};
use rayon::prelude::*;

use crate::store::files::unix_secs;
use crate::store::mark::FileRef;
use crate::{Error, Result, Store};

/// A pack is closed once it holds this many bytes (so a repack never rewrites much at once).
const PACK_TARGET: u64 = 256 << 20;
/// Objects are read, cut and hashed this many bytes at a time: bounds pack's memory.
const BATCH_BYTES: u64 = 4 << 20;
/// At most this many chunks per pack (a few MiB of index entries held while it is written).
const PACK_CHUNKS: usize = 32 << 10;
/// Objects at least this large are read as a stream, one chunk at a time.
const LARGE_OBJECT: u64 = 16 << 20;

/// What `pack` did.
#[derive(Debug, Default, Clone)]
pub struct PackReport {
    /// The snapshots now in the cold tier.
    pub snapshots: Vec<SnapshotId>,
    /// Objects added to the cold tier now, and their bytes.
    pub objects: u64,
    pub object_bytes: u64,
    /// Chunks that were new to the cold tier, and their uncompressed bytes.
    pub new_chunks: u64,
    pub new_chunk_bytes: u64,
    /// Packs written, and their bytes on disk.
    pub packs: Vec<PackId>,
    pub pack_bytes: u64,
    /// Loose objects freed because every snapshot needing them is packed and not materialized.
    pub freed_objects: u64,
    pub freed_bytes: u64,
    /// Named snapshots that are materialized: packed, but their loose objects stay while the
    /// materialization does.
    pub kept_materialized: Vec<SnapshotId>,
    /// Packs on disk the index did not know (after an interrupted pack), now indexed.
    pub recovered_packs: u64,
}

/// An object read for packing: its size, and its chunks.
type Loaded = (ObjectId, u64, Vec<(ChunkId, Vec<u8>)>);

/// What a pack holds, read back from it.
pub(crate) struct ScannedPack {
    pub(crate) len: u64,
    pub(crate) chunks: Vec<(ChunkId, ChunkLoc)>,
    pub(crate) recipes: Vec<(ObjectId, Vec<u8>)>,
}

/// Reads a pack's table of contents (and its recipe entries) to index it.
pub(crate) fn scan_pack(reader: &PackReader, id: PackId) -> Result<ScannedPack, Error> {
    let mut scanned = ScannedPack {
        len: reader.len(),
        chunks: Vec::new(),
        recipes: Vec::new(),
    };
    for header in reader.headers().map_err(pack_err)? {
        scanned
            .chunks
            .extend(block_chunks(id, header.offset, header.placed()));
        let mut raw = None;
        for (offset, entry) in header.placed() {
            if entry.kind != EntryKind::Recipe {
                continue;
            }
            if raw.is_none() {
                raw = Some(reader.read_block(&header).map_err(pack_err)?);
            }
            let raw = raw.as_ref().expect("read above");
            let bytes = &raw[offset as usize..(offset + entry.len) as usize];
            scanned
                .recipes
                .push((ObjectId::from_bytes(entry.id), bytes.to_vec()));
        }
    }
    Ok(scanned)
}

pub(crate) fn pack_err(e: envstore_pack::PackError) -> Error {
    match e {
        envstore_pack::PackError::Io { op, path, source } => Error::Io { op, path, source },
        envstore_pack::PackError::Corrupt { .. } => Error::DamagedPack {
            reason: e.to_string(),
        },
    }
}

/// Where each object's chunks are, from the index: `None` for an object the cold tier cannot
/// rebuild (no recipe and no chunk of its id, or a chunk missing).
pub(crate) fn cold_lookup(
    index: &Index,
    objects: &[ObjectId],
) -> Result<Vec<Option<Vec<ChunkLoc>>>> {
    let recipes = index.recipes(objects)?;
    let mut chunk_lists: Vec<Vec<ChunkId>> = Vec::with_capacity(objects.len());
    for (object, recipe) in objects.iter().zip(recipes) {
        chunk_lists.push(match recipe {
            Some((_, bytes)) => match decode_recipe(&bytes) {
                Some((_, chunks)) => chunks,
                None => Vec::new(),
            },
            None => vec![ChunkId::from(*object)],
        });
    }
    let all: Vec<ChunkId> = chunk_lists.iter().flatten().copied().collect();
    let locs = index.chunk_locs(&all)?;
    let mut at = 0;
    Ok(chunk_lists
        .iter()
        .map(|chunks| {
            let these = &locs[at..at + chunks.len()];
            at += chunks.len();
            if chunks.is_empty() {
                return None;
            }
            these.iter().copied().collect::<Option<Vec<_>>>()
        })
        .collect())
}

/// Appends blocks to the pack being written, compressing them in parallel.
pub(crate) fn flush_blocks(
    store: &Store,
    writer: &mut Option<PackWriter>,
    blocks: Vec<BlockBuilder>,
) -> Result<()> {
    if blocks.is_empty() {
        return Ok(());
    }
    let encoded: Vec<EncodedBlock> = blocks
        .into_par_iter()
        .map(BlockBuilder::encode)
        .collect::<io::Result<_>>()
        .map_err(Error::io("compress a block for", &store.packs_dir()))?;
    for block in encoded {
        let w = match writer {
            Some(w) => w,
            None => writer.insert(PackWriter::create(&store.packs_dir()).map_err(pack_err)?),
        };
        w.append(block).map_err(pack_err)?;
    }
    Ok(())
}

/// The locations of the chunks among a block's entries.
fn block_chunks<'e>(
    pack: PackId,
    block: u64,
    entries: impl Iterator<Item = (u32, &'e Entry)>,
) -> impl Iterator<Item = (ChunkId, ChunkLoc)> {
    entries
        .filter(|(_, e)| e.kind == EntryKind::Chunk)
        .map(move |(offset, e)| {
            let loc = ChunkLoc {
                pack,
                block,
                offset,
                len: e.len,
            };
            (ChunkId::from_bytes(e.id), loc)
        })
}

/// Chunk locations of a pack just written, for the index.
pub(crate) fn written_chunks(pack: &WrittenPack) -> Vec<(ChunkId, ChunkLoc)> {
    pack.blocks
        .iter()
        .flat_map(|(block, entries)| block_chunks(pack.id, *block, envstore_pack::placed(entries)))
        .collect()
}

/// Builds packs from objects; see [`Store::pack`].
struct Packer<'s> {
    store: &'s Store,
    writer: Option<PackWriter>,
    chunks: BlockBuilder,
    recipes: BlockBuilder,
    /// Recipes in the pack being written, for the index.
    pending_recipes: Vec<(ObjectId, Vec<u8>)>,
    /// Chunks of the pack being written, and chunks the index was found to have since it was
    /// opened (cleared with each pack: the index knows a finished pack's chunks).
    known: HashSet<ChunkId>,
    /// Chunks in the pack being written: a pack is closed at [`PACK_CHUNKS`], so that what is
    /// held for its index stays bounded.
    pack_chunks: usize,
    /// Full blocks waiting to be compressed.
    sealed: Vec<BlockBuilder>,
    report: PackReport,
}

/// Fails unless an object's bytes hashed to its name.
fn check_whole(object: &ObjectId, whole: [u8; 32], path: PathBuf) -> Result<()> {
    if whole == *object.as_bytes() {
        return Ok(());
    }
    Err(ObjectError::Corrupt {
        path,
        actual: ObjectId::from_bytes(whole).to_hex(),
    }
    .into())
}

impl Packer<'_> {
    /// Reads, verifies and cuts one batch of objects (in parallel), and adds what is new.
    fn add_batch(&mut self, batch: &[FileRef]) -> Result<()> {
        let store = self.store;
        let loaded: Vec<Loaded> = batch
            .par_iter()
            .map(|file| {
                let object = &file.object;
                let (mut opened, path) =
                    store
                        .objects()
                        .open_either(object, file.executable, file.size)?;
                // Bounded: a file growing meanwhile fails the hash check below, at most a
                // byte larger than the tree says.
                let mut data = Vec::with_capacity(file.size as usize);
                (&mut opened)
                    .take(file.size + 1)
                    .read_to_end(&mut data)
                    .map_err(Error::io("read", &path))?;
                let size = data.len() as u64;
                let ranges = envstore_pack::cut(&data);
                // Never pack a damaged object: its bytes must hash to its name.
                let whole = blake3::hash(&data);
                check_whole(object, *whole.as_bytes(), path)?;
                let chunks: Vec<(ChunkId, Vec<u8>)> = if ranges.len() == 1 {
                    // One chunk (most files): its id is the object's, its bytes are moved.
                    vec![(ChunkId::from(whole), data)]
                } else {
                    ranges
                        .into_iter()
                        .map(|r| {
                            (
                                ChunkId::from(blake3::hash(&data[r.clone()])),
                                data[r].to_vec(),
                            )
                        })
                        .collect()
                };
                Ok((*object, size, chunks))
            })
            .collect::<Result<_>>()?;
        let mut chunks = Vec::new();
        for (object, size, these) in loaded {
            self.note_object(object, size, these.iter().map(|(id, _)| *id).collect());
            chunks.extend(these);
        }
        self.add_chunks(chunks)
    }

    /// Adds one large object, read and cut as a stream, so that memory stays bounded however
    /// large it is.
    fn add_large(&mut self, stored: &FileRef) -> Result<()> {
        let object = stored.object;
        let (file, path) =
            self.store
                .objects()
                .open_either(&object, stored.executable, stored.size)?;
        let mut hasher = blake3::Hasher::new();
        let (mut ids, mut size) = (Vec::new(), 0u64);
        let (mut pending, mut pending_bytes) = (Vec::new(), 0u64);
        for chunk in envstore_pack::cut_stream(io::BufReader::with_capacity(1 << 20, file)) {
            let chunk = chunk.map_err(Error::io("read", &path))?;
            hasher.update(&chunk);
            size += chunk.len() as u64;
            pending_bytes += chunk.len() as u64;
            let id = ChunkId::from(blake3::hash(&chunk));
            ids.push(id);
            pending.push((id, chunk));
            if pending_bytes >= BATCH_BYTES {
                self.add_chunks(std::mem::take(&mut pending))?;
                pending_bytes = 0;
            }
        }
        self.add_chunks(pending)?;
        check_whole(&object, *hasher.finalize().as_bytes(), path)?;
        // The recipe goes in after all its chunks: in the same pack or a later one.
        self.note_object(object, size, ids);
        Ok(())
    }

    /// Counts an object, and queues its recipe when it has several chunks.
    fn note_object(&mut self, object: ObjectId, size: u64, chunks: Vec<ChunkId>) {
        self.report.objects += 1;
        self.report.object_bytes += size;
        if chunks.len() > 1 {
            let recipe = encode_recipe(size, &chunks);
            self.recipes
                .push(EntryKind::Recipe, *object.as_bytes(), &recipe);
            self.pending_recipes.push((object, recipe));
            if self.recipes.full() {
                self.sealed.push(std::mem::take(&mut self.recipes));
            }
        }
    }

    /// Adds the chunks the cold tier does not have yet to blocks, compresses the full blocks,
    /// and closes the pack when it is large enough.
    fn add_chunks(&mut self, chunks: Vec<(ChunkId, Vec<u8>)>) -> Result<()> {
        let unknown: Vec<ChunkId> = chunks
            .iter()
            .map(|(id, _)| *id)
            .filter(|id| !self.known.contains(id))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        if !unknown.is_empty() {
            let index = self.store.open_index()?;
            for (id, loc) in unknown.iter().zip(index.chunk_locs(&unknown)?) {
                if loc.is_some() {
                    self.known.insert(*id);
                }
            }
        }
        for (id, bytes) in chunks {
            if self.known.insert(id) {
                self.report.new_chunks += 1;
                self.report.new_chunk_bytes += bytes.len() as u64;
                self.chunks.push(EntryKind::Chunk, *id.as_bytes(), &bytes);
                self.pack_chunks += 1;
                if self.chunks.full() {
                    self.sealed.push(std::mem::take(&mut self.chunks));
                }
            }
        }
        flush_blocks(
            self.store,
            &mut self.writer,
            std::mem::take(&mut self.sealed),
        )?;
        if self.writer.as_ref().is_some_and(|w| w.len() >= PACK_TARGET)
            || self.pack_chunks >= PACK_CHUNKS
        {
            self.finish_pack()?;
        }
        Ok(())
    }

    /// Writes the open blocks, makes the pack durable, then records it in the index.
    fn finish_pack(&mut self) -> Result<()> {
        let mut open = std::mem::take(&mut self.sealed);
        open.extend(
            [
                std::mem::take(&mut self.chunks),
                std::mem::take(&mut self.recipes),
            ]
            .into_iter()
            .filter(|b| !b.is_empty()),
        );
        flush_blocks(self.store, &mut self.writer, open)?;
        let Some(writer) = self.writer.take() else {
            return Ok(());
        };
        let pack = writer.finish().map_err(pack_err)?;
        let chunks = written_chunks(&pack);
        self.known.clear();
        self.pack_chunks = 0;
        let recipes = std::mem::take(&mut self.pending_recipes);
        self.store
            .open_index()?
            .add_pack(&pack.id, pack.len, &chunks, &recipes)?;
        self.report.packs.push(pack.id);
        self.report.pack_bytes += pack.len;
        Ok(())
    }
}

impl Store {
    pub(crate) fn packs_dir(&self) -> PathBuf {
        self.root().join("packs")
    }

    fn pack_lock(&self) -> Result<FileLock> {
        Ok(FileLock::acquire(
            &self.root().join("pack.lock"),
            LockKind::Exclusive,
            self.options().lock_timeout,
            "the pack lock (another pack, prune or repair is working on packs)",
        )?)
    }

    /// The packs in `packs/`, by name.
    pub(crate) fn pack_files(&self) -> Result<Vec<(PackId, PathBuf)>> {
        let dir = self.packs_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("read", &dir)(e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(Error::io("read", &dir))?;
            if let Some(id) = entry.file_name().to_str().and_then(parse_pack_name) {
                out.push((id, entry.path()));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Brings the index in line with `packs/`: indexes packs it does not know (written by an
    /// interrupted `pack`) and forgets packs that are gone. A pack that cannot be read is left
    /// for `verify` to report. Returns how many packs were indexed.
    pub(crate) fn reconcile_packs(&self) -> Result<u64> {
        let on_disk = self.pack_files()?;
        let index = self.open_index()?;
        let indexed: HashMap<PackId, u64> = index.packs()?.into_iter().collect();
        let mut added = 0;
        for (id, path) in &on_disk {
            if indexed.contains_key(id) {
                continue;
            }
            let Ok(scanned) = PackReader::open(path)
                .map_err(pack_err)
                .and_then(|r| scan_pack(&r, *id))
            else {
                continue;
            };
            index.add_pack(id, scanned.len, &scanned.chunks, &scanned.recipes)?;
            added += 1;
        }
        let present: HashSet<PackId> = on_disk.iter().map(|(id, _)| *id).collect();
        let gone: Vec<PackId> = indexed
            .keys()
            .filter(|id| !present.contains(id))
            .copied()
            .collect();
        if !gone.is_empty() {
            index.remove_packs(&gone)?;
        }
        Ok(added)
    }

    /// Moves snapshots into the cold tier: every object they need is cut into chunks, new chunks
    /// are compressed into packs, the snapshots are marked packed, and loose objects that no
    /// materialized or unpacked snapshot needs are freed. With no ids, packs every snapshot that
    /// is not materialized.
    pub fn pack(&self, only: &[SnapshotId]) -> Result<PackReport> {
        let _pack_lock = self.pack_lock()?;
        let report = {
            let _shared = self.lock_shared()?;
            fs::create_dir_all(self.packs_dir()).map_err(Error::io("create", &self.packs_dir()))?;
            let mut report = PackReport {
                recovered_packs: self.reconcile_packs()?,
                ..PackReport::default()
            };
            let targets: Vec<SnapshotId> = if only.is_empty() {
                self.snapshot_ids()?
                    .into_iter()
                    .filter(|id| !self.is_materialized(id))
                    .collect()
            } else {
                for id in only {
                    if !self.has_snapshot(id) {
                        return Err(Error::UnknownSnapshot {
                            prefix: id.to_hex(),
                        });
                    }
                }
                only.to_vec()
            };
            report.kept_materialized = targets
                .iter()
                .filter(|id| self.is_materialized(id))
                .copied()
                .collect();

            // The objects, in tree order, without those the cold tier has; streamed in
            // batches, so that memory does not grow with the snapshots.
            let mut packer = Packer {
                store: self,
                writer: None,
                chunks: BlockBuilder::default(),
                recipes: BlockBuilder::default(),
                pending_recipes: Vec::new(),
                known: HashSet::new(),
                pack_chunks: 0,
                sealed: Vec::new(),
                report,
            };
            let mut batch = Vec::new();
            let mut batch_bytes = 0;
            self.for_each_file_batch(&targets, 4096, &mut |files| {
                let ids: Vec<ObjectId> = files.iter().map(|f| f.object).collect();
                let cold = cold_lookup(&self.open_index()?, &ids)?;
                for (file, cold) in files.iter().zip(cold) {
                    if cold.is_some() {
                        continue;
                    }
                    // The size is the tree's: opening checks the object has it.
                    if file.size >= LARGE_OBJECT {
                        packer.add_large(file)?;
                        continue;
                    }
                    batch.push(*file);
                    batch_bytes += file.size;
                    if batch_bytes >= BATCH_BYTES {
                        packer.add_batch(&batch)?;
                        batch.clear();
                        batch_bytes = 0;
                    }
                }
                Ok(())
            })?;
            packer.add_batch(&batch)?;
            packer.finish_pack()?;
            let mut report = packer.report;

            // Only now, with every chunk durable and indexed, are the snapshots marked packed.
            let now = unix_secs(SystemTime::now());
            let mut records = Vec::new();
            for id in &targets {
                let mut meta = self.snapshot_meta(id)?;
                meta.packed = now;
                self.write_file_atomic(&self.snapshot_file(id), meta.to_text().as_bytes())?;
                records.push((*id, meta));
            }
            let _ = self.update_index(|index| index.put_snapshots(&records));
            report.snapshots = targets;
            report
        };
        let (freed_objects, freed_bytes) = self.free_packed_objects()?;
        Ok(PackReport {
            freed_objects,
            freed_bytes,
            ..report
        })
    }

    /// Totals of the cold tier for `stats` (after bringing the index in line with `packs/`).
    pub(crate) fn cold_totals(&self) -> Result<ColdTotals> {
        if self.pack_files()?.is_empty() {
            return Ok(ColdTotals::default());
        }
        self.reconcile_packs()?;
        Ok(self.open_index()?.cold_totals()?)
    }
}
