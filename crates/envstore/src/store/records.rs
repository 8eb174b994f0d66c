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
