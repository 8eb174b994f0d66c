//! Rehydration: writing loose objects back from chunks in packs, for a packed snapshot that is
//! materialized or exported again, and for a pull (whose chunks arrive in a temporary pack).

use std::collections::HashMap;
use std::io;

use envstore_index::ChunkLoc;
use envstore_objects::ObjectError;
use envstore_pack::{Block, PackReader, pack_path};
use envstore_tree::{ObjectId, PackId, SnapshotId};
use rayon::prelude::*;

use crate::cold::packs::{cold_lookup, pack_err};
use crate::{Result, Store};

/// The chunk locations that rebuild each object.
pub(crate) type Plan = Vec<(ObjectId, bool, Vec<ChunkLoc>)>;

/// Where the cold tier has each of `objects`, or an error naming the first it cannot
/// rebuild.
fn rehydration_plan(store: &Store, objects: &[(ObjectId, bool)]) -> Result<Plan> {
    let ids: Vec<ObjectId> = objects.iter().map(|(o, _)| *o).collect();
    let mut locs = cold_lookup(&store.open_index()?, &ids)?;
    if locs.iter().any(Option::is_none) && crate::cold::packs::reconcile_packs(store)? > 0 {
        // The index did not know every pack (it was lost, or a pack was interrupted):
        // now it does.
        locs = cold_lookup(&store.open_index()?, &ids)?;
    }
    let mut plan: Plan = Vec::with_capacity(objects.len());
    for ((object, executable), locs) in objects.iter().zip(locs) {
        match locs {
            Some(locs) => plan.push((*object, *executable, locs)),
            None => {
                return Err(ObjectError::Missing {
                    path: store.objects().path(object, *executable),
                }
                .into());
            }
        }
    }
    // In pack order: each worker then reads its blocks front to back, mostly once.
    plan.sort_by_key(|(_, _, locs)| locs.first().map(|l| (l.pack, l.block, l.offset)));
    Ok(plan)
}

/// Writes back, from packs, every loose object snapshot `id` needs and the store lacks.
/// The caller holds the store lock shared. Returns the objects and bytes written.
/// Streamed in batches of files in tree order, so memory does not grow with the snapshot.
pub(crate) fn rehydrate(store: &Store, id: &SnapshotId) -> Result<(u64, u64)> {
    let (mut objects, mut bytes) = (0, 0);
    crate::store::mark::for_each_file_batch(store, &[*id], 16 << 10, &mut |batch| {
        let missing: Vec<(ObjectId, bool)> = batch
            .iter()
            .filter(|f| store.objects().find(&f.object, f.executable).is_none())
            .map(|f| (f.object, f.executable))
            .collect();
        let (o, b) = rehydrate_objects(store, &missing)?;
        objects += o;
        bytes += b;
        Ok(())
    })?;
    Ok((objects, bytes))
}

/// Writes `objects` back from packs as loose objects (in the variant given).
pub(crate) fn rehydrate_objects(store: &Store, missing: &[(ObjectId, bool)]) -> Result<(u64, u64)> {
    if missing.is_empty() {
        return Ok((0, 0));
    }
    let plan = rehydration_plan(store, missing)?;
    let mut readers = HashMap::new();
    for (_, _, locs) in &plan {
        for loc in locs {
            if let std::collections::hash_map::Entry::Vacant(e) = readers.entry(loc.pack) {
                let path = pack_path(&store.packs_dir(), &loc.pack);
                e.insert(PackReader::open(&path).map_err(pack_err)?);
            }
        }
    }
    write_from_packs(store, &plan, &readers)
}

/// Writes each object of `plan` as a loose object from its chunks, read through `readers`
/// (which must hold every pack the plan names). Each object is published only when the
/// bytes written hash to its id. Returns the objects and bytes written.
pub(crate) fn write_from_packs(
    store: &Store,
    plan: &Plan,
    readers: &HashMap<PackId, PackReader>,
) -> Result<(u64, u64)> {
    let per_worker = plan.len().div_ceil(rayon::current_num_threads() * 8).max(1);
    plan.par_chunks(per_worker)
        .map(|part| {
            let mut cache = BlockCache::default();
            let (mut count, mut bytes) = (0, 0);
            for (object, executable, locs) in part {
                let source = readers.get(&locs[0].pack).map_or_else(
                    || pack_path(&store.packs_dir(), &locs[0].pack),
                    |r| r.path().to_owned(),
                );
                let written = store
                    .objects()
                    .insert_with(*object, *executable, &source, |w| {
                        for loc in locs {
                            let block = cache.get(readers, loc)?;
                            let bytes = block
                                .slice(loc.offset, loc.len)
                                .ok_or_else(|| io::Error::other("chunk outside its block"))?;
                            w.write_all(bytes)?;
                        }
                        Ok(())
                    })?;
                count += 1;
                bytes += written;
            }
            Ok((count, bytes))
        })
        .try_reduce(|| (0, 0), |a, b| Ok((a.0 + b.0, a.1 + b.1)))
}

/// Makes sure every object of snapshot `id` is loose, rehydrating a packed snapshot. The
/// caller holds the store lock shared.
pub(crate) fn ensure_loose(store: &Store, id: &SnapshotId) -> Result<()> {
    if store.snapshot_meta(id)?.packed > 0 {
        rehydrate(store, id)?;
    }
    Ok(())
}

/// The last few blocks one worker decompressed.
#[derive(Default)]
pub(crate) struct BlockCache {
    blocks: Vec<((PackId, u64), Block)>,
}

impl BlockCache {
    const SIZE: usize = 4;

    pub(crate) fn get(
        &mut self,
        readers: &HashMap<PackId, PackReader>,
        loc: &ChunkLoc,
    ) -> io::Result<&Block> {
        let key = (loc.pack, loc.block);
        if let Some(i) = self.blocks.iter().position(|(k, _)| *k == key) {
            let hit = self.blocks.remove(i);
            self.blocks.push(hit);
        } else {
            let reader = readers
                .get(&loc.pack)
                .ok_or_else(|| io::Error::other("pack not open"))?;
            let header = reader.header_at(loc.block).map_err(io::Error::other)?;
            let raw = reader.read_block(&header).map_err(io::Error::other)?;
            if self.blocks.len() == Self::SIZE {
                self.blocks.remove(0);
            }
            self.blocks.push((key, Block { header, raw }));
        }
        Ok(&self.blocks.last().expect("just pushed").1)
    }
}
