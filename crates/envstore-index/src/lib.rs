//! The store's catalogue in redb: snapshot metadata by id.
//!
//! redb lets one process open a database at a time, so the index is opened only when a command
//! needs it (never on the hot path of materializing a known environment), under an exclusive
//! lock of our own with a deadline, and closed right after. It is never the only copy of
//! anything: each snapshot also has a small file under `snapshots/` (see [`SnapshotMeta`]), pins
//! are files, and [`Index::rebuild`] recreates the database from those files.

use std::path::{Path, PathBuf};
use std::time::Duration;

use envstore_lock::{FileLock, LockError, LockKind};
use envstore_tree::SnapshotId;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

mod cold;
pub use cold::{ChunkLoc, ColdTotals};

const SNAPSHOTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("snapshots");
/// How each materialization was laid out (`reflink`, `hardlink` or `copy`).
const MATERIALIZED: TableDefinition<&[u8], &str> = TableDefinition::new("materialized");

/// redb's cache; the catalogue is small, and envstore keeps its memory bounded.
const CACHE_BYTES: usize = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("the index {path} cannot be used ({source}); it is a cache, rebuilt by repair")]
    Database {
        path: PathBuf,
        source: Box<redb::Error>,
    },
    #[error("bad snapshot record for {id}: {reason}")]
    BadRecord { id: String, reason: String },
    #[error("the index {path} is damaged ({reason}); it is a cache, rebuilt by repair")]
    Damaged { path: PathBuf, reason: String },
}

/// What the store knows about a snapshot besides its trees.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SnapshotMeta {
    /// Unix seconds when it was first stored.
    pub created: u64,
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// Sum of the sizes of its regular files.
    pub bytes: u64,
    /// Where it was first ingested from (informational; lossy for non-UTF-8 paths).
    pub source: String,
    /// Unix seconds when its content was last put in packs (0: never). A packed snapshot's
    /// loose objects may be freed; materializing it rehydrates them.
    pub packed: u64,
}

const META_HEADER: &str = "envstore-snapshot 1";

impl SnapshotMeta {
    /// The record's text form, used both for `snapshots/<id>` and as the index value.
    pub fn to_text(&self) -> String {
        let source = self.source.replace(['\n', '\r'], " ");
        let mut text = format!(
            "{META_HEADER}\ncreated {}\nfiles {}\ndirs {}\nsymlinks {}\nbytes {}\nsource {source}\n",
            self.created, self.files, self.dirs, self.symlinks, self.bytes
        );
        if self.packed > 0 {
            text.push_str(&format!("packed {}\n", self.packed));
        }
        text
    }

    pub fn from_text(text: &str) -> Result<SnapshotMeta, String> {
        let mut lines = text.lines();
        if lines.next() != Some(META_HEADER) {
            return Err(format!("does not start with `{META_HEADER}`"));
        }
        let mut meta = SnapshotMeta::default();
        for line in lines {
            let (key, value) = line.split_once(' ').unwrap_or((line, ""));
            let number = || {
                value
                    .parse::<u64>()
                    .map_err(|e| format!("bad {key} `{value}`: {e}"))
            };
            match key {
                "created" => meta.created = number()?,
                "files" => meta.files = number()?,
                "dirs" => meta.dirs = number()?,
                "symlinks" => meta.symlinks = number()?,
                "bytes" => meta.bytes = number()?,
                "source" => meta.source = value.to_owned(),
                "packed" => meta.packed = number()?,
                // Newer versions may add keys; ignore them.
                _ => {}
            }
        }
        Ok(meta)
    }
}

/// An open index. Holds the index lock until dropped: keep it short-lived.
#[derive(Debug)]
pub struct Index {
    db: Database,
    path: PathBuf,
    /// Why the index file was set aside and a new one created, when it was.
    recreated: Option<String>,
    _lock: FileLock,
}

impl Index {
    /// Opens (creating if needed) `<store>/index.redb`, waiting at most `timeout` for the lock.
    ///
    /// The index is a cache of files that are the truth (`snapshots/`, `packs/`), so damage is
    /// never fatal: an `index.redb` that is not a regular file (a directory, a link: never
    /// followed), that redb refuses, or that makes redb panic (a torn file did) is set aside as
    /// `index.redb.damaged` and a new, empty index created; [`Index::recreated`] says why, and
    /// the store refills it from its files.
    pub fn open(store: &Path, timeout: Duration) -> Result<Index, IndexError> {
        let lock = FileLock::acquire(
            &store.join("index.lock"),
            LockKind::Exclusive,
            timeout,
            "the index lock",
        )?;
        let path = store.join("index.redb");
        let db_err = |e: redb::Error| IndexError::Database {
            path: path.clone(),
            source: Box::new(e),
        };
        let mut recreated = None;
        let db = match std::fs::symlink_metadata(&path) {
            Ok(meta) if !meta.is_file() => Err("it is not a regular file".to_owned()),
            _ => open_db(&path),
        };
        let db = match db {
            Ok(db) => db,
            Err(reason) => {
                set_aside(&path).map_err(|e| db_err(e.into()))?;
                recreated = Some(reason);
                open_db(&path).map_err(|reason| IndexError::Damaged {
                    path: path.clone(),
                    reason,
                })?
            }
        };
        Ok(Index {
            db,
            path,
            recreated,
            _lock: lock,
        })
    }

    /// Why the index was set aside and recreated empty by [`Index::open`], if it was.
    pub fn recreated(&self) -> Option<&str> {
        self.recreated.as_deref()
    }

    /// Runs one operation, turning a panic inside redb (a damaged file can cause one) into
    /// [`IndexError::Damaged`].
    fn guarded<T>(&self, f: impl FnOnce() -> Result<T, IndexError>) -> Result<T, IndexError> {
        quiet_panics(f).unwrap_or_else(|reason| {
            Err(IndexError::Damaged {
                path: self.path.clone(),
                reason,
            })
        })
    }

    fn db_err(&self) -> impl Fn(redb::Error) -> IndexError + '_ {
        |e| IndexError::Database {
            path: self.path.clone(),
            source: Box::new(e),
        }
    }

    /// Records snapshots (insert or replace), in one transaction.
    pub fn put_snapshots(&self, records: &[(SnapshotId, SnapshotMeta)]) -> Result<(), IndexError> {
        self.guarded(|| {
            let err = self.db_err();
            let txn = self.db.begin_write().map_err(|e| err(e.into()))?;
            {
                let mut table = txn.open_table(SNAPSHOTS).map_err(|e| err(e.into()))?;
                for (id, meta) in records {
                    table
                        .insert(&id.as_bytes()[..], meta.to_text().as_bytes())
                        .map_err(|e| err(e.into()))?;
                }
            }
            txn.commit().map_err(|e| err(e.into()))
        })
    }

    /// Forgets snapshots (and how they were materialized), in one transaction.
    pub fn remove_snapshots(&self, ids: &[SnapshotId]) -> Result<(), IndexError> {
        self.guarded(|| {
            let err = self.db_err();
            let txn = self.db.begin_write().map_err(|e| err(e.into()))?;
            {
                let mut snapshots = txn.open_table(SNAPSHOTS).map_err(|e| err(e.into()))?;
                let mut materialized = txn.open_table(MATERIALIZED).map_err(|e| err(e.into()))?;
                for id in ids {
                    snapshots
                        .remove(&id.as_bytes()[..])
                        .map_err(|e| err(e.into()))?;
                    materialized
                        .remove(&id.as_bytes()[..])
                        .map_err(|e| err(e.into()))?;
                }
            }
            txn.commit().map_err(|e| err(e.into()))
        })
    }

    /// Forgets how `id` was materialized (its materialization was removed).
    pub fn remove_link_mode(&self, id: &SnapshotId) -> Result<(), IndexError> {
        self.guarded(|| {
            let err = self.db_err();
            let txn = self.db.begin_write().map_err(|e| err(e.into()))?;
            {
                let mut table = txn.open_table(MATERIALIZED).map_err(|e| err(e.into()))?;
                table
                    .remove(&id.as_bytes()[..])
                    .map_err(|e| err(e.into()))?;
            }
            txn.commit().map_err(|e| err(e.into()))
        })
    }

    /// Records how snapshot `id` was materialized.
    pub fn put_link_mode(&self, id: &SnapshotId, mode: &str) -> Result<(), IndexError> {
        self.guarded(|| {
            let err = self.db_err();
            let txn = self.db.begin_write().map_err(|e| err(e.into()))?;
            {
                let mut table = txn.open_table(MATERIALIZED).map_err(|e| err(e.into()))?;
                table
                    .insert(&id.as_bytes()[..], mode)
                    .map_err(|e| err(e.into()))?;
            }
            txn.commit().map_err(|e| err(e.into()))
        })
    }

    /// How snapshot `id` was materialized, if recorded.
    pub fn link_mode(&self, id: &SnapshotId) -> Result<Option<String>, IndexError> {
        self.guarded(|| {
            let err = self.db_err();
            let txn = self.db.begin_read().map_err(|e| err(e.into()))?;
            let table = match txn.open_table(MATERIALIZED) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(err(e.into())),
            };
            let value = table.get(&id.as_bytes()[..]).map_err(|e| err(e.into()))?;
            Ok(value.map(|v| v.value().to_owned()))
        })
    }

    /// Every recorded snapshot, in id order.
    pub fn snapshots(&self) -> Result<Vec<(SnapshotId, SnapshotMeta)>, IndexError> {
        self.guarded(|| {
            let err = self.db_err();
            let txn = self.db.begin_read().map_err(|e| err(e.into()))?;
            let table = match txn.open_table(SNAPSHOTS) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(e) => return Err(err(e.into())),
            };
            let mut out = Vec::new();
            for row in table.iter().map_err(|e| err(e.into()))? {
                let (key, value) = row.map_err(|e| err(e.into()))?;
                let bytes: [u8; 32] =
                    key.value().try_into().map_err(|_| IndexError::BadRecord {
                        id: format!("{:?}", key.value()),
                        reason: "key is not 32 bytes".into(),
                    })?;
                let id = SnapshotId::from_bytes(bytes);
                let text = String::from_utf8_lossy(value.value());
                let meta =
                    SnapshotMeta::from_text(&text).map_err(|reason| IndexError::BadRecord {
                        id: id.to_hex(),
                        reason,
                    })?;
                out.push((id, meta));
            }
            Ok(out)
        })
    }

    /// Replaces the whole catalogue with `records` (used to rebuild it from the store's files).
    pub fn rebuild(&self, records: &[(SnapshotId, SnapshotMeta)]) -> Result<(), IndexError> {
        self.guarded(|| {
            let err = self.db_err();
            let txn = self.db.begin_write().map_err(|e| err(e.into()))?;
            txn.delete_table(SNAPSHOTS).map_err(|e| err(e.into()))?;
            txn.commit().map_err(|e| err(e.into()))?;
            self.put_snapshots(records)
        })
    }
}

/// Opens or creates the database; an error or a panic inside redb becomes the reason.
fn open_db(path: &Path) -> Result<Database, String> {
    match quiet_panics(|| Database::builder().set_cache_size(CACHE_BYTES).create(path)) {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(e)) => Err(e.to_string()),
        Err(reason) => Err(reason),
    }
}

/// Moves a damaged index out of the way (replacing an older damaged one); a link is moved,
/// never followed.
fn set_aside(path: &Path) -> std::io::Result<()> {
    let aside = path.with_extension("redb.damaged");
    match std::fs::symlink_metadata(&aside) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(&aside)?,
        Ok(_) => std::fs::remove_file(&aside)?,
        Err(_) => {}
    }
    match std::fs::rename(path, &aside) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

thread_local! {
    /// Set while redb runs under [`quiet_panics`]: its panics are caught and reported as
    /// damage, so the panic hook must not print them as crashes.
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f`, catching a panic (returned as its message) without printing it.
fn quiet_panics<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(std::cell::Cell::get) {
                previous(info);
            }
        }));
    });
    let was = QUIET.with(|q| q.replace(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    QUIET.with(|q| q.set(was));
    result.map_err(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".to_owned());
        format!("redb failed on it: {message}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(n: u64) -> SnapshotMeta {
        SnapshotMeta {
            created: n,
            files: 2,
            dirs: 1,
            symlinks: 0,
            bytes: 10,
            source: "/tmp/x y".into(),
            packed: n % 2,
        }
    }

    #[test]
    fn meta_text_round_trips() {
        let m = meta(5);
        assert_eq!(SnapshotMeta::from_text(&m.to_text()).unwrap(), m);
        assert!(SnapshotMeta::from_text("garbage").is_err());
    }

    #[test]
    fn put_list_remove_rebuild() {
        let dir = tempfile::tempdir().unwrap();
        let a = SnapshotId::from_bytes([1; 32]);
        let b = SnapshotId::from_bytes([2; 32]);
        {
            let index = Index::open(dir.path(), Duration::from_secs(1)).unwrap();
            index.put_snapshots(&[(a, meta(1)), (b, meta(2))]).unwrap();
        }
        let index = Index::open(dir.path(), Duration::from_secs(1)).unwrap();
        assert_eq!(index.snapshots().unwrap().len(), 2);
        index.put_link_mode(&a, "hardlink").unwrap();
        assert_eq!(index.link_mode(&a).unwrap().as_deref(), Some("hardlink"));
        index.remove_snapshots(&[a]).unwrap();
        assert_eq!(index.link_mode(&a).unwrap(), None);
        assert_eq!(index.snapshots().unwrap(), vec![(b, meta(2))]);
        index.rebuild(&[(a, meta(3))]).unwrap();
        assert_eq!(index.snapshots().unwrap(), vec![(a, meta(3))]);
    }

    #[test]
    fn a_torn_or_replaced_index_is_set_aside_and_recreated() {
        let dir = tempfile::tempdir().unwrap();
        let a = SnapshotId::from_bytes([1; 32]);
        {
            let index = Index::open(dir.path(), Duration::from_secs(1)).unwrap();
            index.put_snapshots(&[(a, meta(1))]).unwrap();
        }
        let path = dir.path().join("index.redb");
        let len = std::fs::metadata(&path).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(len / 2).unwrap();
        drop(f);
        let index = Index::open(dir.path(), Duration::from_secs(1)).unwrap();
        // Either redb repaired it, or it was set aside; no panic, and it works.
        let _ = index.snapshots().unwrap();
        drop(index);
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        let index = Index::open(dir.path(), Duration::from_secs(1)).unwrap();
        assert!(index.recreated().is_some());
        assert!(index.snapshots().unwrap().is_empty());
        assert!(dir.path().join("index.redb.damaged").is_dir());
    }

    #[test]
    fn a_second_opener_times_out_instead_of_failing_or_hanging() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Index::open(dir.path(), Duration::from_secs(1)).unwrap();
        let err = Index::open(dir.path(), Duration::from_millis(30)).unwrap_err();
        assert!(
            matches!(err, IndexError::Lock(LockError::TimedOut { .. })),
            "{err}"
        );
    }
}
