//! Verify's look at the cold tier: which packs to check, and what becomes of the needed
//! objects that are not loose (missing, or available from intact packs).

use std::collections::{HashMap, HashSet};

use envstore_idset::{Cursor, IdSet, SortedFile};
use envstore_tree::{ObjectId, PackId, SnapshotId};

use crate::cold::check::PackCheck;
use crate::cold::packs::cold_lookup;
use crate::verify::found::{BATCH, Needs, io_err};
use crate::{Problem, Result, Store, VerifyReport};

/// What verify found of the cold tier, for the objects that are not loose.
#[derive(Default)]
pub(crate) struct ColdState {
    pub(crate) check: PackCheck,
    /// Objects not loose that only packed snapshots need and intact packs can rebuild, among
    /// those repair asks about (the others are only counted).
    pub(crate) available: HashSet<ObjectId>,
    /// Objects that intact packs can rebuild, among the missing and corrupt ones.
    pub(crate) rebuildable: HashSet<ObjectId>,
}

/// Needed objects the listing of `objects/` did not have, split by who needs them.
pub(crate) struct Absent {
    /// Needed by a snapshot that is not packed (or is materialized): must be loose.
    pub(crate) hot: SortedFile,
    /// Needed by packed snapshots: may live in packs only.
    pub(crate) packed: SortedFile,
}

/// Checks the packs (all of them, or, for one snapshot, those holding what it needs and
/// the store lacks loose), and classifies the needed objects that are not loose: needed
/// by an unpacked snapshot, they are missing (and rebuildable when intact packs hold them);
/// needed only by packed snapshots, they are available when intact packs hold them and
/// missing otherwise. Objects in damaged packs are passed back, by pack, for naming their
/// users.
pub(super) fn verify_cold(
    store: &Store,
    only: bool,
    absent: &Absent,
    corrupt: &HashSet<ObjectId>,
    report: &mut VerifyReport,
    missing: &mut Vec<ObjectId>,
    damaged_objects: &mut HashMap<PackId, Vec<ObjectId>>,
) -> Result<ColdState> {
    let err = io_err(store);
    let mut state = ColdState::default();
    let has_cold = !crate::cold::packs::pack_files(store)?.is_empty()
        || store.root().join("index.redb").exists();
    if !has_cold {
        for id in absent.hot.iter().map_err(&err)? {
            missing.push(ObjectId::from_bytes(id.map_err(&err)?));
        }
        let mut hot = Cursor::new(absent.hot.iter().map_err(&err)?);
        for id in absent.packed.iter().map_err(&err)? {
            let id = id.map_err(&err)?;
            if !hot.contains(&id).map_err(&err)? {
                missing.push(ObjectId::from_bytes(id));
            }
        }
        return Ok(state);
    }
    // Packs an interrupted `pack` left unindexed are indexed now (the index is a cache of
    // packs/, healed like the catalogue is on `ls`); a broken index is reported below.
    let _ = crate::cold::packs::reconcile_packs(store);
    // Opened per batch, never held across check_packs (which opens it too); a broken
    // index is reported as an index problem, and nothing is found in it.
    let lookup = |batch: &[ObjectId]| -> Result<Vec<Option<Vec<envstore_index::ChunkLoc>>>> {
        Ok(store
            .open_index()
            .ok()
            .and_then(|index| cold_lookup(&index, batch).ok())
            .unwrap_or_else(|| vec![None; batch.len()]))
    };
    let only_packs: Option<HashSet<PackId>> = if only {
        let mut packs = HashSet::new();
        for file in [&absent.hot, &absent.packed] {
            let ids: Vec<ObjectId> = file
                .iter()
                .map_err(&err)?
                .map(|id| id.map(ObjectId::from_bytes))
                .collect::<std::io::Result<_>>()
                .map_err(&err)?;
            for chunk in ids.chunks(BATCH) {
                packs.extend(
                    lookup(chunk)?
                        .into_iter()
                        .flatten()
                        .flatten()
                        .map(|l| l.pack),
                );
            }
        }
        Some(packs)
    } else {
        None
    };
    state.check = crate::cold::check::check_packs(store, only_packs.as_ref())?;
    report.packs = state.check.checked;

    // Needed by unpacked snapshots: missing in any case; corrupt ones too can come back
    // from packs.
    let mut classify =
        |batch: &mut Vec<ObjectId>, hot: bool, state: &mut ColdState| -> Result<()> {
            for (object, locs) in batch.iter().zip(lookup(batch)?) {
                let intact = match &locs {
                    Some(locs) => {
                        let mut intact = true;
                        for loc in locs.iter().filter(|l| !state.check.intact(l)) {
                            intact = false;
                            damaged_objects.entry(loc.pack).or_default().push(*object);
                        }
                        intact
                    }
                    None => false,
                };
                if intact {
                    state.rebuildable.insert(*object);
                }
                if hot || !intact {
                    missing.push(*object);
                } else {
                    report.packed_objects += 1;
                }
            }
            batch.clear();
            Ok(())
        };
    let mut batch = Vec::new();
    for id in absent.hot.iter().map_err(&err)? {
        batch.push(ObjectId::from_bytes(id.map_err(&err)?));
        if batch.len() >= BATCH {
            classify(&mut batch, true, &mut state)?;
        }
    }
    classify(&mut batch, true, &mut state)?;
    let mut hot = Cursor::new(absent.hot.iter().map_err(&err)?);
    for id in absent.packed.iter().map_err(&err)? {
        let id = id.map_err(&err)?;
        if hot.contains(&id).map_err(&err)? {
            continue;
        }
        batch.push(ObjectId::from_bytes(id));
        if batch.len() >= BATCH {
            classify(&mut batch, false, &mut state)?;
        }
    }
    classify(&mut batch, false, &mut state)?;
    // Only objects repair restores keep their place in the rebuildable set.
    let corrupt_list: Vec<ObjectId> = corrupt.iter().copied().collect();
    for chunk in corrupt_list.chunks(BATCH) {
        for (object, locs) in chunk.iter().zip(lookup(chunk)?) {
            if locs.is_some_and(|locs| locs.iter().all(|l| state.check.intact(l))) {
                state.rebuildable.insert(*object);
            }
        }
    }
    let missing_set: HashSet<&ObjectId> = missing.iter().collect();
    state
        .rebuildable
        .retain(|o| missing_set.contains(o) || corrupt.contains(o));
    Ok(state)
}

/// Packs the index does not know, or knows but are gone.
pub(super) fn report_cold_layout(check: &PackCheck, report: &mut VerifyReport) {
    for path in &check.unindexed {
        if check.damaged.iter().any(|d| &d.path == path) {
            continue;
        }
        report
            .problems
            .push(Problem::UnindexedPack { path: path.clone() });
    }
    for pack in &check.missing {
        report.problems.push(Problem::MissingPack { pack: *pack });
    }
}

/// The cold state of the objects repair is about (after the index was rebuilt).
pub(super) fn cold_state_of(store: &Store, needs: &Needs) -> Result<ColdState> {
    let scratch = store.scratch_dir();
    let err = io_err(store);
    let (mut hot, mut packed) = (
        IdSet::new(&scratch, envstore_idset::buffer()),
        IdSet::new(&scratch, envstore_idset::buffer()),
    );
    for (object, users) in &needs.objects {
        if store.objects().contains(object) {
            continue;
        }
        let is_packed = |u: &SnapshotId| {
            store.snapshot_meta(u).is_ok_and(|m| m.packed > 0) && !store.is_materialized(u)
        };
        let set = if users.iter().all(is_packed) {
            &mut packed
        } else {
            &mut hot
        };
        set.insert(*object.as_bytes()).map_err(&err)?;
    }
    let absent = Absent {
        hot: hot.finish_to_file().map_err(&err)?,
        packed: packed.finish_to_file().map_err(&err)?,
    };
    let mut state = verify_cold(
        store,
        false,
        &absent,
        &HashSet::new(),
        &mut VerifyReport::default(),
        &mut Vec::new(),
        &mut HashMap::new(),
    )?;
    // Available: not loose, intact in packs, and only packed snapshots need it.
    let packed_ids: Vec<ObjectId> = absent
        .packed
        .iter()
        .map_err(&err)?
        .map(|id| id.map(ObjectId::from_bytes))
        .collect::<std::io::Result<_>>()
        .map_err(&err)?;
    for o in packed_ids {
        if state.rebuildable.contains(&o) {
            state.available.insert(o);
        }
    }
    Ok(state)
}
