//! Storing a directory: one streaming walk that writes each object as soon as its file is
//! hashed and each tree as soon as its directory is complete, so memory does not grow with the
//! number of files. The snapshot record is written last: its presence means the snapshot is
//! complete.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use envstore_index::SnapshotMeta;
use envstore_tree::{SnapshotId, Tree, TreeId};
use envstore_walk::{Discard, Filter, Sink, SourceFile, WalkSummary, Walked};

use crate::{Error, IngestReport, Progress, Result, Store};

/// Writes what a walk hands it into the store.
struct StoreSink<'s> {
    store: &'s Store,
    new_objects: AtomicU64,
    new_bytes: AtomicU64,
    /// Report each stored file (after a `Progress::Storing` with the totals).
    progress: bool,
}

impl Sink for StoreSink<'_> {
    type Error = Error;

    fn file(&self, f: SourceFile) -> Result<()> {
        let objects = self.store.objects();
        let written = match &f.content {
            Some(bytes) => objects.insert_bytes(bytes, f.object, f.executable)?,
            None => {
                objects.insert_file(&f.path, f.object, f.executable, f.size, f.stamp.as_ref())?
            }
        };
        if written > 0 {
            self.new_objects.fetch_add(1, Ordering::Relaxed);
            self.new_bytes.fetch_add(written, Ordering::Relaxed);
        }
        if self.progress {
            self.store.report(Progress::Stored { bytes: f.size });
        }
        Ok(())
    }

    fn tree(&self, _: TreeId, tree: Tree) -> Result<()> {
        self.store.trees().insert(&tree)?;
        Ok(())
    }
}

/// Walks `dir` with `sink`. A relocatable walk cannot stream (its RECORD files are
/// rewritten at the end), so it is walked whole and then handed to the sink.
pub(crate) fn walk_dir_into<S: Sink>(
    store: &Store,
    dir: &Path,
    filter: &Filter,
    sink: &S,
) -> std::result::Result<WalkSummary, S::Error> {
    let on_file = |bytes| store.report(Progress::Hashed { bytes });
    let on_file: Option<&(dyn Fn(u64) + Sync)> = store.progress.as_ref().map(|_| &on_file as _);
    if !filter.relocates() {
        return envstore_walk::walk_into(dir, filter, Some(&store.root), on_file, sink);
    }
    let walked = envstore_walk::walk(dir, filter, Some(&store.root), on_file)?;
    replay(walked, sink)
}

/// Hashes `dir` without storing anything: its root id and counts.
pub(crate) fn hash_dir(store: &Store, dir: &Path, filter: &Filter) -> Result<WalkSummary> {
    refuse_internals(store, dir)?;
    Ok(walk_dir_into(store, dir, filter, &Discard)?)
}

/// Stores the directory tree at `dir` and returns its snapshot id. Storing a snapshot the
/// store has already checks what it holds of it (one `lstat` per object and tree) and
/// replaces what is damaged from `dir`: ingesting the source again heals the store.
pub(crate) fn ingest(store: &Store, dir: &Path, filter: &Filter) -> Result<IngestReport> {
    refuse_internals(store, dir)?;
    store.require_writable("store new content")?;
    let _lock = store.lock_shared()?;
    let report = store_dir(store, dir, filter, None)?;
    if !report.created {
        crate::store::records::touch(store, &report.id);
    }
    Ok(report)
}

/// Walks and stores `dir` (which may be inside the store: a build's output under `tmp/`):
/// objects as their files are hashed, trees as their directories complete, then the
/// record. `totals` (files, bytes), when known from an earlier walk, drive a progress bar.
/// The caller holds the store lock shared.
pub(crate) fn store_dir(
    store: &Store,
    dir: &Path,
    filter: &Filter,
    totals: Option<(u64, u64)>,
) -> Result<IngestReport> {
    if let Some((objects, bytes)) = totals {
        store.report(Progress::Storing { objects, bytes });
    }
    let sink = StoreSink {
        store,
        new_objects: AtomicU64::new(0),
        new_bytes: AtomicU64::new(0),
        progress: totals.is_some(),
    };
    let summary = walk_dir_into(store, dir, filter, &sink)?;
    let id = SnapshotId::from(summary.root);
    let created = !(store.has_snapshot(&id) && store.snapshot_meta(&id).is_ok());
    let index_warning = if created {
        write_record(store, dir, &summary, id)?
    } else {
        None
    };
    Ok(IngestReport {
        id,
        stats: summary.stats,
        created,
        new_objects: if created {
            sink.new_objects.into_inner()
        } else {
            0
        },
        new_bytes: if created {
            sink.new_bytes.into_inner()
        } else {
            0
        },
        index_warning,
        relocated: summary.relocated,
        binary_with_prefix: summary.binary_with_prefix,
    })
}

/// Refuses to store the store itself or anything in it but a materialization (whose
/// content is a snapshot's): that would store envstore's own internals as an environment.
fn refuse_internals(store: &Store, dir: &Path) -> Result<()> {
    let Ok(dir) = dir.canonicalize() else {
        return Ok(()); // the walk reports a missing or unreadable directory
    };
    let Ok(root) = store.root.canonicalize() else {
        return Ok(());
    };
    let Ok(rel) = dir.strip_prefix(&root) else {
        return Ok(());
    };
    let mut parts = rel.components();
    let envs = parts.next().is_some_and(|c| c.as_os_str() == "envs");
    let env_id = parts
        .next()
        .and_then(|c| c.as_os_str().to_str())
        .is_some_and(|n| n.parse::<SnapshotId>().is_ok());
    if envs && env_id {
        return Ok(());
    }
    Err(Error::SourceInStore {
        path: dir.clone(),
        store: root,
    })
}

/// Writes the snapshot record (absent, or present but unreadable: damaged) and indexes it;
/// returns the index's failure as a warning.
fn write_record(
    store: &Store,
    dir: &Path,
    summary: &WalkSummary,
    id: SnapshotId,
) -> Result<Option<String>> {
    let source = std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned());
    let stats = &summary.stats;
    let meta = SnapshotMeta {
        created: SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        files: stats.files,
        dirs: stats.dirs,
        symlinks: stats.symlinks,
        bytes: stats.bytes,
        source: source.to_string_lossy().into_owned(),
        packed: 0,
    };
    let record = store.snapshot_file(&id);
    if store.snapshot_meta(&id).is_err() {
        store.write_file_atomic(&record, meta.to_text().as_bytes())?;
    }
    // The index is a rebuildable cache of the records: a busy or damaged index must not
    // fail a build that has stored everything it needs.
    Ok(store.update_index(|index| index.put_snapshots(&[(id, meta)])))
}

/// Hands a walk kept whole to `sink`: files first, then trees (the order a streaming walk
/// keeps: nothing is handed over before what it names).
fn replay<S: Sink>(walked: Walked, sink: &S) -> std::result::Result<WalkSummary, S::Error> {
    use rayon::prelude::*;
    walked
        .files
        .into_par_iter()
        .try_for_each(|f| sink.file(f))?;
    walked
        .trees
        .into_par_iter()
        .try_for_each(|(id, tree)| sink.tree(id, tree))?;
    Ok(WalkSummary {
        root: walked.root,
        stats: walked.stats,
        relocated: walked.relocated,
        binary_with_prefix: walked.binary_with_prefix,
    })
}
