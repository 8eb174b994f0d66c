//! Reachability: which trees and objects a snapshot needs. Shared by show, prune and verify,
//! and (counting, in bounded memory) by push and pull.

use std::collections::{HashMap, HashSet, hash_map::Entry};

use envstore_tree::{EntryKind, ObjectId, Tree, TreeId};

use crate::{Error, Result, Store};

/// Trees loaded from the store, each read (and verified) once however many snapshots share it.
#[derive(Debug, Default)]
pub(crate) struct TreeCache {
    pub(crate) trees: HashMap<TreeId, Tree>,
}

impl TreeCache {
    /// Visits every tree reachable from `root` that is not in `seen` yet (adding it), calling
    /// `object` with each file's object id and size. A tree that cannot be loaded is passed to
    /// `bad` and what is below it is skipped.
    pub(crate) fn walk(
        &mut self,
        store: &Store,
        root: TreeId,
        seen: &mut HashSet<TreeId>,
        object: &mut dyn FnMut(ObjectId, u64),
        bad: &mut dyn FnMut(TreeId, Error),
    ) {
        let mut stack = vec![root];
        while let Some(id) = stack.pop() {
            if !seen.insert(id) {
                continue;
            }
            let tree = match self.trees.entry(id) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => match store.trees().get(&id) {
                    Ok(tree) => e.insert(tree),
                    Err(err) => {
                        bad(id, err.into());
                        continue;
                    }
                },
            };
            for entry in tree.entries() {
                match &entry.kind {
                    EntryKind::File {
                        object: o, size, ..
                    } => object(*o, *size),
                    EntryKind::Dir { tree } => stack.push(*tree),
                    EntryKind::Symlink { .. } => {}
                }
            }
        }
    }

    /// Like [`TreeCache::walk`], failing on the first tree that cannot be loaded.
    pub(crate) fn walk_all(
        &mut self,
        store: &Store,
        root: TreeId,
        seen: &mut HashSet<TreeId>,
        object: &mut dyn FnMut(ObjectId, u64),
    ) -> Result<(), Error> {
        let mut failure = None;
        self.walk(store, root, seen, object, &mut |_, e| {
            failure.get_or_insert(e);
        });
        failure.map_or(Ok(()), Err)
    }
}

/// What a subtree holds, every occurrence counted: files, directories (itself included),
/// symlinks, bytes.
#[cfg(feature = "remote")]
pub(crate) type Counts = [u64; 4];

/// Walks the trees below `root` depth first (each distinct tree loaded once, through `load`),
/// hands each distinct tree's files (object, executable, size) to `files` once, and returns
/// the counts of every distinct tree. Memory: the counts, and the trees on the current path.
/// (Trees are named by the hash of their bytes, so none can contain itself.)
#[cfg(feature = "remote")]
pub(crate) fn count_trees(
    root: TreeId,
    load: impl Fn(&TreeId) -> Result<Tree>,
    mut files: impl FnMut(ObjectId, bool, u64) -> Result<()>,
) -> Result<HashMap<TreeId, Counts>> {
    let mut counts: HashMap<TreeId, Counts> = HashMap::new();
    let mut path: Vec<(TreeId, Tree, usize)> = vec![(root, load(&root)?, 0)];
    while let Some((_, tree, next)) = path.last_mut() {
        let uncounted = tree.entries()[*next..]
            .iter()
            .position(|e| matches!(&e.kind, EntryKind::Dir { tree } if !counts.contains_key(tree)));
        if let Some(skip) = uncounted {
            *next += skip + 1;
            if let EntryKind::Dir { tree: child } = tree.entries()[*next - 1].kind {
                let loaded = load(&child)?;
                path.push((child, loaded, 0));
            }
            continue;
        }
        let (tid, tree, _) = path.pop().expect("a tree on the path");
        let mut c: Counts = [0, 1, 0, 0];
        for entry in tree.entries() {
            match &entry.kind {
                EntryKind::File {
                    object,
                    size,
                    executable,
                    ..
                } => {
                    c[0] += 1;
                    c[3] = c[3].saturating_add(*size);
                    files(*object, *executable, *size)?;
                }
                EntryKind::Dir { tree } => {
                    // Saturating: trees shared many times over could count past u64.
                    for (c, b) in c.iter_mut().zip(counts[tree]) {
                        *c = c.saturating_add(b);
                    }
                }
                EntryKind::Symlink { .. } => c[2] = c[2].saturating_add(1),
            }
        }
        counts.insert(tid, c);
    }
    Ok(counts)
}
