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
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use envstore_fs::DirState;
use envstore_lock::{FileLock, LockError, LockKind};
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
];

impl Store {
    /// Opens the store at `root`, creating it if the directory is missing or empty.
    pub fn open(root: &Path, options: StoreOptions) -> Result<Store> {
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
            Err(e) if e.kind() == io::ErrorKind::NotFound => store.init()?,
            Err(e) if e.kind() == io::ErrorKind::NotADirectory => {
                return Err(Error::StoreNotADirectory {
                    path: store.root.clone(),
                });
            }
            Err(e) => return Err(Error::io("read", &format)(e)),
        }
        store.writable = writable(&store.root);
        store.check_layout()?;
        Ok(store)
    }

    /// Checks that every store directory is a real directory; creates missing ones (a store
    /// of an older layout, or one someone tidied) when the store is writable.
    fn check_layout(&mut self) -> Result<()> {
        for name in STORE_DIRS {
            let path = self.root.join(name);
            match envstore_fs::dir_state(&path).map_err(Error::io("read", &path))? {
                DirState::Dir => {}
                DirState::Missing if self.writable => create_dir(&path)?,
                DirState::Missing => {}
                DirState::Other(what) if self.options.allow_damage => {
                    self.damaged_layout.push((path, what));
                }
                DirState::Other(what) => return Err(Error::DamagedLayout { path, what }),
            }
        }
        for name in LOCK_FILES {
            let path = self.root.join(name);
            let what = match fs::symlink_metadata(&path) {
                Ok(meta) if !meta.is_file() => envstore_fs::kind_name(&meta),
                _ => continue,
            };
            if self.options.allow_damage {
                self.damaged_layout.push((path, what));
            } else {
                return Err(Error::DamagedLayout { path, what });
            }
        }
        Ok(())
    }

    /// Replaces store directories that were found to be links or files with empty directories
    /// (the link itself is removed, never what it points at); returns what was replaced.
    pub(crate) fn repair_layout(&self) -> Result<Vec<PathBuf>> {
        let mut fixed = Vec::new();
        for (path, _) in self.damaged_layout.iter().cloned() {
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
        self.objects.init()?;
        self.trees.init()?;
        Ok(fixed)
    }

    /// Creates the layout. Safe to race: every step is idempotent and FORMAT comes last.
    fn init(&self) -> Result<()> {
        let root = &self.root;
        match fs::metadata(root) {
            Ok(meta) if !meta.is_dir() => {
                return Err(Error::StoreNotADirectory { path: root.clone() });
            }
            Ok(_) => {
                for entry in fs::read_dir(root).map_err(Error::io("read", root))? {
                    let entry = entry.map_err(Error::io("read", root))?;
                    let name = entry.file_name();
                    let ours = name.to_str().is_some_and(|n| {
                        STORE_DIRS.contains(&n)
                            || STORE_ENTRIES.contains(&n)
                            || n.starts_with(".tmp")
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
        self.objects.init()?;
        self.trees.init()?;
        self.write_file_atomic(&root.join("CACHEDIR.TAG"), CACHEDIR_TAG.as_bytes())?;
        self.write_file_atomic(&root.join(FORMAT_FILE), FORMAT_TEXT.as_bytes())
    }

    /// Writes `path` by rename from a temp file beside it: readers see the old or the new
    /// content, never half. Whatever was at `path` is replaced, never written through: a link
    /// there is replaced by the rename, a directory is removed first.
    pub(crate) fn write_file_atomic(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        let dir = path.parent().expect("store files have a parent");
        // Readable by all (a temporary file is private): another user may read this store.
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .permissions(std::fs::Permissions::from_mode(0o644))
            .tempfile_in(dir)
            .map_err(Error::io("create a temporary file in", dir))?;
        tmp.write_all(bytes)
            .map_err(Error::io("write", tmp.path()))?;
        tmp.as_file()
            .sync_all()
            .map_err(Error::io("sync", tmp.path()))?;
        if envstore_fs::dir_state(path).is_ok_and(|s| s == DirState::Dir) {
            envstore_fs::remove_all(path).map_err(Error::io("remove", path))?;
        }
        tmp.persist(path)
            .map_err(|e| Error::io("write", path)(e.error))?;
        Ok(())
    }

    /// Whether this process can write the store.
    pub fn is_writable(&self) -> bool {
        self.writable
    }

    /// Fails with one clear message when the store cannot be written here; `what` names the
    /// command's work ("store new content").
    pub(crate) fn require_writable(&self, what: &'static str) -> Result<()> {
        if self.writable {
            Ok(())
        } else {
            Err(Error::ReadOnlyStore {
                path: self.root.clone(),
                what,
            })
        }
    }

    /// Takes the store lock shared: held while new content is stored or laid out, so that prune
    /// (which takes it exclusively) never sweeps objects an ingest is about to reference. On a
    /// store this process cannot write, where no lock file exists, there is no lock to take
    /// (`None`): nobody can be pruning what this process only reads.
    pub(crate) fn lock_shared(&self) -> Result<Option<FileLock>> {
        match FileLock::acquire(
            &self.root.join("store.lock"),
            LockKind::Shared,
            self.options.lock_timeout,
            "the store lock",
        ) {
            Ok(lock) => Ok(Some(lock)),
            Err(LockError::ReadOnly { .. }) if !self.writable => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Takes the store lock exclusively, for work that deletes what a writer could be about to
    /// use (prune, repair, freeing packed objects); `what` describes the lock in the time-out
    /// message.
    pub(crate) fn lock_exclusive(&self, what: &'static str) -> Result<FileLock> {
        self.require_writable("change it")?;
        Ok(FileLock::acquire(
            &self.root.join("store.lock"),
            LockKind::Exclusive,
            self.options.lock_timeout,
            what,
        )?)
    }
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
