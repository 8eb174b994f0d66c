use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use envstore_fs::DirState;
use envstore_index::{Index, SnapshotMeta};
use envstore_lock::{FileLock, LockError, LockKind};
use envstore_objects::{ObjectStore, TreeStore};
use envstore_tree::SnapshotId;

use crate::{Error, Hint, Result};

/// Tunables of a [`Store`].
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// How long to wait for the store or index lock before giving up with a clear error.
    pub lock_timeout: Duration,
    /// Open a store whose directories were replaced by links or files (for `verify`, which
    /// reports them, and `verify --repair`, which replaces them); otherwise that is an error.
    pub allow_damage: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            lock_timeout: Duration::from_secs(60),
            allow_damage: false,
        }
    }
}

/// `$XDG_CACHE_HOME/envstore`, else `~/.cache/envstore`.
pub fn default_store_path() -> Option<PathBuf> {
    let absolute = |v: std::ffi::OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
    if let Some(cache) = std::env::var_os("XDG_CACHE_HOME").and_then(absolute) {
        return Some(cache.join("envstore"));
    }
    std::env::var_os("HOME")
        .and_then(absolute)
        .map(|home| home.join(".cache").join("envstore"))
}

/// What a command was asked to work on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A directory tree, hashed on every use.
    Dir(PathBuf),
    /// A snapshot already in the store.
    Snapshot(SnapshotId),
}

/// A snapshot record is a few short lines; the source path in it is at most a few KiB.
const MAX_RECORD: u64 = 64 << 10;

/// A lease on a snapshot: while it lives, prune leaves the snapshot and its materialization
/// alone. See docs/maintenance.md ("Leases") for the protocol other tools can follow without this library.
#[derive(Debug)]
pub struct Lease {
    pub(crate) id: SnapshotId,
    pub(crate) lock: FileLock,
}

impl Lease {
    pub fn id(&self) -> &SnapshotId {
        &self.id
    }

    /// Lets child processes inherit the lease, so it lasts as long as they run.
    pub fn make_inheritable(&self) -> Result<()> {
        Ok(self.lock.make_inheritable()?)
    }
}

/// What a long operation has done so far, for progress displays. Sent from several threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// One file hashed.
    Hashed { bytes: u64 },
    /// Storing starts: this many distinct objects to store (those the store has already count
    /// as done at once), this many bytes.
    Storing { objects: u64, bytes: u64 },
    /// One object stored.
    Stored { bytes: u64 },
    /// Laying out starts.
    LayingOut { files: u64 },
    /// One file laid out.
    Linked,
}

/// Receives [`Progress`] events.
pub type ProgressFn = dyn Fn(Progress) + Send + Sync;

/// Something found wrong and worked around (a damaged pin, a rebuilt index), for the front end
/// to say; its message is the [`std::fmt::Display`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub message: String,
    pub hint: Option<Hint>,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// An open store. Cheap to open: reads one small file.
pub struct Store {
    pub(crate) root: PathBuf,
    pub(crate) objects: ObjectStore,
    pub(crate) trees: TreeStore,
    pub(crate) options: StoreOptions,
    pub(crate) progress: Option<Box<ProgressFn>>,
    /// Whether this process can write the store (false on a read-only mount, or in another
    /// user's store): reading commands still work, writing ones fail with one clear message.
    pub(crate) writable: bool,
    /// Things found wrong but not fatal (a damaged pin, a rebuilt index), for the CLI to show.
    pub(crate) warnings: std::sync::Mutex<Vec<Warning>>,
    /// Store directories found replaced by something else (a link, a file) when the store was
    /// opened with [`StoreOptions::allow_damage`]; `verify` reports them, repair mends them.
    pub(crate) damaged_layout: Vec<(PathBuf, &'static str)>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("root", &self.root)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Records a warning for [`Store::take_warnings`] (each distinct message once).
    pub(crate) fn warn(&self, message: String) {
        self.push_warning(Warning {
            message,
            hint: None,
        });
    }

    /// Like [`Store::warn`], with what the user can do about it.
    pub(crate) fn warn_with(&self, message: String, hint: Hint) {
        self.push_warning(Warning {
            message,
            hint: Some(hint),
        });
    }

    fn push_warning(&self, warning: Warning) {
        let mut warnings = self.warnings.lock().unwrap_or_else(|e| e.into_inner());
        if !warnings.contains(&warning) {
            warnings.push(warning);
        }
    }

    /// The warnings gathered so far (damage found and worked around), emptied.
    pub fn take_warnings(&self) -> Vec<Warning> {
        std::mem::take(&mut *self.warnings.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Sends progress of long operations (hashing, storing, laying out) to `f`.
    pub fn set_progress(&mut self, f: Box<ProgressFn>) {
        self.progress = Some(f);
    }

    pub(crate) fn report(&self, event: Progress) {
        if let Some(f) = &self.progress {
            f(event);
        }
    }

    pub fn options(&self) -> &StoreOptions {
        &self.options
    }

    pub(crate) fn objects(&self) -> &ObjectStore {
        &self.objects
    }

    pub(crate) fn trees(&self) -> &TreeStore {
        &self.trees
    }

    /// Whether the store holds snapshot `id` (all its trees and objects were stored before its
    /// record was written).
    pub fn has_snapshot(&self, id: &SnapshotId) -> bool {
        fs::symlink_metadata(self.snapshot_file(id)).is_ok()
    }

    /// Whether snapshot `id` is materialized (a materialization appears whole, by rename).
    /// Only a real directory counts: a link at `envs/<id>` is not a materialization.
    pub fn is_materialized(&self, id: &SnapshotId) -> bool {
        fs::symlink_metadata(self.env_path(id)).is_ok_and(|m| m.is_dir())
    }

    /// Like [`Store::is_materialized`], but something other than a directory at `envs/<id>`
    /// (a link someone put there) is an error naming it: the path envstore hands out must be
    /// the directory it made, never something it would follow elsewhere.
    pub(crate) fn materialized(&self, id: &SnapshotId) -> Result<bool> {
        let path = self.env_path(id);
        match envstore_fs::dir_state(&path).map_err(Error::io("read", &path))? {
            DirState::Dir => Ok(true),
            DirState::Missing => Ok(false),
            DirState::Other(what) => Err(Error::DamagedLayout { path, what }),
        }
    }

    /// The recorded metadata of a snapshot, from its file under `snapshots/` (read without
    /// following a link, and bounded).
    pub fn snapshot_meta(&self, id: &SnapshotId) -> Result<SnapshotMeta> {
        let path = self.snapshot_file(id);
        let bytes =
            envstore_fs::read_bounded(&path, MAX_RECORD).map_err(Error::io("read", &path))?;
        let text = String::from_utf8_lossy(&bytes);
        SnapshotMeta::from_text(&text).map_err(|reason| {
            Error::Index(envstore_index::IndexError::BadRecord {
                id: id.to_hex(),
                reason,
            })
        })
    }

    /// Every snapshot in the store, by listing `snapshots/` (the source of truth).
    pub fn snapshot_ids(&self) -> Result<Vec<SnapshotId>> {
        let dir = self.root.join("snapshots");
        let mut ids = Vec::new();
        for entry in fs::read_dir(&dir).map_err(Error::io("read", &dir))? {
            let entry = entry.map_err(Error::io("read", &dir))?;
            if let Some(id) = entry.file_name().to_str().and_then(|n| n.parse().ok()) {
                ids.push(id);
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Opens the index (waiting at most the lock time-out); keep it open briefly.
    pub(crate) fn open_index(&self) -> Result<Index> {
        self.require_writable("open its index")?;
        let index = Index::open(&self.root, self.options.lock_timeout)?;
        if let Some(reason) = index.recreated() {
            self.warn(format!(
                "the index was damaged ({reason}); it was set aside as index.redb.damaged and \
                 is rebuilt from snapshots/ and packs/"
            ));
        }
        Ok(index)
    }

    /// Runs `f` on the index; returns the failure as a warning instead of an error.
    pub(crate) fn update_index(
        &self,
        f: impl FnOnce(&Index) -> Result<(), envstore_index::IndexError>,
    ) -> Option<String> {
        if !self.writable {
            return Some(format!(
                "the store at {} is read-only here",
                self.root.display()
            ));
        }
        Index::open(&self.root, self.options.lock_timeout)
            .and_then(|index| f(&index))
            .err()
            .map(|e| e.to_string())
    }

    /// Writes `path` by rename from a temp file beside it: readers see the old or the new
    /// content, never half. Whatever was at `path` is replaced, never written through: a link
    /// there is replaced by the rename, a directory is removed first.
    pub(crate) fn write_file_atomic(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        // Readable by all (a temporary file is private): another user may read this store.
        self.write_file_atomic_mode(path, bytes, 0o644)
    }

    /// [`Store::write_file_atomic`] with the file's mode: 0600 for what only its owner may
    /// read (the remotes file can hold an http password).
    pub(crate) fn write_file_atomic_mode(
        &self,
        path: &Path,
        bytes: &[u8],
        mode: u32,
    ) -> Result<()> {
        // In the store, a directory in the way is ours to remove (never outside it).
        if envstore_fs::dir_state(path).is_ok_and(|s| s == DirState::Dir) {
            envstore_fs::remove_all(path).map_err(Error::io("remove", path))?;
        }
        write_atomic(path, bytes, mode)
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

    /// Takes a lease on snapshot `id`: a shared lock on `leases/<id>` that prune respects.
    /// Waits (bounded) only while a prune is deciding about this very snapshot.
    pub fn lease(&self, id: &SnapshotId) -> Result<Lease> {
        let lock = FileLock::acquire(
            &self.lease_path(id),
            LockKind::Shared,
            self.options.lock_timeout,
            "a lease",
        )?;
        Ok(Lease { id: *id, lock })
    }

    pub(crate) fn pack_lock(&self) -> Result<FileLock> {
        Ok(FileLock::acquire(
            &self.root().join("pack.lock"),
            LockKind::Exclusive,
            self.options().lock_timeout,
            "the pack lock (another pack, prune or repair is working on packs)",
        )?)
    }
}

/// Writes `path` by rename from a temp file beside it, with `mode`: readers see the old or the
/// new content, never half, and a link at `path` is replaced, not written through.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let dir = path.parent().expect("a file in a directory");
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .permissions(std::fs::Permissions::from_mode(mode))
        .tempfile_in(dir)
        .map_err(Error::io("create a temporary file in", dir))?;
    tmp.write_all(bytes)
        .map_err(Error::io("write", tmp.path()))?;
    tmp.as_file()
        .sync_all()
        .map_err(Error::io("sync", tmp.path()))?;
    tmp.persist(path)
        .map_err(|e| Error::io("write", path)(e.error))?;
    Ok(())
}
