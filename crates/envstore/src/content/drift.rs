//! Has a materialization been written to since it was laid out? Every directory of one is laid
//! out with the fixed mtime (like its files), and creating, removing or renaming an entry sets
//! a directory's mtime to now: a `pip install` into an environment, an uninstall, a new file
//! beside the others all show as a directory whose mtime is no longer the fixed one. Checking
//! costs a `stat` per directory (not per file), so the warm paths stay warm. What it does not
//! see: a file rewritten in place (files are read-only, so only root or a `chmod` first can) —
//! `verify` finds those.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use envstore_tree::FIXED_MTIME_SECS;

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
    let mut stack = vec![env.to_owned()];
    while let Some(dir) = stack.pop() {
        // Unreadable: not ours to judge here (verify reports it).
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            // The directory entry's type: no stat for files and links.
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let path = entry.path();
            match std::fs::symlink_metadata(&path) {
                Ok(meta) if !fixed(&meta) => return Some(path),
                Ok(_) => stack.push(path),
                Err(_) => {}
            }
        }
    }
    None
}
