//! The packs on disk: listing them, reading one back, finding chunks through the index, writing
//! blocks, and reconciling the index with `packs/` (the truth).

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{self};
use std::path::PathBuf;

use envstore_index::{ChunkLoc, ColdTotals, Index};
use envstore_pack::{
    BlockBuilder, EncodedBlock, Entry, EntryKind, PackReader, PackWriter, WrittenPack,
    decode_recipe, parse_pack_name,
};
use envstore_tree::{ChunkId, ObjectId, PackId};
use rayon::prelude::*;

use crate::{Error, Result, Store};

/// What a pack holds, read back from it.
pub(crate) struct ScannedPack {
    pub(crate) len: u64,
    pub(crate) chunks: Vec<(ChunkId, ChunkLoc)>,
    pub(crate) recipes: Vec<(ObjectId, Vec<u8>)>,
}

/// Reads a pack's table of contents (and its recipe entries) to index it.
fn scan_pack(reader: &PackReader, id: PackId) -> Result<ScannedPack, Error> {
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
pub(super) fn flush_blocks(
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
pub(super) fn written_chunks(pack: &WrittenPack) -> Vec<(ChunkId, ChunkLoc)> {
    pack.blocks
        .iter()
        .flat_map(|(block, entries)| block_chunks(pack.id, *block, envstore_pack::placed(entries)))
        .collect()
}

/// The packs in `packs/`, by name.
pub(crate) fn pack_files(store: &Store) -> Result<Vec<(PackId, PathBuf)>> {
    let dir = store.packs_dir();
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
pub(crate) fn reconcile_packs(store: &Store) -> Result<u64> {
    let on_disk = pack_files(store)?;
    let index = store.open_index()?;
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

/// Totals of the cold tier for `stats` (after bringing the index in line with `packs/`).
pub(crate) fn cold_totals(store: &Store) -> Result<ColdTotals> {
    if pack_files(store)?.is_empty() {
        return Ok(ColdTotals::default());
    }
    reconcile_packs(store)?;
    Ok(store.open_index()?.cold_totals()?)
}

/// Makes the complete, checked pack file at `path` (in the store's file system) a pack of the
/// store: read-only, synced, renamed to its content's name, and its `chunks` (located in it,
/// whatever pack id they carry) indexed. A pull keeps what it fetched this way, so a later pull
/// or `pack` finds those chunks here instead of fetching or compressing them again.
#[cfg(feature = "remote")]
pub(crate) fn adopt_pack(
    store: &Store,
    path: &std::path::Path,
    chunks: &[(ChunkId, ChunkLoc)],
) -> Result<PackId> {
    use std::os::unix::fs::PermissionsExt as _;
    let file = fs::File::open(path).map_err(Error::io("open", path))?;
    file.set_permissions(fs::Permissions::from_mode(0o444))
        .map_err(Error::io("chmod", path))?;
    file.sync_all().map_err(Error::io("sync", path))?;
    let reader = PackReader::open(path).map_err(pack_err)?;
    let id = reader.content_id().map_err(pack_err)?;
    let len = reader.len();
    let dir = store.packs_dir();
    fs::create_dir_all(&dir).map_err(Error::io("create", &dir))?;
    let dest = envstore_pack::pack_path(&dir, &id);
    // An existing pack of that name holds the same bytes (the name is their hash).
    if let Err(e) = fs::hard_link(path, &dest)
        && !dest.exists()
    {
        return Err(Error::io("publish", &dest)(e));
    }
    let _ = fs::remove_file(path);
    fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io("sync", &dir))?;
    let located: Vec<(ChunkId, ChunkLoc)> = chunks
        .iter()
        .map(|(c, loc)| (*c, ChunkLoc { pack: id, ..*loc }))
        .collect();
    store.open_index()?.add_pack(&id, len, &located, &[])?;
    Ok(id)
}
