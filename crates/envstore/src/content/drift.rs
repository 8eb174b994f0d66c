//! Has a materialization been written to since it was laid out? Every directory of one is laid
//! out with the fixed mtime (like its files), and creating, removing or renaming an entry sets
//! a directory's mtime to now: a `pip install` into an environment, an uninstall, a new file
//! beside the others all show as a directory whose mtime is no longer the fixed one. Such a
//! directory's entries are then compared with its tree's: Python running as root writes
//! `__pycache__/` even into read-only directories, and that alone changes nothing.
//!
//! The warm paths must stay warm (a hit of a 5,000-file environment costs ~2 ms), so only the
//! first [`BUDGET`] directories are looked at, breadth-first: the root, `bin/`, `lib/`,
//! `lib/pythonX.Y/site-packages/` and the like, where installers write (an install or an
//! uninstall always changes `site-packages/` itself). What it does not see: a write deeper
//! down, or a file rewritten in place (files are read-only, so only root or a `chmod` first
//! can); `verify` finds those.

use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use envstore_tree::{EntryKind, FIXED_MTIME_SECS, SnapshotId, Tree, TreeId};

use crate::Store;

/// Directories looked at, at most, per hit.
const BUDGET: usize = 64;

fn fixed(meta: &std::fs::Metadata) -> bool {
    meta.mtime() == FIXED_MTIME_SECS as i64 && meta.mtime_nsec() == 0
}

/// Python writes bytecode caches beside the modules it imports, even into read-only directories
/// when it runs as root: a directory whose only new entry is this is not a changed environment.
const BYTECODE_CACHE: &str = "__pycache__";

/// The first directory of materialization `id` at `env` found written since it was laid out:
/// its mtime is not the fixed one and its entries are not the tree's (a `__pycache__/` aside).
/// `None` when none is, or when `env` was laid out before directory times were fixed (its root
/// is not fixed but holds the right entries: not judged further).
pub(crate) fn first_change(store: &Store, id: &SnapshotId, env: &Path) -> Option<PathBuf> {
    let root = std::fs::symlink_metadata(env).ok()?;
    let mut trees = Trees {
        store,
        known: HashMap::from([(PathBuf::new(), id.root())]),
    };
    let root_fixed = fixed(&root);
    let mut queue = VecDeque::from([(env.to_owned(), PathBuf::new(), !root_fixed)]);
    let mut looked = 1;
    while let Some((dir, rel, changed)) = queue.pop_front() {
        // Unreadable: not ours to judge here (verify reports it).
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let entries: Vec<(OsString, bool)> = entries
            .flatten()
            .map(|e| (e.file_name(), e.file_type().is_ok_and(|t| t.is_dir())))
            .collect();
        if changed {
            match trees.entries_differ(&rel, &entries) {
                Some(true) => return Some(dir),
                Some(false) if !root_fixed && rel.as_os_str().is_empty() => return None,
                Some(false) => {}
                None => continue,
            }
        }
        for (name, is_dir) in entries {
            if !is_dir || name == BYTECODE_CACHE {
                continue;
            }
            if looked == BUDGET {
                return None;
            }
            looked += 1;
            let path = dir.join(&name);
            if let Ok(meta) = std::fs::symlink_metadata(&path) {
                queue.push_back((path, rel.join(&name), !fixed(&meta)));
            }
        }
    }
    None
}

/// The trees of the directories looked at, read only for those whose mtime changed.
struct Trees<'s> {
    store: &'s Store,
    /// Tree ids by path below the root, as far as they were read.
    known: HashMap<PathBuf, TreeId>,
}

impl Trees<'_> {
    /// The tree at `rel`, reading its ancestors' trees as needed.
    fn tree(&mut self, rel: &Path) -> Option<Tree> {
        if let Some(id) = self.known.get(rel) {
            return self.store.trees().get(id).ok();
        }
        let parent = self.tree(rel.parent()?)?;
        let name = rel.file_name()?.as_bytes();
        let id = parent.entries().iter().find_map(|e| match &e.kind {
            EntryKind::Dir { tree } if e.name == name => Some(*tree),
            _ => None,
        })?;
        self.known.insert(rel.to_owned(), id);
        self.store.trees().get(&id).ok()
    }

    /// Whether the directory at `rel` holds other entries than its tree (a bytecode cache
    /// aside); `None` when its tree cannot be read (a damaged store is verify's to report).
    fn entries_differ(&mut self, rel: &Path, entries: &[(OsString, bool)]) -> Option<bool> {
        // (A directory not in the snapshot at all was caught at its parent, whose entries
        // then differ: directories are looked at parents first.)
        let tree = self.tree(rel)?;
        for e in tree.entries() {
            if let EntryKind::Dir { tree } = &e.kind {
                self.known
                    .insert(rel.join(OsStr::from_bytes(&e.name)), *tree);
            }
        }
        let on_disk: HashSet<&[u8]> = entries
            .iter()
            .map(|(n, _)| n.as_bytes())
            .filter(|n| *n != BYTECODE_CACHE.as_bytes())
            .collect();
        let in_tree: HashSet<&[u8]> = tree.entries().iter().map(|e| &e.name[..]).collect();
        Some(on_disk != in_tree)
    }
}
