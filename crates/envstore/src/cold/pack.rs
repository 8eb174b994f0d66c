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

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read};
use std::path::PathBuf;
use std::time::SystemTime;

use envstore_objects::ObjectError;
use envstore_pack::{BlockBuilder, EntryKind, PackWriter, encode_recipe};
use envstore_tree::{ChunkId, ObjectId, PackId, SnapshotId};
use rayon::prelude::*;

use crate::cold::packs::{cold_lookup, flush_blocks, pack_err, written_chunks};
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

/// Moves snapshots into the cold tier: every object they need is cut into chunks, new chunks
/// are compressed into packs, the snapshots are marked packed, and loose objects that no
/// materialized or unpacked snapshot needs are freed. With no ids, packs every snapshot that
/// is not materialized.
pub(crate) fn pack(store: &Store, only: &[SnapshotId]) -> Result<PackReport> {
    let _pack_lock = store.pack_lock()?;
    let report = {
        let _shared = store.lock_shared()?;
        fs::create_dir_all(store.packs_dir()).map_err(Error::io("create", &store.packs_dir()))?;
        let mut report = PackReport {
            recovered_packs: crate::cold::packs::reconcile_packs(store)?,
            ..PackReport::default()
        };
        let targets: Vec<SnapshotId> = if only.is_empty() {
            store
                .snapshot_ids()?
                .into_iter()
                .filter(|id| !store.is_materialized(id))
                .collect()
        } else {
            for id in only {
                if !store.has_snapshot(id) {
                    return Err(Error::UnknownSnapshot {
                        prefix: id.to_hex(),
                    });
                }
            }
            only.to_vec()
        };
        report.kept_materialized = targets
            .iter()
            .filter(|id| store.is_materialized(id))
            .copied()
            .collect();

        // The objects, in tree order, without those the cold tier has; streamed in
        // batches, so that memory does not grow with the snapshots.
        let mut packer = Packer {
            store,
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
        crate::store::mark::for_each_file_batch(store, &targets, 4096, &mut |files| {
            let ids: Vec<ObjectId> = files.iter().map(|f| f.object).collect();
            let cold = cold_lookup(&store.open_index()?, &ids)?;
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
            let mut meta = store.snapshot_meta(id)?;
            meta.packed = now;
            store.write_file_atomic(&store.snapshot_file(id), meta.to_text().as_bytes())?;
            records.push((*id, meta));
        }
        let _ = store.update_index(|index| index.put_snapshots(&records));
        report.snapshots = targets;
        report
    };
    let (freed_objects, freed_bytes) = crate::cold::sweep::free_packed_objects(store)?;
    Ok(PackReport {
        freed_objects,
        freed_bytes,
        ..report
    })
}
