//! What prune may remove, and the plan it makes: the types, apart from how they are computed
//! (`prune.rs`).

use std::path::PathBuf;
use std::time::Duration;

use envstore_lock::FileLock;
use envstore_tree::SnapshotId;

use crate::cold::pack::PackReport;
use crate::cold::sweep::PackSweep;
use crate::store::mark::Marked;

/// What prune may remove.
#[derive(Debug, Clone)]
pub struct PruneOptions {
    /// Keep what was used more recently than this.
    pub older_than: Duration,
    /// Then remove more (oldest use first) until objects and trees fit in this many bytes.
    pub max_size: Option<u64>,
    /// Move kept snapshots not used within this window to the cold tier: their
    /// materializations are removed (unless leased) and their content packed.
    pub pack_older_than: Option<Duration>,
    /// `envstore rm`: remove exactly these (unless leased), whatever their age; the caller
    /// has checked pins and roots.
    pub only: Option<Vec<SnapshotId>>,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            older_than: Duration::from_secs(30 * 86_400),
            max_size: None,
            pack_older_than: None,
            only: None,
        }
    }
}

/// Why a snapshot is in the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Not used within the window.
    Unused,
    /// Used within the window, but the size bound needs its space.
    Size,
}

/// Why prune keeps a snapshot (the first reason that applies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kept {
    /// A pin names it.
    Pinned(String),
    /// It is the newest build of a key name.
    KeyName(String),
    /// A live build directory uses it.
    Rooted(PathBuf),
    /// Used within the window (unix seconds of its last use).
    Recent { last_used: u64 },
    /// A damaged pin could name it (see [`PrunePlan::damaged_pins`]).
    DamagedPin(String),
}

/// A snapshot prune removes.
#[derive(Debug, Clone)]
pub struct Removal {
    pub id: SnapshotId,
    pub last_used: u64,
    pub bytes: u64,
    pub materialized: bool,
    pub reason: Reason,
}

/// What prune will do (or, with `--dry-run`, would do).
#[derive(Default)]
pub struct PrunePlan {
    pub remove: Vec<Removal>,
    /// Candidates skipped because a process holds a lease on them.
    pub leased: Vec<SnapshotId>,
    pub kept: usize,
    /// Object and tree files no kept snapshot references: how many, and their bytes.
    pub unreferenced: u64,
    pub unreferenced_bytes: u64,
    /// Leftovers of interrupted work (temporary files and trees, orphaned materializations).
    pub leftovers: Vec<PathBuf>,
    /// Bytes of objects and trees before, and after the plan is carried out.
    pub size_before: u64,
    pub size_after: u64,
    /// Set when the size bound cannot be met (everything left is pinned or leased).
    pub size_unmet: bool,
    /// Cached remote pack indexes dropped (unused for a month, or beyond the cache's
    /// budget): how many, and their bytes.
    pub remote_cache_removed: (u64, u64),
    /// Key records removed because their snapshot was.
    pub key_records_removed: usize,
    /// Snapshots whose trees cannot be read: kept (prune cannot tell what they need), and
    /// while there are any, no object or tree is swept. `verify --repair` mends or removes them.
    pub damaged: Vec<SnapshotId>,
    /// Packs deleted or rewritten because kept snapshots need little or nothing in them.
    pub packs: PackSweep,
    /// Kept snapshots unused for `pack_older_than`, moved (or, dry, to be moved) to packs.
    pub to_pack: Vec<SnapshotId>,
    /// What packing them did.
    pub packed: Option<PackReport>,
    /// Snapshots kept because a live root (a build directory) uses them: (snapshot, dir).
    pub rooted: Vec<(SnapshotId, PathBuf)>,
    /// Roots that no longer hold their snapshot, and why; prune drops them.
    pub dead_roots: Vec<(PathBuf, SnapshotId, String)>,
    /// Pins that cannot be read: while there are any, no snapshot is removed (each could be
    /// the one such a pin names).
    pub damaged_pins: Vec<String>,
    /// Why each kept snapshot stays (pinned, a key name, rooted, recent, a damaged pin);
    /// leased and damaged ones are in [`PrunePlan::leased`] and [`PrunePlan::damaged`].
    pub kept_because: Vec<(SnapshotId, Kept)>,
    /// The snapshots that stay.
    pub(super) kept_ids: Vec<SnapshotId>,
    /// What the kept snapshots reference, for the sweep.
    pub(super) marked: Option<Marked>,
    /// Exclusive locks on the leases of the snapshots being removed, held until the sweep ends.
    pub(super) locks: Vec<FileLock>,
}

impl std::fmt::Debug for PrunePlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrunePlan")
            .field("remove", &self.remove)
            .field("leased", &self.leased)
            .field("kept", &self.kept)
            .field("unreferenced", &self.unreferenced)
            .field("size_before", &self.size_before)
            .field("size_after", &self.size_after)
            .field("damaged", &self.damaged)
            .finish_non_exhaustive()
    }
}

impl PrunePlan {
    pub fn freed_bytes(&self) -> u64 {
        self.size_before - self.size_after
    }
}
