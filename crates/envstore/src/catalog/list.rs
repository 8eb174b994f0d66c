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
use envstore_tree::{ObjectId, SnapshotId};

use crate::store::files::Stored;
use crate::store::reach::TreeCache;
use crate::{Error, Result, Store};

/// Longest pin name.
const MAX_PIN_LEN: usize = 200;
/// A pin file holds one id and a newline; a little slack for editors.
const MAX_PIN_FILE: u64 = 256;

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

/// Every pin in `pins/`: the readable ones by name, and the damaged ones with the reason.
#[derive(Debug, Default)]
pub(crate) struct PinList {
    pub(crate) good: Vec<(String, SnapshotId)>,
    pub(crate) damaged: Vec<(String, String)>,
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

use crate::store::files::unix_secs;

impl Store {
    fn pin_path(&self, name: &str) -> PathBuf {
        self.root().join("pins").join(name)
    }

    /// What pin `name` holds: `None` when there is no such pin, else its target or why it
    /// cannot be read. Read without following a link or blocking on a fifo, and bounded: a pin
    /// replaced by a link to `/dev/zero` or by a huge file is damaged, not a hang.
    pub(crate) fn read_pin(&self, name: &str) -> Result<Option<Result<SnapshotId, String>>> {
        let path = self.pin_path(name);
        match envstore_fs::read_bounded(&path, MAX_PIN_FILE) {
            Ok(bytes) => Ok(Some(
                std::str::from_utf8(&bytes)
                    .ok()
                    .and_then(|text| text.trim().parse().ok())
                    .ok_or_else(|| "it does not hold a snapshot id".to_owned()),
            )),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotADirectory => Ok(None),
            Err(e) => Ok(Some(Err(e.to_string()))),
        }
    }

    /// The snapshot a pin names, if the pin exists; a damaged pin is an error saying how to
    /// replace or remove it.
    pub fn pin_target(&self, name: &str) -> Result<Option<SnapshotId>> {
        if validate_pin_name(name).is_err() {
            return Ok(None);
        }
        match self.read_pin(name)? {
            None => Ok(None),
            Some(Ok(id)) => Ok(Some(id)),
            Some(Err(reason)) => Err(Error::DamagedPin {
                name: name.to_owned(),
                reason,
            }),
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

    /// Points pin `name` at `id` (replacing what it pointed at, a damaged pin included);
    /// returns the previous target.
    pub fn pin(&self, name: &str, id: &SnapshotId) -> Result<Option<SnapshotId>> {
        validate_pin_name(name)?;
        self.require_writable("pin")?;
        let _lock = self.lock_shared()?;
        if !self.has_snapshot(id) {
            return Err(Error::UnknownSnapshot {
                prefix: id.to_hex(),
            });
        }
        let previous = self.read_pin(name)?.and_then(Result::ok);
        self.write_file_atomic(&self.pin_path(name), format!("{id}\n").as_bytes())?;
        Ok(previous)
    }

    /// Removes pin `name`; returns what it pointed at (`Err` with the reason for a damaged
    /// pin, which is removed all the same: never through a link).
    pub fn unpin(&self, name: &str) -> Result<Result<SnapshotId, String>> {
        validate_pin_name(name)?;
        let Some(target) = self.read_pin(name)? else {
            return Err(Error::UnknownPin {
                name: name.to_owned(),
                near: self.near_pins(name)?,
            });
        };
        self.require_writable("unpin")?;
        let path = self.pin_path(name);
        envstore_fs::remove_all(&path).map_err(Error::io("remove", &path))?;
        Ok(target)
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

    /// Every readable pin, by name. A damaged pin is left out with a warning (see
    /// [`Store::take_warnings`]): one bad pin must not stop `ls` or `prune` for the store.
    pub fn pins(&self) -> Result<Vec<(String, SnapshotId)>> {
        let PinList { good, damaged } = self.all_pins()?;
        for (name, reason) in damaged {
            self.warn(format!(
                "pin {name} is damaged ({reason}); `envstore pin {name} SOURCE` replaces it, \
                 `envstore unpin {name}` removes it"
            ));
        }
        Ok(good)
    }

    /// Every pin: the readable ones, and the damaged ones with the reason.
    pub(crate) fn all_pins(&self) -> Result<PinList> {
        let dir = self.root().join("pins");
        let mut list = PinList::default();
        for entry in fs::read_dir(&dir).map_err(Error::io("read", &dir))? {
            let entry = entry.map_err(Error::io("read", &dir))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if validate_pin_name(&name).is_err() {
                continue; // a temp file of a pin being written
            }
            match self.read_pin(&name)? {
                Some(Ok(id)) => list.good.push((name, id)),
                Some(Err(reason)) => list.damaged.push((name, reason)),
                None => {}
            }
        }
        list.good.sort();
        list.damaged.sort();
        Ok(list)
    }

    /// Records that snapshot `id` was used now: the mtime of its record `snapshots/<id>`.
    /// Cheap (one `open` and one `futimens`, no index); failures (a read-only store) are
    /// ignored. Prune keeps what was used within its window.
    pub fn touch(&self, id: &SnapshotId) {
        // Never through a link: that would move the mtime of a file outside the store.
        if let Ok((record, _)) = envstore_fs::open_regular(&self.snapshot_file(id)) {
            let _ = record.set_modified(SystemTime::now());
        }
    }

    /// When snapshot `id` was last used (unix seconds): its record's mtime, which starts at its
    /// creation and moves with every use.
    pub fn last_used(&self, id: &SnapshotId, meta: &SnapshotMeta) -> u64 {
        fs::symlink_metadata(self.snapshot_file(id))
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
    /// truth): records missing from the index are added, stale ones removed. Without a usable
    /// index (a read-only store, a damaged or busy index) the records are read directly. A
    /// snapshot whose record cannot be read is listed with what its file's times say, and a
    /// warning.
    fn catalogue(&self) -> Result<Vec<(SnapshotId, SnapshotMeta)>> {
        match self.open_index() {
            Ok(index) => self.catalogue_with(&index).or_else(|e| {
                self.warn(format!("{e}; listing from snapshots/ instead"));
                self.records()
            }),
            Err(e) => {
                if self.is_writable() {
                    self.warn(format!("{e}; listing from snapshots/ instead"));
                }
                self.records()
            }
        }
    }

    /// Every snapshot's record, read from `snapshots/`; a damaged one gets a placeholder
    /// record (and a warning).
    pub(crate) fn records(&self) -> Result<Vec<(SnapshotId, SnapshotMeta)>> {
        Ok(self
            .snapshot_ids()?
            .into_iter()
            .map(|id| (id, self.snapshot_meta_or_warn(&id)))
            .collect())
    }

    /// The record of `id`, or, when it cannot be read, a placeholder whose times come from the
    /// record file (with a warning naming the repair).
    pub(crate) fn snapshot_meta_or_warn(&self, id: &SnapshotId) -> SnapshotMeta {
        self.snapshot_meta(id).unwrap_or_else(|e| {
            self.warn(format!("{e}; `envstore verify --repair` rewrites it"));
            let created = fs::symlink_metadata(self.snapshot_file(id))
                .and_then(|m| m.modified())
                .map_or(0, unix_secs);
            SnapshotMeta {
                created,
                source: "(damaged record)".to_owned(),
                ..SnapshotMeta::default()
            }
        })
    }

    fn catalogue_with(
        &self,
        index: &envstore_index::Index,
    ) -> Result<Vec<(SnapshotId, SnapshotMeta)>> {
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
        let mut damaged = Vec::new();
        for id in on_disk.iter().filter(|id| !records.contains_key(id)) {
            match self.snapshot_meta(id) {
                Ok(meta) => missing.push((*id, meta)),
                // Not cached: listed from its file each time until repaired.
                Err(_) => damaged.push((*id, self.snapshot_meta_or_warn(id))),
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
        // How it was laid out is a cache entry: unknown without a usable index.
        let link_mode = self
            .open_index()
            .ok()
            .and_then(|index| index.link_mode(id).ok().flatten());
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

    /// Counts and sizes of everything in the store.
    pub fn stats(&self) -> Result<StoreStats> {
        let mut stats = StoreStats::default();
        for id in self.snapshot_ids()? {
            let meta = self.snapshot_meta_or_warn(&id);
            stats.snapshots += 1;
            stats.logical_bytes += meta.bytes;
            stats.materialized += u64::from(self.is_materialized(&id));
            if meta.packed > 0 {
                stats.packed_snapshots += 1;
                stats.packed_logical_bytes += meta.bytes;
            }
        }
        let cold = self.cold_totals().unwrap_or_default();
        (stats.packs, stats.pack_bytes) = (cold.packs, cold.pack_bytes);
        (stats.chunks, stats.chunk_bytes) = (cold.chunks, cold.chunk_bytes);
        stats.pins = self.pins()?.len() as u64;
        self.for_each_stored(&mut |file| {
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
        stats.disk_bytes = disk_usage(self.root())?;
        stats.link_support = if self.is_writable() {
            envstore_link::probe(&self.root().join("tmp"))
        } else {
            Vec::new()
        };
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
