//! Helpers for the library's own tests: a store in a temporary directory and small trees.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use envstore_tree::SnapshotId;
use envstore_walk::Filter;

use crate::{Store, StoreOptions};

/// A new store in a temporary directory (kept alive by the returned guard).
pub(crate) fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store"), StoreOptions::default()).unwrap();
    (dir, store)
}

/// Writes `files` (path, content; a path ending in `*` is made executable, without the `*`)
/// under `root/name` and returns that directory.
pub(crate) fn tree(root: &Path, name: &str, files: &[(&str, &[u8])]) -> PathBuf {
    let dir = root.join(name);
    for (path, content) in files {
        let (path, exec) = match path.strip_suffix('*') {
            Some(p) => (p, true),
            None => (*path, false),
        };
        let file = dir.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, content).unwrap();
        if exec {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Stores `files` as a snapshot.
pub(crate) fn ingest(
    store: &Store,
    root: &Path,
    name: &str,
    files: &[(&str, &[u8])],
) -> SnapshotId {
    let dir = tree(root, name, files);
    store.ingest(&dir, &Filter::default()).unwrap().id
}
