//! The store itself: the handle, opening, paths, records, the listing of stored files and
//! reachability. Uses nothing above it.

pub(crate) mod cache;
pub(crate) mod files;
pub(crate) mod handle;
pub(crate) mod mark;
pub(crate) mod open;
pub(crate) mod paths;
pub(crate) mod reach;
pub(crate) mod records;

/// Whether a housekeeping pass (prune's plan and sweep, the pack sweep) changes the store or
/// only says what it would change. One type, so `true` never means "dry" in one place and
/// "for real" in the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    DryRun,
    Execute,
}
