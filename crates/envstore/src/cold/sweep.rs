//! What the cold tier no longer needs: loose objects only packed snapshots use (freed after
//! `pack`), and packs no kept snapshot needs (deleted or rewritten by `prune`). Both join sorted
//! sets of ids on disk with the index, so memory does not grow with the store.

use std::collections::{HashMap, HashSet};
use std::fs;

use envstore_idset::{Cursor, IdSet};
use envstore_pack::{Entry, EntryKind, decode_recipe, pack_path};
use envstore_tree::{ObjectId, PackId, SnapshotId};

use crate::cold::packs::{cold_lookup, pack_err};
use crate::store::Mode;
use crate::{Error, Result, Store};

/// Objects looked up in the index at a time.
const LOOKUP_BATCH: usize = 16 << 10;

/// What the pack sweep of `prune` did.
#[derive(Debug, Default, Clone)]
pub struct PackSweep {
    /// Packs no kept snapshot needs anything from: deleted.
    pub removed: Vec<PackId>,
    /// Packs mostly holding what nobody needs: their live entries rewritten to a new pack.
    pub rewritten: Vec<PackId>,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// Deletes the loose objects that only packed, unmaterialized snapshots need, once the index
/// confirms each can be rebuilt from packs. Holds the store lock exclusively, so no ingest or
/// materialization is between deciding and deleting.
pub(super) fn free_packed_objects(store: &Store) -> Result<(u64, u64)> {
    let _lock = store.lock_exclusive(
        "the store lock (pack frees loose objects alone; builds hold it while they write)",
    )?;
    let (mut hot, mut cold) = (Vec::new(), Vec::new());
    for id in store.snapshot_ids()? {
        if store.snapshot_meta(&id)?.packed > 0 && !store.is_materialized(&id) {
            cold.push(id);
        } else {
            hot.push(id);
        }
    }
    let scratch = store.scratch_dir();
    let runs = |e| Error::io("read a sorted run in", &scratch)(e);
    let mut keep = Cursor::new(crate::store::mark::object_set(store, &hot)?);
    let (mut count, mut bytes) = (0, 0);
    let mut batch = Vec::new();
    let mut free = |batch: &mut Vec<ObjectId>| -> Result<()> {
        let rebuildable = cold_lookup(&store.open_index()?, batch)?;
        for (object, loc) in batch.iter().zip(rebuildable) {
            if loc.is_none() {
                continue;
            }
            for executable in [false, true] {
                let path = store.objects().path(object, executable);
                if let Ok(meta) = fs::symlink_metadata(&path) {
                    crate::store::files::remove_file(&path)?;
                    count += 1;
                    bytes += meta.len();
                }
            }
        }
        batch.clear();
        Ok(())
    };
    for id in crate::store::mark::object_set(store, &cold)? {
        let id = id.map_err(runs)?;
        if keep.contains(&id).map_err(runs)? {
            continue;
        }
        let object = ObjectId::from_bytes(id);
        if store.objects().contains(&object) {
            batch.push(object);
            if batch.len() >= LOOKUP_BATCH {
                free(&mut batch)?;
            }
        }
    }
    free(&mut batch)?;
    Ok((count, bytes))
}

/// Deletes packs that hold nothing `kept` snapshots need, and rewrites packs where less than
/// half the chunk bytes are still needed. The caller holds the store lock exclusively (so
/// nothing can start needing a chunk meanwhile). A new pack is durable and indexed before
/// the old one is forgotten and deleted.
pub(crate) fn sweep_packs(store: &Store, kept: &[SnapshotId], mode: Mode) -> Result<PackSweep> {
    let dry_run = mode == Mode::DryRun;
    let mut sweep = PackSweep::default();
    if crate::cold::packs::pack_files(store)?.is_empty() {
        return Ok(sweep);
    }
    crate::cold::packs::reconcile_packs(store)?;
    let scratch = store.scratch_dir();
    let runs = |e| Error::io("use a sorted run in", &scratch)(e);

    // The live chunks (what rebuilds a kept object: its recipe's chunks, or the one chunk
    // of its id), as a sorted set; the kept objects that have recipes.
    let kept_objects = crate::store::mark::object_set(store, kept)?;
    let index = store.open_index()?;
    let mut live = IdSet::new(&scratch, envstore_idset::DEFAULT_BUFFER);
    let mut live_recipes: HashSet<ObjectId> = HashSet::new();
    let mut batch: Vec<ObjectId> = Vec::new();
    let mut add = |batch: &mut Vec<ObjectId>| -> Result<()> {
        for (object, recipe) in batch.iter().zip(index.recipes(batch)?) {
            match recipe.and_then(|(_, bytes)| decode_recipe(&bytes)) {
                Some((_, chunks)) => {
                    live_recipes.insert(*object);
                    for chunk in chunks {
                        live.insert(*chunk.as_bytes()).map_err(runs)?;
                    }
                }
                None => live.insert(*object.as_bytes()).map_err(runs)?,
            }
        }
        batch.clear();
        Ok(())
    };
    for id in kept_objects {
        batch.push(ObjectId::from_bytes(id.map_err(runs)?));
        if batch.len() >= LOOKUP_BATCH {
            add(&mut batch)?;
        }
    }
    add(&mut batch)?;
    let live = live.finish_to_file().map_err(runs)?;

    // Bytes per pack, all and live: the chunk table and the live set, both in id order.
    let mut total: HashMap<PackId, (u64, u64)> = HashMap::new();
    let mut cursor = Cursor::new(live.iter().map_err(runs)?);
    index.for_each_chunk(&mut |chunk, loc| {
        let t = total.entry(loc.pack).or_default();
        t.0 += u64::from(loc.len);
        // A failed read of the run counts the chunk live: the pack is kept.
        if cursor.contains(chunk.as_bytes()).unwrap_or(true) {
            t.1 += u64::from(loc.len);
        }
        Ok(())
    })?;
    let recipes = index.all_recipes()?;
    let packs = index.packs()?;
    let mut rewrite = HashSet::new();
    for (pack, len) in packs {
        sweep.bytes_before += len;
        let (all, needed) = total.get(&pack).copied().unwrap_or((0, 0));
        let recipe_live = recipes
            .iter()
            .any(|(o, p, _)| *p == pack && live_recipes.contains(o));
        if needed == 0 && !recipe_live {
            sweep.removed.push(pack);
        } else if needed * 2 >= all {
            sweep.bytes_after += len;
        } else {
            sweep.rewritten.push(pack);
            rewrite.insert(pack);
            if dry_run {
                sweep.bytes_after += len * needed / all.max(1);
            }
        }
    }
    if !dry_run && !rewrite.is_empty() {
        // The live chunks of the packs rewritten (a second pass over the same sets).
        let mut live_locs: HashSet<(PackId, u64, u32)> = HashSet::new();
        let mut cursor = Cursor::new(live.iter().map_err(runs)?);
        let mut failed = None;
        index.for_each_chunk(&mut |chunk, loc| {
            match cursor.contains(chunk.as_bytes()) {
                Ok(true) if rewrite.contains(&loc.pack) => {
                    live_locs.insert((loc.pack, loc.block, loc.offset));
                }
                Ok(_) => {}
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
            Ok(())
        })?;
        if let Some(e) = failed {
            return Err(runs(e));
        }
        drop(index);
        for pack in &sweep.rewritten {
            // Rewrite: the needed chunks and recipes, re-compressed into a new pack.
            let keep = |block: u64, offset: u32, e: &Entry| match e.kind {
                EntryKind::Chunk => live_locs.contains(&(*pack, block, offset)),
                EntryKind::Recipe => live_recipes.contains(&ObjectId::from_bytes(e.id)),
            };
            sweep.bytes_after += crate::cold::check::rewrite_pack(store, *pack, &keep, None)?;
        }
    } else {
        drop(index);
    }
    if !dry_run && !sweep.removed.is_empty() {
        store.open_index()?.remove_packs(&sweep.removed)?;
        for pack in &sweep.removed {
            envstore_pack::remove_pack(&pack_path(&store.packs_dir(), pack)).map_err(pack_err)?;
        }
    }
    Ok(sweep)
}
