//! What a user typed as SOURCE: a directory, a pin, a snapshot id or a unique prefix of one.

use std::path::Path;

use envstore_tree::SnapshotId;
use envstore_walk::Filter;

use crate::{Error, Result, Source, Store};

/// Interprets a command-line SOURCE: a directory (anything containing `/`, `.`, `..`, or an
/// existing directory), else a pin name, else the name of a key record (`ensure --name`: its
/// newest build, so one name means one thing to every command), else a snapshot id or unique
/// id prefix of at least 8 hex digits.
pub(crate) fn resolve(store: &Store, spec: &str) -> Result<Source> {
    let path = Path::new(spec);
    if spec.contains('/') || spec == "." || spec == ".." || path.is_dir() {
        // A materialization (`$(envstore materialize ...)`) is its snapshot. Only a path
        // whose last component is an id pays for resolving links: `materialize DIR` is the
        // hot path.
        if let Some(id) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse::<SnapshotId>().ok())
            && let (Ok(dir), Ok(envs)) = (path.canonicalize(), store.envs_dir().canonicalize())
            && dir.parent() == Some(envs.as_path())
            && store.has_snapshot(&id)
        {
            return Ok(Source::Snapshot(id));
        }
        return Ok(Source::Dir(path.to_owned()));
    }
    if let Some(id) = crate::catalog::pins::pin_target(store, spec)? {
        return Ok(Source::Snapshot(id));
    }
    // Not for ids and prefixes (all hex): `materialize ID` is the hook's call, and pays for no
    // listing of keys/.
    let hex = !spec.is_empty() && spec.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex
        && crate::catalog::pins::validate_pin_name(spec).is_ok()
        && let Some(id) = crate::store::records::newest_named(store, spec)?
    {
        return Ok(Source::Snapshot(id));
    }
    if !spec.is_empty() && spec.bytes().all(|b| b.is_ascii_hexdigit()) && spec.len() <= 64 {
        if spec.len() < 8 {
            return Err(Error::PrefixTooShort {
                spec: spec.to_owned(),
            });
        }
        return resolve_prefix(store, spec).map(Source::Snapshot);
    }
    if path.exists() {
        return Err(envstore_walk::WalkError::NotADirectory {
            path: path.to_owned(),
        }
        .into());
    }
    Err(Error::UnknownSource {
        spec: spec.to_owned(),
        near: crate::catalog::pins::near_pins(store, spec)?,
    })
}

/// Resolves SOURCE to a snapshot that is in the store, storing a directory first.
pub(crate) fn resolve_stored(store: &Store, spec: &str, filter: &Filter) -> Result<SnapshotId> {
    match resolve(store, spec)? {
        Source::Snapshot(id) => Ok(id),
        Source::Dir(dir) => Ok(crate::content::ingest::ingest(store, &dir, filter)?.id),
    }
}

/// The snapshot id of SOURCE without storing anything (a directory is only hashed).
pub(crate) fn identify(store: &Store, source: &Source, filter: &Filter) -> Result<SnapshotId> {
    match source {
        Source::Snapshot(id) => Ok(*id),
        Source::Dir(dir) => Ok(crate::content::ingest::hash_dir(store, dir, filter)?
            .root
            .into()),
    }
}

/// The one snapshot whose id starts with `prefix` (case-insensitive).
pub(crate) fn resolve_prefix(store: &Store, prefix: &str) -> Result<SnapshotId> {
    let prefix = prefix.to_ascii_lowercase();
    if prefix.len() == 64 {
        let id: SnapshotId = prefix.parse().expect("64 hex digits");
        return if store.has_snapshot(&id) {
            Ok(id)
        } else {
            Err(Error::UnknownSnapshot { prefix })
        };
    }
    let matches: Vec<SnapshotId> = store
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

/// Points pin `name` at SOURCE (a directory is stored first); returns the new and the
/// previous target. Holds the store lock shared throughout, so a prune cannot remove the
/// snapshot between storing and pinning.
pub(crate) fn pin_source(
    store: &Store,
    name: &str,
    spec: &str,
    filter: &envstore_walk::Filter,
) -> Result<(SnapshotId, Option<SnapshotId>)> {
    crate::catalog::pins::validate_pin_name(name)?;
    let _lock = store.lock_shared()?;
    let id = resolve_stored(store, spec, filter)?;
    Ok((id, crate::catalog::pins::pin(store, name, &id)?))
}
