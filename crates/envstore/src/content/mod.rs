//! Content in and out: ingest, materialize, the layout of a materialization, export and import.
//! Uses store/ and cold/.

pub(crate) mod archive;
pub(crate) mod drift;
pub(crate) mod ingest;
pub(crate) mod layout;
pub(crate) mod materialize;

use std::path::PathBuf;

use envstore_tree::SnapshotId;
use envstore_walk::WalkStats;

use crate::content::layout::LinkReport;

/// The outcome of storing a directory.
#[derive(Debug, Clone)]
pub struct IngestReport {
    pub id: SnapshotId,
    pub stats: WalkStats,
    /// False when the store already had this snapshot (nothing was written).
    pub created: bool,
    pub new_objects: u64,
    pub new_bytes: u64,
    /// Set when the snapshot is stored but the index could not be updated (it is rebuildable).
    pub index_warning: Option<String>,
    /// With relocation: the files and symlinks stored with the placeholder.
    pub relocated: Vec<PathBuf>,
    /// With relocation: binary files that contain the directory's path, stored as they are.
    pub binary_with_prefix: Vec<PathBuf>,
}

/// The outcome of materializing.
#[derive(Debug, Clone)]
pub struct Materialized {
    pub id: SnapshotId,
    /// `<store>/envs/<id>`: absolute, and a function of the content only.
    pub path: PathBuf,
    /// False when the materialization existed already (or another process made it first).
    pub created: bool,
    /// How the files were laid out, when this call laid them out.
    pub link: Option<LinkReport>,
    /// What was stored, when the source was a directory the store did not have yet.
    pub ingest: Option<IngestReport>,
    /// Set when the materialization exists but the index could not record it.
    pub index_warning: Option<String>,
}
