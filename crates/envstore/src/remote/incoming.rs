//! A pull's trees: received from the record one at a time, each checked against its id and
//! set aside in a temporary file (they enter the store only once every object is there), then
//! walked to count the snapshot and list the files it needs. Memory follows the number of
//! distinct trees (an offset and the counts of each), not the files.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::time::SystemTime;

use envstore_index::SnapshotMeta;
use envstore_remote::format::FormatError;
use envstore_tree::{EntryKind, ObjectId, SnapshotId, Tree, TreeId};

use crate::remote::open::Remote;
use crate::store::files::unix_secs;
use crate::{Error, Result, Store};

/// The record's trees, checked, in a temporary file.
pub(super) struct Received {
    file: File,
    at: HashMap<TreeId, (u64, u32)>,
}

impl Received {
    /// Checks each tree of `trees` against its id and keeps it in a file at `path`.
    pub(super) fn receive(
        remote: &Remote,
        trees: impl Iterator<Item = std::result::Result<(TreeId, Vec<u8>), FormatError>>,
        path: &Path,
    ) -> Result<Received> {
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(Error::io("create", path))?;
        let mut out = BufWriter::with_capacity(256 << 10, &file);
        let mut at = HashMap::new();
        let mut offset = 0u64;
        for tree in trees {
            let (tid, bytes) = tree.map_err(|e| remote.refused(e.to_string()))?;
            let decoded = Tree::decode(&bytes)
                .map_err(|e| remote.refused(format!("tree {tid} does not decode: {e}")))?;
            if decoded.id() != tid || decoded.encode() != bytes {
                return Err(remote.refused(format!("tree {tid} does not match its id")));
            }
            if at.contains_key(&tid) {
                continue;
            }
            out.write_all(&bytes).map_err(Error::io("write", path))?;
            at.insert(tid, (offset, bytes.len() as u32));
            offset += bytes.len() as u64;
        }
        out.flush().map_err(Error::io("write", path))?;
        drop(out);
        Ok(Received { file, at })
    }

    /// A tree the record sent, else the store's; `None` when neither has it.
    fn get(&self, store: &Store, tid: &TreeId) -> Result<Option<Tree>> {
        match self.at.get(tid) {
            Some(&(offset, len)) => {
                let mut bytes = vec![0; len as usize];
                self.file
                    .read_exact_at(&mut bytes, offset)
                    .map_err(Error::io("read back a tree of", &store.root().join("tmp")))?;
                Ok(Tree::decode(&bytes).ok())
            }
            None if store.trees().contains(tid) => Ok(Some(store.trees().get(tid)?)),
            None => Ok(None),
        }
    }

    /// Walks snapshot `id` from its root, handing each distinct tree's files (object,
    /// executable, size) to `files` once, and counts what the snapshot holds (every occurrence).
    /// A tree neither the record nor the store has refuses the pull.
    pub(super) fn walk(
        &self,
        store: &Store,
        remote: &Remote,
        id: &SnapshotId,
        files: impl FnMut(ObjectId, bool, u64) -> Result<()>,
    ) -> Result<SnapshotMeta> {
        let load = |tid: &TreeId| -> Result<Tree> {
            self.get(store, tid)?.ok_or_else(|| {
                remote.refused(format!(
                    "the record of {id} lacks tree {tid}, which the snapshot needs"
                ))
            })
        };
        let counts = count_trees(id.root(), load, files)?;
        let [files, dirs, symlinks, bytes] = counts[&id.root()];
        Ok(SnapshotMeta {
            created: unix_secs(SystemTime::now()),
            files,
            dirs,
            symlinks,
            bytes,
            source: String::new(),
            packed: 0,
        })
    }

    /// Puts the received trees into the store (after every object they name is there).
    pub(super) fn store_trees(&self, store: &Store) -> Result<()> {
        for tid in self.at.keys() {
            if !store.trees().contains(tid)
                && let Some(tree) = self.get(store, tid)?
            {
                store.trees().insert(&tree)?;
            }
        }
        Ok(())
    }
}

/// What a subtree holds, every occurrence counted: files, directories (itself included),
/// symlinks, bytes.
pub(super) type Counts = [u64; 4];

/// Walks the trees below `root` depth first (each distinct tree loaded once, through `load`),
/// hands each distinct tree's files (object, executable, size) to `files` once, and returns
/// the counts of every distinct tree. Memory: the counts, and the trees on the current path.
/// (Trees are named by the hash of their bytes, so none can contain itself.)
pub(super) fn count_trees(
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
