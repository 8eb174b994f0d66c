//! Prune: plan, then act.
//!
//! The plan is computed under the store lock held **exclusively** (so no ingest can reference
//! an object between the mark and the sweep: ostree#2337 computed reachability outside its
//! lock), and with an exclusive try-lock on each candidate's lease (a snapshot in use is
//! skipped and reported, never waited for: uv#16112). `--dry-run` computes the same plan and
//! changes nothing.
//!
//! Policy: a snapshot is removed when it is not pinned, not leased, and not used within the
//! window (default 30 days), oldest use first; then, if a size bound is given, more unpinned,
//! unleased snapshots are removed, oldest use first, until the store fits. Then every object
//! and tree no kept snapshot references is deleted, with the leftovers of interrupted work.

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use envstore_lock::{FileLock, LockKind};
use envstore_tree::{EntryKind, SnapshotId};

use crate::gc::plan::{Kept, PruneOptions, PrunePlan, Reason, Removal};
use crate::store::Mode;
use crate::store::files::{Stored, remove_file, remove_tree, unix_secs};
use crate::store::mark::{Marks, RefCounts, Visited};
use crate::{Error, Hint, Result, Store};

/// Computes what prune would remove. To execute, the leases of the snapshots to remove stay
/// locked in the plan (for [`crate::Store::prune`]); a dry run only probes them.
fn plan_prune(store: &Store, options: &PruneOptions, mode: Mode) -> Result<PrunePlan> {
    let now = unix_secs(SystemTime::now());
    let cutoff = now.saturating_sub(options.older_than.as_secs());
    let mut plan = PrunePlan::default();
    // Live roots keep their snapshots like pins; dead ones are dropped.
    for status in crate::gc::roots::roots(store)? {
        for (id, state) in status.states {
            if state.is_live() {
                plan.rooted.push((id, status.root.dir.clone()));
            } else {
                plan.dead_roots
                    .push((status.root.dir.clone(), id, state.reason().to_owned()));
            }
        }
    }
    // Pins, the newest build of each key name, and what live roots use, are kept. A pin that
    // cannot be read could name any snapshot: while there is one, prune removes none.
    let pins = crate::catalog::pins::all_pins(store)?;
    for (name, reason) in &pins.damaged {
        store.warn_with(
            format!(
                "pin {name} is damaged ({reason}); it could name any snapshot, so prune removes \
                 none until it is replaced or removed"
            ),
            Hint::ReplacePin { name: name.clone() },
        );
    }
    plan.damaged_pins = pins.damaged.iter().map(|(name, _)| name.clone()).collect();
    // Why each kept snapshot is kept, for `prune --dry-run` to say: the first reason found.
    let mut why: HashMap<SnapshotId, Kept> = HashMap::new();
    for (name, id) in &pins.good {
        why.entry(*id).or_insert_with(|| Kept::Pinned(name.clone()));
    }
    for (name, id) in crate::gc::keep::named_key_snapshots(store)? {
        why.entry(id).or_insert(Kept::KeyName(name));
    }
    for (id, dir) in &plan.rooted {
        why.entry(*id).or_insert_with(|| Kept::Rooted(dir.clone()));
    }
    let only: Option<HashSet<SnapshotId>> = options
        .only
        .as_ref()
        .map(|ids| ids.iter().copied().collect());

    // Every snapshot: kept unless it is a candidate whose lease we can take.
    let mut candidates = Vec::new();
    let mut kept = Vec::new();
    for id in store.snapshot_ids()? {
        let meta = crate::store::records::snapshot_meta_or_warn(store, &id);
        let last_used = crate::store::records::last_used(store, &id, &meta);
        let keep = match &only {
            Some(only) => !only.contains(&id),
            None => why.contains_key(&id) || !plan.damaged_pins.is_empty(),
        };
        if keep {
            if only.is_none() {
                let reason = why.get(&id).cloned().unwrap_or_else(|| {
                    Kept::DamagedPin(plan.damaged_pins.first().cloned().unwrap_or_default())
                });
                plan.kept_because.push((id, reason));
            }
            kept.push(id);
            continue;
        }
        candidates.push(Removal {
            id,
            last_used,
            bytes: meta.bytes,
            materialized: store.is_materialized(&id),
            reason: Reason::Unused,
        });
    }
    candidates.sort_by_key(|c| (c.last_used, c.id));

    // With a size bound: what each stored object and tree costs, and how often snapshots
    // reference it, so that removing one tells what it frees. Counted per occurrence (no
    // set per snapshot), so a removal releases exactly what its walk counted.
    let mut counts = options
        .max_size
        .map(|_| (RefCounts::default(), RefCounts::default()));
    plan.size_before = 0;
    crate::store::files::for_each_stored(store, &mut |file| {
        match (file.kind, &mut counts) {
            (Stored::Object(id), c) => {
                plan.size_before += file.len;
                if let Some((objects, _)) = c {
                    objects.add_file(id.as_bytes(), file.len);
                }
            }
            (Stored::Tree(id), c) => {
                plan.size_before += file.len;
                if let Some((_, trees)) = c {
                    trees.add_file(id.as_bytes(), file.len);
                }
            }
            _ => {}
        }
        Ok(())
    })?;
    let damaged = |id: &SnapshotId, plan: &mut PrunePlan, e: &Error| {
        if plan.damaged.contains(id) {
            return; // said once
        }
        store.warn_with(
            format!(
                "snapshot {} cannot be read ({e}); prune keeps it, and removes no object until \
                 repair has mended or removed it",
                id.short()
            ),
            Hint::Repair,
        );
        plan.damaged.push(*id);
    };
    let mut size = plan.size_before;
    if let Some((objects, trees)) = &mut counts {
        for id in kept.iter().chain(candidates.iter().map(|c| &c.id)) {
            let mut bad = None;
            trees.retain(id.root().as_bytes());
            crate::store::mark::visit_trees(
                store,
                id.root(),
                None,
                &mut |_, entry| {
                    match &entry.kind {
                        EntryKind::File { object, .. } => objects.retain(object.as_bytes()),
                        EntryKind::Dir { tree } => trees.retain(tree.as_bytes()),
                        EntryKind::Symlink { .. } => {}
                    }
                    Ok(())
                },
                &mut |_, e| {
                    bad.get_or_insert(e);
                },
            )?;
            if let Some(e) = bad {
                damaged(id, &mut plan, &e);
            }
        }
        // Objects and trees nobody references at all (a crashed ingest's) go in any case.
        size = objects.referenced() + trees.referenced();
    }
    let mut visited = Visited::default();

    for id in &plan.damaged {
        if !kept.contains(id) {
            kept.push(*id);
        }
    }
    candidates.retain(|c| !plan.damaged.contains(&c.id));
    for mut candidate in candidates {
        let by_age = only.is_some() || candidate.last_used <= cutoff;
        let by_size = options.max_size.is_some_and(|max| size > max);
        if !by_age && !by_size {
            plan.kept_because.push((
                candidate.id,
                Kept::Recent {
                    last_used: candidate.last_used,
                },
            ));
            kept.push(candidate.id);
            continue;
        }
        if counts.is_none() {
            // Not walked yet: a snapshot that cannot be read is kept, not removed blind.
            let mut bad = None;
            crate::store::mark::visit_trees(
                store,
                candidate.id.root(),
                Some(&mut visited),
                &mut |_, _| Ok(()),
                &mut |_, e| {
                    bad.get_or_insert(e);
                },
            )?;
            if let Some(e) = bad {
                damaged(&candidate.id, &mut plan, &e);
                kept.push(candidate.id);
                continue;
            }
        }
        let lease = store.lease_path(&candidate.id);
        let free = if mode == Mode::Execute {
            FileLock::try_acquire(&lease, LockKind::Exclusive)
                .map(|lock| lock.map(|lock| plan.locks.push(lock)))
        } else {
            // A dry run only looks: it creates no lease file.
            FileLock::probe(&lease, LockKind::Exclusive).map(|free| free.then_some(()))
        };
        // A lease file that cannot be locked (replaced by a directory): kept, and said.
        let free = free.unwrap_or_else(|e| {
            store.warn_with(
                format!("{e}; prune keeps {}", candidate.id.short()),
                Hint::Repair,
            );
            None
        });
        match free {
            None => {
                plan.leased.push(candidate.id);
                kept.push(candidate.id);
            }
            Some(()) => {
                candidate.reason = if by_age { Reason::Unused } else { Reason::Size };
                if let Some((objects, trees)) = &mut counts {
                    size -= trees.release(candidate.id.root().as_bytes());
                    crate::store::mark::visit_trees(
                        store,
                        candidate.id.root(),
                        None,
                        &mut |_, entry| {
                            size -= match &entry.kind {
                                EntryKind::File { object, .. } => {
                                    objects.release(object.as_bytes())
                                }
                                EntryKind::Dir { tree } => trees.release(tree.as_bytes()),
                                EntryKind::Symlink { .. } => 0,
                            };
                            Ok(())
                        },
                        &mut |_, _| {},
                    )?;
                }
                plan.remove.push(candidate);
            }
        }
    }
    plan.size_after = size;
    plan.size_unmet = options.max_size.is_some_and(|max| size > max);
    plan.kept = kept.len();
    if let Some(window) = options.pack_older_than {
        let cutoff = now.saturating_sub(window.as_secs());
        for id in &kept {
            let Ok(meta) = store.snapshot_meta(id) else {
                continue; // damaged: left as it is
            };
            let cold = meta.packed > 0 && !store.is_materialized(id);
            if cold
                || crate::store::records::last_used(store, id, &meta) > cutoff
                || plan.leased.contains(id)
                || plan.damaged.contains(id)
            {
                continue;
            }
            // In use right now: leave it hot.
            if FileLock::probe(&store.lease_path(id), LockKind::Exclusive).unwrap_or(false) {
                plan.to_pack.push(*id);
            }
        }
        plan.to_pack.sort();
    }

    // The mark: whatever a kept snapshot references, as sorted sets for the sweep.
    let mut marks = Marks::new(store);
    for id in &kept {
        if let Some((_, e)) = marks.mark(store, id.root())? {
            damaged(id, &mut plan, &e);
        }
    }
    plan.marked = Some(marks.finish()?);
    kept.sort();
    plan.kept_ids = kept;
    Ok(plan)
}

/// The sweep: lists `objects/` and `trees/` in id order against the plan's marks, counting
/// (and, executing, removing) what no kept snapshot references, and finds the leftovers.
/// While any snapshot is damaged, nothing is swept.
fn sweep_stored(store: &Store, plan: &mut PrunePlan, mode: Mode) -> Result<()> {
    let Some(mut marked) = plan.marked.take() else {
        return Ok(());
    };
    let sweep = plan.damaged.is_empty();
    let mut temps = Vec::new();
    let (mut files, mut bytes, mut size_after) = (0, 0, 0);
    let runs = store.scratch_dir();
    let read_runs = |e: std::io::Error| Error::io("read a sorted run in", &runs)(e);
    // The joins need ids in ascending order; one out of order (which the listing never
    // gives) is kept, never deleted on a wrong answer.
    let (mut last_object, mut last_tree) = ([0u8; 32], [0u8; 32]);
    let in_order = |last: &mut [u8; 32], id: &[u8; 32]| {
        let ok = *id >= *last;
        *last = (*last).max(*id);
        ok
    };
    crate::store::files::for_each_stored(store, &mut |file| {
        let keep = match file.kind {
            Stored::Object(id) => {
                !sweep
                    || !in_order(&mut last_object, id.as_bytes())
                    || marked.objects.contains(id.as_bytes()).map_err(read_runs)?
            }
            Stored::Tree(id) => {
                !sweep
                    || !in_order(&mut last_tree, id.as_bytes())
                    || marked.trees.contains(id.as_bytes()).map_err(read_runs)?
            }
            Stored::BadShard(what) => {
                store.warn_with(
                    format!(
                        "{} is {what}, not a directory; prune does not enter it",
                        file.path.display()
                    ),
                    Hint::Repair,
                );
                return Ok(());
            }
            Stored::Temp => {
                temps.push(file.path);
                return Ok(());
            }
            Stored::Other => return Ok(()),
        };
        if keep {
            size_after += file.len;
        } else {
            files += 1;
            bytes += file.len;
            if mode == Mode::Execute {
                remove_file(&file.path)?;
            }
        }
        Ok(())
    })?;
    plan.unreferenced = files;
    plan.unreferenced_bytes = bytes;
    plan.size_after = size_after;
    plan.leftovers = crate::store::files::leftovers(store, temps)?;
    Ok(())
}

/// The plan prune would carry out, changing nothing (`--dry-run`).
pub(crate) fn prune_plan(store: &Store, options: &PruneOptions) -> Result<PrunePlan> {
    let _lock = store.lock_shared()?;
    let mut plan = plan_prune(store, options, Mode::DryRun)?;
    sweep_stored(store, &mut plan, Mode::DryRun)?;
    plan.packs = crate::cold::sweep::sweep_packs(store, &plan.kept_ids, Mode::DryRun)?;
    plan.remote_cache_removed = crate::store::cache::trim(store, Mode::DryRun)?;
    crate::store::mark::warn_if_in_memory(store);
    Ok(plan)
}

/// Plans and carries out a prune. Holds the store lock exclusively, waiting at most the
/// store's lock timeout for running ingests to finish.
pub(crate) fn prune(store: &Store, options: &PruneOptions) -> Result<PrunePlan> {
    let lock = store.lock_exclusive(
        "the store lock (prune needs it alone; ingests and materializations hold it while they write)",
    )?;
    let mut plan = plan_prune(store, options, Mode::Execute)?;
    for removal in &plan.remove {
        // Disappear atomically first: a materialization is either whole or gone.
        remove_tree(&store.env_path(&removal.id), &store.root().join("envs"))?;
        remove_file(&store.snapshot_file(&removal.id))?;
    }
    sweep_stored(store, &mut plan, Mode::Execute)?;
    crate::store::files::remove_leftovers(&plan.leftovers)?;
    // The lease files go last, each removed while we hold it (see FileLock::remove).
    for lock in plan.locks.drain(..) {
        lock.remove()?;
    }
    plan.key_records_removed = crate::gc::keep::remove_dead_key_records(store)?;
    if options.only.is_none() {
        crate::gc::roots::drop_roots(store, None)?;
    }
    let removed: Vec<SnapshotId> = plan.remove.iter().map(|r| r.id).collect();
    if !removed.is_empty() {
        // The index is a cache of snapshots/, reconciled by `ls`; a failure here is harmless.
        let _ = store.update_index(|index| index.remove_snapshots(&removed));
    }
    plan.packs = crate::cold::sweep::sweep_packs(store, &plan.kept_ids, Mode::Execute)?;
    plan.remote_cache_removed = crate::store::cache::trim(store, Mode::Execute)?;
    crate::store::mark::warn_if_in_memory(store);
    if !plan.to_pack.is_empty() {
        let envs = store.root().join("envs");
        for id in &plan.to_pack {
            // Checked again: a lease may have been taken since the plan was made.
            let Ok(Some(lease)) = FileLock::try_acquire(&store.lease_path(id), LockKind::Exclusive)
            else {
                continue;
            };
            remove_tree(&store.env_path(id), &envs)?;
            let _ = store.update_index(|index| index.remove_link_mode(id));
            drop(lease);
        }
        // Packing takes the pack lock and then the store lock itself; ours must go first.
        drop(lock);
        plan.packed = Some(crate::cold::pack::pack(store, &plan.to_pack)?);
    }
    Ok(plan)
}
