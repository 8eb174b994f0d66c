use std::borrow::Cow;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use envstore_index::{Index, SnapshotMeta};
use envstore_link::LinkPolicy;
use envstore_lock::{FileLock, LockKind};
use envstore_objects::{ObjectError, ObjectStore, TreeStore};
use envstore_tree::{SnapshotId, Tree, TreeId};
use envstore_walk::{Filter, SourceFile, WalkStats, Walked};
use rayon::prelude::*;

use crate::layout::{LinkReport, lay_out};
use crate::{Error, Result};

/// The on-disk layout version this build reads and writes (see docs/format.md).
pub const FORMAT_VERSION: u32 = 1;
const FORMAT_FILE: &str = "FORMAT";
const FORMAT_TEXT: &str = "envstore-store 1\n";

const CACHEDIR_TAG: &str = "Signature: 8a477f597d28d172789f06886806bc55\n\
# This file is a cache directory tag created by envstore.\n\
# For information about cache directory tags, see https://bford.info/cachedir/\n";

/// Entries a store directory may hold; a directory with anything else and no FORMAT file is
/// refused rather than filled (someone typed the wrong --store).
const STORE_ENTRIES: &[&str] = &[
    "FORMAT",
    "CACHEDIR.TAG",
    "objects",
    "trees",
    "snapshots",
    "envs",
    "pins",
    "leases",
    "tmp",
    "store.lock",
    "index.lock",
    "index.redb",
    "packs",
    "pack.lock",
];

/// Tunables of a [`Store`].
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// How long to wait for the store or index lock before giving up with a clear error.
    pub lock_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            lock_timeout: Duration::from_secs(60),
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
    id: SnapshotId,
    lock: FileLock,
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
    root: PathBuf,
    objects: ObjectStore,
    trees: TreeStore,
    options: StoreOptions,
    progress: Option<Box<ProgressFn>>,
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
    /// Opens the store at `root`, creating it if the directory is missing or empty.
    pub fn open(root: &Path, options: StoreOptions) -> Result<Store> {
        let root = std::path::absolute(root).map_err(Error::io("resolve", root))?;
        let store = Store {
            objects: ObjectStore::new(root.join("objects")),
            trees: TreeStore::new(root.join("trees")),
            root,
            options,
            progress: None,
        };
        let format = store.root.join(FORMAT_FILE);
        match fs::read_to_string(&format) {
            Ok(text) if text == FORMAT_TEXT => Ok(store),
            Ok(text) => Err(Error::UnsupportedFormat {
                path: store.root.clone(),
                found: text.trim().to_owned(),
                supported: FORMAT_VERSION,
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => store.init().map(|()| store),
            Err(e) if e.kind() == io::ErrorKind::NotADirectory => Err(Error::StoreNotADirectory {
                path: store.root.clone(),
            }),
            Err(e) => Err(Error::io("read", &format)(e)),
        }
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
                    let ours = name
                        .to_str()
                        .is_some_and(|n| STORE_ENTRIES.contains(&n) || n.starts_with(".tmp"));
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
        for dir in [
            "objects",
            "trees",
            "snapshots",
            "envs",
            "pins",
            "leases",
            "tmp",
            "packs",
        ] {
            let path = root.join(dir);
            match fs::create_dir(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::io("create", &path)(e)),
            }
        }
        self.objects.init()?;
        self.trees.init()?;
        self.write_file_atomic(&root.join("CACHEDIR.TAG"), CACHEDIR_TAG.as_bytes())?;
        self.write_file_atomic(&root.join(FORMAT_FILE), FORMAT_TEXT.as_bytes())
    }

    /// Writes `path` by rename from a temp file in the store's `tmp/` (or next to it for files
    /// at the root, before `tmp/` exists): readers see the old or the new content, never half.
    pub(crate) fn write_file_atomic(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        let dir = path.parent().expect("store files have a parent");
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
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
    pub fn is_materialized(&self, id: &SnapshotId) -> bool {
        fs::symlink_metadata(self.env_path(id)).is_ok()
    }

    /// The recorded metadata of a snapshot, from its file under `snapshots/`.
    pub fn snapshot_meta(&self, id: &SnapshotId) -> Result<SnapshotMeta> {
        let path = self.snapshot_file(id);
        let text = fs::read_to_string(&path).map_err(Error::io("read", &path))?;
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

    /// Takes the store lock shared: held while new content is stored or laid out, so that prune
    /// (which takes it exclusively) never sweeps objects an ingest is about to reference.
    pub(crate) fn lock_shared(&self) -> Result<FileLock> {
        Ok(FileLock::acquire(
            &self.root.join("store.lock"),
            LockKind::Shared,
            self.options.lock_timeout,
            "the store lock",
        )?)
    }

    /// Takes the store lock exclusively, for work that deletes what a writer could be about to
    /// use (prune, repair, freeing packed objects); `what` describes the lock in the time-out
    /// message.
    pub(crate) fn lock_exclusive(&self, what: &'static str) -> Result<FileLock> {
        Ok(FileLock::acquire(
            &self.root.join("store.lock"),
            LockKind::Exclusive,
            self.options.lock_timeout,
            what,
        )?)
    }

    /// Interprets a command-line SOURCE: a directory (anything containing `/`, `.`, `..`, or an
    /// existing directory), else a pin name, else a snapshot id or unique id prefix of at least
    /// 8 hex digits.
    pub fn resolve(&self, spec: &str) -> Result<Source> {
        let path = Path::new(spec);
        if spec.contains('/') || spec == "." || spec == ".." || path.is_dir() {
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
            Source::Dir(dir) => Ok(self.walk(dir, filter)?.root.into()),
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

    fn walk(&self, dir: &Path, filter: &Filter) -> Result<Walked> {
        let on_file = |bytes| self.report(Progress::Hashed { bytes });
        let on_file: Option<&(dyn Fn(u64) + Sync)> = self.progress.as_ref().map(|_| &on_file as _);
        Ok(envstore_walk::walk(dir, filter, Some(&self.root), on_file)?)
    }

    /// Stores the directory tree at `dir` and returns its snapshot id.
    pub fn ingest(&self, dir: &Path, filter: &Filter) -> Result<IngestReport> {
        let walked = self.walk(dir, filter)?;
        let id = SnapshotId::from(walked.root);
        if self.has_snapshot(&id) {
            self.touch(&id);
            return Ok(self.existing_report(&walked));
        }
        let _lock = self.lock_shared()?;
        self.store_walked(dir, &walked)
    }

    fn existing_report(&self, walked: &Walked) -> IngestReport {
        IngestReport {
            id: walked.root.into(),
            stats: walked.stats,
            created: false,
            new_objects: 0,
            new_bytes: 0,
            index_warning: None,
            relocated: walked.relocated.clone(),
            binary_with_prefix: walked.binary_with_prefix.clone(),
        }
    }

    /// Writes what the store lacks of a walked tree: objects, then trees, then the snapshot
    /// record, then the index. The record is written last, so its presence means the snapshot
    /// is complete. The caller holds the store lock shared.
    fn store_walked(&self, dir: &Path, walked: &Walked) -> Result<IngestReport> {
        let id = SnapshotId::from(walked.root);
        if self.has_snapshot(&id) {
            if self.snapshot_meta(&id)?.packed > 0 {
                // Its loose objects may have been freed: the directory at hand is a cheaper
                // source for them than the packs.
                self.store_objects(walked)?;
            }
            return Ok(self.existing_report(walked));
        }
        let (new_objects, new_bytes) = self.store_objects(walked)?;
        walked
            .trees
            .par_iter()
            .try_for_each(|(_, tree)| self.trees.insert(tree).map(drop))?;
        self.write_record(dir, walked, id, new_objects, new_bytes)
    }

    /// Stores the objects of a walked tree the store lacks loose; returns how many, and bytes.
    fn store_objects(&self, walked: &Walked) -> Result<(u64, u64)> {
        let mut todo: Vec<&SourceFile> = walked.files.iter().collect();
        todo.sort_unstable_by_key(|f| (f.object, f.executable));
        todo.dedup_by_key(|f| (f.object, f.executable));
        // No existence check here: insert_* make the same one (a stat per object saved), and
        // the progress display counts objects already stored as done at once.
        self.report(Progress::Storing {
            objects: todo.len() as u64,
            bytes: todo.iter().map(|f| f.size).sum(),
        });
        let (new_objects, new_bytes): (u64, u64) = todo
            .par_iter()
            .map(|f| {
                let written = match &f.content {
                    Some(bytes) => self.objects.insert_bytes(bytes, f.object, f.executable)?,
                    None => self.objects.insert_file(
                        &f.path,
                        f.object,
                        f.executable,
                        f.stamp.as_ref(),
                    )?,
                };
                self.report(Progress::Stored { bytes: f.size });
                Ok((u64::from(written > 0), written))
            })
            .try_reduce(|| (0, 0), |a, b| Ok((a.0 + b.0, a.1 + b.1)))
            .map_err(|e: ObjectError| Error::from(e))?;
        Ok((new_objects, new_bytes))
    }

    fn write_record(
        &self,
        dir: &Path,
        walked: &Walked,
        id: SnapshotId,
        new_objects: u64,
        new_bytes: u64,
    ) -> Result<IngestReport> {
        let source = std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned());
        let meta = SnapshotMeta {
            created: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            files: walked.stats.files,
            dirs: walked.stats.dirs,
            symlinks: walked.stats.symlinks,
            bytes: walked.stats.bytes,
            source: source.to_string_lossy().into_owned(),
            packed: 0,
        };
        let record = self.snapshot_file(&id);
        if !self.has_snapshot(&id) {
            self.write_file_atomic(&record, meta.to_text().as_bytes())?;
        }
        // The index is a rebuildable cache of the records: a busy or damaged index must not
        // fail a build that has stored everything it needs.
        let index_warning = self.update_index(|index| index.put_snapshots(&[(id, meta)]));
        Ok(IngestReport {
            id,
            stats: walked.stats,
            created: true,
            new_objects,
            new_bytes,
            index_warning,
            relocated: walked.relocated.clone(),
            binary_with_prefix: walked.binary_with_prefix.clone(),
        })
    }

    /// Makes `source` available at its stable path and returns it. A directory is hashed (and
    /// stored if new); a materialization that exists is returned without touching anything but
    /// its last-use time.
    pub fn materialize(
        &self,
        source: &Source,
        filter: &Filter,
        policy: LinkPolicy,
    ) -> Result<Materialized> {
        match source {
            Source::Dir(dir) => self.materialize_walked(dir, &self.walk(dir, filter)?, policy),
            Source::Snapshot(id) => self.materialize_stored(id, policy),
        }
    }

    /// Like [`Store::materialize`], holding a lease on the snapshot (taken before it is laid
    /// out, so prune cannot remove it in between) for as long as the [`Lease`] lives.
    pub fn materialize_leased(
        &self,
        source: &Source,
        filter: &Filter,
        policy: LinkPolicy,
    ) -> Result<(Materialized, Lease)> {
        match source {
            Source::Dir(dir) => {
                let walked = self.walk(dir, filter)?;
                let lease = self.lease(&walked.root.into())?;
                Ok((self.materialize_walked(dir, &walked, policy)?, lease))
            }
            Source::Snapshot(id) => {
                let lease = self.lease(id)?;
                Ok((self.materialize_stored(id, policy)?, lease))
            }
        }
    }

    fn materialize_walked(
        &self,
        dir: &Path,
        walked: &Walked,
        policy: LinkPolicy,
    ) -> Result<Materialized> {
        let id = SnapshotId::from(walked.root);
        if self.is_materialized(&id) {
            return Ok(self.existing(id));
        }
        let _lock = self.lock_shared()?;
        let ingest = self.store_walked(dir, walked)?;
        let lookup = |t: &TreeId| -> Result<Cow<'_, Tree>> {
            match walked.trees.get(t) {
                Some(tree) => Ok(Cow::Borrowed(tree)),
                None => Ok(Cow::Owned(self.trees.get(t)?)),
            }
        };
        let (created, link) = lay_out(self, &id, &lookup, policy)?;
        Ok(self.laid_out(id, created, link, Some(ingest)))
    }

    fn materialize_stored(&self, id: &SnapshotId, policy: LinkPolicy) -> Result<Materialized> {
        if self.is_materialized(id) {
            return Ok(self.existing(*id));
        }
        let _lock = self.lock_shared()?;
        if !self.has_snapshot(id) {
            return Err(Error::UnknownSnapshot {
                prefix: id.to_hex(),
            });
        }
        self.ensure_loose(id)?;
        let lookup = |t: &TreeId| -> Result<Cow<'_, Tree>> { Ok(Cow::Owned(self.trees.get(t)?)) };
        let (created, link) = lay_out(self, id, &lookup, policy)?;
        Ok(self.laid_out(*id, created, link, None))
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

    pub(crate) fn lease_path(&self, id: &SnapshotId) -> PathBuf {
        self.root.join("leases").join(id.to_hex())
    }

    /// A materialization that was there already: record the use and return it.
    fn existing(&self, id: SnapshotId) -> Materialized {
        self.touch(&id);
        Materialized {
            id,
            path: self.env_path(&id),
            created: false,
            link: None,
            ingest: None,
            index_warning: None,
        }
    }

    /// Records how a new materialization was laid out (for `show`); the index is a cache, so a
    /// failure to update it is a warning, not an error.
    fn laid_out(
        &self,
        id: SnapshotId,
        created: bool,
        link: LinkReport,
        ingest: Option<IngestReport>,
    ) -> Materialized {
        let index_warning = if created {
            self.update_index(|index| index.put_link_mode(&id, link.mode.as_str()))
        } else {
            None
        };
        Materialized {
            id,
            path: self.env_path(&id),
            created,
            link: Some(link),
            ingest,
            index_warning,
        }
    }

    /// Opens the index (waiting at most the lock time-out); keep it open briefly.
    pub(crate) fn open_index(&self) -> Result<Index> {
        Ok(Index::open(&self.root, self.options.lock_timeout)?)
    }

    /// Runs `f` on the index; returns the failure as a warning instead of an error.
    pub(crate) fn update_index(
        &self,
        f: impl FnOnce(&Index) -> Result<(), envstore_index::IndexError>,
    ) -> Option<String> {
        Index::open(&self.root, self.options.lock_timeout)
            .and_then(|index| f(&index))
            .err()
            .map(|e| e.to_string())
    }
}
