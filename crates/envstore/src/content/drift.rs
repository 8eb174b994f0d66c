//! Has a materialization been written to since it was laid out? Every directory of one is laid
//! out with the fixed mtime (like its files), and creating, removing or renaming an entry sets
//! a directory's mtime to now: a `pip install` into an environment, an uninstall, a new file
//! beside the others all show as a directory whose mtime is no longer the fixed one.
//!
//! The warm paths must stay warm (a hit of a 5,000-file environment costs ~2 ms), so only the
//! first [`BUDGET`] directories are looked at, breadth-first: the root, `bin/`, `lib/`,
//! `lib/pythonX.Y/site-packages/` and the like, where installers write (an install or an
//! uninstall always changes `site-packages/` itself). What it does not see: a write deeper
//! down, or a file rewritten in place (files are read-only, so only root or a `chmod` first
//! can); `verify` finds those.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use envstore_tree::FIXED_MTIME_SECS;

/// Directories looked at, at most, per hit.
const BUDGET: usize = 64;

fn fixed(meta: &std::fs::Metadata) -> bool {
    meta.mtime() == FIXED_MTIME_SECS as i64 && meta.mtime_nsec() == 0
}

/// The first directory of the materialization at `env` found written since it was laid out;
/// `None` when none is, or when `env` predates fixed directory times (its root's mtime is not
/// the fixed one: laid out by an older envstore, or its root itself written, which this cannot
/// tell apart).
pub(crate) fn first_change(env: &Path) -> Option<PathBuf> {
    let root = std::fs::symlink_metadata(env).ok()?;
    if !fixed(&root) {
        return None;
    }
    let mut queue = std::collections::VecDeque::from([env.to_owned()]);
    let mut looked = 1;
    while let Some(dir) = queue.pop_front() {
        // Unreadable: not ours to judge here (verify reports it).
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            // The directory entry's type: no stat for files and links.
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if looked == BUDGET {
                return None;
            }
            looked += 1;
            let path = entry.path();
            match std::fs::symlink_metadata(&path) {
                Ok(meta) if !fixed(&meta) => return Some(path),
                Ok(_) => queue.push_back(path),
                Err(_) => {}
            }
        }
    }
    None
}
