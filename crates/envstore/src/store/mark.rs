//! Marking what snapshots need in bounded memory: trees are read as the walk reaches them and
//! dropped, and the ids found go to sorted sets spilled to disk ([`envstore_idset`]), which are
//! then joined with the store's sorted listing. Shared by prune and verify.

use std::collections::HashSet;
use std::path::PathBuf;

use envstore_idset::{Cursor, IdSet, Sorted};
use envstore_tree::{Entry, EntryKind, ObjectId, SnapshotId, TreeId};

use crate::{Error, Result, Store};

/// Trees remembered as fully visited, so that subtrees shared by many snapshots are read once.
/// Beyond this many (about 4 MiB), shared subtrees are simply walked again.
const VISITED_CAP: usize = 64 << 10;

/// A bounded set of trees already walked.
#[derive(Default)]
pub(crate) struct Visited(HashSet<TreeId>);

impl Visited {
    /// Remembers a tree that was read, while there is room: walking a tree again is only
    /// slower, never wrong. (A tree that could not be read is not remembered, so every
    /// snapshot that needs it is found damaged.)
    fn remember(&mut self, id: TreeId) {
        if self.0.len() < VISITED_CAP {
            self.0.insert(id);
        }
    }
}

/// Visits every tree reachable from `root` (each tree's entries in order), depth first,
/// reading each tree when it is reached. Subtrees in `visited` are skipped (pass `None` to
/// visit every occurrence, as reference counting must). A tree that cannot be read is
/// passed to `bad` and what is below it is skipped.
pub(crate) fn visit_trees(
    store: &Store,
    root: TreeId,
    mut visited: Option<&mut Visited>,
    on_entry: &mut dyn FnMut(TreeId, &Entry) -> Result<()>,
    bad: &mut dyn FnMut(TreeId, Error),
) -> Result<()> {
    let mut stack = vec![root];
    while let Some(id) = stack.pop() {
        if visited.as_deref().is_some_and(|v| v.0.contains(&id)) {
            continue;
        }
        let tree = match store.trees().get(&id) {
            Ok(tree) => tree,
            Err(e) => {
                bad(id, e.into());
                continue;
            }
        };
        if let Some(visited) = visited.as_deref_mut() {
            visited.remember(id);
        }
        for entry in tree.entries() {
            on_entry(id, entry)?;
        }
        // Reversed, so that subdirectories are visited in name order.
        for entry in tree.entries().iter().rev() {
            if let EntryKind::Dir { tree } = &entry.kind {
                stack.push(*tree);
            }
        }
    }
    Ok(())
}

/// Says, once, when a store-wide pass had to keep its sorted sets in memory because no run
/// could be written (a full disk): the pass still answered, its memory bound did not hold.
pub(crate) fn warn_if_in_memory(store: &Store) {
    if let Some(why) = envstore_idset::take_fallback() {
        store.warn(format!(
            "{why}; the sorted id sets were kept in memory instead (free space there to keep \
             memory bounded)"
        ));
    }
}

/// The objects and trees a set of snapshots needs, gathered snapshot by snapshot.
pub(crate) struct Marks {
    objects: IdSet,
    trees: IdSet,
    visited: Visited,
    scratch: PathBuf,
}

/// The sorted result of [`Marks`]: membership for ids asked in ascending order.
pub(crate) struct Marked {
    pub(crate) objects: Cursor,
    pub(crate) trees: Cursor,
}

impl Marks {
    pub(crate) fn new(store: &Store) -> Marks {
        let scratch = store.scratch_dir();
        Marks {
            objects: IdSet::new(&scratch, envstore_idset::buffer()),
            trees: IdSet::new(&scratch, envstore_idset::buffer()),
            visited: Visited::default(),
            scratch,
        }
    }

    /// Adds everything below `root`; returns the first tree that cannot be read, if any
    /// (what is below a bad tree is not marked).
    pub(crate) fn mark(&mut self, store: &Store, root: TreeId) -> Result<Option<(TreeId, Error)>> {
        let mut bad = None;
        let Marks {
            objects,
            trees,
            visited,
            scratch,
        } = self;
        let spill = |e: std::io::Error| Error::io("write a sorted run in", scratch.as_path())(e);
        trees.insert(*root.as_bytes()).map_err(spill)?;
        visit_trees(
            store,
            root,
            Some(visited),
            &mut |_, entry| {
                match &entry.kind {
                    EntryKind::File { object, .. } => objects.insert(*object.as_bytes()),
                    EntryKind::Dir { tree } => trees.insert(*tree.as_bytes()),
                    EntryKind::Symlink { .. } => Ok(()),
                }
                .map_err(spill)
            },
            &mut |id, e| {
                bad.get_or_insert((id, e));
            },
        )?;
        Ok(bad)
    }

    pub(crate) fn finish(self) -> Result<Marked> {
        let scratch = self.scratch;
        let spill = |e: std::io::Error| Error::io("read a sorted run in", scratch.as_path())(e);
        Ok(Marked {
            objects: Cursor::new(self.objects.finish().map_err(spill)?),
            trees: Cursor::new(self.trees.finish().map_err(spill)?),
        })
    }
}

/// Sizes and reference counts of stored objects (or trees), compactly: keyed by the first 8
/// bytes of the id, sorted. Used only to tell what removing a snapshot frees (`--max-size`);
/// a prefix collision can only blur that estimate, never what is deleted (the sweep uses
/// whole ids).
#[derive(Default)]
pub(crate) struct RefCounts {
    keys: Vec<u64>,
    sizes: Vec<u64>,
    counts: Vec<u32>,
}

fn key(id: &[u8; 32]) -> u64 {
    u64::from_be_bytes(id[..8].try_into().expect("8 bytes"))
}

impl RefCounts {
    /// Adds a stored file (in ascending id order: the listing's).
    pub(crate) fn add_file(&mut self, id: &[u8; 32], len: u64) {
        let k = key(id);
        if self.keys.last() == Some(&k) {
            *self.sizes.last_mut().expect("parallel vectors") += len;
        } else {
            self.keys.push(k);
            self.sizes.push(len);
        }
    }

    fn index(&self, id: &[u8; 32]) -> Option<usize> {
        self.keys.binary_search(&key(id)).ok()
    }

    /// Counts one more reference.
    pub(crate) fn retain(&mut self, id: &[u8; 32]) {
        if self.counts.len() != self.keys.len() {
            self.counts = vec![0; self.keys.len()];
        }
        if let Some(i) = self.index(id) {
            self.counts[i] = self.counts[i].saturating_add(1);
        }
    }

    /// Drops one reference; returns the bytes freed when it was the last.
    pub(crate) fn release(&mut self, id: &[u8; 32]) -> u64 {
        match self.index(id) {
            Some(i) if self.counts.get(i).is_some_and(|&n| n > 0) => {
                self.counts[i] -= 1;
                if self.counts[i] == 0 {
                    self.sizes[i]
                } else {
                    0
                }
            }
            _ => 0,
        }
    }

    /// Bytes of what is referenced at all.
    pub(crate) fn referenced(&self) -> u64 {
        self.sizes
            .iter()
            .zip(&self.counts)
            .filter(|(_, n)| **n > 0)
            .map(|(s, _)| s)
            .sum()
    }
}

/// Receives batches of a snapshot's files.
pub(crate) type FileBatchFn<'a> = dyn FnMut(&[FileRef]) -> Result<()> + 'a;

/// A file of a snapshot as its tree records it: its object, exec bit and size.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FileRef {
    pub(crate) object: ObjectId,
    pub(crate) executable: bool,
    pub(crate) size: u64,
}

/// Objects handed out recently, so that a file repeated across a tree (or snapshots) is
/// handed out once while there is room; beyond that, a repeat is only extra work.
const SEEN_OBJECTS_CAP: usize = 32 << 10;

/// Hands the files of snapshots `ids` to `f` in tree order (each directory's files
/// together, directories in name order), in batches of up to `batch` `(object, exec bit)`
/// pairs, each object mostly once. Fails on the first tree that cannot be read.
pub(crate) fn for_each_file_batch(
    store: &Store,
    ids: &[SnapshotId],
    batch: usize,
    f: &mut FileBatchFn<'_>,
) -> Result<()> {
    let mut visited = Visited::default();
    let mut seen: HashSet<ObjectId> = HashSet::new();
    let mut pending: Vec<FileRef> = Vec::with_capacity(batch);
    for id in ids {
        let mut bad = None;
        visit_trees(
            store,
            id.root(),
            Some(&mut visited),
            &mut |_, entry| {
                if let EntryKind::File {
                    object,
                    executable,
                    size,
                    ..
                } = &entry.kind
                {
                    if seen.contains(object) {
                        return Ok(());
                    }
                    if seen.len() < SEEN_OBJECTS_CAP {
                        seen.insert(*object);
                    }
                    pending.push(FileRef {
                        object: *object,
                        executable: *executable,
                        size: *size,
                    });
                    if pending.len() >= batch {
                        f(&pending)?;
                        pending.clear();
                    }
                }
                Ok(())
            },
            &mut |_, e| {
                bad.get_or_insert(e);
            },
        )?;
        if let Some(e) = bad {
            return Err(e);
        }
    }
    if !pending.is_empty() {
        f(&pending)?;
    }
    Ok(())
}

/// The distinct objects snapshots `ids` need, as a sorted set on disk. Fails on the first
/// tree that cannot be read.
pub(crate) fn object_set(store: &Store, ids: &[SnapshotId]) -> Result<Sorted> {
    let scratch = store.scratch_dir();
    let mut set = IdSet::new(&scratch, envstore_idset::buffer());
    for_each_file_batch(store, ids, 4096, &mut |batch| {
        for file in batch {
            set.insert(*file.object.as_bytes())
                .map_err(Error::io("write a sorted run in", &scratch))?;
        }
        Ok(())
    })?;
    set.finish()
        .map_err(Error::io("read a sorted run in", &scratch))
}
