//! The store's records as files: snapshot records (`snapshots/<id>`, whose mtime is the last
//! use) and key records (`keys/<key>`). Read without following links, bounded.

use std::fs;
use std::time::SystemTime;

use envstore_index::SnapshotMeta;
use envstore_keys::KeyRecord;
use envstore_tree::{KeyId, SnapshotId};

use crate::store::files::unix_secs;
use crate::{Error, Hint, Result, Store};

/// A key record is a few dozen short lines.
const MAX_KEY_RECORD: u64 = 1 << 20;

/// Records that snapshot `id` was used now: the mtime of its record `snapshots/<id>`.
/// Cheap (one `open` and one `futimens`, no index); failures (a read-only store) are
/// ignored. Prune keeps what was used within its window.
pub(crate) fn touch(store: &Store, id: &SnapshotId) {
    // Never through a link: that would move the mtime of a file outside the store.
    if let Ok((record, _)) = envstore_fs::open_regular(&store.snapshot_file(id)) {
        let _ = record.set_modified(SystemTime::now());
    }
}

/// When snapshot `id` was last used (unix seconds): its record's mtime, which starts at its
/// creation and moves with every use.
pub(crate) fn last_used(store: &Store, id: &SnapshotId, meta: &SnapshotMeta) -> u64 {
    fs::symlink_metadata(store.snapshot_file(id))
        .and_then(|m| m.modified())
        .map_or(meta.created, unix_secs)
}

/// Every snapshot's record, read from `snapshots/`; a damaged one gets a placeholder
/// record (and a warning).
pub(crate) fn records(store: &Store) -> Result<Vec<(SnapshotId, SnapshotMeta)>> {
    Ok(store
        .snapshot_ids()?
        .into_iter()
        .map(|id| (id, snapshot_meta_or_warn(store, &id)))
        .collect())
}

/// The record of `id`, or, when it cannot be read, a placeholder whose times come from the
/// record file (with a warning naming the repair).
pub(crate) fn snapshot_meta_or_warn(store: &Store, id: &SnapshotId) -> SnapshotMeta {
    store.snapshot_meta(id).unwrap_or_else(|e| {
        store.warn_with(format!("{e}"), Hint::Repair);
        let created = fs::symlink_metadata(store.snapshot_file(id))
            .and_then(|m| m.modified())
            .map_or(0, unix_secs);
        SnapshotMeta {
            created,
            source: "(damaged record)".to_owned(),
            ..SnapshotMeta::default()
        }
    })
}

/// The record of `key`, if there is a readable one.
pub(crate) fn key_record(store: &Store, key: &KeyId) -> Option<KeyRecord> {
    let bytes = envstore_fs::read_bounded(&store.key_path(key), MAX_KEY_RECORD).ok()?;
    KeyRecord::from_text(&String::from_utf8_lossy(&bytes))
        .ok()
        .filter(|r| r.key == *key)
}

/// Every readable key record, newest first. A damaged one is skipped with a warning.
pub(crate) fn key_records(store: &Store) -> Result<Vec<KeyRecord>> {
    let dir = store.root().join("keys");
    let mut out = Vec::new();
    for entry in fs::read_dir(&dir).map_err(Error::io("read", &dir))? {
        let entry = entry.map_err(Error::io("read", &dir))?;
        let Some(key) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<KeyId>().ok())
        else {
            continue; // a temp file of a record being written
        };
        match key_record(store, &key) {
            // Builds within one second are ordered by when their record was written.
            Some(record) => {
                let written = entry.metadata().and_then(|m| m.modified()).ok();
                out.push((record, written));
            }
            None => store.warn(format!(
                "the key record {} cannot be read; it is rebuilt on the next `ensure` with \
                 those inputs",
                entry.path().display()
            )),
        }
    }
    out.sort_by(|(a, at), (b, bt)| b.created.cmp(&a.created).then(bt.cmp(at)));
    Ok(out.into_iter().map(|(record, _)| record).collect())
}

/// The store's secret: 32 random bytes in `<store>/secret` (mode 0600), made on first use.
/// Key records hash `--key-env` values with it (a keyed BLAKE3), so that a record, readable by
/// every user of the store, does not let anyone check a guess of a weak value. Made by a
/// no-clobber link, so two processes making it at once agree on one.
pub(crate) fn record_secret(store: &Store) -> Result<[u8; 32]> {
    let path = store.secret_path();
    let read = |path: &std::path::Path| -> Option<[u8; 32]> {
        envstore_fs::read_bounded(path, 64)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
    };
    if let Some(secret) = read(&path) {
        return Ok(secret);
    }
    store.require_writable("make its secret for key records")?;
    // Damaged (a link, a directory, the wrong size): it only keys what records keep of
    // variables' values, so a new one replaces it, and records made with the old one explain
    // each variable as changed once.
    if fs::symlink_metadata(&path).is_ok() {
        store.warn(format!(
            "{} is damaged; a new store secret replaces it (`explain` calls each --key-env \
             variable changed once)",
            path.display()
        ));
        envstore_fs::remove_all(&path).map_err(Error::io("remove", &path))?;
    }
    let mut secret = [0u8; 32];
    {
        use std::io::Read;
        let urandom = std::path::Path::new("/dev/urandom");
        fs::File::open(urandom)
            .and_then(|mut f| f.read_exact(&mut secret))
            .map_err(Error::io("read", urandom))?;
    }
    let dir = store.root();
    let tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(Error::io("create a temporary file in", dir))?;
    std::io::Write::write_all(&mut tmp.as_file(), &secret)
        .map_err(Error::io("write", tmp.path()))?;
    tmp.as_file()
        .sync_all()
        .map_err(Error::io("sync", tmp.path()))?;
    // A temporary file is 0600 already; the link publishes it only if none exists.
    match fs::hard_link(tmp.path(), &path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::io("write", &path)(e)),
    }
    read(&path).ok_or_else(|| Error::Io {
        op: "read",
        path: path.clone(),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "it is not the 32 bytes of a store secret",
        ),
    })
}

/// The snapshot of the newest key record named `name` that the store still has (what `ensure
/// --name NAME` last built), if any.
pub(crate) fn newest_named(store: &Store, name: &str) -> Result<Option<SnapshotId>> {
    // key_records lists newest first.
    Ok(key_records(store)?
        .into_iter()
        .filter(|r| r.name.as_deref() == Some(name))
        .map(|r| r.snapshot)
        .find(|id| store.has_snapshot(id)))
}
