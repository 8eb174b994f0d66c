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
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use envstore_lock::{FileLock, LockKind};
use envstore_tree::{ObjectId, SnapshotId, TreeId};

use crate::cold::{PackReport, PackSweep};
use crate::files::{Stored, remove_file, remove_tree, unix_secs};
use crate::reach::TreeCache;
use crate::{Result, Store};

/// What prune may remove.
#[derive(Debug, Clone)]
pub struct PruneOptions {
    /// Keep what was used more recently than this.
    pub older_than: Duration,
    /// Then remove more (oldest use first) until objects and trees fit in this many bytes.
    pub max_size: Option<u64>,
    /// Move kept snapshots not used within this window to the cold tier: their
    /// materializations are removed (unless leased) and their content packed.
    pub pack_older_than: Option<Duration>,
    /// `envstore rm`: remove exactly these (unless leased), whatever their age; the caller
    /// has checked pins and roots.
    pub only: Option<Vec<SnapshotId>>,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            older_than: Duration::from_secs(30 * 86_400),
            max_size: None,
            pack_older_than: None,
            only: None,
        }
    }
}

/// Why a snapshot is in the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Not used within the window.
    Unused,
    /// Used within the window, but the size bound needs its space.
    Size,
}

/// A snapshot prune removes.
#[derive(Debug, Clone)]
pub struct Removal {
    pub id: SnapshotId,
    pub last_used: u64,
    pub bytes: u64,
    pub materialized: bool,
    pub reason: Reason,
}

/// What prune will do (or, with `--dry-run`, would do).
#[derive(Debug, Default)]
pub struct PrunePlan {
    pub remove: Vec<Removal>,
    /// Candidates skipped because a process holds a lease on them.
    pub leased: Vec<SnapshotId>,
    pub kept: usize,
    /// Object and tree files no kept snapshot references, with their sizes.
    pub unreferenced: Vec<(PathBuf, u64)>,
    /// Leftovers of interrupted work (temporary files and trees, orphaned materializations).
    pub leftovers: Vec<PathBuf>,
    /// Bytes of objects and trees before, and after the plan is carried out.
    pub size_before: u64,
    pub size_after: u64,
    /// Set when the size bound cannot be met (everything left is pinned or leased).
    pub size_unmet: bool,
    /// Key records removed because their snapshot was.
    pub key_records_removed: usize,
    /// Snapshots whose trees cannot be read: kept (prune cannot tell what they need), and
    /// while there are any, no object or tree is swept. `verify --repair` mends or removes them.
    pub damaged: Vec<SnapshotId>,
    /// Packs deleted or rewritten because kept snapshots need little or nothing in them.
    pub packs: PackSweep,
    /// Kept snapshots unused for `pack_older_than`, moved (or, dry, to be moved) to packs.
    pub to_pack: Vec<SnapshotId>,
    /// What packing them did.
    pub packed: Option<PackReport>,
    /// Snapshots kept because a live root (a build directory) uses them: (snapshot, dir).
    pub rooted: Vec<(SnapshotId, PathBuf)>,
    /// Roots that no longer hold their snapshot, and why; prune drops them.
    pub dead_roots: Vec<(PathBuf, SnapshotId, String)>,
    /// The snapshots that stay.
    kept_ids: Vec<SnapshotId>,
    /// Exclusive locks on the leases of the snapshots being removed, held until the sweep ends.
    locks: Vec<FileLock>,
}

impl PrunePlan {
    pub fn freed_bytes(&self) -> u64 {
        self.size_before - self.size_after
    }
}

impl Store {
    /// Computes what prune would remove. With `hold_locks`, the leases of the snapshots to
    /// remove stay locked in the plan (for [`Store::prune`]); otherwise they are only probed.
    fn plan_prune(&self, options: &PruneOptions, hold_locks: bool) -> Result<PrunePlan> {
        let now = unix_secs(SystemTime::now());
        let cutoff = now.saturating_sub(options.older_than.as_secs());
        let mut plan = PrunePlan::default();
        // Live roots keep their snapshots like pins; dead ones are dropped.
        for status in self.roots()? {
            for (id, state) in status.states {
                if state.is_live() {
                    plan.rooted.push((id, status.root.dir.clone()));
                } else {
                    plan.dead_roots
                        .push((status.root.dir.clone(), id, state.reason().to_owned()));
                }
            }
        }
        // Pins, the newest build of each key name, and what live roots use, are kept.
        let pinned: HashSet<SnapshotId> = self
            .pins()?
            .into_iter()
            .chain(self.named_key_snapshots()?)
            .map(|(_, id)| id)
            .chain(plan.rooted.iter().map(|(id, _)| *id))
            .collect();
        let only: Option<HashSet<SnapshotId>> = options
            .only
            .as_ref()
            .map(|ids| ids.iter().copied().collect());

        // Every snapshot: kept unless it is a candidate whose lease we can take.
        let mut candidates = Vec::new();
        let mut kept = Vec::new();
        for id in self.snapshot_ids()? {
            let meta = self.snapshot_meta_or_warn(&id);
            let last_used = self.last_used(&id, &meta);
            let keep = match &only {
                Some(only) => !only.contains(&id),
                None => pinned.contains(&id),
            };
            if keep {
                kept.push(id);
                continue;
            }
            candidates.push(Removal {
                id,
                last_used,
                bytes: meta.bytes,
                materialized: self.is_materialized(&id),
                reason: Reason::Unused,
            });
        }
        candidates.sort_by_key(|c| (c.last_used, c.id));

        // Sizes of what is stored, and what each object costs.
        let stored = self.stored_files()?;
        let mut sizes: HashMap<ObjectId, u64> = HashMap::new();
        let mut tree_sizes: HashMap<TreeId, u64> = HashMap::new();
        for file in &stored {
            match file.kind {
                Stored::Object(id) => *sizes.entry(id).or_default() += file.len,
                Stored::Tree(id) => {
                    tree_sizes.insert(id, file.len);
                }
                Stored::Temp | Stored::Other | Stored::BadShard(_) => {}
            }
        }
        plan.size_before = sizes.values().sum::<u64>() + tree_sizes.values().sum::<u64>();

        // Reference counts from every snapshot, so removing one tells what it frees.
        let mut cache = TreeCache::default();
        let mut refs: HashMap<SnapshotId, (HashSet<ObjectId>, HashSet<TreeId>)> = HashMap::new();
        let mut object_count: HashMap<ObjectId, u32> = HashMap::new();
        let mut tree_count: HashMap<TreeId, u32> = HashMap::new();
        for id in kept.iter().chain(candidates.iter().map(|c| &c.id)) {
            let (mut objects, mut trees) = (HashSet::new(), HashSet::new());
            let walked = cache.walk_all(self, id.root(), &mut trees, &mut |o, _| {
                objects.insert(o);
            });
            if let Err(e) = walked {
                self.warn(format!(
                    "snapshot {} cannot be read ({e}); prune keeps it, and removes no object \
                     until `envstore verify --repair` has mended or removed it",
                    &id.to_hex()[..12]
                ));
                plan.damaged.push(*id);
                refs.insert(*id, Default::default());
                continue;
            }
            for o in &objects {
                *object_count.entry(*o).or_default() += 1;
            }
            for t in &trees {
                *tree_count.entry(*t).or_default() += 1;
            }
            refs.insert(*id, (objects, trees));
        }
        // Objects and trees nobody references at all (a crashed ingest's) go in any case.
        let referenced_size: u64 = object_count
            .keys()
            .map(|o| sizes.get(o).copied().unwrap_or(0))
            .sum::<u64>()
            + tree_count
                .keys()
                .map(|t| tree_sizes.get(t).copied().unwrap_or(0))
                .sum::<u64>();
        let mut size = referenced_size;
        let mut release = |id: &SnapshotId, size: &mut u64| {
            let (objects, trees) = &refs[id];
            for o in objects {
                let n = object_count.get_mut(o).expect("counted");
                *n -= 1;
                if *n == 0 {
                    *size -= sizes.get(o).copied().unwrap_or(0);
                }
            }
            for t in trees {
                let n = tree_count.get_mut(t).expect("counted");
                *n -= 1;
                if *n == 0 {
                    *size -= tree_sizes.get(t).copied().unwrap_or(0);
                }
            }
        };

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
                kept.push(candidate.id);
                continue;
            }
            let lease = self.lease_path(&candidate.id);
            let free = if hold_locks {
                FileLock::try_acquire(&lease, LockKind::Exclusive)
                    .map(|lock| lock.map(|lock| plan.locks.push(lock)))
            } else {
                // A dry run only looks: it creates no lease file.
                FileLock::probe(&lease, LockKind::Exclusive).map(|free| free.then_some(()))
            };
            // A lease file that cannot be locked (replaced by a directory): kept, and said.
            let free = free.unwrap_or_else(|e| {
                self.warn(format!(
                    "{e}; prune keeps {} (`envstore verify --repair` removes the bad lease)",
                    &candidate.id.to_hex()[..12]
                ));
                None
            });
            match free {
                None => {
                    plan.leased.push(candidate.id);
                    kept.push(candidate.id);
                }
                Some(()) => {
                    candidate.reason = if by_age { Reason::Unused } else { Reason::Size };
                    release(&candidate.id, &mut size);
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
                let Ok(meta) = self.snapshot_meta(id) else {
                    continue; // damaged: left as it is
                };
                let cold = meta.packed > 0 && !self.is_materialized(id);
                if cold
                    || self.last_used(id, &meta) > cutoff
                    || plan.leased.contains(id)
                    || plan.damaged.contains(id)
                {
                    continue;
                }
                // In use right now: leave it hot.
                if FileLock::probe(&self.lease_path(id), LockKind::Exclusive).unwrap_or(false) {
                    plan.to_pack.push(*id);
                }
            }
            plan.to_pack.sort();
        }

        // The sweep: whatever no kept snapshot references.
        let (mut keep_objects, mut keep_trees) = (HashSet::new(), HashSet::new());
        for id in &kept {
            let (objects, trees) = &refs[id];
            keep_objects.extend(objects.iter().copied());
            keep_trees.extend(trees.iter().copied());
        }
        let sweep = plan.damaged.is_empty();
        for file in &stored {
            let keep = match file.kind {
                Stored::Object(id) => !sweep || keep_objects.contains(&id),
                Stored::Tree(id) => !sweep || keep_trees.contains(&id),
                Stored::BadShard(what) => {
                    self.warn(format!(
                        "{} is {what}, not a directory; prune does not enter it. Run \
                         `envstore verify --repair`",
                        file.path.display()
                    ));
                    true
                }
                Stored::Temp | Stored::Other => true,
            };
            if !keep {
                plan.unreferenced.push((file.path.clone(), file.len));
            }
        }

        plan.leftovers = self.leftovers(&stored)?;
        kept.sort();
        plan.kept_ids = kept;
        Ok(plan)
    }

    /// The plan prune would carry out, changing nothing (`--dry-run`).
    pub fn prune_plan(&self, options: &PruneOptions) -> Result<PrunePlan> {
        let _lock = self.lock_shared()?;
        let mut plan = self.plan_prune(options, false)?;
        plan.packs = self.sweep_packs(&plan.kept_ids, true)?;
        Ok(plan)
    }

    /// Plans and carries out a prune. Holds the store lock exclusively, waiting at most the
    /// store's lock timeout for running ingests to finish.
    pub fn prune(&self, options: &PruneOptions) -> Result<PrunePlan> {
        let lock = self.lock_exclusive(
            "the store lock (prune needs it alone; ingests and materializations hold it while they write)",
        )?;
        let mut plan = self.plan_prune(options, true)?;
        for removal in &plan.remove {
            // Disappear atomically first: a materialization is either whole or gone.
            remove_tree(&self.env_path(&removal.id), &self.root().join("envs"))?;
            remove_file(&self.snapshot_file(&removal.id))?;
        }
        for (path, _) in &plan.unreferenced {
            remove_file(path)?;
        }
        self.remove_leftovers(&plan.leftovers)?;
        // The lease files go last, each removed while we hold it (see FileLock::remove).
        for lock in plan.locks.drain(..) {
            lock.remove()?;
        }
        plan.key_records_removed = self.remove_dead_key_records()?;
        if options.only.is_none() {
            self.drop_roots(None)?;
        }
        let removed: Vec<SnapshotId> = plan.remove.iter().map(|r| r.id).collect();
        if !removed.is_empty() {
            // The index is a cache of snapshots/, reconciled by `ls`; a failure here is harmless.
            let _ = self.update_index(|index| index.remove_snapshots(&removed));
        }
        plan.packs = self.sweep_packs(&plan.kept_ids, false)?;
        if !plan.to_pack.is_empty() {
            let envs = self.root().join("envs");
            for id in &plan.to_pack {
                // Checked again: a lease may have been taken since the plan was made.
                let Ok(Some(lease)) =
                    FileLock::try_acquire(&self.lease_path(id), LockKind::Exclusive)
                else {
                    continue;
                };
                remove_tree(&self.env_path(id), &envs)?;
                let _ = self.update_index(|index| index.remove_link_mode(id));
                drop(lease);
            }
            // Packing takes the pack lock and then the store lock itself; ours must go first.
            drop(lock);
            plan.packed = Some(self.pack(&plan.to_pack)?);
        }
        Ok(plan)
    }
}
