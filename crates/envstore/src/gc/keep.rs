//! What key records keep alive, and removing the records whose snapshot is gone.

use std::collections::BTreeMap;

use envstore_keys::KeyRecord;
use envstore_lock::{FileLock, LockKind};
use envstore_tree::SnapshotId;

use crate::{Result, Store};

/// For prune: the snapshot of the newest record of each name (kept like a pin).
pub(crate) fn named_key_snapshots(store: &Store) -> Result<Vec<(String, SnapshotId)>> {
    let mut newest: BTreeMap<String, KeyRecord> = BTreeMap::new();
    for record in crate::store::records::key_records(store)? {
        if !store.has_snapshot(&record.snapshot) {
            continue;
        }
        let Some(name) = record.name.clone() else {
            continue;
        };
        let newer = newest.get(&name).is_none_or(|n| record.created > n.created);
        if newer {
            newest.insert(name, record);
        }
    }
    Ok(newest
        .into_iter()
        .map(|(name, record)| (name, record.snapshot))
        .collect())
}

/// For prune: removes the key records whose snapshot is gone, with their build locks when
/// nobody holds them (one held is a build running again); returns how many records.
pub(super) fn remove_dead_key_records(store: &Store) -> Result<usize> {
    let mut removed = 0;
    for record in crate::store::records::key_records(store)? {
        if !store.has_snapshot(&record.snapshot) {
            crate::store::files::remove_file(&store.key_path(&record.key))?;
            let lock = store.root().join("locks").join(record.key.to_hex());
            if let Ok(Some(held)) = FileLock::try_acquire(&lock, LockKind::Exclusive) {
                held.remove()?;
            }
            removed += 1;
        }
    }
    Ok(removed)
}
