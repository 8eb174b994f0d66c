//! Materializing: laying a snapshot out at its stable path, with or without a lease.
//!
//! The hot path is the first check of each function: a materialization that exists is
//! returned after one `lstat` (and a `touch` of its record), with no lock and no index.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use envstore_link::LinkPolicy;
use envstore_lock::{FileLock, LockKind};
use envstore_tree::{SnapshotId, Tree, TreeId};
use envstore_walk::Filter;

use crate::content::layout::{LinkReport, lay_out};
use crate::{Error, IngestReport, Lease, Materialized, Result, Source, Store};

impl Store {
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
            Source::Dir(dir) => self.materialize_dir(dir, filter, policy, None),
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
                let mut lease = None;
                let done = self.materialize_dir(dir, filter, policy, Some(&mut lease))?;
                Ok((done, lease.expect("materialize_dir takes the lease")))
            }
            Source::Snapshot(id) => {
                let lease = self.lease(id)?;
                Ok((self.materialize_stored(id, policy)?, lease))
            }
        }
    }

    /// Hashes `dir` (nothing kept but its root id); when that snapshot is not materialized,
    /// walks it again storing as it goes, and lays the stored trees out. The first walk is the
    /// warm path and costs no more than hashing; the second reads files the first left in the
    /// page cache. With `lease`, the snapshot is leased before it is laid out.
    fn materialize_dir(
        &self,
        dir: &Path,
        filter: &Filter,
        policy: LinkPolicy,
        mut lease: Option<&mut Option<Lease>>,
    ) -> Result<Materialized> {
        let hashed = self.hash_dir(dir, filter)?;
        let mut id = SnapshotId::from(hashed.root);
        if let Some(lease) = lease.as_deref_mut() {
            *lease = Some(self.lease(&id)?);
        }
        if self.materialized(&id)? {
            return Ok(self.existing(id));
        }
        self.require_writable("store and lay out a new environment")?;
        let _lock = self.lock_shared()?;
        let totals = (hashed.stats.files, hashed.stats.bytes);
        let ingest = self.store_dir(dir, filter, Some(totals))?;
        if ingest.id != id {
            // Changed between the two walks: what was stored is what gets laid out.
            id = ingest.id;
            if let Some(lease) = lease {
                *lease = Some(self.lease(&id)?);
            }
            if self.materialized(&id)? {
                return Ok(self.existing(id));
            }
        }
        let lookup = |t: &TreeId| -> Result<Cow<'_, Tree>> { Ok(Cow::Owned(self.trees.get(t)?)) };
        let (created, link) = lay_out(self, &id, &lookup, policy)?;
        Ok(self.laid_out(id, created, link, Some(ingest)))
    }

    fn materialize_stored(&self, id: &SnapshotId, policy: LinkPolicy) -> Result<Materialized> {
        if self.materialized(id)? {
            return Ok(self.existing(*id));
        }
        self.require_writable("lay out an environment")?;
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
}
