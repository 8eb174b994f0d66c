//! Comparing a materialization with its snapshot, for `verify`: trees are read from the store
//! as the comparison reaches them.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use envstore_tree::{EntryKind, ObjectId, Tree, substitute_placeholder};
use rayon::prelude::*;

use crate::Store;

/// Comparing one materialization with its snapshot.
pub(crate) struct Check<'a> {
    pub(crate) store: &'a Store,
    /// The materialization's path: what relocated content names.
    pub(crate) env: &'a [u8],
    pub(crate) corrupt: &'a HashSet<ObjectId>,
    /// Objects to restore: intact copies of these are collected (for repair); no others.
    pub(crate) wanted: &'a HashSet<ObjectId>,
    /// Differences found, with the path involved.
    pub(crate) found: Mutex<Vec<(PathBuf, String)>>,
    /// Files that are intact copies (own inode, right bytes) of wanted objects.
    pub(crate) intact: Mutex<Vec<(ObjectId, PathBuf, bool)>>,
}

/// Materialized directories are read-only (0555): a writable one was changed by someone, and
/// anything could have been added to it.
const WRITABLE_DIR: &str =
    "directory is writable (materializations are read-only to the last directory)";

impl Check<'_> {
    /// Reports the materialization's root directory if it is writable.
    pub(crate) fn compare_dir_mode(&self, dir: &Path) {
        if fs::symlink_metadata(dir).is_ok_and(|m| m.mode() & 0o222 != 0) {
            self.found
                .lock()
                .expect("no panics while locked")
                .push((dir.to_owned(), WRITABLE_DIR.to_owned()));
        }
    }

    /// Compares the directory `dir` with `tree`.
    pub(crate) fn compare(&self, dir: &Path, tree: &Tree) {
        let report = |path: PathBuf, reason: String| {
            self.found
                .lock()
                .expect("no panics while locked")
                .push((path, reason))
        };
        let mut expected: HashSet<&[u8]> =
            tree.entries().iter().map(|e| e.name.as_slice()).collect();
        match fs::read_dir(dir) {
            Ok(entries) => {
                for entry in entries.flatten() {
                    let name = entry.file_name();
                    let bytes = name.as_bytes();
                    if expected.remove(bytes) {
                        continue;
                    }
                    // Python writes bytecode caches into environments at run time.
                    let runtime = bytes == b"__pycache__" || bytes.ends_with(b".pyc");
                    if !runtime {
                        report(entry.path(), "not part of the snapshot".to_owned());
                    }
                }
            }
            Err(e) => {
                report(dir.to_owned(), format!("cannot read: {e}"));
                return;
            }
        }
        tree.entries().par_iter().for_each(|entry| {
            let path = dir.join(OsStr::from_bytes(&entry.name));
            let meta = match fs::symlink_metadata(&path) {
                Ok(m) => m,
                Err(_) => return report(path, "missing".to_owned()),
            };
            match &entry.kind {
                EntryKind::Dir { tree } if meta.is_dir() => {
                    if meta.mode() & 0o222 != 0 {
                        report(path.clone(), WRITABLE_DIR.to_owned());
                    }
                    match self.store.trees().get(tree) {
                        Ok(tree) => self.compare(&path, &tree),
                        Err(e) => report(path.clone(), format!("its tree cannot be read: {e}")),
                    }
                }
                EntryKind::Symlink { target, relocated } if meta.file_type().is_symlink() => {
                    let expected = if *relocated {
                        substitute_placeholder(target, self.env)
                    } else {
                        target.clone()
                    };
                    match fs::read_link(&path) {
                        Ok(t) if t.as_os_str().as_bytes() == expected => {}
                        _ => report(path, "symlink target differs".to_owned()),
                    }
                }
                EntryKind::File {
                    object,
                    executable,
                    relocated,
                    ..
                } if meta.is_file() => {
                    if (meta.mode() & 0o100 != 0) != *executable {
                        return report(path, "exec bit differs".to_owned());
                    }
                    if *relocated {
                        // Written with the materialization's path in place of the placeholder.
                        let stored = self.store.objects().read_verified(object, *executable).ok();
                        let expected = stored.map(|s| substitute_placeholder(&s, self.env));
                        let actual = envstore_fs::read_bounded(&path, 64 << 20).ok();
                        if expected.is_none() || actual != expected {
                            report(path, "content differs".to_owned());
                        }
                        return;
                    }
                    let shares_object = [false, true].into_iter().any(|x| {
                        fs::symlink_metadata(self.store.objects().path(object, x))
                            .is_ok_and(|m| (m.dev(), m.ino()) == (meta.dev(), meta.ino()))
                    });
                    if shares_object {
                        // A hardlink: its bytes are the object's, checked above.
                        if self.corrupt.contains(object) {
                            report(path, "hardlinked to a damaged object".to_owned());
                        }
                        return;
                    }
                    match self.store.objects().rehash(&path) {
                        Ok(Some(actual)) if actual == *object => {
                            if self.wanted.contains(object) {
                                self.intact.lock().expect("no panics while locked").push((
                                    *object,
                                    path,
                                    *executable,
                                ));
                            }
                        }
                        _ => report(path, "content differs".to_owned()),
                    }
                }
                _ => report(path, "wrong kind of entry".to_owned()),
            }
        });
    }
}
