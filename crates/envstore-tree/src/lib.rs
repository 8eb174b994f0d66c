//! Typed ids and the canonical tree encoding.
//!
//! A snapshot's identity is defined here and nowhere else: a tree is a sorted list of entries
//! (raw name bytes, kind, exec bit, object or subtree id, or symlink target), encoded in exactly
//! one way, and its id is the blake3 hash of that encoding. `docs/format.md` specifies the bytes;
//! the test vectors below pin them, so any change to the encoding fails loudly.

pub mod diff;
mod id;
mod tree;

pub use id::{ChunkId, IdParseError, KeyId, ObjectId, PackId, SnapshotId, TreeId};
pub use tree::{
    DecodeError, Entry, EntryKind, MAX_NAME_LEN, NAME_PLACEHOLDER, PLACEHOLDER, TREE_MAGIC, Tree,
    is_valid_name, substitute_placeholder,
};

use std::time::{Duration, SystemTime};

/// The modification time given to every stored object and every materialized regular file:
/// 1980-01-02T00:00:00Z.
///
/// Not the epoch: ZIP cannot represent times before 1980 (Python's `zipfile` refuses them, and a
/// local-time offset can push 1980-01-01 back into 1979), and build tools sometimes zip what they
/// find in an environment. Any fixed value works for make and ninja, because a new environment
/// always gets a new path.
pub const FIXED_MTIME_SECS: u64 = 315_619_200;

/// [`FIXED_MTIME_SECS`] as a [`SystemTime`].
pub fn fixed_mtime() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(FIXED_MTIME_SECS)
}
