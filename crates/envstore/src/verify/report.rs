//! What `verify` reports: the problems it can find, and its report.

use std::fmt;
use std::path::PathBuf;

use envstore_tree::{ObjectId, PackId, SnapshotId, TreeId};

/// One thing wrong with the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// An object file whose bytes do not hash to its name.
    CorruptObject {
        path: PathBuf,
        object: ObjectId,
        snapshots: Vec<SnapshotId>,
    },
    /// An object file whose mode is not its variant's (0444, or 0555 for `.x`): someone ran
    /// chmod on a hardlinked file, which changes every link of the inode.
    ObjectMode {
        path: PathBuf,
        mode: u32,
        snapshots: Vec<SnapshotId>,
    },
    /// An object a snapshot needs is in neither variant.
    MissingObject {
        object: ObjectId,
        snapshots: Vec<SnapshotId>,
    },
    /// A tree a snapshot needs is missing, damaged or undecodable.
    BadTree {
        tree: TreeId,
        reason: String,
        snapshots: Vec<SnapshotId>,
    },
    /// A snapshot record that cannot be read.
    BadRecord { id: SnapshotId, reason: String },
    /// A materialization that differs from its snapshot.
    Materialization {
        id: SnapshotId,
        path: PathBuf,
        reason: String,
    },
    /// A pin naming a snapshot that is not in the store.
    DanglingPin { name: String, id: SnapshotId },
    /// A pin file that cannot be read (a link, a fifo, a huge file, garbage).
    DamagedPin { name: String, reason: String },
    /// A store directory replaced by something else (a link): nothing below it is entered.
    Layout { path: PathBuf, what: &'static str },
    /// The index cannot be read.
    Index { reason: String },
    /// A pack whose bytes do not match its name, or with blocks or chunks that fail their
    /// checksums; `snapshots` lose content unless the objects are restored.
    DamagedPack {
        path: PathBuf,
        reason: String,
        snapshots: Vec<SnapshotId>,
    },
    /// A pack on disk the index does not know (an interrupted `pack`).
    UnindexedPack { path: PathBuf },
    /// A pack the index knows that is not on disk.
    MissingPack { pack: PackId },
}

fn short(ids: &[SnapshotId]) -> String {
    if ids.is_empty() {
        return "no snapshot".to_owned();
    }
    ids.iter()
        .map(|id| id.short())
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::CorruptObject {
                path, snapshots, ..
            } => {
                write!(
                    f,
                    "{}: content does not match its hash (used by {})",
                    path.display(),
                    short(snapshots)
                )
            }
            Problem::ObjectMode {
                path,
                mode,
                snapshots,
            } => {
                write!(
                    f,
                    "{}: mode {mode:o} changed (through a hardlink?) (used by {})",
                    path.display(),
                    short(snapshots)
                )
            }
            Problem::MissingObject { object, snapshots } => {
                write!(
                    f,
                    "object {object} is missing (needed by {})",
                    short(snapshots)
                )
            }
            Problem::BadTree {
                tree,
                reason,
                snapshots,
            } => {
                write!(f, "tree {tree}: {reason} (needed by {})", short(snapshots))
            }
            Problem::BadRecord { id, reason } => write!(f, "snapshot record {id}: {reason}"),
            Problem::Materialization { path, reason, .. } => {
                write!(f, "{}: {reason}", path.display())
            }
            Problem::DanglingPin { name, id } => {
                write!(f, "pin {name} names {id}, which is not in the store")
            }
            Problem::DamagedPin { name, reason } => write!(f, "pin {name}: {reason}"),
            Problem::Layout { path, what } => write!(
                f,
                "{} is {what}, not a directory envstore made (never followed; the other checks \
                 wait for `envstore verify --repair`, which replaces it)",
                path.display()
            ),
            Problem::Index { reason } => write!(f, "index: {reason}"),
            Problem::DamagedPack {
                path,
                reason,
                snapshots,
            } => write!(
                f,
                "{}: {reason} (content lost for {})",
                path.display(),
                short(snapshots)
            ),
            Problem::UnindexedPack { path } => {
                write!(f, "{}: a pack the index does not know", path.display())
            }
            Problem::MissingPack { pack } => {
                write!(f, "pack {pack} is in the index but not on disk")
            }
        }
    }
}

/// What verify found and, with repair, did.
#[derive(Debug, Default)]
pub struct VerifyReport {
    pub problems: Vec<Problem>,
    pub leftovers: Vec<PathBuf>,
    /// With repair: what was fixed, and the problems that remain.
    pub repaired: Vec<String>,
    pub unrepaired: Vec<Problem>,
    /// With repair: snapshots removed because what they need is lost for good.
    pub lost: Vec<String>,
    pub snapshots: u64,
    pub objects: u64,
    pub materializations: u64,
    /// Packs read through, and objects that are only in packs.
    pub packs: u64,
    pub packed_objects: u64,
}

impl VerifyReport {
    /// Whether the store is sound now (after repair, if asked).
    pub fn ok(&self, repaired: bool) -> bool {
        if repaired {
            self.unrepaired.is_empty() && self.lost.is_empty()
        } else {
            self.problems.is_empty()
        }
    }
}
