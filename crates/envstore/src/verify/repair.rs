//! Repair: what `verify --repair` does with what verify found.
//!
//! Holding the store lock exclusively: removes leftovers, rewrites damaged snapshot records
//! from their trees, rebuilds damaged trees from the snapshot's source or materialization (or
//! removes the snapshot and says what was lost), restores damaged or missing objects from an
//! intact copy (the other exec variant, packs, a materialized file that still hashes right, the
//! original source), rebuilds damaged materializations the way they were laid out, removes
//! damaged pins, and rebuilds the index from `snapshots/`.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashSet};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use envstore_index::SnapshotMeta;
use envstore_link::LinkPolicy;
use envstore_tree::{EntryKind, ObjectId, SnapshotId, Tree, TreeId};
use envstore_walk::Filter;

use crate::content::layout::lay_out;
use crate::store::files::{remove_file, remove_tree, unix_secs};
use crate::verify::cold::ColdState;
use crate::verify::found::{Found, Needs};
use crate::verify::report::{Problem, VerifyReport};
use crate::{Error, Result, Store};

/// Restores `object` from the directory a snapshot using it was ingested from, if that file
/// is still there with the same bytes (insert_file re-hashes it while copying).
fn restore_from_source(store: &Store, object: &ObjectId, needs: &Needs) -> Option<PathBuf> {
    for id in needs.objects.get(object)? {
        let Ok(meta) = store.snapshot_meta(id) else {
            continue;
        };
        let mut stack = vec![(id.root(), PathBuf::from(&meta.source))];
        while let Some((tree, dir)) = stack.pop() {
            for entry in store.trees().get(&tree).ok()?.entries() {
                let path = dir.join(OsStr::from_bytes(&entry.name));
                match &entry.kind {
                    EntryKind::File {
                        object: o,
                        executable,
                        size,
                        ..
                    } if o == object
                        && store
                            .objects()
                            .insert_file(&path, *object, *executable, *size, None)
                            .is_ok() =>
                    {
                        return Some(path);
                    }
                    EntryKind::Dir { tree } => stack.push((*tree, path)),
                    _ => {}
                }
            }
        }
    }
    None
}

/// Mends what verify found. Returns whether trees or records were rebuilt, so that a
/// second pass checks what they need.
pub(crate) fn repair(
    store: &Store,
    report: &mut VerifyReport,
    found: &Found<'_>,
    cold: ColdState,
) -> Result<bool> {
    let Found {
        needs,
        corrupt,
        copies,
        ..
    } = *found;
    let mut cold = cold;
    crate::store::files::remove_leftovers(&report.leftovers)?;
    // Shard directories replaced by links: the link goes (never followed), a directory
    // takes its place, and what the shard held is restored below like any lost object.
    let shards: Vec<PathBuf> = report
        .problems
        .iter()
        .filter_map(|p| match p {
            Problem::Layout { path, .. } => Some(path.clone()),
            _ => None,
        })
        .collect();
    for path in shards {
        envstore_fs::remove_all(&path).map_err(Error::io("remove", &path))?;
        fs::create_dir(&path).map_err(Error::io("create", &path))?;
        report.repaired.push(format!(
            "replaced {} with an empty directory (the link was removed, not followed)",
            path.display()
        ));
    }
    let (mut rederived, removed) = repair_snapshots(store, report, found)?;
    rederived |= repair_pins(store, report)?;
    if report
        .problems
        .iter()
        .any(|p| matches!(p, Problem::Index { .. }))
    {
        let path = store.root().join("index.redb");
        remove_file(&path)?;
        let records: Vec<_> = store
            .snapshot_ids()?
            .into_iter()
            .filter_map(|id| Some((id, store.snapshot_meta(&id).ok()?)))
            .collect();
        store.open_index()?.rebuild(&records)?;
        let packs = crate::cold::packs::reconcile_packs(store)?;
        report.repaired.push(format!(
            "rebuilt the index from {} snapshot records and {packs} packs",
            records.len()
        ));
        // What the cold tier holds could not be read before.
        cold = crate::verify::cold::cold_state_of(store, needs)?;
    }

    let pack_problems = report.problems.iter().any(|p| {
        matches!(
            p,
            Problem::DamagedPack { .. }
                | Problem::UnindexedPack { .. }
                | Problem::MissingPack { .. }
        )
    });
    if pack_problems {
        report
            .repaired
            .extend(crate::cold::check::repair_packs(store, &cold.check)?);
    }
    if !report.leftovers.is_empty() {
        report.repaired.push(format!(
            "removed {} leftovers of interrupted work",
            report.leftovers.len()
        ));
    }
    // Damaged objects go; then every needed object without an intact variant is restored
    // from an intact copy, if there is one.
    for (path, _) in corrupt {
        envstore_fs::remove_all(path).map_err(Error::io("remove", path))?;
    }
    for problem in &report.problems {
        if let Problem::ObjectMode { path, .. } = problem {
            let mode = if path.extension().is_some_and(|x| x == "x") {
                0o555
            } else {
                0o444
            };
            // Through a descriptor opened without following links.
            let (file, _) = envstore_fs::open_regular(path).map_err(Error::io("open", path))?;
            file.set_permissions(fs::Permissions::from_mode(mode))
                .map_err(Error::io("chmod", path))?;
            report
                .repaired
                .push(format!("restored the mode of {}", path.display()));
        }
    }
    let mut lost = HashSet::new();
    for object in needs.objects.keys() {
        if store.objects().contains(object) || cold.available.contains(object) {
            continue;
        }
        if needs.objects[object].iter().all(|s| removed.contains(s)) {
            continue;
        }
        if cold.rebuildable.contains(object)
            && crate::cold::rehydrate::rehydrate_objects(store, &[(*object, false)]).is_ok()
        {
            report
                .repaired
                .push(format!("restored object {object} from packs"));
            continue;
        }
        let from_copy = copies
            .get(object)
            .into_iter()
            .flatten()
            .any(|(path, executable)| {
                fs::symlink_metadata(path).is_ok_and(|m| {
                    store
                        .objects()
                        .insert_file(path, *object, *executable, m.len(), None)
                        .is_ok()
                })
            });
        if from_copy {
            report.repaired.push(format!(
                "restored object {object} from an intact materialized copy"
            ));
        } else if let Some(path) = restore_from_source(store, object, needs) {
            report
                .repaired
                .push(format!("restored object {object} from {}", path.display()));
        } else {
            lost.insert(*object);
        }
    }
    // Materializations that differ (or share a damaged inode) are rebuilt when every object
    // they need is intact again.
    let mut damaged: BTreeSet<SnapshotId> = BTreeSet::new();
    for problem in &report.problems {
        match problem {
            Problem::Materialization { id, .. } => {
                damaged.insert(*id);
            }
            Problem::CorruptObject { snapshots, .. } | Problem::ObjectMode { snapshots, .. } => {
                damaged.extend(snapshots.iter().filter(|id| store.is_materialized(id)));
            }
            _ => {}
        }
    }
    damaged.retain(|id| !removed.contains(id));
    let envs = store.root().join("envs");
    for id in &damaged {
        let needs_lost = needs
            .objects
            .iter()
            .any(|(o, users)| users.contains(id) && lost.contains(o));
        if needs_lost {
            // It cannot be laid out again, and what it holds is wrong: it goes, so that no
            // one is handed those bytes at its stable path (materializing it again says which
            // object is missing).
            remove_tree(&store.env_path(id), &envs)?;
            let _ = store.update_index(|index| index.remove_link_mode(id));
            report.repaired.push(format!(
                "removed the materialization of {}: an object it needs is lost",
                id.short()
            ));
            continue;
        }
        // Laid out again the way it was (a copy stays a copy: switching it to hardlinks
        // would share inodes its user chose not to share).
        let recorded = store
            .open_index()
            .ok()
            .and_then(|index| index.link_mode(id).ok().flatten())
            .and_then(|mode| mode.parse::<LinkPolicy>().ok());
        remove_tree(&store.env_path(id), &envs)?;
        let lookup =
            |t: &TreeId| -> Result<Cow<'_, Tree>> { Ok(Cow::Owned(store.trees().get(t)?)) };
        let laid = match recorded {
            Some(policy) => lay_out(store, id, &lookup, policy)
                .or_else(|_| lay_out(store, id, &lookup, LinkPolicy::Auto)),
            None => lay_out(store, id, &lookup, LinkPolicy::Auto),
        };
        let (_, link) = laid?;
        let _ = store.update_index(|index| index.put_link_mode(id, link.mode.as_str()));
        report.repaired.push(format!(
            "rebuilt the materialization of {} ({})",
            id.short(),
            link.mode
        ));
    }
    report.unrepaired = report
        .problems
        .iter()
        .filter(|p| match p {
            Problem::CorruptObject { object, .. } | Problem::MissingObject { object, .. } => {
                lost.contains(object)
            }
            Problem::Materialization { id, .. } => {
                !damaged.contains(id)
                    || needs
                        .objects
                        .iter()
                        .any(|(o, u)| u.contains(id) && lost.contains(o))
            }
            Problem::Index { .. }
            | Problem::ObjectMode { .. }
            | Problem::UnindexedPack { .. }
            | Problem::MissingPack { .. }
            | Problem::DamagedPin { .. }
            | Problem::Layout { .. } => false,
            // Rewritten from its trees, or removed with what was lost.
            Problem::BadRecord { .. } | Problem::BadTree { .. } => false,
            // Repair rewrote the intact part; what was lost is a missing object now.
            Problem::DamagedPack { snapshots, .. } => needs
                .objects
                .iter()
                .any(|(o, u)| lost.contains(o) && u.iter().any(|s| snapshots.contains(s))),
            Problem::DanglingPin { id, .. } => !store.has_snapshot(id),
        })
        .cloned()
        .collect();
    Ok(rederived)
}

/// Damaged snapshot records and trees: a record is rewritten from the snapshot's trees; a
/// tree is rebuilt by walking the snapshot's source, or its materialization, if either
/// still hashes to the snapshot's id; otherwise the snapshot is removed and reported as
/// lost. Returns whether anything was rebuilt, and what was removed.
fn repair_snapshots(
    store: &Store,
    report: &mut VerifyReport,
    found: &Found<'_>,
) -> Result<(bool, BTreeSet<SnapshotId>)> {
    let mut rederived = false;
    let mut removed = BTreeSet::new();
    let mut broken: BTreeSet<SnapshotId> = BTreeSet::new();
    for problem in &report.problems {
        if let Problem::BadTree { snapshots, .. } = problem {
            broken.extend(snapshots.iter().copied());
        }
    }
    for id in &broken {
        if let Some(from) = rederive_trees(store, id) {
            report.repaired.push(format!(
                "rebuilt the trees of {} from {}",
                id.short(),
                from.display()
            ));
            rederived = true;
        } else {
            remove_tree(&store.env_path(id), &store.root().join("envs"))?;
            remove_file(&store.snapshot_file(id))?;
            report.lost.push(format!(
                "removed snapshot {}: a tree it needs is lost and neither its source nor \
                 its materialization still has that content (pins naming it now dangle; \
                 ingest the environment again)",
                id.short()
            ));
            removed.insert(*id);
        }
    }
    for id in found.bad_records.iter().filter(|id| !removed.contains(id)) {
        let complete = found.complete.contains(id) || broken.contains(id);
        if !complete {
            continue;
        }
        let meta = derive_record(store, id)?;
        store.write_file_atomic(&store.snapshot_file(id), meta.to_text().as_bytes())?;
        report.repaired.push(format!(
            "rewrote the record of {} from its trees",
            id.short()
        ));
        rederived = true;
    }
    Ok((rederived, removed))
}

/// Walks the places a snapshot's content may still be (its source, its materialization),
/// with and without relocation; stores the trees of the first that hashes to `id`.
fn rederive_trees(store: &Store, id: &SnapshotId) -> Option<PathBuf> {
    let mut places = Vec::new();
    if let Ok(meta) = store.snapshot_meta(id) {
        places.push(PathBuf::from(meta.source));
    }
    if store.is_materialized(id) {
        places.push(store.env_path(id));
    }
    for place in places {
        for relocate in [false, true] {
            let filter = Filter::default().relocating(relocate);
            let Ok(walked) = envstore_walk::walk(&place, &filter, Some(store.root()), None) else {
                continue;
            };
            if SnapshotId::from(walked.root) != *id {
                continue;
            }
            let stored = walked
                .trees
                .values()
                .try_for_each(|tree| store.trees().repair(tree).map(drop));
            if stored.is_ok() {
                return Some(place);
            }
        }
    }
    None
}

/// A snapshot record derived from its trees: counts and size from the trees, the time from
/// the old record file, the source unknown.
fn derive_record(store: &Store, id: &SnapshotId) -> Result<SnapshotMeta> {
    let mut meta = SnapshotMeta {
        created: fs::symlink_metadata(store.snapshot_file(id))
            .and_then(|m| m.modified())
            .map_or_else(|_| unix_secs(std::time::SystemTime::now()), unix_secs),
        source: String::new(),
        ..SnapshotMeta::default()
    };
    let mut stack = vec![id.root()];
    let mut loose = true;
    while let Some(tree) = stack.pop() {
        let tree = store.trees().get(&tree)?;
        for entry in tree.entries() {
            match &entry.kind {
                EntryKind::File { object, size, .. } => {
                    meta.files += 1;
                    meta.bytes += size;
                    loose &= store.objects().contains(object);
                }
                EntryKind::Dir { tree } => {
                    meta.dirs += 1;
                    stack.push(*tree);
                }
                EntryKind::Symlink { .. } => meta.symlinks += 1,
            }
        }
    }
    if !loose {
        // Some content lives only in packs: the record must say so for rehydration.
        meta.packed = meta.created.max(1);
    }
    Ok(meta)
}

/// Damaged pins cannot be mended (what they named is unknown): removed, and said so. A
/// pin whose snapshot record is gone gets the record back when the snapshot's trees are
/// all still there (the record is derived from them); returns whether one was.
fn repair_pins(store: &Store, report: &mut VerifyReport) -> Result<bool> {
    let mut rederived = false;
    for problem in &report.problems {
        match problem {
            Problem::DamagedPin { name, reason } => {
                let path = store.root().join("pins").join(name);
                envstore_fs::remove_all(&path).map_err(Error::io("remove", &path))?;
                report.repaired.push(format!(
                    "removed the damaged pin {name} ({reason}); pin the snapshot again"
                ));
            }
            Problem::DanglingPin { name, id } if !store.has_snapshot(id) => {
                let mut whole = true;
                crate::store::mark::visit_trees(
                    store,
                    id.root(),
                    None,
                    &mut |_, _| Ok(()),
                    &mut |_, _| {
                        whole = false;
                    },
                )?;
                if !whole {
                    continue; // re-ingesting the environment brings it back
                }
                let meta = derive_record(store, id)?;
                store.write_file_atomic(&store.snapshot_file(id), meta.to_text().as_bytes())?;
                report.repaired.push(format!(
                    "restored the record of {} (pinned as {name}) from its trees",
                    id.short()
                ));
                rederived = true;
            }
            _ => {}
        }
    }
    Ok(rederived)
}
