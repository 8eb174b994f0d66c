//! A pull's trees: received from the record one at a time, each checked against its id and
//! set aside in a temporary file (they enter the store only once every object is there), then
//! walked (`store::reach::count_trees`) to count the snapshot and list the files it needs.
//! Memory follows the number of distinct trees (an offset and the counts of each), not the
//! files.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::time::SystemTime;

use envstore_index::SnapshotMeta;
use envstore_remote::format::FormatError;
use envstore_tree::{ObjectId, SnapshotId, Tree, TreeId};

use crate::remote::open::Remote;
use crate::store::files::unix_secs;
use crate::store::reach::count_trees;
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
