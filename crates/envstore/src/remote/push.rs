//! `push`: upload what a remote lacks (chunks and recipes in new packs, each pack before its
//! index), then publish the snapshot record last. A record on the remote therefore means every
//! pack it lists is complete; a killed push leaves only packs nobody lists, which the next push
//! reuses and `remote prune` removes after its grace period.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use envstore_pack::{BlockBuilder, EntryKind, PackWriter, decode_recipe, encode_recipe};
use envstore_remote::config::valid_name;
use envstore_remote::format::{self, IndexBlock, PackIndex, Record, Ref};
use envstore_remote::sign::SecretKey;
use envstore_tree::{ChunkId, EntryKind as TreeEntry, ObjectId, PackId, SnapshotId, TreeId};

use crate::cold::packs::pack_err;
use crate::remote::open::{CACHE_DIR, Remote};
use crate::{Error, Result, Store};

/// Remote packs are closed at this size: small enough to upload in one request and to prune
/// finely, large enough that a push makes few requests.
const PACK_TARGET: u64 = 32 << 20;
/// Objects at least this large are read as a stream (as `pack` does).
const STREAM_OBJECT: u64 = 16 << 20;
/// Tries before giving up when a concurrent `remote prune` keeps taking packs away.
const ATTEMPTS: u32 = 4;

/// What `push` did.
#[derive(Debug, Clone)]
pub struct PushReport {
    pub id: SnapshotId,
    /// Packs uploaded, and their bytes.
    pub packs: Vec<PackId>,
    pub pack_bytes: u64,
    /// Chunks uploaded (new to the remote) and their uncompressed bytes.
    pub new_chunks: u64,
    pub new_chunk_bytes: u64,
    /// Objects the remote had already.
    pub reused_objects: u64,
    /// Key records of this store naming the snapshot, published as `keys/<key>`.
    pub keys: u64,
    /// The ref published, and the key that signed it.
    pub ref_name: Option<String>,
    pub signed_by: Option<String>,
}

/// A snapshot's trees (encoded) and distinct objects (id, exec bit of first use, size), in
/// tree order.
type Parts = (Vec<(TreeId, Vec<u8>)>, Vec<(ObjectId, bool, u64)>);

fn snapshot_parts(store: &Store, id: &SnapshotId) -> Result<Parts> {
    let mut trees = Vec::new();
    let mut objects = Vec::new();
    let mut seen_trees = HashSet::new();
    let mut seen_objects = HashSet::new();
    let mut stack = vec![id.root()];
    while let Some(tid) = stack.pop() {
        if !seen_trees.insert(tid) {
            continue;
        }
        let tree = store.trees().get(&tid)?;
        for entry in tree.entries() {
            match &entry.kind {
                TreeEntry::File {
                    object,
                    size,
                    executable,
                    ..
                } => {
                    if seen_objects.insert(*object) {
                        objects.push((*object, *executable, *size));
                    }
                }
                TreeEntry::Dir { tree } => stack.push(*tree),
                TreeEntry::Symlink { .. } => {}
            }
        }
        trees.push((tid, tree.encode()));
    }
    Ok((trees, objects))
}

/// Uploads snapshot `id` to `remote` and publishes it; with `name`, also the ref `name`
/// (signed with `key` when given).
pub(crate) fn push(
    store: &Store,
    remote: &Remote,
    id: &SnapshotId,
    name: Option<&str>,
    key: Option<&SecretKey>,
) -> Result<PushReport> {
    if let Some(name) = name
        && !valid_name(name)
    {
        return Err(Error::BadRemoteName { name: name.into() });
    }
    let _lock = store.lock_shared()?;
    let meta = store.snapshot_meta(id)?;
    if meta.packed > 0 {
        store.require_writable("rehydrate the packed snapshot it pushes")?;
        crate::cold::rehydrate::ensure_loose(store, id)?;
    }
    let (trees, objects) = snapshot_parts(store, id)?;
    remote.check_marker(true)?;
    let tmp = tempfile::Builder::new()
        .prefix("push-")
        .tempdir_in(store.root().join("tmp"))
        .map_err(Error::io(
            "create a temporary directory in",
            &store.root().join("tmp"),
        ))?;
    let mut out = Outgoing {
        store,
        remote,
        dir: tmp.path().to_owned(),
        writer: None,
        block: BlockBuilder::default(),
        recipes: HashMap::new(),
        new_chunks: HashSet::new(),
        report: PushReport {
            id: *id,
            packs: Vec::new(),
            pack_bytes: 0,
            new_chunks: 0,
            new_chunk_bytes: 0,
            reused_objects: 0,
            keys: 0,
            ref_name: None,
            signed_by: None,
        },
    };
    let mut published = false;
    for _ in 0..ATTEMPTS {
        let uploaded: HashSet<PackId> = out.report.packs.iter().copied().collect();
        let listing = remote.list_packs()?;
        let marked: HashSet<PackId> = remote.marked()?.packs.iter().map(|p| p.0).collect();
        // Never rely on a pack remote prune has marked (unless this push wrote it).
        let usable: Vec<PackId> = listing
            .complete
            .keys()
            .filter(|p| !marked.contains(p) || uploaded.contains(p))
            .copied()
            .collect();
        let held = Held::from(crate::remote::open::pack_indexes(store, remote, &usable)?);
        out.new_chunks.clear();
        out.report.reused_objects = 0;
        let mut needed = BTreeSet::new();
        for (object, executable, size) in &objects {
            if let Some(packs) = held.object(object) {
                needed.extend(packs);
                out.report.reused_objects += 1;
                continue;
            }
            out.add_object(*object, *executable, *size, &held, &mut needed)?;
        }
        out.finish_pack()?;
        needed.extend(out.report.packs.iter().copied());
        // Publish only when everything the record lists is there and unmarked.
        let listing = remote.list_packs()?;
        let marked: HashSet<PackId> = remote.marked()?.packs.iter().map(|p| p.0).collect();
        let uploaded: HashSet<PackId> = out.report.packs.iter().copied().collect();
        let intact = needed.iter().all(|p| {
            listing.complete.contains_key(p) && (!marked.contains(p) || uploaded.contains(p))
        });
        if !intact {
            continue;
        }
        let record = Record {
            files: meta.files,
            dirs: meta.dirs,
            symlinks: meta.symlinks,
            bytes: meta.bytes,
            packs: needed.into_iter().collect(),
            trees: trees.clone(),
        };
        let bytes = record
            .encode()
            .map_err(Error::io("compress the trees of", Path::new(&id.to_hex())))?;
        remote.storage().put(&format::record_key(id), bytes)?;
        published = true;
        break;
    }
    if !published {
        return Err(Error::RemoteMissing {
            remote: remote.label(),
            what: format!(
                "stable packs for {id}: {ATTEMPTS} tries found packs it relies on removed or \
                 marked by a concurrent `remote prune`; retry the push"
            ),
        });
    }
    let seq = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    out.report.keys = crate::remote::keys::push_keys(store, remote, id, seq, key)?;
    if let Some(name) = name {
        let mut r = Ref::new(name, *id, seq);
        if let Some(key) = key {
            r.sign(key);
            out.report.signed_by = Some(key.name().to_owned());
        }
        remote.storage().put(&format::ref_key(name), r.encode())?;
        out.report.ref_name = Some(name.to_owned());
    }
    Ok(out.report)
}

/// What the remote holds, from its pack indexes: each chunk's pack, each recipe.
struct Held {
    chunks: HashMap<ChunkId, PackId>,
    recipes: HashMap<ObjectId, (PackId, Vec<ChunkId>)>,
}

impl From<HashMap<PackId, PackIndex>> for Held {
    fn from(indexes: HashMap<PackId, PackIndex>) -> Held {
        let mut held = Held {
            chunks: HashMap::new(),
            recipes: HashMap::new(),
        };
        for (pack, idx) in indexes {
            for block in idx.blocks {
                let mut recipes = block.recipes.into_iter();
                for e in block.entries {
                    match e.kind {
                        EntryKind::Chunk => {
                            held.chunks.insert(ChunkId::from_bytes(e.id), pack);
                        }
                        EntryKind::Recipe => {
                            let chunks = recipes
                                .next()
                                .and_then(|r| decode_recipe(&r))
                                .map(|(_, c)| c)
                                .unwrap_or_default();
                            held.recipes
                                .insert(ObjectId::from_bytes(e.id), (pack, chunks));
                        }
                    }
                }
            }
        }
        held
    }
}

impl Held {
    /// The packs that hold everything to rebuild `object`, when the remote has it all.
    fn object(&self, object: &ObjectId) -> Option<Vec<PackId>> {
        if let Some(pack) = self.chunks.get(&ChunkId::from(*object)) {
            return Some(vec![*pack]);
        }
        let (pack, chunks) = self.recipes.get(object)?;
        let mut packs = vec![*pack];
        for c in chunks {
            packs.push(*self.chunks.get(c)?);
        }
        Some(packs)
    }
}

/// The packs a push is writing and uploading.
struct Outgoing<'s> {
    store: &'s Store,
    remote: &'s Remote,
    dir: PathBuf,
    writer: Option<PackWriter>,
    block: BlockBuilder,
    /// Recipe bytes of the pack being written (the index carries them).
    recipes: HashMap<[u8; 32], Vec<u8>>,
    /// Chunks already in a pack of this attempt.
    new_chunks: HashSet<ChunkId>,
    report: PushReport,
}

impl Outgoing<'_> {
    /// Reads a local object (checking it against its id), cuts it, and queues what the remote
    /// lacks.
    fn add_object(
        &mut self,
        object: ObjectId,
        executable: bool,
        size: u64,
        held: &Held,
        needed: &mut BTreeSet<PackId>,
    ) -> Result<()> {
        let path = self.store.objects().require(&object, executable)?;
        let (file, meta) = envstore_fs::open_regular(&path).map_err(Error::io("read", &path))?;
        let damaged = || Error::DamagedObject { path: path.clone() };
        if meta.len() != size {
            return Err(damaged());
        }
        let mut hasher = blake3::Hasher::new();
        let mut chunks = Vec::new();
        let mut queue = |this: &mut Self, chunk: &[u8]| -> Result<()> {
            hasher.update(chunk);
            let cid = ChunkId::from(blake3::hash(chunk));
            chunks.push(cid);
            if let Some(pack) = held.chunks.get(&cid) {
                needed.insert(*pack);
            } else if this.new_chunks.insert(cid) {
                this.report.new_chunks += 1;
                this.report.new_chunk_bytes += chunk.len() as u64;
                this.add(EntryKind::Chunk, *cid.as_bytes(), chunk)?;
            }
            Ok(())
        };
        // Cut exactly as `pack` does (small objects whole, large ones streamed), so a chunk
        // has one id everywhere and a pull can use the chunks a store has in its own packs.
        if size < STREAM_OBJECT {
            let mut data = Vec::with_capacity(size as usize);
            std::io::Read::read_to_end(&mut std::io::Read::take(file, size + 1), &mut data)
                .map_err(Error::io("read", &path))?;
            for range in envstore_pack::cut(&data) {
                queue(self, &data[range])?;
            }
        } else {
            for chunk in envstore_pack::cut_stream(BufReader::with_capacity(1 << 20, file)) {
                queue(self, &chunk.map_err(Error::io("read", &path))?)?;
            }
        }
        if ObjectId::from(hasher.finalize()) != object {
            return Err(damaged());
        }
        if chunks.len() > 1 {
            let recipe = encode_recipe(size, &chunks);
            self.recipes.insert(*object.as_bytes(), recipe.clone());
            self.add(EntryKind::Recipe, *object.as_bytes(), &recipe)?;
        }
        Ok(())
    }

    /// Queues an entry; a full block is sealed, and a full pack uploaded even in the middle
    /// of an object, so neither grows with the largest file.
    fn add(&mut self, kind: EntryKind, id: [u8; 32], bytes: &[u8]) -> Result<()> {
        self.block.push(kind, id, bytes);
        if self.block.full() {
            self.seal()?;
            if self.writer.as_ref().is_some_and(|w| w.len() >= PACK_TARGET) {
                self.finish_pack()?;
            }
        }
        Ok(())
    }

    fn seal(&mut self) -> Result<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        let block = std::mem::take(&mut self.block)
            .encode()
            .map_err(Error::io("compress a block for", &self.dir))?;
        let writer = match &mut self.writer {
            Some(w) => w,
            None => self
                .writer
                .insert(PackWriter::create(&self.dir).map_err(pack_err)?),
        };
        writer.append(block).map_err(pack_err)?;
        Ok(())
    }

    /// Closes the pack being written and uploads it, then its index.
    fn finish_pack(&mut self) -> Result<Option<PackId>> {
        self.seal()?;
        let Some(writer) = self.writer.take() else {
            return Ok(None);
        };
        let written = writer.finish().map_err(pack_err)?;
        let ends: Vec<u64> = written
            .blocks
            .iter()
            .skip(1)
            .map(|(offset, _)| *offset)
            .chain([written.len])
            .collect();
        let blocks = written
            .blocks
            .iter()
            .zip(ends)
            .map(|((offset, entries), end)| IndexBlock {
                offset: *offset,
                len: end - offset,
                entries: entries.clone(),
                recipes: entries
                    .iter()
                    .filter(|e| e.kind == EntryKind::Recipe)
                    .map(|e| self.recipes.get(&e.id).cloned().unwrap_or_default())
                    .collect(),
            })
            .collect();
        let index = PackIndex {
            pack: written.id,
            len: written.len,
            blocks,
        }
        .encode();
        let bytes = std::fs::read(&written.path).map_err(Error::io("read", &written.path))?;
        self.remote
            .storage()
            .put(&format::pack_key(&written.id), bytes)?;
        self.remote
            .storage()
            .put(&format::index_key(&written.id), index.clone())?;
        let _ = std::fs::remove_file(&written.path);
        if self.store.is_writable() {
            let cache = self.store.root().join(CACHE_DIR);
            let _ = self
                .store
                .write_file_atomic(&cache.join(format!("{}.idx", written.id)), &index);
        }
        self.recipes.clear();
        self.report.packs.push(written.id);
        self.report.pack_bytes += written.len;
        Ok(Some(written.id))
    }
}
