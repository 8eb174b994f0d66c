//! Materializing: laying a snapshot out at its stable path, with or without a lease.
//!
//! The hot path is the first check of each function: a materialization that exists is
//! returned after one `lstat` (and a `touch` of its record), with no lock and no index.

use std::borrow::Cow;
use std::path::Path;

use envstore_link::LinkPolicy;
use envstore_tree::{SnapshotId, Tree, TreeId};
use envstore_walk::Filter;

use crate::content::layout::{LinkReport, lay_out};
use crate::{Error, IngestReport, Lease, Materialized, Result, Source, Store};

/// Makes `source` available at its stable path and returns it. A directory is hashed (and
/// stored if new); a materialization that exists is returned without touching anything but
/// its last-use time.
pub(crate) fn materialize(
    store: &Store,
    source: &Source,
    filter: &Filter,
    policy: LinkPolicy,
) -> Result<Materialized> {
    match source {
        Source::Dir(dir) => materialize_dir(store, dir, filter, policy, None),
        Source::Snapshot(id) => materialize_stored(store, id, policy),
    }
}

/// Like [`crate::Store::materialize`], holding a lease on the snapshot (taken before it is laid
/// out, so prune cannot remove it in between) for as long as the [`Lease`] lives.
pub(crate) fn materialize_leased(
    store: &Store,
    source: &Source,
    filter: &Filter,
    policy: LinkPolicy,
) -> Result<(Materialized, Lease)> {
    match source {
        Source::Dir(dir) => {
            let mut lease = None;
            let done = materialize_dir(store, dir, filter, policy, Some(&mut lease))?;
            Ok((done, lease.expect("materialize_dir takes the lease")))
        }
        Source::Snapshot(id) => {
            let lease = store.lease(id)?;
            Ok((materialize_stored(store, id, policy)?, lease))
        }
    }
}

/// Hashes `dir` (nothing kept but its root id); when that snapshot is not materialized,
/// walks it again storing as it goes, and lays the stored trees out. The first walk is the
/// warm path and costs no more than hashing; the second reads files the first left in the
/// page cache. With `lease`, the snapshot is leased before it is laid out.
fn materialize_dir(
    store: &Store,
    dir: &Path,
    filter: &Filter,
    policy: LinkPolicy,
    mut lease: Option<&mut Option<Lease>>,
) -> Result<Materialized> {
    let hashed = crate::content::ingest::hash_dir(store, dir, filter)?;
    let mut id = SnapshotId::from(hashed.root);
    if let Some(lease) = lease.as_deref_mut() {
        *lease = Some(store.lease(&id)?);
    }
    if let Some(done) = hand_out(store, &id)? {
        return Ok(done);
    }
    store.require_writable("store and lay out a new environment")?;
    let _lock = store.lock_shared()?;
    let totals = (hashed.stats.files, hashed.stats.bytes);
    let ingest = crate::content::ingest::store_dir(store, dir, filter, Some(totals))?;
    if ingest.id != id {
        // Changed between the two walks: what was stored is what gets laid out.
        id = ingest.id;
        if let Some(lease) = lease {
            *lease = Some(store.lease(&id)?);
        }
        if let Some(done) = hand_out(store, &id)? {
            return Ok(done);
        }
    }
    let lookup = |t: &TreeId| -> Result<Cow<'_, Tree>> { Ok(Cow::Owned(store.trees.get(t)?)) };
    let (created, link) = lay_out(store, &id, &lookup, policy)?;
    Ok(laid_out(store, id, created, link, Some(ingest)))
}

fn materialize_stored(store: &Store, id: &SnapshotId, policy: LinkPolicy) -> Result<Materialized> {
    if let Some(done) = hand_out(store, id)? {
        return Ok(done);
    }
    store.require_writable("lay out an environment")?;
    let _lock = store.lock_shared()?;
    if !store.has_snapshot(id) {
        return Err(Error::UnknownSnapshot {
            prefix: id.to_hex(),
        });
    }
    crate::cold::rehydrate::ensure_loose(store, id)?;
    let lookup = |t: &TreeId| -> Result<Cow<'_, Tree>> { Ok(Cow::Owned(store.trees.get(t)?)) };
    let (created, link) = lay_out(store, id, &lookup, policy)?;
    Ok(laid_out(store, *id, created, link, None))
}

/// The materialization of `id` when there is one to hand out. One written to since it was laid
/// out (a `pip install` into it) is not: it is moved aside, with a warning, and `None` makes
/// the caller lay out a fresh one. A read-only store can only warn.
fn hand_out(store: &Store, id: &SnapshotId) -> Result<Option<Materialized>> {
    if !store.materialized(id)? {
        return Ok(None);
    }
    let env = store.env_path(id);
    let Some(changed) = crate::content::drift::first_change(store, id, &env) else {
        return Ok(Some(existing(store, *id)));
    };
    let shown = match changed.strip_prefix(&env) {
        Ok(rel) if rel.as_os_str().is_empty() => "its top directory".to_owned(),
        Ok(rel) => format!("{}/", rel.display()),
        Err(_) => changed.display().to_string(),
    };
    if !store.is_writable() {
        store.warn(format!(
            "environment {} was written to after it was laid out ({shown} changed); \
             handing it out as it is (this store is read-only)",
            id.short()
        ));
        return Ok(Some(existing(store, *id)));
    }
    store.warn(format!(
        "environment {} was written to after it was laid out ({shown} changed): laying \
         out a fresh copy (the written one is removed; install into a copy or a venv of \
         your own instead)",
        id.short()
    ));
    let _lock = store.lock_shared()?;
    crate::store::files::remove_tree(&env, &store.envs_dir())?;
    Ok(None)
}

/// A materialization that was there already: record the use and return it.
fn existing(store: &Store, id: SnapshotId) -> Materialized {
    crate::store::records::touch(store, &id);
    Materialized {
        id,
        path: store.env_path(&id),
        created: false,
        link: None,
        ingest: None,
        index_warning: None,
    }
}

/// Records how a new materialization was laid out (for `show`); the index is a cache, so a
/// failure to update it is a warning, not an error.
fn laid_out(
    store: &Store,
    id: SnapshotId,
    created: bool,
    link: LinkReport,
    ingest: Option<IngestReport>,
) -> Materialized {
    let index_warning = if created {
        store.update_index(|index| index.put_link_mode(&id, link.mode.as_str()))
    } else {
        None
    };
    Materialized {
        id,
        path: store.env_path(&id),
        created,
        link: Some(link),
        ingest,
        index_warning,
    }
}
