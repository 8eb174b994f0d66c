//! The store itself: the handle, opening, paths, records, the listing of stored files and
//! reachability. Uses nothing above it.

pub(crate) mod files;
pub(crate) mod handle;
pub(crate) mod mark;
pub(crate) mod open;
pub(crate) mod paths;
pub(crate) mod reach;
pub(crate) mod records;
