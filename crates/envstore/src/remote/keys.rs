//! Keyed environments across machines: a push publishes, for each key record naming the
//! snapshot, `keys/<key>` (a ref whose name is the key, signed like refs); `ensure` on a miss
//! looks the key up on the configured remotes and pulls instead of building.

use std::time::SystemTime;

use envstore_keys::{Inputs, KeyRecord};
use envstore_remote::format::Ref;
use envstore_remote::sign::SecretKey;
use envstore_tree::{KeyId, SnapshotId};

use crate::remote::RemoteFailKind;
use crate::remote::open::Remote;
use crate::store::files::unix_secs;
use crate::{Error, Result, Store};

fn key_key(key: &KeyId) -> String {
    format!("keys/{}", key.to_hex())
}

/// Publishes on `remote` the keys this store built snapshot `id` from; returns how many.
pub(super) fn push_keys(
    store: &Store,
    remote: &Remote,
    id: &SnapshotId,
    seq: u64,
    sign: Option<&SecretKey>,
) -> Result<u64> {
    let mut count = 0;
    for record in crate::store::records::key_records(store)?
        .into_iter()
        .filter(|r| r.snapshot == *id)
    {
        let mut r = Ref::new(&record.key.to_hex(), *id, seq);
        if let Some(key) = sign {
            r.sign(key);
        }
        remote.storage().put(&key_key(&record.key), r.encode())?;
        count += 1;
    }
    Ok(count)
}

/// On an `ensure` miss: the snapshot a configured remote has for `key`, pulled and recorded
/// locally, or `None`. A remote that does not answer is a warning.
pub(crate) fn ensure_from_remotes(
    store: &Store,
    key: &KeyId,
    inputs: &Inputs,
    name: Option<&str>,
) -> Result<Option<SnapshotId>> {
    if !store.is_writable()
        || crate::remote::config::remote_config(store)?
            .remotes
            .is_empty()
    {
        return Ok(None);
    }
    for remote in crate::remote::config::remotes(store, None)? {
        let found = crate::remote::pull::remote_name(store, &remote, &key_key(key), &key.to_hex())
            .and_then(|r| match r {
                Some(r) => {
                    crate::remote::pull::pull(store, &remote, &r.snapshot).map(|_| Some(r.snapshot))
                }
                None => Ok(None),
            });
        match found {
            Ok(Some(snapshot)) => {
                let record = KeyRecord {
                    key: *key,
                    snapshot,
                    created: unix_secs(SystemTime::now()),
                    name: name.map(str::to_owned),
                    inputs: inputs.recorded(&crate::store::records::record_secret(store)?),
                };
                store.write_file_atomic(
                    &store.root().join("keys").join(key.to_hex()),
                    record.to_text().as_bytes(),
                )?;
                return Ok(Some(snapshot));
            }
            Ok(None) | Err(Error::RemoteMissing { .. }) => {}
            Err(Error::Remote(e)) if e.kind == RemoteFailKind::Unreachable => store.warn(format!(
                "remote {} did not answer ({}); going on without it",
                remote.label(),
                e.message
            )),
            // A key mapping this store does not trust (unsigned, or signed by an unknown key),
            // or one the remote got wrong, is anyone's to write who can write one file there:
            // it must not break this key's builds for every reader. Built here instead.
            Err(e @ (Error::UntrustedRef { .. } | Error::RemoteRefused { .. })) => {
                store.warn(format!("{e}; building it here instead"));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}
