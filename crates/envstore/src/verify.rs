//! Verify and repair.
//!
//! Verify re-hashes objects, checks every tree a snapshot needs, compares materializations with
//! their trees (ignoring the `__pycache__` directories and `.pyc` files Python writes at run
//! time), and reports leftovers, dangling pins and a damaged index. Because hardlinked
//! materializations share inodes with objects, a write through one shows up as an object whose
//! bytes no longer match its name; verify names the snapshots that use it.
//!
//! `--repair` (holding the store lock exclusively): removes leftovers, restores damaged or
//! missing objects from an intact copy (the other exec variant, or a materialized file that
//! still hashes right), rebuilds damaged materializations from intact objects, removes
//! materializations without a snapshot, and rebuilds the index from `snapshots/`. Pins live on:
//! they are files.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ffi::OsStr;
use std::fmt;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use envstore_index::Index;
use envstore_link::LinkPolicy;
use envstore_tree::{
    EntryKind, ObjectId, PackId, SnapshotId, Tree, TreeId, substitute_placeholder,
};
use rayon::prelude::*;

use crate::cold::{PackCheck, cold_lookup};
use crate::gc::{Stored, remove_file, remove_tree};
use crate::layout::lay_out;
use crate::reach::TreeCache;
use crate::{Error, Result, Store};

/// One thing wrong with the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// An object file whose bytes do not hash to its name.
    CorruptObject {
        path: PathBuf,
        object: ObjectId,
        snapshots: Vec<SnapshotId>,
    },
    /// An object file whose mode is not its variant's (0444, or 0555 for `.x`): someone ran
    /// chmod on a hardlinked file, which changes every link of the inode.
    ObjectMode {
        path: PathBuf,
        mode: u32,
        snapshots: Vec<SnapshotId>,
    },
    /// An object a snapshot needs is in neither variant.
    MissingObject {
        object: ObjectId,
        snapshots: Vec<SnapshotId>,
    },
    /// A tree a snapshot needs is missing, damaged or undecodable.
    BadTree {
        tree: TreeId,
        reason: String,
        snapshots: Vec<SnapshotId>,
    },
    /// A snapshot record that cannot be read.
    BadRecord { id: SnapshotId, reason: String },
    /// A materialization that differs from its snapshot.
    Materialization {
        id: SnapshotId,
        path: PathBuf,
        reason: String,
    },
    /// A pin naming a snapshot that is not in the store.
    DanglingPin { name: String, id: SnapshotId },
    /// The index cannot be read.
    Index { reason: String },
    /// A pack whose bytes do not match its name, or with blocks or chunks that fail their
    /// checksums; `snapshots` lose content unless the objects are restored.
    DamagedPack {
        path: PathBuf,
        reason: String,
        snapshots: Vec<SnapshotId>,
    },
    /// A pack on disk the index does not know (an interrupted `pack`).
    UnindexedPack { path: PathBuf },
    /// A pack the index knows that is not on disk.
    MissingPack { pack: PackId },
}

fn short(ids: &[SnapshotId]) -> String {
    if ids.is_empty() {
        return "no snapshot".to_owned();
    }
    ids.iter()
        .map(|id| id.to_hex()[..12].to_owned())
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::CorruptObject {
                path, snapshots, ..
            } => {
                write!(
                    f,
                    "{}: content does not match its hash (used by {})",
                    path.display(),
                    short(snapshots)
                )
            }
            Problem::ObjectMode {
                path,
                mode,
                snapshots,
            } => {
                write!(
                    f,
                    "{}: mode {mode:o} changed (through a hardlink?) (used by {})",
                    path.display(),
                    short(snapshots)
                )
            }
            Problem::MissingObject { object, snapshots } => {
                write!(
                    f,
                    "object {object} is missing (needed by {})",
                    short(snapshots)
                )
            }
            Problem::BadTree {
                tree,
                reason,
                snapshots,
            } => {
                write!(f, "tree {tree}: {reason} (needed by {})", short(snapshots))
            }
            Problem::BadRecord { id, reason } => write!(f, "snapshot record {id}: {reason}"),
            Problem::Materialization { path, reason, .. } => {
                write!(f, "{}: {reason}", path.display())
            }
            Problem::DanglingPin { name, id } => {
                write!(f, "pin {name} names {id}, which is not in the store")
            }
            Problem::Index { reason } => write!(f, "index: {reason}"),
            Problem::DamagedPack {
                path,
                reason,
                snapshots,
            } => write!(
                f,
                "{}: {reason} (content lost for {})",
                path.display(),
                short(snapshots)
            ),
            Problem::UnindexedPack { path } => {
                write!(f, "{}: a pack the index does not know", path.display())
            }
            Problem::MissingPack { pack } => {
                write!(f, "pack {pack} is in the index but not on disk")
            }
        }
    }
}

/// What verify found and, with repair, did.
#[derive(Debug, Default)]
pub struct VerifyReport {
    pub problems: Vec<Problem>,
    pub leftovers: Vec<PathBuf>,
    /// With repair: what was fixed, and the problems that remain.
    pub repaired: Vec<String>,
    pub unrepaired: Vec<Problem>,
    pub snapshots: u64,
    pub objects: u64,
    pub materializations: u64,
    /// Packs read through, and objects that are only in packs.
    pub packs: u64,
    pub packed_objects: u64,
}

impl VerifyReport {
    /// Whether the store is sound now (after repair, if asked).
    pub fn ok(&self, repaired: bool) -> bool {
        if repaired {
            self.unrepaired.is_empty()
        } else {
            self.problems.is_empty()
        }
    }
}

/// What verify found of the cold tier.
#[derive(Default)]
struct ColdState {
    check: PackCheck,
    /// Objects not loose that packed snapshots need and intact packs can rebuild.
    available: HashSet<ObjectId>,
    /// Objects intact packs can rebuild, whoever needs them.
    rebuildable: HashSet<ObjectId>,
}

/// What each snapshot needs, gathered once.
#[derive(Default)]
struct Needs {
    cache: TreeCache,
    /// object -> snapshots using it
    objects: BTreeMap<ObjectId, BTreeSet<SnapshotId>>,
}

impl Store {
    /// Checks the whole store, or one snapshot, and with `repair` mends what it can.
    pub fn verify(&self, only: Option<&SnapshotId>, repair: bool) -> Result<VerifyReport> {
        let _lock = if repair {
            self.lock_exclusive("the store lock (repair needs it alone)")?
        } else {
            self.lock_shared()?
        };
        let mut report = VerifyReport::default();
        let ids = match only {
            Some(id) => vec![*id],
            None => self.snapshot_ids()?,
        };
        report.snapshots = ids.len() as u64;

        // Records and trees.
        let mut needs = Needs::default();
        let mut bad_trees: BTreeMap<TreeId, (String, BTreeSet<SnapshotId>)> = BTreeMap::new();
        let mut complete = HashSet::new();
        for id in &ids {
            if let Err(e) = self.snapshot_meta(id) {
                report.problems.push(Problem::BadRecord {
                    id: *id,
                    reason: e.to_string(),
                });
            }
            let mut ok = true;
            let objects = &mut needs.objects;
            needs.cache.walk(
                self,
                id.root(),
                &mut HashSet::new(),
                &mut |o, _| {
                    objects.entry(o).or_default().insert(*id);
                },
                &mut |tree, e| {
                    bad_trees
                        .entry(tree)
                        .or_insert_with(|| (e.to_string(), BTreeSet::new()))
                        .1
                        .insert(*id);
                    ok = false;
                },
            );
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

        // Objects: every object file (or, for one snapshot, its objects), re-hashed in parallel.
        let stored = self.stored_files()?;
        let files: Vec<(PathBuf, ObjectId)> = match only {
            Some(_) => needs
                .objects
                .keys()
                .flat_map(|o| [false, true].map(|x| (self.objects().path(o, x), *o)))
                .filter(|(p, _)| p.exists())
                .collect(),
            None => stored
                .iter()
                .filter_map(|f| match f.kind {
                    Stored::Object(id) => Some((f.path.clone(), id)),
                    _ => None,
                })
                .collect(),
        };
        report.objects = files.len() as u64;
        let corrupt: Vec<(PathBuf, ObjectId)> = files
            .par_iter()
            .filter_map(|(path, id)| match self.objects().rehash(path) {
                Ok(Some(actual)) if actual == *id => None,
                Ok(None) => None, // removed meanwhile
                _ => Some((path.clone(), *id)),
            })
            .collect();
        let users = |o: &ObjectId| -> Vec<SnapshotId> {
            needs
                .objects
                .get(o)
                .map(|s| s.iter().copied().collect())
                .unwrap_or_default()
        };
        let corrupt_ids: HashSet<ObjectId> = corrupt.iter().map(|(_, o)| *o).collect();
        for (path, object) in &corrupt {
            report.problems.push(Problem::CorruptObject {
                path: path.clone(),
                object: *object,
                snapshots: users(object),
            });
        }
        for (path, object) in &files {
            let expected = if path.extension().is_some_and(|x| x == "x") {
                0o555
            } else {
                0o444
            };
            let Ok(meta) = fs::metadata(path) else {
                continue;
            };
            if meta.mode() & 0o7777 != expected && !corrupt_ids.contains(object) {
                let mode = meta.mode() & 0o7777;
                report.problems.push(Problem::ObjectMode {
                    path: path.clone(),
                    mode,
                    snapshots: users(object),
                });
            }
        }
        // Packs, and the objects only they hold.
        let cold = self.verify_cold(only, &needs, &mut report)?;
        for object in needs.objects.keys() {
            if !self.objects().contains(object) && !cold.available.contains(object) {
                report.problems.push(Problem::MissingObject {
                    object: *object,
                    snapshots: users(object),
                });
            }
        }

        // Materializations.
        let mut copies: HashMap<ObjectId, Vec<(PathBuf, bool)>> = HashMap::new();
        for id in ids
            .iter()
            .filter(|id| complete.contains(*id) && self.is_materialized(id))
        {
            report.materializations += 1;
            let env = self.env_path(id);
            let check = Check {
                store: self,
                env: env.as_os_str().as_bytes(),
                trees: &needs.cache.trees,
                corrupt: &corrupt_ids,
                found: Mutex::new(Vec::new()),
                intact: Mutex::new(Vec::new()),
            };
            check.compare(&env, &needs.cache.trees[&id.root()]);
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
        for (name, id) in self.pins()? {
            if !self.has_snapshot(&id) {
                report.problems.push(Problem::DanglingPin { name, id });
            }
        }
        if let Err(e) =
            Index::open(self.root(), self.options().lock_timeout).and_then(|i| i.snapshots())
        {
            report.problems.push(Problem::Index {
                reason: e.to_string(),
            });
        }
        report.leftovers = self.leftovers(&stored)?;

        if repair {
            self.repair(&mut report, &needs, &corrupt, &copies, cold)?;
        }
        Ok(report)
    }

    /// Checks the packs (all of them, or those `only` needs), and finds which needed objects
    /// that are not loose the cold tier can rebuild: those whose users are all packed snapshots
    /// and whose chunks are all intact.
    fn verify_cold(
        &self,
        only: Option<&SnapshotId>,
        needs: &Needs,
        report: &mut VerifyReport,
    ) -> Result<ColdState> {
        let mut state = ColdState::default();
        if self.pack_files()?.is_empty() && !self.root().join("index.redb").exists() {
            return Ok(state);
        }
        // Packs an interrupted `pack` left unindexed are indexed now (the index is a cache of
        // packs/, healed like the catalogue is on `ls`); a broken index is reported below.
        let _ = self.reconcile_packs();
        let objects: Vec<ObjectId> = needs.objects.keys().copied().collect();
        let locs = match self.open_index() {
            Ok(index) => cold_lookup(&index, &objects).unwrap_or_default(),
            Err(_) => Vec::new(), // reported as an index problem below
        };
        let only_packs: Option<HashSet<PackId>> =
            only.map(|_| locs.iter().flatten().flatten().map(|l| l.pack).collect());
        state.check = self.check_packs(only_packs.as_ref())?;
        report.packs = state.check.checked;
        let packed: HashSet<SnapshotId> = needs
            .objects
            .values()
            .flatten()
            .filter(|id| self.snapshot_meta(id).is_ok_and(|m| m.packed > 0))
            .copied()
            .collect();
        let mut damaged_users: HashMap<PackId, BTreeSet<SnapshotId>> = HashMap::new();
        for (object, locs) in objects.iter().zip(&locs) {
            let Some(locs) = locs else { continue };
            let users = &needs.objects[object];
            let loose = self.objects().contains(object);
            let mut intact = true;
            for loc in locs.iter().filter(|l| !state.check.intact(l)) {
                intact = false;
                if !loose {
                    damaged_users
                        .entry(loc.pack)
                        .or_default()
                        .extend(users.iter().copied());
                }
            }
            if intact {
                state.rebuildable.insert(*object);
                if !loose && users.iter().all(|u| packed.contains(u)) {
                    state.available.insert(*object);
                }
            }
        }
        report.packed_objects = state.available.len() as u64;
        for damaged in &state.check.damaged {
            report.problems.push(Problem::DamagedPack {
                path: damaged.path.clone(),
                reason: damaged.reason.clone(),
                snapshots: damaged_users
                    .get(&damaged.id)
                    .map(|s| s.iter().copied().collect())
                    .unwrap_or_default(),
            });
        }
        for path in &state.check.unindexed {
            if state.check.damaged.iter().any(|d| &d.path == path) {
                continue;
            }
            report
                .problems
                .push(Problem::UnindexedPack { path: path.clone() });
        }
        for pack in &state.check.missing {
            report.problems.push(Problem::MissingPack { pack: *pack });
        }
        Ok(state)
    }

    /// Restores `object` from the directory a snapshot using it was ingested from, if that file
    /// is still there with the same bytes (insert_file re-hashes it while copying).
    fn restore_from_source(&self, object: &ObjectId, needs: &Needs) -> Option<PathBuf> {
        for id in needs.objects.get(object)? {
            let Ok(meta) = self.snapshot_meta(id) else {
                continue;
            };
            let mut stack = vec![(id.root(), PathBuf::from(&meta.source))];
            while let Some((tree, dir)) = stack.pop() {
                for entry in needs.cache.trees.get(&tree)?.entries() {
                    let path = dir.join(OsStr::from_bytes(&entry.name));
                    match &entry.kind {
                        EntryKind::File {
                            object: o,
                            executable,
                            ..
                        } if o == object
                            && self
                                .objects()
                                .insert_file(&path, *object, *executable, None)
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

    fn repair(
        &self,
        report: &mut VerifyReport,
        needs: &Needs,
        corrupt: &[(PathBuf, ObjectId)],
        copies: &HashMap<ObjectId, Vec<(PathBuf, bool)>>,
        cold: ColdState,
    ) -> Result<()> {
        let mut cold = cold;
        self.remove_leftovers(&report.leftovers)?;
        if report
            .problems
            .iter()
            .any(|p| matches!(p, Problem::Index { .. }))
        {
            let path = self.root().join("index.redb");
            remove_file(&path)?;
            let records = self
                .snapshot_ids()?
                .into_iter()
                .map(|id| Ok((id, self.snapshot_meta(&id)?)))
                .collect::<Result<Vec<_>>>()?;
            self.open_index()?.rebuild(&records)?;
            let packs = self.reconcile_packs()?;
            report.repaired.push(format!(
                "rebuilt the index from {} snapshot records and {packs} packs",
                records.len()
            ));
            // What the cold tier holds could not be read before.
            cold = self.verify_cold(None, needs, &mut VerifyReport::default())?;
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
            report.repaired.extend(self.repair_packs(&cold.check)?);
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
            remove_file(path)?;
        }
        for problem in &report.problems {
            if let Problem::ObjectMode { path, .. } = problem {
                let mode = if path.extension().is_some_and(|x| x == "x") {
                    0o555
                } else {
                    0o444
                };
                fs::set_permissions(path, fs::Permissions::from_mode(mode))
                    .map_err(Error::io("chmod", path))?;
                report
                    .repaired
                    .push(format!("restored the mode of {}", path.display()));
            }
        }
        let mut lost = HashSet::new();
        for object in needs.objects.keys() {
            if self.objects().contains(object) || cold.available.contains(object) {
                continue;
            }
            if cold.rebuildable.contains(object)
                && self.rehydrate_objects(&[(*object, false)]).is_ok()
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
                    self.objects()
                        .insert_file(path, *object, *executable, None)
                        .is_ok()
                });
            if from_copy {
                report.repaired.push(format!(
                    "restored object {object} from an intact materialized copy"
                ));
            } else if let Some(path) = self.restore_from_source(object, needs) {
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
                Problem::CorruptObject { snapshots, .. }
                | Problem::ObjectMode { snapshots, .. } => {
                    damaged.extend(snapshots.iter().filter(|id| self.is_materialized(id)));
                }
                _ => {}
            }
        }
        let envs = self.root().join("envs");
        for id in &damaged {
            let needs_lost = needs
                .objects
                .iter()
                .any(|(o, users)| users.contains(id) && lost.contains(o));
            if needs_lost {
                continue;
            }
            remove_tree(&self.env_path(id), &envs)?;
            let lookup = |t: &TreeId| -> Result<Cow<'_, Tree>> {
                Ok(match needs.cache.trees.get(t) {
                    Some(tree) => Cow::Borrowed(tree),
                    None => Cow::Owned(self.trees().get(t)?),
                })
            };
            let (_, link) = lay_out(self, id, &lookup, LinkPolicy::Auto)?;
            let _ = self.update_index(|index| index.put_link_mode(id, link.mode.as_str()));
            report.repaired.push(format!(
                "rebuilt the materialization of {} ({})",
                &id.to_hex()[..12],
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
                | Problem::MissingPack { .. } => false,
                // Repair rewrote the intact part; what was lost is a missing object now.
                Problem::DamagedPack { snapshots, .. } => needs
                    .objects
                    .iter()
                    .any(|(o, u)| lost.contains(o) && u.iter().any(|s| snapshots.contains(s))),
                Problem::BadTree { .. }
                | Problem::BadRecord { .. }
                | Problem::DanglingPin { .. } => true,
            })
            .cloned()
            .collect();
        Ok(())
    }
}

/// Comparing one materialization with its snapshot.
struct Check<'a> {
    store: &'a Store,
    /// The materialization's path: what relocated content names.
    env: &'a [u8],
    trees: &'a HashMap<TreeId, Tree>,
    corrupt: &'a HashSet<ObjectId>,
    /// Differences found, with the path involved.
    found: Mutex<Vec<(PathBuf, String)>>,
    /// Files that are intact copies (own inode, right bytes), for repair.
    intact: Mutex<Vec<(ObjectId, PathBuf, bool)>>,
}

impl Check<'_> {
    /// Compares the directory `dir` with `tree`.
    fn compare(&self, dir: &Path, tree: &Tree) {
        let report = |path: PathBuf, reason: String| {
            self.found
                .lock()
                .expect("no panics while locked")
                .push((path, reason))
        };
        let mut expected: HashSet<&[u8]> =
            tree.entries().iter().map(|e| e.name.as_slice()).collect();
        match fs::read_dir(dir) {
            Ok(entries) => {
                for entry in entries.flatten() {
                    let name = entry.file_name();
                    let bytes = name.as_bytes();
                    if expected.remove(bytes) {
                        continue;
                    }
                    // Python writes bytecode caches into environments at run time.
                    let runtime = bytes == b"__pycache__" || bytes.ends_with(b".pyc");
                    if !runtime {
                        report(entry.path(), "not part of the snapshot".to_owned());
                    }
                }
            }
            Err(e) => {
                report(dir.to_owned(), format!("cannot read: {e}"));
                return;
            }
        }
        tree.entries().par_iter().for_each(|entry| {
            let path = dir.join(OsStr::from_bytes(&entry.name));
            let meta = match fs::symlink_metadata(&path) {
                Ok(m) => m,
                Err(_) => return report(path, "missing".to_owned()),
            };
            match &entry.kind {
                EntryKind::Dir { tree } if meta.is_dir() => {
                    self.compare(&path, &self.trees[tree]);
                }
                EntryKind::Symlink { target, relocated } if meta.file_type().is_symlink() => {
                    let expected = if *relocated {
                        substitute_placeholder(target, self.env)
                    } else {
                        target.clone()
                    };
                    match fs::read_link(&path) {
                        Ok(t) if t.as_os_str().as_bytes() == expected => {}
                        _ => report(path, "symlink target differs".to_owned()),
                    }
                }
                EntryKind::File {
                    object,
                    executable,
                    relocated,
                    ..
                } if meta.is_file() => {
                    if (meta.mode() & 0o100 != 0) != *executable {
                        return report(path, "exec bit differs".to_owned());
                    }
                    if *relocated {
                        // Written with the materialization's path in place of the placeholder.
                        let stored = self
                            .store
                            .objects()
                            .find(object, *executable)
                            .and_then(|p| fs::read(p).ok());
                        let expected = stored.map(|s| substitute_placeholder(&s, self.env));
                        if expected.is_none() || fs::read(&path).ok() != expected {
                            report(path, "content differs".to_owned());
                        }
                        return;
                    }
                    let shares_object = [false, true].into_iter().any(|x| {
                        fs::metadata(self.store.objects().path(object, x))
                            .is_ok_and(|m| (m.dev(), m.ino()) == (meta.dev(), meta.ino()))
                    });
                    if shares_object {
                        // A hardlink: its bytes are the object's, checked above.
                        if self.corrupt.contains(object) {
                            report(path, "hardlinked to a damaged object".to_owned());
                        }
                        return;
                    }
                    match self.store.objects().rehash(&path) {
                        Ok(Some(actual)) if actual == *object => {
                            self.intact.lock().expect("no panics while locked").push((
                                *object,
                                path,
                                *executable,
                            ));
                        }
                        _ => report(path, "content differs".to_owned()),
                    }
                }
                _ => report(path, "wrong kind of entry".to_owned()),
            }
        });
    }
}
