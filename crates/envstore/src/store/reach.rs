//! Reachability: which trees and objects a snapshot needs. Shared by show, prune and verify.

use std::collections::{HashMap, HashSet, hash_map::Entry};

use envstore_tree::{EntryKind, ObjectId, Tree, TreeId};

use crate::{Error, Store};

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
