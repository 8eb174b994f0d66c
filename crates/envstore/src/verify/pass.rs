//! Verify and repair.
//!
//! Verify re-hashes objects, checks every tree a snapshot needs, compares materializations with
//! their trees (ignoring the `__pycache__` directories and `.pyc` files Python writes at run
//! time), and reports leftovers, dangling pins and a damaged index. Because hardlinked
//! materializations share inodes with objects, a write through one shows up as an object whose
//! bytes no longer match its name; verify names the snapshots that use it.
//!
//! Memory does not grow with the store: trees are read as the walk reaches them, what the
//! snapshots need goes to sorted id sets on disk that are joined with the sorted listing of
//! `objects/`, and only the objects something is wrong with are followed back to the snapshots
//! that use them (a second walk, only when there are such objects).
//!
//! `--repair` (holding the store lock exclusively): removes leftovers, restores damaged or
//! missing objects from an intact copy (the other exec variant, or a materialized file that
//! still hashes right), rebuilds damaged materializations from intact objects, removes
//! materializations without a snapshot, and rebuilds the index from `snapshots/`. Pins live on:
//! they are files.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Mutex;

use envstore_idset::{Cursor, Id, IdSet};
use envstore_index::Index;
use envstore_tree::{EntryKind, ObjectId, PackId, SnapshotId, TreeId};
use rayon::prelude::*;

use envstore_fs::DirState;

use crate::store::files::Stored;
use crate::store::mark::Visited;
use crate::verify::cold::Absent;
use crate::verify::env::Check;
use crate::verify::found::{BATCH, Found, Needs, io_err};
use crate::verify::report::{Problem, VerifyReport};
use crate::{Error, Result, Store};

/// One pass: the report, and whether repair rebuilt trees or records (then a second pass
/// checks what they need).
struct Pass {
    report: VerifyReport,
    rederived: bool,
}

/// Checks the whole store, or one snapshot, and with `repair` mends what it can.
pub(crate) fn verify(
    store: &Store,
    only: Option<&SnapshotId>,
    repair: bool,
) -> Result<VerifyReport> {
    let mut report = VerifyReport::default();
    // A store directory (or lock file) replaced by a link: nothing below it may be
    // entered, read or deleted until it is mended. Mended before the store lock is taken,
    // since the lock file may be what is damaged; every other command refuses such a
    // store, so nobody works in it meanwhile.
    if !store.damaged_layout.is_empty() {
        for (path, what) in &store.damaged_layout {
            report.problems.push(Problem::Layout {
                path: path.clone(),
                what,
            });
        }
        if !repair {
            return Ok(report);
        }
        for path in crate::store::open::repair_layout(store)? {
            report.repaired.push(format!(
                "replaced {} with an empty directory (the link was removed, not followed)",
                path.display()
            ));
        }
    }
    let _lock = if repair {
        Some(store.lock_exclusive("the store lock (repair needs it alone)")?)
    } else {
        store.lock_shared()?
    };
    let mut pass = verify_locked(store, only, repair)?;
    if repair && pass.rederived {
        // Trees or records were rebuilt: check again, now seeing what they need.
        let mut again = verify_locked(store, only, repair)?;
        pass.report.repaired.append(&mut again.report.repaired);
        pass.report.lost.append(&mut again.report.lost);
        pass.report.unrepaired = again.report.unrepaired;
    }
    report.problems.append(&mut pass.report.problems);
    report.repaired.append(&mut pass.report.repaired);
    report.unrepaired = pass.report.unrepaired;
    report.lost = pass.report.lost;
    report.leftovers = pass.report.leftovers;
    report.snapshots = pass.report.snapshots;
    report.objects = pass.report.objects;
    report.materializations = pass.report.materializations;
    report.packs = pass.report.packs;
    report.packed_objects = pass.report.packed_objects;
    crate::store::mark::warn_if_in_memory(store);
    Ok(report)
}

/// One pass of verify (and repair), under the store lock the caller holds.
fn verify_locked(store: &Store, only: Option<&SnapshotId>, repair: bool) -> Result<Pass> {
    let mut report = VerifyReport::default();
    // The index first: anything below that opens it would set a damaged one aside.
    if store.is_writable() {
        let checked = Index::open(store.root(), store.options().lock_timeout).and_then(|i| {
            let snapshots = i.snapshots();
            match i.recreated() {
                Some(reason) => Err(envstore_index::IndexError::Damaged {
                    path: store.root().join("index.redb"),
                    reason: format!("{reason}; set aside and recreated empty"),
                }),
                None => snapshots,
            }
        });
        if let Err(e) = checked {
            report.problems.push(Problem::Index {
                reason: e.to_string(),
            });
        }
    }

    let ids = match only {
        Some(id) => vec![*id],
        None => store.snapshot_ids()?,
    };
    report.snapshots = ids.len() as u64;
    let err = io_err(store);

    // Records and trees: each tree read once while there is room to remember it; what the
    // snapshots need goes to two sorted sets, by whether the snapshot is packed.
    let mut bad_records = BTreeSet::new();
    let mut bad_trees: BTreeMap<TreeId, (String, BTreeSet<SnapshotId>)> = BTreeMap::new();
    let mut complete = HashSet::new();
    let scratch = store.scratch_dir();
    let mut hot = IdSet::new(&scratch, envstore_idset::buffer());
    let mut packed = IdSet::new(&scratch, envstore_idset::buffer());
    let (mut hot_seen, mut packed_seen) = (Visited::default(), Visited::default());
    for id in &ids {
        let is_packed = match store.snapshot_meta(id) {
            Ok(meta) => meta.packed > 0 && !store.is_materialized(id),
            Err(e) => {
                bad_records.insert(*id);
                report.problems.push(Problem::BadRecord {
                    id: *id,
                    reason: e.to_string(),
                });
                false
            }
        };
        let (set, seen) = if is_packed {
            (&mut packed, &mut packed_seen)
        } else {
            (&mut hot, &mut hot_seen)
        };
        let mut ok = true;
        crate::store::mark::visit_trees(
            store,
            id.root(),
            Some(seen),
            &mut |_, entry| match &entry.kind {
                EntryKind::File { object, .. } => set.insert(*object.as_bytes()).map_err(&err),
                _ => Ok(()),
            },
            &mut |tree, e| {
                bad_trees
                    .entry(tree)
                    .or_insert_with(|| (e.to_string(), BTreeSet::new()))
                    .1
                    .insert(*id);
                ok = false;
            },
        )?;
        if ok {
            complete.insert(*id);
        }
    }
    for (tree, (reason, snapshots)) in bad_trees {
        report.problems.push(Problem::BadTree {
            tree,
            reason,
            snapshots: snapshots.into_iter().collect(),
        });
    }

    // Objects: the listing of objects/ in id order, joined with what is needed; every
    // object file (or, for one snapshot, those it needs) re-hashed in parallel batches.
    let mut hot = Cursor::new(hot.finish().map_err(&err)?);
    let mut packed = Cursor::new(packed.finish().map_err(&err)?);
    let mut absent_hot = IdSet::new(&scratch, envstore_idset::buffer());
    let mut absent_packed = IdSet::new(&scratch, envstore_idset::buffer());
    let mut passed: (Vec<Id>, Vec<Id>) = (Vec::new(), Vec::new());
    let mut pending: Vec<(PathBuf, ObjectId)> = Vec::new();
    let mut corrupt: Vec<(PathBuf, ObjectId)> = Vec::new();
    let mut modes: Vec<(PathBuf, ObjectId, u32)> = Vec::new();
    let mut temps = Vec::new();
    let mut bad_shards = Vec::new();
    let mut rehash = |pending: &mut Vec<(PathBuf, ObjectId)>| {
        let (bad, odd): (Vec<_>, Vec<_>) = pending
            .par_drain(..)
            .filter_map(|(path, id)| match store.objects().rehash(&path) {
                Ok(Some(actual)) if actual == id => {
                    object_mode(&path).map(|mode| (false, path, id, mode))
                }
                Ok(None) => None, // removed meanwhile
                _ => Some((true, path, id, 0)),
            })
            .partition(|(corrupt, ..)| *corrupt);
        corrupt.extend(bad.into_iter().map(|(_, path, id, _)| (path, id)));
        modes.extend(odd.into_iter().map(|(_, path, id, mode)| (path, id, mode)));
    };
    crate::store::files::for_each_stored(store, &mut |file| {
        let id = match file.kind {
            Stored::Object(id) => id,
            Stored::BadShard(what) => {
                report.problems.push(Problem::Layout {
                    path: file.path.clone(),
                    what,
                });
                bad_shards.push(file.path);
                return Ok(());
            }
            Stored::Temp => {
                temps.push(file.path);
                return Ok(());
            }
            Stored::Tree(_) | Stored::Other => return Ok(()),
        };
        let h = hot
            .seek(id.as_bytes(), &mut |i| passed.0.push(i))
            .map_err(&err)?;
        let p = packed
            .seek(id.as_bytes(), &mut |i| passed.1.push(i))
            .map_err(&err)?;
        for i in passed.0.drain(..) {
            absent_hot.insert(i).map_err(&err)?;
        }
        for i in passed.1.drain(..) {
            absent_packed.insert(i).map_err(&err)?;
        }
        if only.is_none() || h || p {
            report.objects += 1;
            pending.push((file.path, id));
            if pending.len() >= BATCH {
                rehash(&mut pending);
            }
        }
        Ok(())
    })?;
    rehash(&mut pending);
    hot.rest(&mut |i| passed.0.push(i)).map_err(&err)?;
    packed.rest(&mut |i| passed.1.push(i)).map_err(&err)?;
    for i in passed.0.drain(..) {
        absent_hot.insert(i).map_err(&err)?;
    }
    for i in passed.1.drain(..) {
        absent_packed.insert(i).map_err(&err)?;
    }
    let absent = Absent {
        hot: absent_hot.finish_to_file().map_err(&err)?,
        packed: absent_packed.finish_to_file().map_err(&err)?,
    };
    let corrupt_ids: HashSet<ObjectId> = corrupt.iter().map(|(_, o)| *o).collect();

    // Packs, and the objects only they hold; what is missing.
    let mut missing = Vec::new();
    let mut damaged_objects: HashMap<PackId, Vec<ObjectId>> = HashMap::new();
    let cold = crate::verify::cold::verify_cold(
        store,
        only.is_some(),
        &absent,
        &corrupt_ids,
        &mut report,
        &mut missing,
        &mut damaged_objects,
    )?;
    drop(absent);
    // An object behind a shard replaced by a link is not listed; repair restores it once
    // the shard is a directory again (a missing one is reported as such).
    let in_bad_shard = |o: &ObjectId| {
        let shard = store.objects().path(o, false);
        bad_shards
            .iter()
            .any(|b| shard.parent() == Some(b.as_path()))
    };
    missing.retain(|o| in_bad_shard(o) || !store.objects().contains(o));

    // Who uses what is wrong: a second walk, only when something is.
    let mut wanted: HashSet<ObjectId> = corrupt_ids.clone();
    wanted.extend(modes.iter().map(|(_, o, _)| *o));
    wanted.extend(missing.iter().copied());
    wanted.extend(damaged_objects.values().flatten().copied());
    let mut needs = Needs::default();
    if !wanted.is_empty() {
        for id in &ids {
            let mut seen = Visited::default();
            crate::store::mark::visit_trees(
                store,
                id.root(),
                Some(&mut seen),
                &mut |_, entry| {
                    if let EntryKind::File { object, .. } = &entry.kind
                        && wanted.contains(object)
                    {
                        needs.objects.entry(*object).or_default().insert(*id);
                    }
                    Ok(())
                },
                &mut |_, _| {},
            )?;
        }
    }
    let users = |o: &ObjectId| -> Vec<SnapshotId> {
        needs
            .objects
            .get(o)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    };
    for (path, object) in &corrupt {
        report.problems.push(Problem::CorruptObject {
            path: path.clone(),
            object: *object,
            snapshots: users(object),
        });
    }
    for (path, object, mode) in &modes {
        report.problems.push(Problem::ObjectMode {
            path: path.clone(),
            mode: *mode,
            snapshots: users(object),
        });
    }
    for object in &missing {
        if in_bad_shard(object) && store.objects().contains(object) {
            continue; // not missing: behind the bad shard, reported as a layout problem
        }
        report.problems.push(Problem::MissingObject {
            object: *object,
            snapshots: users(object),
        });
    }
    for damaged in &cold.check.damaged {
        let mut snapshots: BTreeSet<SnapshotId> = BTreeSet::new();
        for o in damaged_objects.get(&damaged.id).into_iter().flatten() {
            snapshots.extend(users(o));
        }
        report.problems.push(Problem::DamagedPack {
            path: damaged.path.clone(),
            reason: damaged.reason.clone(),
            snapshots: snapshots.into_iter().collect(),
        });
    }
    crate::verify::cold::report_cold_layout(&cold.check, &mut report);

    // Materializations, compared with trees read as the comparison reaches them.
    let mut copies: HashMap<ObjectId, Vec<(PathBuf, bool)>> = HashMap::new();
    for id in ids.iter().filter(|id| complete.contains(*id)) {
        let env = store.env_path(id);
        match envstore_fs::dir_state(&env).map_err(Error::io("read", &env))? {
            DirState::Dir => {}
            DirState::Missing => continue,
            DirState::Other(what) => {
                report.problems.push(Problem::Materialization {
                    id: *id,
                    path: env,
                    reason: format!("it is {what}, not the directory envstore made"),
                });
                continue;
            }
        }
        report.materializations += 1;
        let check = Check {
            store,
            env: env.as_os_str().as_bytes(),
            corrupt: &corrupt_ids,
            wanted: &wanted,
            found: Mutex::new(Vec::new()),
            intact: Mutex::new(Vec::new()),
        };
        check.compare_dir_mode(&env);
        check.compare(&env, &store.trees().get(&id.root())?);
        let (found, intact) = (check.found, check.intact);
        for (path, reason) in found.into_inner().expect("no panics while locked") {
            report.problems.push(Problem::Materialization {
                id: *id,
                path,
                reason,
            });
        }
        for (object, path, executable) in intact.into_inner().expect("no panics while locked") {
            copies.entry(object).or_default().push((path, executable));
        }
    }

    // Pins, the index, leftovers.
    let pins = crate::catalog::pins::all_pins(store)?;
    for (name, id) in pins.good {
        if !store.has_snapshot(&id) {
            report.problems.push(Problem::DanglingPin { name, id });
        }
    }
    for (name, reason) in pins.damaged {
        report.problems.push(Problem::DamagedPin { name, reason });
    }
    report.leftovers = crate::store::files::leftovers(store, temps)?;

    let mut rederived = false;
    if repair {
        let found = Found {
            needs: &needs,
            corrupt: &corrupt,
            copies: &copies,
            bad_records: &bad_records,
            complete: &complete,
        };
        rederived = crate::verify::repair::repair(store, &mut report, &found, cold)?;
    }
    Ok(Pass { report, rederived })
}

/// The mode of an intact object file when it is not its variant's (0444, or 0555 for `.x`).
fn object_mode(path: &std::path::Path) -> Option<u32> {
    let expected = if path.extension().is_some_and(|x| x == "x") {
        0o555
    } else {
        0o444
    };
    let mode = fs::symlink_metadata(path).ok()?.mode() & 0o7777;
    (mode != expected).then_some(mode)
}
