//! The upload half of a push: the objects below trees the remote lacks, cut as `pack` cuts
//! them, what the remote lacks of them written to new packs (each uploaded before its index),
//! and which packs hold everything below each tree (the summaries a push publishes).

use std::collections::{BTreeSet, HashMap};
use std::io::BufReader;
use std::path::{Path, PathBuf};

use envstore_pack::{BlockBuilder, EntryKind, PackWriter, encode_recipe};
use envstore_remote::format::{self, IndexBlock, PackIndex};
use envstore_remote::summary::Of;
use envstore_tree::{ChunkId, ObjectId, PackId, TreeId};

use crate::cold::packs::pack_err;
use crate::remote::homes::Homes;
use crate::remote::negotiate::{BIG_OBJECT, Found, Part, Shape};
use crate::remote::open::{CACHE_DIR, Indexed, Remote, index_entries};
use crate::{Error, Result, Store};

/// Remote packs are closed at this size (even in the middle of a large file): a pack is held
/// in memory once while it is uploaded, so this bounds a push's memory; large enough that a
/// push makes few requests.
const PACK_TARGET: u64 = 16 << 20;
/// A pack is also closed after the block that brings it to this many entries, so its index
/// (held until the pack is uploaded) stays small however small the files are.
const PACK_ENTRIES: usize = 1 << 16;
/// Objects at least this large are read as a stream (as `pack` does).
const STREAM_OBJECT: u64 = 16 << 20;
/// What a push uploaded: the summaries to publish, and the packs its record lists.
pub(super) type Uploaded = (Vec<(Of, Vec<PackId>)>, BTreeSet<PackId>);
/// What the remote holds of the base's packs, from their indexes: each chunk's pack (as a
/// slot), each recipe.
struct Held {
    chunks: Homes,
    recipes: HashMap<ObjectId, (u32, Vec<ChunkId>)>,
}

impl Held {
    /// Reads the indexes of `packs`, one at a time.
    fn read(
        store: &Store,
        remote: &Remote,
        packs: &[PackId],
        slots: &mut Slots,
        dir: &Path,
    ) -> Result<Held> {
        let mut held = Held {
            chunks: Homes::new(dir),
            recipes: HashMap::new(),
        };
        crate::remote::open::for_each_pack_index(store, remote, packs, |pack, idx| {
            let slot = slots.of(*pack);
            for entry in index_entries(&idx) {
                match entry {
                    Indexed::Chunk { id, .. } => held.chunks.insert(id, slot)?,
                    Indexed::Recipe { object, recipe } => {
                        let chunks = recipe.map(|(_, c)| c).unwrap_or_default();
                        held.recipes.insert(object, (slot, chunks));
                    }
                }
            }
            Ok(())
        })?;
        Ok(held)
    }

    /// The slots of the packs that hold everything to rebuild chunked `object`, when the
    /// remote has it all.
    fn chunked(&self, object: &ObjectId) -> Result<Option<Vec<u32>>> {
        let Some((slot, chunks)) = self.recipes.get(object) else {
            return Ok(None);
        };
        let mut slots = vec![*slot];
        for c in chunks {
            match self.chunks.get(c)? {
                Some(s) => slots.push(s),
                None => return Ok(None),
            }
        }
        slots.sort_unstable();
        slots.dedup();
        Ok(Some(slots))
    }
}

/// What the uploads did so far (a push reports it).
#[derive(Debug, Default)]
pub(super) struct Tally {
    /// Packs uploaded, and their bytes.
    pub(super) packs: Vec<PackId>,
    pub(super) pack_bytes: u64,
    /// Chunks uploaded and their uncompressed bytes.
    pub(super) new_chunks: u64,
    pub(super) new_chunk_bytes: u64,
    /// Files whose objects the remote had, found one by one (in the last attempt).
    pub(super) reused_objects: u64,
}

/// Packs by a small number: the remote's, and this push's before they are named.
#[derive(Default)]
struct Slots {
    ids: Vec<Option<PackId>>,
    by_id: HashMap<PackId, u32>,
}

impl Slots {
    fn of(&mut self, pack: PackId) -> u32 {
        *self.by_id.entry(pack).or_insert_with(|| {
            self.ids.push(Some(pack));
            (self.ids.len() - 1) as u32
        })
    }

    fn reserve(&mut self) -> u32 {
        self.ids.push(None);
        (self.ids.len() - 1) as u32
    }

    fn name(&mut self, slot: u32, pack: PackId) {
        self.ids[slot as usize] = Some(pack);
        self.by_id.insert(pack, slot);
    }

    fn packs(&self, slots: &BTreeSet<u32>) -> Vec<PackId> {
        let mut packs: Vec<PackId> = slots.iter().filter_map(|s| self.ids[*s as usize]).collect();
        packs.sort_unstable();
        packs.dedup();
        packs
    }
}

/// The packs a push is writing and uploading.
pub(super) struct Outgoing<'s> {
    store: &'s Store,
    remote: &'s Remote,
    dir: PathBuf,
    writer: Option<PackWriter>,
    block: BlockBuilder,
    /// Recipe bytes of the pack being written (the index carries them).
    recipes: HashMap<[u8; 32], Vec<u8>>,
    /// Chunks already in a pack of this attempt, and that pack's slot.
    new_chunks: Homes,
    slots: Slots,
    /// The slot of the pack being written, and the entries queued for it.
    open_slot: Option<u32>,
    pack_entries: usize,
    pub(super) tally: Tally,
}

impl<'s> Outgoing<'s> {
    pub(super) fn new(store: &'s Store, remote: &'s Remote, dir: &Path) -> Self {
        Outgoing {
            store,
            remote,
            dir: dir.to_owned(),
            writer: None,
            block: BlockBuilder::default(),
            recipes: HashMap::new(),
            new_chunks: Homes::new(dir),
            slots: Slots::default(),
            open_slot: None,
            pack_entries: 0,
            tally: Tally::default(),
        }
    }

    /// Uploads what the remote lacks below the big trees it does not have whole, and returns
    /// the summaries to publish (each such tree, and each large object below it the remote did
    /// not have, with the packs holding it; the root last) and the packs the snapshot needs.
    pub(super) fn upload_missing(&mut self, shape: &Shape, found: &Found) -> Result<Uploaded> {
        self.new_chunks = Homes::new(&self.dir);
        self.slots = Slots::default();
        self.tally.reused_objects = 0;
        let order = shape.post_order(&found.present)?;
        if order.is_empty() {
            let needed = found.present.get(&shape.root).cloned().unwrap_or_default();
            return Ok((Vec::new(), needed.into_iter().collect()));
        }
        // Small objects below trees the remote lacks are looked for in the base's packs only:
        // reading the indexes of every pack a present tree lists would cost what those packs
        // hold, not what this push moves.
        let mut base: Vec<PackId> = found.base.iter().copied().collect();
        base.sort_unstable();
        let held = Held::read(self.store, self.remote, &base, &mut self.slots, &self.dir)?;
        // The slots of objects that are not one chunk found by its id: large ones (their
        // summaries list them) and chunked ones. Others are found by their chunk each time.
        let mut objects: HashMap<ObjectId, Vec<u32>> = HashMap::new();
        let mut sets: HashMap<TreeId, BTreeSet<u32>> = HashMap::new();
        let mut large = Vec::new();
        for big in &order {
            let mut set = BTreeSet::new();
            shape.region(big, |part| {
                match part {
                    Part::File(object, executable, size) => {
                        if let Some(slots) = objects.get(&object) {
                            set.extend(slots.iter().copied());
                            return Ok(());
                        }
                        let slots = self.object_slots(object, executable, size, found, &held)?;
                        set.extend(slots.iter().copied());
                        if size >= BIG_OBJECT || slots.len() > 1 {
                            if size >= BIG_OBJECT && !found.objects.contains_key(&object) {
                                large.push(object);
                            }
                            objects.insert(object, slots);
                        }
                    }
                    Part::Big(tree) => match found.present.get(&tree) {
                        Some(packs) => set.extend(packs.iter().map(|p| self.slots.of(*p))),
                        None => set.extend(sets[&tree].iter().copied()),
                    },
                }
                Ok(())
            })?;
            sets.insert(*big, set);
        }
        self.finish_pack()?;
        // Free what it knows of this attempt's chunks: the record comes next.
        self.new_chunks = Homes::new(&self.dir);
        let needed = self.slots.packs(&sets[&shape.root]).into_iter().collect();
        let mut summaries: Vec<(Of, Vec<PackId>)> = large
            .into_iter()
            .map(|o| {
                let slots = objects[&o].iter().copied().collect();
                (Of::Object(o), self.slots.packs(&slots))
            })
            .collect();
        summaries.extend(
            order
                .into_iter()
                .map(|t| (Of::Tree(t), self.slots.packs(&sets[&t]))),
        );
        Ok((summaries, needed))
    }

    /// The slots of the packs that hold `object`: where the remote has it (by a summary, in
    /// the base's packs), where this push put it already, else where it goes now.
    fn object_slots(
        &mut self,
        object: ObjectId,
        executable: bool,
        size: u64,
        found: &Found,
        held: &Held,
    ) -> Result<Vec<u32>> {
        if let Some(packs) = found.objects.get(&object) {
            self.tally.reused_objects += 1;
            return Ok(packs.iter().map(|p| self.slots.of(*p)).collect());
        }
        // An object of one chunk is that chunk (the same hash of the same bytes).
        let whole = ChunkId::from(object);
        if let Some(slot) = held.chunks.get(&whole)? {
            self.tally.reused_objects += 1;
            return Ok(vec![slot]);
        }
        if let Some(slot) = self.new_chunks.get(&whole)? {
            return Ok(vec![slot]);
        }
        if let Some(slots) = held.chunked(&object)? {
            self.tally.reused_objects += 1;
            return Ok(slots);
        }
        self.add_object(object, executable, size, held)
    }

    /// Reads a local object (checking it against its id), cuts it, and queues what the remote
    /// lacks; returns the slots of the packs that hold it.
    fn add_object(
        &mut self,
        object: ObjectId,
        executable: bool,
        size: u64,
        held: &Held,
    ) -> Result<Vec<u32>> {
        let path = self.store.objects().require(&object, executable)?;
        let (file, meta) = envstore_fs::open_regular(&path).map_err(Error::io("read", &path))?;
        let damaged = || Error::DamagedObject { path: path.clone() };
        if meta.len() != size {
            return Err(damaged());
        }
        let mut hasher = blake3::Hasher::new();
        let mut chunks = Vec::new();
        let mut slots = Vec::new();
        let mut queue = |this: &mut Self, chunk: &[u8]| -> Result<()> {
            hasher.update(chunk);
            let cid = ChunkId::from(blake3::hash(chunk));
            chunks.push(cid);
            if let Some(slot) = held.chunks.get(&cid)? {
                slots.push(slot);
            } else if let Some(slot) = this.new_chunks.get(&cid)? {
                slots.push(slot);
            } else {
                this.tally.new_chunks += 1;
                this.tally.new_chunk_bytes += chunk.len() as u64;
                let slot = this.add(EntryKind::Chunk, *cid.as_bytes(), chunk)?;
                slots.push(slot);
                this.new_chunks.insert(cid, slot)?;
            }
            Ok(())
        };
        // Cut exactly as `pack` does (small objects whole, large ones streamed), so a chunk
        // has one id everywhere and a pull can use the chunks a store has in its own packs.
        if size < STREAM_OBJECT {
            let mut data = Vec::with_capacity(size as usize);
            std::io::Read::read_to_end(&mut std::io::Read::take(file, size + 1), &mut data)
                .map_err(Error::io("read", &path))?;
            for range in envstore_pack::cut(&data) {
                queue(self, &data[range])?;
            }
        } else {
            for chunk in envstore_pack::cut_stream(BufReader::with_capacity(1 << 20, file)) {
                queue(self, &chunk.map_err(Error::io("read", &path))?)?;
            }
        }
        if ObjectId::from(hasher.finalize()) != object {
            return Err(damaged());
        }
        if chunks.len() > 1 {
            let recipe = encode_recipe(size, &chunks);
            self.recipes.insert(*object.as_bytes(), recipe.clone());
            slots.push(self.add(EntryKind::Recipe, *object.as_bytes(), &recipe)?);
        }
        slots.sort_unstable();
        slots.dedup();
        Ok(slots)
    }

    /// Queues an entry; a full block is sealed, and a full pack uploaded even in the middle
    /// of an object, so neither grows with the largest file.
    /// Returns the slot of the pack the entry goes in.
    fn add(&mut self, kind: EntryKind, id: [u8; 32], bytes: &[u8]) -> Result<u32> {
        let slot = match self.open_slot {
            Some(slot) => slot,
            None => *self.open_slot.insert(self.slots.reserve()),
        };
        self.block.push(kind, id, bytes);
        self.pack_entries += 1;
        if self.block.full() {
            self.seal()?;
            if self.pack_entries >= PACK_ENTRIES
                || self.writer.as_ref().is_some_and(|w| w.len() >= PACK_TARGET)
            {
                self.finish_pack()?;
            }
        }
        Ok(slot)
    }

    fn seal(&mut self) -> Result<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        let block = std::mem::take(&mut self.block)
            .encode()
            .map_err(Error::io("compress a block for", &self.dir))?;
        let writer = match &mut self.writer {
            Some(w) => w,
            None => self
                .writer
                .insert(PackWriter::create(&self.dir).map_err(pack_err)?),
        };
        writer.append(block).map_err(pack_err)?;
        Ok(())
    }

    /// Closes the pack being written and uploads it, then its index.
    pub(super) fn finish_pack(&mut self) -> Result<Option<PackId>> {
        self.seal()?;
        let Some(writer) = self.writer.take() else {
            return Ok(None);
        };
        let written = writer.finish().map_err(pack_err)?;
        let ends: Vec<u64> = written
            .blocks
            .iter()
            .skip(1)
            .map(|(offset, _)| *offset)
            .chain([written.len])
            .collect();
        let blocks = written
            .blocks
            .iter()
            .zip(ends)
            .map(|((offset, entries), end)| IndexBlock {
                offset: *offset,
                len: end - offset,
                entries: entries.clone(),
                recipes: entries
                    .iter()
                    .filter(|e| e.kind == EntryKind::Recipe)
                    .map(|e| self.recipes.get(&e.id).cloned().unwrap_or_default())
                    .collect(),
            })
            .collect();
        let index = PackIndex {
            pack: written.id,
            len: written.len,
            blocks,
        }
        .encode();
        let bytes = std::fs::read(&written.path).map_err(Error::io("read", &written.path))?;
        self.remote
            .storage()
            .put(&format::pack_key(&written.id), bytes)?;
        self.remote
            .storage()
            .put(&format::index_key(&written.id), index.clone())?;
        let _ = std::fs::remove_file(&written.path);
        if self.store.is_writable() {
            let cache = self.store.root().join(CACHE_DIR);
            let _ = self
                .store
                .write_file_atomic(&cache.join(format!("{}.idx", written.id)), &index);
        }
        self.recipes.clear();
        self.pack_entries = 0;
        if let Some(slot) = self.open_slot.take() {
            self.slots.name(slot, written.id);
        }
        self.tally.packs.push(written.id);
        self.tally.pack_bytes += written.len;
        Ok(Some(written.id))
    }
}
