//! Opening a store: the format check, creation, and the checks that make every later path
//! inside the store safe to use.
//!
//! Everything envstore does in a store goes through a handful of directories (`objects/`,
//! `envs/`, `tmp/`...). If one of them were a symbolic link, a later `unlink` or `create` by
//! path would land outside the store: prune and repair deleted a user's files that way when
//! `tmp/` pointed at their directory. So opening checks each with `lstat` (about ten system
//! calls, the only cost this adds to the hot path) and refuses a store where one is not a real
//! directory, naming it; `verify` opens with [`StoreOptions::allow_damage`] to report them and
//! `verify --repair` replaces them. Shard directories below `objects/` and `trees/` are checked
//! the same way, once per process, before first use (envstore-objects).

use std::fs;
use std::io::{self};
use std::path::{Path, PathBuf};

use envstore_fs::DirState;
use envstore_objects::{ObjectStore, TreeStore};

use crate::{Error, Result, Store, StoreOptions};

/// The on-disk layout version this build reads and writes (see docs/format.md).
pub const FORMAT_VERSION: u32 = 1;
const FORMAT_FILE: &str = "FORMAT";
const FORMAT_TEXT: &str = "envstore-store 1\n";
/// FORMAT holds one short line; anything larger is not ours.
const MAX_FORMAT: u64 = 4096;

const CACHEDIR_TAG: &str = "Signature: 8a477f597d28d172789f06886806bc55\n\
# This file is a cache directory tag created by envstore.\n\
# For information about cache directory tags, see https://bford.info/cachedir/\n";

/// The directories of a store, each of which must be a real directory (never a link).
pub(crate) const STORE_DIRS: &[&str] = &[
    "objects",
    "trees",
    "snapshots",
    "envs",
    "pins",
    "leases",
    "tmp",
    "packs",
    "keys",
    "locks",
    "remote-cache",
    "roots",
];

/// The store's lock files: each a regular file or absent. One replaced by a directory or a
/// link would stop every command (even repair, which takes the store lock).
const LOCK_FILES: &[&str] = &["store.lock", "index.lock", "pack.lock"];

/// Entries a store directory may hold; a directory with anything else and no FORMAT file is
/// refused rather than filled (someone typed the wrong --store).
const STORE_ENTRIES: &[&str] = &[
    "FORMAT",
    "remotes",
    "CACHEDIR.TAG",
    "store.lock",
    "index.lock",
    "index.redb",
    "index.redb.damaged",
    "pack.lock",
    "secret",
];

/// Opens the store at `root`, creating it if the directory is missing or empty.
pub(crate) fn open(root: &Path, options: StoreOptions) -> Result<Store> {
    let root = std::path::absolute(root).map_err(Error::io("resolve", root))?;
    let mut store = Store {
        objects: ObjectStore::new(root.join("objects")),
        trees: TreeStore::new(root.join("trees")),
        root,
        options,
        progress: None,
        writable: true,
        warnings: Default::default(),
        damaged_layout: Vec::new(),
    };
    let format = store.root.join(FORMAT_FILE);
    match envstore_fs::read_bounded(&format, MAX_FORMAT) {
        Ok(text) if text == FORMAT_TEXT.as_bytes() => {}
        Ok(text) => {
            return Err(Error::UnsupportedFormat {
                path: store.root.clone(),
                found: String::from_utf8_lossy(&text)
                    .trim()
                    .escape_debug()
                    .to_string(),
                supported: FORMAT_VERSION,
            });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => init(&store)?,
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => {
            return Err(Error::StoreNotADirectory {
                path: store.root.clone(),
            });
        }
        Err(e) => return Err(Error::io("read", &format)(e)),
    }
    store.writable = writable(&store.root);
    check_layout(&mut store)?;
    Ok(store)
}

/// Checks that every store directory is a real directory; creates missing ones (a store
/// of an older layout, or one someone tidied) when the store is writable.
fn check_layout(store: &mut Store) -> Result<()> {
    for name in STORE_DIRS {
        let path = store.root.join(name);
        match envstore_fs::dir_state(&path).map_err(Error::io("read", &path))? {
            DirState::Dir => {}
            DirState::Missing if store.writable => create_dir(&path)?,
            DirState::Missing => {}
            DirState::Other(what) if store.options.allow_damage => {
                store.damaged_layout.push((path, what));
            }
            DirState::Other(what) => return Err(Error::DamagedLayout { path, what }),
        }
    }
    for name in LOCK_FILES {
        let path = store.root.join(name);
        let what = match fs::symlink_metadata(&path) {
            Ok(meta) if !meta.is_file() => envstore_fs::kind_name(&meta),
            _ => continue,
        };
        if store.options.allow_damage {
            store.damaged_layout.push((path, what));
        } else {
            return Err(Error::DamagedLayout { path, what });
        }
    }
    Ok(())
}

/// Replaces store directories that were found to be links or files with empty directories
/// (the link itself is removed, never what it points at); returns what was replaced.
pub(crate) fn repair_layout(store: &Store) -> Result<Vec<PathBuf>> {
    let mut fixed = Vec::new();
    for (path, _) in store.damaged_layout.iter().cloned() {
        envstore_fs::remove_all(&path).map_err(Error::io("remove", &path))?;
        // Lock files are made again when next taken; directories now.
        let is_lock = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| LOCK_FILES.contains(&n));
        if !is_lock {
            create_dir(&path)?;
        }
        fixed.push(path);
    }
    store.objects.init()?;
    store.trees.init()?;
    Ok(fixed)
}

/// Creates the layout. Safe to race: every step is idempotent and FORMAT comes last.
fn init(store: &Store) -> Result<()> {
    let root = &store.root;
    match fs::metadata(root) {
        Ok(meta) if !meta.is_dir() => {
            return Err(Error::StoreNotADirectory { path: root.clone() });
        }
        Ok(_) => {
            for entry in fs::read_dir(root).map_err(Error::io("read", root))? {
                let entry = entry.map_err(Error::io("read", root))?;
                let name = entry.file_name();
                let ours = name.to_str().is_some_and(|n| {
                    STORE_DIRS.contains(&n) || STORE_ENTRIES.contains(&n) || n.starts_with(".tmp")
                });
                if !ours {
                    return Err(Error::NotAStore { path: root.clone() });
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(root).map_err(Error::io("create the store", root))?;
        }
        Err(e) => return Err(Error::io("read", root)(e)),
    }
    for dir in STORE_DIRS {
        create_dir(&root.join(dir))?;
    }
    store.objects.init()?;
    store.trees.init()?;
    store.write_file_atomic(&root.join("CACHEDIR.TAG"), CACHEDIR_TAG.as_bytes())?;
    store.write_file_atomic(&root.join(FORMAT_FILE), FORMAT_TEXT.as_bytes())
}

fn create_dir(path: &Path) -> Result<()> {
    match fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::io("create", path)(e)),
    }
}

/// Whether this process may write in `root` (`access(W_OK)`: false on a read-only mount and in
/// another user's store; root passes the permission bits but not a read-only mount).
fn writable(root: &Path) -> bool {
    rustix::fs::access(root, rustix::fs::Access::WRITE_OK).is_ok()
}
