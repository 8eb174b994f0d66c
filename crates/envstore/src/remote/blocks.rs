//! Bringing a pull's objects in, a bounded batch at a time: each object from the store's own
//! packs where they hold it, else from blocks fetched into a temporary pack, checked (header,
//! checksum, every chunk's id) and then kept as a pack of the store; every object is written
//! and checked against its id. Memory follows the batch, not the snapshot: plans, chunk
//! locations and the fetched pack's entries of one batch are dropped before the next. A pull
//! refused in a later batch keeps what earlier batches checked and wrote (objects and packs
//! that hash to their names, referenced by no snapshot: the next pull uses them, or prune
//! removes them); it still leaves no snapshot and no trees.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::Path;

use envstore_idset::{Table, TableBuilder};
use envstore_index::ChunkLoc;
use envstore_pack::{EntryKind, PACK_MAGIC, PackReader, pack_path};
use envstore_remote::format;
use envstore_tree::{ChunkId, ObjectId, PackId, SnapshotId};

use crate::cold::packs::{cold_lookup, pack_err};
use crate::cold::rehydrate::Plan;
use crate::remote::open::{Indexed, Remote, index_entries};
use crate::{Error, Result, Store};

/// Objects planned and written together.
pub(super) const BATCH: usize = 8192;
/// The temporary pack's id in a plan (no real pack hashes to it).
const INCOMING: PackId = PackId::from_bytes([0xff; 32]);
/// The most one request asks for (neighbouring blocks are fetched together up to this);
/// what comes back is streamed to disk, so this bounds the time of a request, not memory.
const MAX_RANGE: u64 = 16 << 20;

/// What the batches brought, added up (the pull's report takes it over).
#[derive(Debug, Default)]
pub(super) struct Brought {
    pub(super) objects: u64,
    pub(super) object_bytes: u64,
    pub(super) blocks: u64,
    pub(super) fetched_bytes: u64,
    pub(super) fetched_chunks: u64,
    pub(super) local_chunks: u64,
}

/// Where the remote keeps what a snapshot needs, from the indexes of the packs its record
/// lists: each chunk's block (its pack's place in `packs`, its length and offset), in a table
/// on disk, as it grows with the snapshot; and each chunked object's recipe (these grow with
/// the bytes of large files only).
pub(super) struct RemoteChunks {
    packs: Vec<PackId>,
    chunk_at: Table<48>,
    recipes: HashMap<ObjectId, (u64, Vec<ChunkId>)>,
}

impl RemoteChunks {
    /// Reads the indexes of `packs`, one at a time, into a table in `tmp`.
    pub(super) fn build(
        store: &Store,
        remote: &Remote,
        packs: &[PackId],
        tmp: &Path,
    ) -> Result<RemoteChunks> {
        let table_err = |e: std::io::Error| Error::io("write a temporary table in", tmp)(e);
        let mut table = TableBuilder::<48>::new(tmp, envstore_idset::buffer());
        let mut recipes = HashMap::new();
        let mut listed = Vec::with_capacity(packs.len());
        crate::remote::open::for_each_pack_index(store, remote, packs, |pack, index| {
            let n = listed.len() as u32;
            listed.push(*pack);
            for entry in index_entries(&index) {
                match entry {
                    Indexed::Chunk { id, offset, len } => {
                        let len = u32::try_from(len).map_err(|_| {
                            remote.refused(format!("a block of pack {pack} is too long"))
                        })?;
                        let mut at = [0; 16];
                        at[..4].copy_from_slice(&n.to_le_bytes());
                        at[4..8].copy_from_slice(&len.to_le_bytes());
                        at[8..].copy_from_slice(&offset.to_le_bytes());
                        table.insert(id.as_bytes(), &at).map_err(&table_err)?;
                    }
                    Indexed::Recipe { object, recipe } => {
                        if let Some(recipe) = recipe {
                            recipes.insert(object, recipe);
                        }
                    }
                }
            }
            Ok(())
        })?;
        Ok(RemoteChunks {
            packs: listed,
            chunk_at: table.finish().map_err(&table_err)?,
            recipes,
        })
    }

    /// Where the remote keeps `chunk`: its pack, and its block's offset and length.
    fn chunk_at(&self, chunk: &ChunkId, tmp: &Path) -> Result<Option<(PackId, u64, u64)>> {
        let Some(r) = self
            .chunk_at
            .get(chunk.as_bytes())
            .map_err(Error::io("read a temporary table in", tmp))?
        else {
            return Ok(None);
        };
        let n = u32::from_le_bytes(r[32..36].try_into().expect("4 bytes"));
        let len = u32::from_le_bytes(r[36..40].try_into().expect("4 bytes"));
        let offset = u64::from_le_bytes(r[40..].try_into().expect("8 bytes"));
        Ok(Some((self.packs[n as usize], offset, u64::from(len))))
    }
}

/// Brings `batch` (objects the store lacks: id, executable, size) into the store.
pub(super) fn bring(
    store: &Store,
    remote: &Remote,
    id: &SnapshotId,
    batch: &[(ObjectId, bool, u64)],
    chunks: &RemoteChunks,
    tmp: &Path,
    report: &mut Brought,
) -> Result<()> {
    // Which objects the store's own packs can rebuild; the chunks of the others.
    let index = store.open_index()?;
    let local = cold_lookup(&index, &batch.iter().map(|m| m.0).collect::<Vec<_>>())?;
    let mut plan: Plan = Vec::new();
    let mut remote_objects = Vec::new();
    for (&(object, executable, size), locs) in batch.iter().zip(local) {
        match locs {
            Some(locs) => plan.push((object, executable, locs)),
            None => remote_objects.push((object, executable, size)),
        }
    }
    let mut object_chunks = Vec::with_capacity(remote_objects.len());
    for (object, _, size) in &remote_objects {
        object_chunks.push(match chunks.recipes.get(object) {
            Some((recipe_size, list)) if recipe_size == size => list.clone(),
            Some(_) => {
                return Err(remote.refused(format!(
                    "the recipe of object {object} has another size than its trees say"
                )));
            }
            None => vec![ChunkId::from(*object)],
        });
    }
    let all: Vec<ChunkId> = object_chunks.iter().flatten().copied().collect();
    let local_locs = index.chunk_locs(&all)?;
    drop(index);
    let mut have: HashMap<ChunkId, ChunkLoc> = HashMap::new();
    let mut blocks = Vec::new();
    for (chunk, loc) in all.iter().zip(local_locs) {
        if have.contains_key(chunk) {
            continue;
        }
        match loc {
            Some(loc) => {
                report.local_chunks += 1;
                have.insert(*chunk, loc);
            }
            None => match chunks.chunk_at(chunk, tmp)? {
                Some(block) => blocks.push(block),
                None => {
                    return Err(remote.refused(format!(
                        "the packs snapshot {id} lists do not hold chunk {chunk}"
                    )));
                }
            },
        }
    }
    drop(all);
    blocks.sort();
    blocks.dedup();
    let incoming_path = tmp.join("incoming.pack");
    let fetched = fetch_blocks(remote, &blocks, &incoming_path, report)?;
    let mut readers = HashMap::new();
    // Every chunk of the fetched blocks, checked: the store keeps them (below).
    let mut incoming = Vec::new();
    if !fetched.is_empty() {
        let reader = PackReader::open(&incoming_path).map_err(pack_err)?;
        for (offset, pack, at) in fetched {
            // Header, checksum and every chunk's id: a block that fails is refused whole.
            let block = reader.block_at(offset).map_err(|e| {
                let why = match e {
                    envstore_pack::PackError::Corrupt { reason, .. } => reason,
                    other => other.to_string(),
                };
                remote.refused(format!("the block at byte {at} of pack {pack}: {why}"))
            })?;
            for (at, e) in block.header.placed() {
                if e.kind == EntryKind::Chunk {
                    let loc = ChunkLoc {
                        pack: INCOMING,
                        block: offset,
                        offset: at,
                        len: e.len,
                    };
                    if let std::collections::hash_map::Entry::Vacant(v) =
                        have.entry(ChunkId::from_bytes(e.id))
                    {
                        v.insert(loc);
                        report.fetched_chunks += 1;
                    }
                    incoming.push((ChunkId::from_bytes(e.id), loc));
                }
            }
        }
        readers.insert(INCOMING, reader);
    }
    for ((object, executable, _), list) in remote_objects.iter().zip(object_chunks) {
        let locs = list
            .iter()
            .map(|c| {
                have.get(c).copied().ok_or_else(|| {
                    remote.refused(format!(
                        "a fetched block does not hold chunk {c}, which its pack index lists"
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        plan.push((*object, *executable, locs));
    }
    drop(have);
    for (_, _, locs) in &plan {
        for loc in locs {
            if let std::collections::hash_map::Entry::Vacant(e) = readers.entry(loc.pack) {
                let path = pack_path(&store.packs_dir(), &loc.pack);
                e.insert(PackReader::open(&path).map_err(pack_err)?);
            }
        }
    }
    let (objects, bytes) = crate::cold::rehydrate::write_from_packs(store, &plan, &readers)
        .map_err(|e| match e {
            Error::Object(e) => remote.refused(format!("an object did not rebuild: {e}")),
            other => other,
        })?;
    report.objects += objects;
    report.object_bytes += bytes;
    drop(readers);
    if !incoming.is_empty() {
        // Kept as a pack of the store: a later pull of a snapshot sharing these chunks (an
        // edited large file) fetches none of them again. A cache: failing to keep it fails
        // nothing.
        if let Err(e) = crate::cold::packs::adopt_pack(store, &incoming_path, &incoming) {
            store.warn(format!("could not keep the fetched blocks as a pack: {e}"));
        }
    }
    let _ = std::fs::remove_file(&incoming_path);
    Ok(())
}

/// Fetches `blocks` (pack, offset, length; sorted) into a temporary pack at `path`,
/// coalescing neighbours into one range and streaming what comes back to disk.
/// Returns each block's offset in the temporary pack, with its pack and offset there.
fn fetch_blocks(
    remote: &Remote,
    blocks: &[(PackId, u64, u64)],
    path: &Path,
    report: &mut Brought,
) -> Result<Vec<(u64, PackId, u64)>> {
    if blocks.is_empty() {
        return Ok(Vec::new());
    }
    // (pack, start, end, blocks in it)
    let mut ranges: Vec<(PackId, u64, u64, Vec<u64>)> = Vec::new();
    for &(pack, offset, len) in blocks {
        match ranges.last_mut() {
            Some((p, start, end, lens))
                if *p == pack && *end == offset && *end - *start + len <= MAX_RANGE =>
            {
                *end += len;
                lens.push(len);
            }
            _ => ranges.push((pack, offset, offset + len, vec![len])),
        }
    }
    let mut file = std::fs::File::create(path).map_err(Error::io("create", path))?;
    file.write_all(PACK_MAGIC)
        .map_err(Error::io("write", path))?;
    let mut at = PACK_MAGIC.len() as u64;
    let mut offsets = Vec::new();
    for (pack, start, _, lens) in &ranges {
        let mut there = *start;
        for len in lens {
            offsets.push((at, *pack, there));
            at += len;
            there += len;
            report.blocks += 1;
        }
    }
    let requests: Vec<(String, std::ops::Range<u64>)> = ranges
        .iter()
        .map(|(p, s, e, _)| (format::pack_key(p), *s..*e))
        .collect();
    remote
        .storage()
        .get_ranges_into(&requests, &file, PACK_MAGIC.len() as u64)?;
    report.fetched_bytes += at - PACK_MAGIC.len() as u64;
    Ok(offsets)
}
