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

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use envstore_index::Index;
use envstore_tree::{
    EntryKind, ObjectId, PackId, SnapshotId, Tree, TreeId, substitute_placeholder,
};
use rayon::prelude::*;

use envstore_fs::DirState;

use crate::cold::cold_lookup;
use crate::cold_check::PackCheck;
use crate::files::Stored;
pub use crate::problems::{Problem, VerifyReport};
use crate::reach::TreeCache;
use crate::{Error, Result, Store};

/// What verify found of the cold tier.
#[derive(Default)]
pub(crate) struct ColdState {
    pub(crate) check: PackCheck,
    /// Objects not loose that packed snapshots need and intact packs can rebuild.
    pub(crate) available: HashSet<ObjectId>,
    /// Objects intact packs can rebuild, whoever needs them.
    pub(crate) rebuildable: HashSet<ObjectId>,
}

/// What each snapshot needs, gathered once.
#[derive(Default)]
pub(crate) struct Needs {
    pub(crate) cache: TreeCache,
    /// object -> snapshots using it
    pub(crate) objects: BTreeMap<ObjectId, BTreeSet<SnapshotId>>,
}

/// What a pass of verify found, for repair.
pub(crate) struct Found<'a> {
    pub(crate) needs: &'a Needs,
    /// Object files whose bytes do not hash to their names.
    pub(crate) corrupt: &'a [(PathBuf, ObjectId)],
    /// Intact materialized copies of objects, for restoring them.
    pub(crate) copies: &'a HashMap<ObjectId, Vec<(PathBuf, bool)>>,
    /// Snapshots whose record cannot be read.
    pub(crate) bad_records: &'a BTreeSet<SnapshotId>,
    /// Snapshots whose trees are all intact.
    pub(crate) complete: &'a HashSet<SnapshotId>,
}

/// One pass: the report, and whether repair rebuilt trees or records (then a second pass
/// checks what they need).
struct Pass {
    report: VerifyReport,
    rederived: bool,
}

impl Store {
    /// Checks the whole store, or one snapshot, and with `repair` mends what it can.
    pub fn verify(&self, only: Option<&SnapshotId>, repair: bool) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        // A store directory (or lock file) replaced by a link: nothing below it may be
        // entered, read or deleted until it is mended. Mended before the store lock is taken,
        // since the lock file may be what is damaged; every other command refuses such a
        // store, so nobody works in it meanwhile.
        if !self.damaged_layout.is_empty() {
            for (path, what) in &self.damaged_layout {
                report.problems.push(Problem::Layout {
                    path: path.clone(),
                    what,
                });
            }
            if !repair {
                return Ok(report);
            }
            for path in self.repair_layout()? {
                report.repaired.push(format!(
                    "replaced {} with an empty directory (the link was removed, not followed)",
                    path.display()
                ));
            }
        }
        let _lock = if repair {
            Some(self.lock_exclusive("the store lock (repair needs it alone)")?)
        } else {
            self.lock_shared()?
        };
        let mut pass = self.verify_locked(only, repair)?;
        if repair && pass.rederived {
            // Trees or records were rebuilt: check again, now seeing what they need.
            let mut again = self.verify_locked(only, repair)?;
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
        Ok(report)
    }

    /// One pass of verify (and repair), under the store lock the caller holds.
    fn verify_locked(&self, only: Option<&SnapshotId>, repair: bool) -> Result<Pass> {
        let mut report = VerifyReport::default();
        // The index first: anything below that opens it would set a damaged one aside.
        if self.is_writable() {
            let checked = Index::open(self.root(), self.options().lock_timeout).and_then(|i| {
                let snapshots = i.snapshots();
                match i.recreated() {
                    Some(reason) => Err(envstore_index::IndexError::Damaged {
                        path: self.root().join("index.redb"),
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
            None => self.snapshot_ids()?,
        };
        report.snapshots = ids.len() as u64;

        // Records and trees.
        let mut needs = Needs::default();
        let mut bad_records = BTreeSet::new();
        let mut bad_trees: BTreeMap<TreeId, (String, BTreeSet<SnapshotId>)> = BTreeMap::new();
        let mut complete = HashSet::new();
        for id in &ids {
            if let Err(e) = self.snapshot_meta(id) {
                bad_records.insert(*id);
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
        let mut stored = Vec::new();
        self.for_each_stored(&mut |f| {
            stored.push(f);
            Ok(())
        })?;
        for file in &stored {
            if let Stored::BadShard(what) = file.kind {
                report.problems.push(Problem::Layout {
                    path: file.path.clone(),
                    what,
                });
            }
        }
        let files: Vec<(PathBuf, ObjectId)> = match only {
            Some(_) => needs
                .objects
                .keys()
                .flat_map(|o| [false, true].map(|x| (self.objects().path(o, x), *o)))
                .filter(|(p, _)| fs::symlink_metadata(p).is_ok())
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
            let Ok(meta) = fs::symlink_metadata(path) else {
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
        for id in ids.iter().filter(|id| complete.contains(*id)) {
            let env = self.env_path(id);
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
                store: self,
                env: env.as_os_str().as_bytes(),
                trees: &needs.cache.trees,
                corrupt: &corrupt_ids,
                found: Mutex::new(Vec::new()),
                intact: Mutex::new(Vec::new()),
            };
            check.compare_dir_mode(&env);
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
        let pins = self.all_pins()?;
        for (name, id) in pins.good {
            if !self.has_snapshot(&id) {
                report.problems.push(Problem::DanglingPin { name, id });
            }
        }
        for (name, reason) in pins.damaged {
            report.problems.push(Problem::DamagedPin { name, reason });
        }
        let temps = stored
            .iter()
            .filter(|f| matches!(f.kind, Stored::Temp))
            .map(|f| f.path.clone())
            .collect();
        report.leftovers = self.leftovers(temps)?;

        let mut rederived = false;
        if repair {
            let found = Found {
                needs: &needs,
                corrupt: &corrupt,
                copies: &copies,
                bad_records: &bad_records,
                complete: &complete,
            };
            rederived = self.repair(&mut report, &found, cold)?;
        }
        Ok(Pass { report, rederived })
    }

    /// Checks the packs (all of them, or those `only` needs), and finds which needed objects
    /// that are not loose the cold tier can rebuild: those whose users are all packed snapshots
    /// and whose chunks are all intact.
    pub(crate) fn verify_cold(
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

/// Materialized directories are read-only (0555): a writable one was changed by someone, and
/// anything could have been added to it.
const WRITABLE_DIR: &str =
    "directory is writable (materializations are read-only to the last directory)";

impl Check<'_> {
    /// Reports the materialization's root directory if it is writable.
    fn compare_dir_mode(&self, dir: &Path) {
        if fs::symlink_metadata(dir).is_ok_and(|m| m.mode() & 0o222 != 0) {
            self.found
                .lock()
                .expect("no panics while locked")
                .push((dir.to_owned(), WRITABLE_DIR.to_owned()));
        }
    }

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
                    if meta.mode() & 0o222 != 0 {
                        report(path.clone(), WRITABLE_DIR.to_owned());
                    }
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
                        let stored = self.store.objects().read_verified(object, *executable).ok();
                        let expected = stored.map(|s| substitute_placeholder(&s, self.env));
                        let actual = envstore_fs::read_bounded(&path, 64 << 20).ok();
                        if expected.is_none() || actual != expected {
                            report(path, "content differs".to_owned());
                        }
                        return;
                    }
                    let shares_object = [false, true].into_iter().any(|x| {
                        fs::symlink_metadata(self.store.objects().path(object, x))
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
