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
use std::time::SystemTime;

use envstore_index::SnapshotMeta;
use envstore_link::LinkMode;
use envstore_tree::diff::{self, Change};
use envstore_tree::{ObjectId, SnapshotId, Tree, TreeId};

use crate::gc::Stored;
use crate::reach::TreeCache;
use crate::{Error, Result, Source, Store};

/// Longest pin name.
const MAX_PIN_LEN: usize = 200;

/// Checks a pin name: letters, digits, `.`, `_`, `-`, `+`; not empty, not starting with `.`.
/// Anything else could name a path outside `pins/` (or a hidden temp file) and is refused.
pub fn validate_pin_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_PIN_LEN
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+'));
    if ok {
        Ok(())
    } else {
        Err(Error::BadPinName {
            name: name.to_owned(),
        })
    }
}

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
    /// Which link modes work on the store's file system.
    pub link_support: Vec<(LinkMode, std::result::Result<(), String>)>,
}

pub(crate) fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Store {
    fn pin_path(&self, name: &str) -> PathBuf {
        self.root().join("pins").join(name)
    }

    /// The snapshot a pin names, if the pin exists.
    pub fn pin_target(&self, name: &str) -> Result<Option<SnapshotId>> {
        if validate_pin_name(name).is_err() {
            return Ok(None);
        }
        let path = self.pin_path(name);
        match fs::read_to_string(&path) {
            Ok(text) => text
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| Error::BadPinFile { path }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("read", &path)(e)),
        }
    }

    /// Points pin `name` at SOURCE (a directory is stored first); returns the new and the
    /// previous target. Holds the store lock shared throughout, so a prune cannot remove the
    /// snapshot between storing and pinning.
    pub fn pin_source(
        &self,
        name: &str,
        spec: &str,
        filter: &envstore_walk::Filter,
    ) -> Result<(SnapshotId, Option<SnapshotId>)> {
        validate_pin_name(name)?;
        let _lock = self.lock_shared()?;
        let id = self.resolve_stored(spec, filter)?;
        Ok((id, self.pin(name, &id)?))
    }

    /// Points pin `name` at `id` (replacing what it pointed at); returns the previous target.
    pub fn pin(&self, name: &str, id: &SnapshotId) -> Result<Option<SnapshotId>> {
        validate_pin_name(name)?;
        let _lock = self.lock_shared()?;
        if !self.has_snapshot(id) {
            return Err(Error::UnknownSnapshot {
                prefix: id.to_hex(),
            });
        }
        let previous = self.pin_target(name)?;
        self.write_file_atomic(&self.pin_path(name), format!("{id}\n").as_bytes())?;
        Ok(previous)
    }

    /// Removes pin `name`; returns what it pointed at.
    pub fn unpin(&self, name: &str) -> Result<SnapshotId> {
        validate_pin_name(name)?;
        let Some(id) = self.pin_target(name)? else {
            return Err(Error::UnknownPin {
                name: name.to_owned(),
                near: self.near_pins(name)?,
            });
        };
        let path = self.pin_path(name);
        fs::remove_file(&path).map_err(Error::io("remove", &path))?;
        Ok(id)
    }

    /// Pin names close to `name` (edit distance, or containing it), closest first: for "did
    /// you mean" in errors.
    pub(crate) fn near_pins(&self, name: &str) -> Result<Vec<String>> {
        let mut near: Vec<(usize, String)> = self
            .pins()?
            .into_iter()
            .map(|(pin, _)| (strsim::levenshtein(name, &pin), pin))
            .filter(|(d, pin)| *d <= 2.max(name.len() / 3) || pin.contains(name))
            .collect();
        near.sort();
        Ok(near.into_iter().map(|(_, p)| p).take(5).collect())
    }

    /// Every pin, by name.
    pub fn pins(&self) -> Result<Vec<(String, SnapshotId)>> {
        let dir = self.root().join("pins");
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(Error::io("read", &dir))? {
            let entry = entry.map_err(Error::io("read", &dir))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if validate_pin_name(&name).is_err() {
                continue; // a temp file of a pin being written
            }
            if let Some(id) = self.pin_target(&name)? {
                out.push((name, id));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Records that snapshot `id` was used now: the mtime of its record `snapshots/<id>`.
    /// Cheap (one `open` and one `futimens`, no index); failures (a read-only store) are
    /// ignored. Prune keeps what was used within its window.
    pub fn touch(&self, id: &SnapshotId) {
        if let Ok(record) = fs::File::open(self.snapshot_file(id)) {
            let _ = record.set_modified(SystemTime::now());
        }
    }

    /// When snapshot `id` was last used (unix seconds): its record's mtime, which starts at its
    /// creation and moves with every use.
    pub fn last_used(&self, id: &SnapshotId, meta: &SnapshotMeta) -> u64 {
        fs::metadata(self.snapshot_file(id))
            .and_then(|m| m.modified())
            .map_or(meta.created, unix_secs)
    }

    /// Every snapshot, newest first, from the index (reconciled with `snapshots/` first).
    pub fn list(&self) -> Result<Vec<SnapshotInfo>> {
        let records = self.catalogue()?;
        let mut pins: HashMap<SnapshotId, Vec<String>> = HashMap::new();
        for (name, id) in self.pins()? {
            pins.entry(id).or_default().push(name);
        }
        let mut out: Vec<SnapshotInfo> = records
            .into_iter()
            .map(|(id, meta)| SnapshotInfo {
                id,
                pins: pins.remove(&id).unwrap_or_default(),
                materialized: self.is_materialized(&id),
                last_used: self.last_used(&id, &meta),
                meta,
            })
            .collect();
        out.sort_by(|a, b| b.meta.created.cmp(&a.meta.created).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// The snapshot records, read through the index and repaired against `snapshots/` (the
    /// truth): records missing from the index are added, stale ones removed.
    fn catalogue(&self) -> Result<Vec<(SnapshotId, SnapshotMeta)>> {
        let index = self.open_index()?;
        let on_disk: HashSet<SnapshotId> = self.snapshot_ids()?.into_iter().collect();
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
        for id in on_disk.iter().filter(|id| !records.contains_key(id)) {
            missing.push((*id, self.snapshot_meta(id)?));
        }
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
    pub fn show(&self, id: &SnapshotId) -> Result<SnapshotDetail> {
        let meta = self.snapshot_meta(id)?;
        let pins = self
            .pins()?
            .into_iter()
            .filter(|(_, p)| p == id)
            .map(|(n, _)| n)
            .collect();
        let mut cache = TreeCache::default();
        let mut others: HashSet<ObjectId> = HashSet::new();
        let mut seen = HashSet::new();
        for other in self.snapshot_ids()?.iter().filter(|o| *o != id) {
            cache.walk_all(self, other.root(), &mut seen, &mut |o, _| {
                others.insert(o);
            })?;
        }
        let mut unique_bytes = 0;
        let mut mine = HashSet::new();
        cache.walk_all(self, id.root(), &mut HashSet::new(), &mut |o, size| {
            if !others.contains(&o) && mine.insert(o) {
                unique_bytes += size;
            }
        })?;
        let link_mode = self.open_index()?.link_mode(id)?;
        let materialized = self.is_materialized(id);
        Ok(SnapshotDetail {
            path: self.env_path(id),
            unique_bytes,
            link_mode: link_mode.filter(|_| materialized),
            info: SnapshotInfo {
                id: *id,
                last_used: self.last_used(id, &meta),
                meta,
                pins,
                materialized,
            },
        })
    }

    /// The differences from `old` to `new`. Directories are hashed, not stored; subtrees with
    /// equal ids are skipped unread.
    pub fn diff(
        &self,
        old: &Source,
        new: &Source,
        filter: &envstore_walk::Filter,
    ) -> Result<Vec<Change>> {
        let mut walked: HashMap<TreeId, Tree> = HashMap::new();
        let mut root_of = |source: &Source| -> Result<TreeId> {
            Ok(match source {
                Source::Snapshot(id) => id.root(),
                Source::Dir(dir) => {
                    let w = envstore_walk::walk(dir, filter, Some(self.root()), None)?;
                    walked.extend(w.trees);
                    w.root
                }
            })
        };
        let (a, b) = (root_of(old)?, root_of(new)?);
        let mut lookup = |id: &TreeId| -> Result<Tree> {
            match walked.get(id) {
                Some(tree) => Ok(tree.clone()),
                None => Ok(self.trees().get(id)?),
            }
        };
        let (ta, tb) = (lookup(&a)?, lookup(&b)?);
        let mut changes = Vec::new();
        diff::diff(&ta, &tb, &mut lookup, &mut changes)?;
        Ok(changes)
    }

    /// Counts and sizes of everything in the store.
    pub fn stats(&self) -> Result<StoreStats> {
        let mut stats = StoreStats::default();
        for id in self.snapshot_ids()? {
            let meta = self.snapshot_meta(&id)?;
            stats.snapshots += 1;
            stats.logical_bytes += meta.bytes;
            stats.materialized += u64::from(self.is_materialized(&id));
            if meta.packed > 0 {
                stats.packed_snapshots += 1;
                stats.packed_logical_bytes += meta.bytes;
            }
        }
        let cold = self.cold_totals()?;
        (stats.packs, stats.pack_bytes) = (cold.packs, cold.pack_bytes);
        (stats.chunks, stats.chunk_bytes) = (cold.chunks, cold.chunk_bytes);
        stats.pins = self.pins()?.len() as u64;
        for file in self.stored_files()? {
            match file.kind {
                Stored::Object(_) => {
                    stats.objects += 1;
                    stats.object_bytes += file.len;
                }
                Stored::Tree(_) => stats.trees += 1,
                Stored::Temp | Stored::Other => {}
            }
        }
        stats.disk_bytes = disk_usage(self.root())?;
        stats.link_support = envstore_link::probe(&self.root().join("tmp"));
        Ok(stats)
    }
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
