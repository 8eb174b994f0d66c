//! `diff`: what changed between two environments, read from trees. A directory is hashed, not
//! stored: its trees go to an anonymous spill file as the walk completes them (an offset per
//! tree stays in memory), so memory does not grow with the number of files.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::sync::Mutex;

use envstore_tree::diff::{self, Change};
use envstore_tree::{Tree, TreeId};
use envstore_walk::{Filter, Sink, SourceFile};

use crate::{Error, Result, Source, Store};

/// Trees of a hashed directory, written to a temporary file.
struct SpilledTrees {
    file: Mutex<(File, u64)>,
    at: Mutex<HashMap<TreeId, (u64, usize)>>,
    path: std::path::PathBuf,
}

impl Sink for SpilledTrees {
    type Error = Error;

    fn file(&self, _: SourceFile) -> Result<()> {
        Ok(())
    }

    fn tree(&self, id: TreeId, tree: Tree) -> Result<()> {
        let bytes = tree.encode();
        let offset = {
            let mut file = self.file.lock().expect("no panics while locked");
            let offset = file.1;
            file.0
                .write_all(&bytes)
                .map_err(Error::io("write a temporary file in", &self.path))?;
            file.1 += bytes.len() as u64;
            offset
        };
        self.at
            .lock()
            .expect("no panics while locked")
            .insert(id, (offset, bytes.len()));
        Ok(())
    }
}

impl SpilledTrees {
    fn get(&self, id: &TreeId) -> Option<Result<Tree>> {
        let (offset, len) = *self.at.lock().expect("no panics while locked").get(id)?;
        let mut bytes = vec![0; len];
        let file = self.file.lock().expect("no panics while locked");
        Some(
            file.0
                .read_exact_at(&mut bytes, offset)
                .map_err(Error::io("read a temporary file in", &self.path))
                .and_then(|()| {
                    Tree::decode(&bytes).map_err(|e| {
                        Error::io("read a temporary file in", &self.path)(std::io::Error::other(e))
                    })
                }),
        )
    }
}

/// The differences from `old` to `new`. Directories are hashed, not stored; subtrees with
/// equal ids are skipped unread.
pub(crate) fn diff(
    store: &Store,
    old: &Source,
    new: &Source,
    filter: &Filter,
) -> Result<Vec<Change>> {
    let path = store.scratch_dir();
    let file = tempfile::tempfile_in(&path)
        .or_else(|_| tempfile::tempfile())
        .map_err(Error::io("create a temporary file in", &path))?;
    let spilled = SpilledTrees {
        file: Mutex::new((file, 0)),
        at: Mutex::new(HashMap::new()),
        path,
    };
    let root_of = |source: &Source| -> Result<TreeId> {
        Ok(match source {
            Source::Snapshot(id) => id.root(),
            Source::Dir(dir) => {
                crate::content::ingest::walk_dir_into(store, dir, filter, &spilled)?.root
            }
        })
    };
    let (a, b) = (root_of(old)?, root_of(new)?);
    let mut lookup = |id: &TreeId| -> Result<Tree> {
        match spilled.get(id) {
            Some(tree) => tree,
            None => Ok(store.trees().get(id)?),
        }
    };
    let (ta, tb) = (lookup(&a)?, lookup(&b)?);
    let mut changes = Vec::new();
    diff::diff(&ta, &tb, &mut lookup, &mut changes)?;
    Ok(changes)
}
