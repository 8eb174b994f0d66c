//! What a verify pass found and shares between its parts: the objects something is wrong
//! with, and what repair may restore them from.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::PathBuf;

use envstore_tree::{ObjectId, SnapshotId};

use crate::{Error, Store};

/// Objects re-hashed at a time (in parallel), and looked up in the index at a time.
pub(crate) const BATCH: usize = 4096;

/// The objects something is wrong with, and the snapshots that use each.
#[derive(Default)]
pub(crate) struct Needs {
    /// object -> snapshots using it (only objects that are corrupt, missing, of the wrong
    /// mode, or held by a damaged pack)
    pub(crate) objects: BTreeMap<ObjectId, BTreeSet<SnapshotId>>,
}

/// What a pass of verify found, for repair.
pub(crate) struct Found<'a> {
    pub(crate) needs: &'a Needs,
    /// Object files whose bytes do not hash to their names.
    pub(crate) corrupt: &'a [(PathBuf, ObjectId)],
    /// Intact materialized copies of objects to restore.
    pub(crate) copies: &'a HashMap<ObjectId, Vec<(PathBuf, bool)>>,
    /// Snapshots whose record cannot be read.
    pub(crate) bad_records: &'a BTreeSet<SnapshotId>,
    /// Snapshots whose trees are all intact.
    pub(crate) complete: &'a HashSet<SnapshotId>,
}

pub(super) fn io_err(store: &Store) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::io("use a sorted run in", &store.scratch_dir())(e)
}
