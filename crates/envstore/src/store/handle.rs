use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use envstore_fs::DirState;
use envstore_index::{Index, SnapshotMeta};
use envstore_lock::FileLock;
use envstore_objects::{ObjectStore, TreeStore};
use envstore_tree::SnapshotId;
use envstore_walk::{Filter, WalkStats};

use crate::content::layout::LinkReport;
use crate::{Error, Result};

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

/// The outcome of storing a directory.
#[derive(Debug, Clone)]
pub struct IngestReport {
    pub id: SnapshotId,
    pub stats: WalkStats,
    /// False when the store already had this snapshot (nothing was written).
    pub created: bool,
    pub new_objects: u64,
    pub new_bytes: u64,
    /// Set when the snapshot is stored but the index could not be updated (it is rebuildable).
    pub index_warning: Option<String>,
    /// With relocation: the files and symlinks stored with the placeholder.
    pub relocated: Vec<PathBuf>,
    /// With relocation: binary files that contain the directory's path, stored as they are.
    pub binary_with_prefix: Vec<PathBuf>,
}

/// The outcome of materializing.
#[derive(Debug, Clone)]
pub struct Materialized {
    pub id: SnapshotId,
    /// `<store>/envs/<id>`: absolute, and a function of the content only.
    pub path: PathBuf,
    /// False when the materialization existed already (or another process made it first).
    pub created: bool,
    /// How the files were laid out, when this call laid them out.
    pub link: Option<LinkReport>,
    /// What was stored, when the source was a directory the store did not have yet.
    pub ingest: Option<IngestReport>,
    /// Set when the materialization exists but the index could not record it.
    pub index_warning: Option<String>,
}

/// A lease on a snapshot: while it lives, prune leaves the snapshot and its materialization
/// alone. See docs/leases.md for the protocol other tools can follow without this library.
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
    pub(crate) warnings: std::sync::Mutex<Vec<String>>,
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
        let mut warnings = self.warnings.lock().unwrap_or_else(|e| e.into_inner());
        if !warnings.contains(&message) {
            warnings.push(message);
        }
    }

    /// The warnings gathered so far (damage found and worked around), emptied.
    pub fn take_warnings(&self) -> Vec<String> {
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

    /// Where snapshot `id` is (or would be) materialized.
    pub fn env_path(&self, id: &SnapshotId) -> PathBuf {
        self.root.join("envs").join(id.to_hex())
    }

    pub(crate) fn envs_dir(&self) -> PathBuf {
        self.root.join("envs")
    }

    pub(crate) fn objects(&self) -> &ObjectStore {
        &self.objects
    }

    pub(crate) fn trees(&self) -> &TreeStore {
        &self.trees
    }

    pub(crate) fn snapshot_file(&self, id: &SnapshotId) -> PathBuf {
        self.root.join("snapshots").join(id.to_hex())
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

    /// Interprets a command-line SOURCE: a directory (anything containing `/`, `.`, `..`, or an
    /// existing directory), else a pin name, else a snapshot id or unique id prefix of at least
    /// 8 hex digits.
    pub fn resolve(&self, spec: &str) -> Result<Source> {
        let path = Path::new(spec);
        if spec.contains('/') || spec == "." || spec == ".." || path.is_dir() {
            // A materialization (`$(envstore materialize ...)`) is its snapshot. Only a path
            // whose last component is an id pays for resolving links: `materialize DIR` is the
            // hot path.
            if let Some(id) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.parse::<SnapshotId>().ok())
                && let (Ok(dir), Ok(envs)) = (path.canonicalize(), self.envs_dir().canonicalize())
                && dir.parent() == Some(envs.as_path())
                && self.has_snapshot(&id)
            {
                return Ok(Source::Snapshot(id));
            }
            return Ok(Source::Dir(path.to_owned()));
        }
        if let Some(id) = self.pin_target(spec)? {
            return Ok(Source::Snapshot(id));
        }
        if !spec.is_empty() && spec.bytes().all(|b| b.is_ascii_hexdigit()) && spec.len() <= 64 {
            if spec.len() < 8 {
                return Err(Error::PrefixTooShort {
                    spec: spec.to_owned(),
                });
            }
            return self.resolve_prefix(spec).map(Source::Snapshot);
        }
        if path.exists() {
            return Err(envstore_walk::WalkError::NotADirectory {
                path: path.to_owned(),
            }
            .into());
        }
        Err(Error::UnknownSource {
            spec: spec.to_owned(),
            near: self.near_pins(spec)?,
        })
    }

    /// Resolves SOURCE to a snapshot that is in the store, storing a directory first.
    pub fn resolve_stored(&self, spec: &str, filter: &Filter) -> Result<SnapshotId> {
        match self.resolve(spec)? {
            Source::Snapshot(id) => Ok(id),
            Source::Dir(dir) => Ok(self.ingest(&dir, filter)?.id),
        }
    }

    /// The snapshot id of SOURCE without storing anything (a directory is only hashed).
    pub fn identify(&self, source: &Source, filter: &Filter) -> Result<SnapshotId> {
        match source {
            Source::Snapshot(id) => Ok(*id),
            Source::Dir(dir) => Ok(self.hash_dir(dir, filter)?.root.into()),
        }
    }

    /// The one snapshot whose id starts with `prefix` (case-insensitive).
    pub fn resolve_prefix(&self, prefix: &str) -> Result<SnapshotId> {
        let prefix = prefix.to_ascii_lowercase();
        if prefix.len() == 64 {
            let id: SnapshotId = prefix.parse().expect("64 hex digits");
            return if self.has_snapshot(&id) {
                Ok(id)
            } else {
                Err(Error::UnknownSnapshot { prefix })
            };
        }
        let matches: Vec<SnapshotId> = self
            .snapshot_ids()?
            .into_iter()
            .filter(|id| id.to_hex().starts_with(&prefix))
            .collect();
        match matches.as_slice() {
            [] => Err(Error::UnknownSnapshot { prefix }),
            [one] => Ok(*one),
            many => Err(Error::AmbiguousPrefix {
                prefix,
                candidates: many.iter().map(|id| format!("  {id}")).collect(),
            }),
        }
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
}
