//! Falling through to remotes: finding a snapshot id or ref the store lacks on the configured
//! remotes, in order, and pulling it.

use envstore_remote::config::valid_name;
use envstore_tree::SnapshotId;

use crate::remote::RemoteFailKind;
use crate::remote::open::Remote;
use crate::{Error, Result, Store};

/// Finds `spec` (a full snapshot id or a ref name) on `remotes`, in order, and pulls it.
/// A remote that does not answer or lacks it is skipped with a warning; `Ok(None)` when
/// none had it. A remote that sends something refused ends the search with that error
/// unless a later remote supplies the snapshot.
pub(crate) fn fetch(store: &Store, spec: &str, remotes: &[Remote]) -> Result<Option<SnapshotId>> {
    let id: Option<SnapshotId> = (spec.len() == 64).then(|| spec.parse().ok()).flatten();
    let mut refused = None;
    for remote in remotes {
        let attempt = match id {
            Some(id) => crate::remote::pull::pull(store, remote, &id).map(|_| id),
            None if valid_name(spec) => crate::remote::pull::remote_ref(store, remote, spec)
                .and_then(|r| {
                    crate::remote::pull::pull(store, remote, &r.snapshot).map(|_| r.snapshot)
                }),
            None => return Ok(None),
        };
        match attempt {
            Ok(id) => return Ok(Some(id)),
            Err(Error::RemoteMissing { .. }) => {}
            Err(Error::Remote(e)) if e.is_not_found() => {}
            Err(Error::Remote(e)) if e.kind == RemoteFailKind::Unreachable => {
                store.warn(format!(
                    "remote {} did not answer ({}); going on without it",
                    remote.label(),
                    e.message
                ));
            }
            Err(e) => {
                store.warn(format!("remote {}: {e}", remote.label()));
                refused.get_or_insert(e);
            }
        }
    }
    refused.map_or(Ok(None), Err)
}

/// [`crate::Store::resolve`], falling through to the configured remotes when the store does not
/// have a snapshot id or name: they are searched in order and the snapshot pulled.
pub(crate) fn resolve_or_fetch(store: &Store, spec: &str) -> Result<crate::Source> {
    match crate::catalog::resolve::resolve(store, spec) {
        Err(
            e @ (Error::UnknownSource { .. }
            | Error::UnknownSnapshot { .. }
            | Error::UnknownPin { .. }),
        ) => {
            let config = crate::remote::config::remote_config(store)?;
            if config.remotes.is_empty() || !store.is_writable() {
                return Err(e);
            }
            match fetch(store, spec, &crate::remote::config::remotes(store, None)?)? {
                Some(id) => Ok(crate::Source::Snapshot(id)),
                None => Err(e),
            }
        }
        other => other,
    }
}
