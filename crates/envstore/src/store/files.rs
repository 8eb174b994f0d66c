//! The store's files as prune, verify and stats see them: one listing of `objects/` and
//! `trees/`, the leftovers of interrupted work, and removal that never follows a link.
//!
//! Below catalog, gc, cold and verify, which all use it (they used to import each other for
//! these pieces).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use envstore_fs::DirState;
use envstore_lock::{FileLock, LockKind};
use envstore_tree::{KeyId, ObjectId, SnapshotId, TreeId};

use crate::{Error, Result, Store};

pub(crate) fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What a file in `objects/` or `trees/` is, by its name (for objects, the id without the `.x`
/// variant suffix).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stored {
    Object(ObjectId),
    Tree(TreeId),
    Temp,
    Other,
    /// A shard directory that is not a directory (a link someone put there): never entered.
    BadShard(&'static str),
}

/// One file under `objects/` or `trees/`.
#[derive(Debug)]
pub(crate) struct StoredFile {
    pub(crate) path: PathBuf,
    pub(crate) kind: Stored,
    pub(crate) len: u64,
}

fn classify(shard: &str, name: &str, is_objects: bool) -> Stored {
    if name.starts_with(".tmp-") {
        return Stored::Temp;
    }
    let hex = format!(
        "{shard}{}",
        if is_objects {
            name.strip_suffix(".x").unwrap_or(name)
        } else {
            name
        }
    );
    // Only the names envstore writes (lowercase hex) count: the listing's name order is then
    // id order, which the sorted joins of prune and verify rely on. Anything else someone put
    // there is left alone.
    if hex.bytes().any(|b| b.is_ascii_uppercase()) {
        return Stored::Other;
    }
    match (is_objects, hex.parse::<ObjectId>(), hex.parse::<TreeId>()) {
        (true, Ok(id), _) => Stored::Object(id),
        (false, _, Ok(id)) => Stored::Tree(id),
        _ => Stored::Other,
    }
}

/// Leftovers of interrupted work: temporary files in shard directories, half-built or
/// half-removed materializations, temporary records and pins, anything in `tmp/`, and
/// materializations whose snapshot record is gone. Safe to delete under the exclusive store
/// lock, which every writer of these holds shared.
/// `temps` are the temporary files [`crate::Store::for_each_stored`] found in shard directories.
pub(crate) fn leftovers(store: &Store, temps: Vec<PathBuf>) -> Result<Vec<PathBuf>> {
    let mut out = temps;
    let read = |dir: &Path| -> Result<Vec<fs::DirEntry>> {
        match fs::read_dir(dir) {
            Ok(entries) => Ok(entries.flatten().collect()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(Error::io("read", dir)(e)),
        }
    };
    let is_temp = |e: &fs::DirEntry| e.file_name().to_string_lossy().starts_with(".tmp-");
    for entry in read(&store.root().join("envs"))? {
        let orphan = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<SnapshotId>().ok())
            .is_some_and(|id| !store.has_snapshot(&id));
        if is_temp(&entry) || orphan {
            out.push(entry.path());
        }
    }
    // A lease "file" that is not a regular file (a directory, a link put there) can never
    // be locked, so it protects nothing and would fail every prune: a leftover.
    out.extend(read(&store.root().join("leases"))?.iter().filter_map(|e| {
        let odd = e.file_type().is_ok_and(|t| !t.is_file());
        (odd && !is_temp(e)).then(|| e.path())
    }));
    for dir in ["snapshots", "pins", "leases", "packs"] {
        out.extend(
            read(&store.root().join(dir))?
                .iter()
                .filter(|e| is_temp(e))
                .map(fs::DirEntry::path),
        );
    }
    // Everything in tmp/, but the output of a build still running.
    out.extend(
        read(&store.root().join("tmp"))?
            .iter()
            .filter(|e| !is_running_build(store, &e.file_name().to_string_lossy()))
            .map(fs::DirEntry::path),
    );
    out.sort();
    Ok(out)
}

/// Every file in `objects/` and `trees/`, temp files included, classified by its name: the
/// one listing that prune, verify and stats share. Streamed one shard directory at a time,
/// objects before trees, shards and the files in each in name order, so ids come in
/// ascending order (an object's two variants one after the other) and can be joined with
/// sorted sets of ids. A shard directory replaced by a link (or anything but a directory)
/// is not entered: it is passed as [`Stored::BadShard`], so nothing is ever deleted
/// through it.
pub(crate) fn for_each_stored(
    store: &Store,
    f: &mut dyn FnMut(StoredFile) -> Result<()>,
) -> Result<()> {
    for (dir, is_objects) in [("objects", true), ("trees", false)] {
        let dir = store.root().join(dir);
        let mut shards: Vec<fs::DirEntry> = fs::read_dir(&dir)
            .map_err(Error::io("read", &dir))?
            .flatten()
            .collect();
        shards.sort_by_cached_key(fs::DirEntry::file_name);
        for shard in shards {
            let shard_name = shard.file_name().to_string_lossy().into_owned();
            let shard = shard.path();
            match envstore_fs::dir_state(&shard).map_err(Error::io("read", &shard))? {
                DirState::Dir => {}
                DirState::Missing => continue,
                DirState::Other(what) => {
                    f(StoredFile {
                        path: shard,
                        kind: Stored::BadShard(what),
                        len: 0,
                    })?;
                    continue;
                }
            }
            let mut entries: Vec<fs::DirEntry> = fs::read_dir(&shard)
                .map_err(Error::io("read", &shard))?
                .flatten()
                .collect();
            entries.sort_by_cached_key(fs::DirEntry::file_name);
            for entry in entries {
                let kind = classify(
                    &shard_name,
                    &entry.file_name().to_string_lossy(),
                    is_objects,
                );
                // DirEntry::metadata is an lstat: a link is not followed.
                let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
                f(StoredFile {
                    path: entry.path(),
                    kind,
                    len,
                })?;
            }
        }
    }
    Ok(())
}

/// Removes leftovers (see [`crate::Store::leftovers`]); the caller holds the store lock exclusively.
/// A leftover that is a link is removed itself, never what it points at.
pub(crate) fn remove_leftovers(leftovers: &[PathBuf]) -> Result<()> {
    for path in leftovers {
        envstore_fs::remove_all(path).map_err(Error::io("remove", path))?;
    }
    Ok(())
}

pub(crate) fn remove_file(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::io("remove", path)(e)),
        _ => Ok(()),
    }
}

/// Removes a directory tree: first renamed to a `.tmp-trash-*` name beside it in `parent`
/// (one atomic step, after which nobody can find it by its old name), then deleted,
/// read-only directories included, without following links (envstore-fs). The new name is in
/// the same directory on purpose: moving a directory to another parent rewrites its `..` and
/// needs write permission on the directory itself, which a read-only materialization does not
/// give its owner (root passes the check, so only a non-root run shows it).
pub(crate) fn remove_tree(path: &Path, parent: &Path) -> Result<()> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let trash = parent.join(format!(
        ".tmp-trash-{}-{nanos:x}-{}",
        std::process::id(),
        COUNT.fetch_add(1, Ordering::Relaxed)
    ));
    // No-clobber: never replace an entry of the same name (another process's trash).
    match rustix::fs::renameat_with(
        rustix::fs::CWD,
        path,
        rustix::fs::CWD,
        &trash,
        rustix::fs::RenameFlags::NOREPLACE,
    ) {
        Ok(()) => {}
        Err(e) if e == rustix::io::Errno::NOENT => return Ok(()),
        // A file system without RENAME_NOREPLACE (some network ones): the name is unique to
        // this process and moment, so a plain rename is as safe.
        Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => {
            match fs::rename(path, &trash) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(Error::io("move aside", path)(e)),
            }
        }
        Err(e) => return Err(Error::io("move aside", path)(e.into())),
    }
    envstore_fs::remove_all(&trash).map_err(Error::io("remove", &trash))
}

/// Whether `tmp/<name>` is the output directory of a build that is still running (its
/// key's lock is held): prune must leave it alone.
fn is_running_build(store: &Store, name: &str) -> bool {
    let Some(key) = name
        .strip_prefix("build-")
        .and_then(|rest| rest.get(..64))
        .and_then(|hex| hex.parse::<KeyId>().ok())
    else {
        return false;
    };
    let lock = store.root().join("locks").join(key.to_hex());
    !FileLock::probe(&lock, LockKind::Exclusive).unwrap_or(true)
}
