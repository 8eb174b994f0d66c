//! Pins and inspection: naming snapshots, listing them, showing one, comparing two, and the
//! store's statistics.
//!
//! Pins are files (`pins/<name>` holding the id) written by atomic rename: they are the truth,
//! and survive the loss of the index. The catalogue in redb is reconciled with `snapshots/` on
//! every listing, so it heals itself after a crash or a busy index.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use envstore_index::SnapshotMeta;
use envstore_link::LinkMode;
use envstore_tree::{ObjectId, SnapshotId};

use crate::store::files::Stored;
use crate::store::reach::TreeCache;
use crate::{Error, Result, Store};

/// A snapshot as `ls` and `show` see it.
#[derive(Debug, Clone)]
pub struct SnapshotInfo {
    pub id: SnapshotId,
    pub meta: SnapshotMeta,
    pub pins: Vec<String>,
    /// Whether `envs/<id>` exists.
    pub materialized: bool,
    /// Unix seconds of the last use (materialize, run, path), or of creation if never used.
    pub last_used: u64,
}

/// `show`'s extra detail.
#[derive(Debug, Clone)]
pub struct SnapshotDetail {
    pub info: SnapshotInfo,
    pub path: PathBuf,
    /// Bytes of the objects no other snapshot uses: what removing it would free.
    pub unique_bytes: u64,
    /// How the materialization was laid out, if known.
    pub link_mode: Option<String>,
}

impl StoreStats {
    /// Logical bytes per byte of distinct content (loose objects, plus chunks uncompressed):
    /// what deduplication saves.
    pub fn dedup_ratio(&self) -> f64 {
        ratio(self.logical_bytes, self.object_bytes + self.chunk_bytes)
    }

    /// Chunk bytes per pack byte: what zstd saves in the cold tier.
    pub fn compression_ratio(&self) -> f64 {
        ratio(self.chunk_bytes, self.pack_bytes)
    }

    /// Logical bytes per stored byte (loose objects plus packs): both together.
    pub fn total_ratio(&self) -> f64 {
        ratio(self.logical_bytes, self.object_bytes + self.pack_bytes)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 1.0 } else { a as f64 / b as f64 }
}

/// What `stats` reports.
#[derive(Debug, Clone, Default)]
pub struct StoreStats {
    pub snapshots: u64,
    pub materialized: u64,
    pub pins: u64,
    pub objects: u64,
    /// Bytes of the object files (both exec variants counted).
    pub object_bytes: u64,
    pub trees: u64,
    /// Sum of the snapshots' sizes: what they would take as plain copies.
    pub logical_bytes: u64,
    /// Blocks allocated under the store, each inode counted once.
    pub disk_bytes: u64,
    /// Snapshots in the cold tier, and their logical size.
    pub packed_snapshots: u64,
    pub packed_logical_bytes: u64,
    /// Pack files and their bytes on disk.
    pub packs: u64,
    pub pack_bytes: u64,
    /// Distinct chunks in packs, and their uncompressed bytes.
    pub chunks: u64,
    pub chunk_bytes: u64,
    /// Remote pack indexes cached in `remote-cache/`, and their bytes.
    pub remote_cache_files: u64,
    pub remote_cache_bytes: u64,
    /// Which link modes work on the store's file system.
    pub link_support: Vec<(LinkMode, std::result::Result<(), String>)>,
}

/// Every snapshot, newest first, from the index (reconciled with `snapshots/` first).
pub(crate) fn list(store: &Store) -> Result<Vec<SnapshotInfo>> {
    let records = catalogue(store)?;
    let mut pins: HashMap<SnapshotId, Vec<String>> = HashMap::new();
    for (name, id) in crate::catalog::pins::pins(store)? {
        pins.entry(id).or_default().push(name);
    }
    let mut out: Vec<SnapshotInfo> = records
        .into_iter()
        .map(|(id, meta)| SnapshotInfo {
            id,
            pins: pins.remove(&id).unwrap_or_default(),
            materialized: store.is_materialized(&id),
            last_used: crate::store::records::last_used(store, &id, &meta),
            meta,
        })
        .collect();
    out.sort_by(|a, b| b.meta.created.cmp(&a.meta.created).then(a.id.cmp(&b.id)));
    Ok(out)
}

/// The snapshot records, read through the index and repaired against `snapshots/` (the
/// truth): records missing from the index are added, stale ones removed. Without a usable
/// index (a read-only store, a damaged or busy index) the records are read directly. A
/// snapshot whose record cannot be read is listed with what its file's times say, and a
/// warning.
fn catalogue(store: &Store) -> Result<Vec<(SnapshotId, SnapshotMeta)>> {
    match store.open_index() {
        Ok(index) => catalogue_with(store, &index).or_else(|e| {
            store.warn(format!("{e}; listing from snapshots/ instead"));
            crate::store::records::records(store)
        }),
        Err(e) => {
            if store.is_writable() {
                store.warn(format!("{e}; listing from snapshots/ instead"));
            }
            crate::store::records::records(store)
        }
    }
}

fn catalogue_with(
    store: &Store,
    index: &envstore_index::Index,
) -> Result<Vec<(SnapshotId, SnapshotMeta)>> {
    let on_disk: HashSet<SnapshotId> = store.snapshot_ids()?.into_iter().collect();
    let mut records: BTreeMap<SnapshotId, SnapshotMeta> = match index.snapshots() {
        Ok(records) => records.into_iter().collect(),
        Err(_) => BTreeMap::new(), // damaged: rebuilt below
    };
    let stale: Vec<SnapshotId> = records
        .keys()
        .filter(|id| !on_disk.contains(id))
        .copied()
        .collect();
    let mut missing = Vec::new();
    let mut damaged = Vec::new();
    for id in on_disk.iter().filter(|id| !records.contains_key(id)) {
        match store.snapshot_meta(id) {
            Ok(meta) => missing.push((*id, meta)),
            // Not cached: listed from its file each time until repaired.
            Err(_) => damaged.push((*id, crate::store::records::snapshot_meta_or_warn(store, id))),
        }
    }
    records.extend(damaged);
    if !stale.is_empty() {
        index.remove_snapshots(&stale)?;
        for id in &stale {
            records.remove(id);
        }
    }
    if !missing.is_empty() {
        index.put_snapshots(&missing)?;
        records.extend(missing);
    }
    Ok(records.into_iter().collect())
}

/// Everything `show` prints about one snapshot.
pub(crate) fn show(store: &Store, id: &SnapshotId) -> Result<SnapshotDetail> {
    let meta = store.snapshot_meta(id)?;
    let pins = crate::catalog::pins::pins(store)?
        .into_iter()
        .filter(|(_, p)| p == id)
        .map(|(n, _)| n)
        .collect();
    let mut cache = TreeCache::default();
    let mut others: HashSet<ObjectId> = HashSet::new();
    let mut seen = HashSet::new();
    for other in store.snapshot_ids()?.iter().filter(|o| *o != id) {
        cache.walk_all(store, other.root(), &mut seen, &mut |o, _| {
            others.insert(o);
        })?;
    }
    let mut unique_bytes = 0;
    let mut mine = HashSet::new();
    cache.walk_all(store, id.root(), &mut HashSet::new(), &mut |o, size| {
        if !others.contains(&o) && mine.insert(o) {
            unique_bytes += size;
        }
    })?;
    // How it was laid out is a cache entry: unknown without a usable index.
    let link_mode = store
        .open_index()
        .ok()
        .and_then(|index| index.link_mode(id).ok().flatten());
    let materialized = store.is_materialized(id);
    Ok(SnapshotDetail {
        path: store.env_path(id),
        unique_bytes,
        link_mode: link_mode.filter(|_| materialized),
        info: SnapshotInfo {
            id: *id,
            last_used: crate::store::records::last_used(store, id, &meta),
            meta,
            pins,
            materialized,
        },
    })
}

/// Counts and sizes of everything in the store.
pub(crate) fn stats(store: &Store) -> Result<StoreStats> {
    let mut stats = StoreStats::default();
    for id in store.snapshot_ids()? {
        let meta = crate::store::records::snapshot_meta_or_warn(store, &id);
        stats.snapshots += 1;
        stats.logical_bytes += meta.bytes;
        stats.materialized += u64::from(store.is_materialized(&id));
        if meta.packed > 0 {
            stats.packed_snapshots += 1;
            stats.packed_logical_bytes += meta.bytes;
        }
    }
    let cold = crate::cold::packs::cold_totals(store).unwrap_or_default();
    (stats.packs, stats.pack_bytes) = (cold.packs, cold.pack_bytes);
    (stats.chunks, stats.chunk_bytes) = (cold.chunks, cold.chunk_bytes);
    stats.pins = crate::catalog::pins::pins(store)?.len() as u64;
    crate::store::files::for_each_stored(store, &mut |file| {
        match file.kind {
            Stored::Object(_) => {
                stats.objects += 1;
                stats.object_bytes += file.len;
            }
            Stored::Tree(_) => stats.trees += 1,
            Stored::Temp | Stored::Other | Stored::BadShard(_) => {}
        }
        Ok(())
    })?;
    stats.disk_bytes = disk_usage(store.root())?;
    (stats.remote_cache_files, stats.remote_cache_bytes) = crate::store::cache::size(store)?;
    stats.link_support = if store.is_writable() {
        envstore_link::probe(&store.root().join("tmp"))
    } else {
        Vec::new()
    };
    Ok(stats)
}

/// Allocated bytes below `root`, each inode once (hardlinks into objects/ are not counted twice).
fn disk_usage(root: &std::path::Path) -> Result<u64> {
    let mut seen = HashSet::new();
    let mut total = 0;
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue, // removed meanwhile
            Err(e) => return Err(Error::io("read", &dir)(e)),
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
            }
            if seen.insert((meta.dev(), meta.ino())) {
                total += meta.blocks() * 512;
            }
        }
    }
    Ok(total)
}
