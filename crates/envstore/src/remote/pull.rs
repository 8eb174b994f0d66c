//! `pull`: bring a snapshot from a remote into the store, fetching only the chunks the store
//! lacks, and checking everything against its hash before it enters the store: trees against
//! their ids, fetched blocks against their checksums and every chunk against its id (in a
//! temporary pack outside the store's packs), and every object against its id as it is
//! written. The record comes last, so a refused or interrupted pull leaves no snapshot.

use std::collections::{HashMap, HashSet};
use std::io::Write as _;
use std::time::SystemTime;

use envstore_index::{ChunkLoc, SnapshotMeta};
use envstore_pack::{EntryKind, PACK_MAGIC, PackReader, decode_recipe, pack_path};
use envstore_remote::config::valid_name;
use envstore_remote::format::{self, Record, Ref};
use envstore_tree::{ChunkId, EntryKind as TreeEntry, ObjectId, PackId, SnapshotId, Tree, TreeId};

use crate::cold::packs::{cold_lookup, pack_err};
use crate::cold::rehydrate::Plan;
use crate::remote::open::{CACHE_DIR, Remote};
use crate::store::files::unix_secs;
use crate::{Error, Result, Store};

/// The temporary pack's id in a plan (no real pack hashes to it).
const INCOMING: PackId = PackId::from_bytes([0xff; 32]);
/// The most one request asks for (neighbouring blocks are fetched together up to this);
/// what comes back is streamed to disk, so this bounds the time of a request, not memory.
const MAX_RANGE: u64 = 16 << 20;

/// What `pull` did.
#[derive(Debug, Clone)]
pub struct PullReport {
    pub id: SnapshotId,
    /// The store had the snapshot already; nothing was fetched.
    pub already: bool,
    /// Objects written, and their bytes.
    pub objects: u64,
    pub object_bytes: u64,
    /// Blocks fetched, their bytes, and the chunks in them.
    pub blocks: u64,
    pub fetched_bytes: u64,
    pub fetched_chunks: u64,
    /// Chunks taken from the store's own packs instead.
    pub local_chunks: u64,
}

/// A snapshot's trees, checked, and what it needs: distinct (object, exec) pairs with sizes.
struct Checked {
    trees: HashMap<TreeId, Tree>,
    needs: Vec<(ObjectId, bool, u64)>,
    meta: SnapshotMeta,
}

/// The ref `name` on `remote`, checked against the trusted keys when the store has any,
/// and against the newest signed ref of that name this store has seen (no replays).
pub(crate) fn remote_ref(store: &Store, remote: &Remote, name: &str) -> Result<Ref> {
    if !valid_name(name) {
        return Err(Error::BadRemoteName { name: name.into() });
    }
    remote_name(store, remote, &format::ref_key(name), name)?.ok_or_else(|| Error::RemoteMissing {
        remote: remote.label(),
        what: format!(
            "ref `{name}` (`envstore remote ls {}` lists them)",
            remote.label()
        ),
    })
}

/// A name on `remote` (a ref, or a key's mapping) stored at `key`, checked as
/// [`crate::Store::remote_ref`] says; `None` when there is none.
pub(super) fn remote_name(
    store: &Store,
    remote: &Remote,
    key: &str,
    name: &str,
) -> Result<Option<Ref>> {
    let Some(bytes) = remote.storage().get(key, format::MAX_REF)? else {
        return Ok(None);
    };
    let r = Ref::decode(&bytes, name).map_err(|e| remote.refused(e.to_string()))?;
    let trusted = crate::remote::config::remote_config(store)?.trusted_keys;
    if trusted.is_empty() {
        return Ok(Some(r));
    }
    let untrusted = |reason: String| Error::UntrustedRef {
        remote: remote.label(),
        name: name.to_owned(),
        reason,
    };
    r.check(&trusted).map_err(untrusted)?;
    let seen_path = store.root().join(CACHE_DIR).join(format!(
        "ref-{}",
        blake3::hash(format!("{}\0{key}", remote.url.to_config_string()).as_bytes()).to_hex()
    ));
    let seen = envstore_fs::read_bounded(&seen_path, 64)
        .ok()
        .and_then(|b| String::from_utf8(b).ok()?.trim().parse::<u64>().ok());
    if let Some(seen) = seen
        && r.seq < seen
    {
        return Err(untrusted(format!(
            "it is older (seq {}) than a signed ref of that name this store has seen (seq \
             {seen}): a replayed ref",
            r.seq
        )));
    }
    if store.is_writable() {
        let _ = store.write_file_atomic(&seen_path, format!("{}\n", r.seq).as_bytes());
    }
    Ok(Some(r))
}

/// Pulls snapshot `id` from `remote`.
pub(crate) fn pull(store: &Store, remote: &Remote, id: &SnapshotId) -> Result<PullReport> {
    store.require_writable("pull into it")?;
    let _lock = store.lock_shared()?;
    let mut report = PullReport {
        id: *id,
        already: false,
        objects: 0,
        object_bytes: 0,
        blocks: 0,
        fetched_bytes: 0,
        fetched_chunks: 0,
        local_chunks: 0,
    };
    if store.has_snapshot(id) {
        report.already = true;
        crate::store::records::touch(store, id);
        return Ok(report);
    }
    let bytes = remote
        .storage()
        .get(&format::record_key(id), format::MAX_RECORD)?
        .ok_or_else(|| Error::RemoteMissing {
            remote: remote.label(),
            what: format!("snapshot {id}"),
        })?;
    remote.check_marker(false)?;
    let record = Record::decode(&bytes, id).map_err(|e| remote.refused(e.to_string()))?;
    let checked = check_trees(store, remote, id, record.trees)?;

    // What the store lacks, and which of that its own packs can rebuild.
    let missing: Vec<(ObjectId, bool, u64)> = checked
        .needs
        .iter()
        .filter(|(o, _, _)| !store.objects().contains(o))
        .copied()
        .collect();
    let mut seen = HashSet::new();
    let missing: Vec<_> = missing
        .into_iter()
        .filter(|(o, _, _)| seen.insert(*o))
        .collect();
    let index = store.open_index()?;
    let local = cold_lookup(&index, &missing.iter().map(|m| m.0).collect::<Vec<_>>())?;
    let mut plan: Plan = Vec::new();
    let mut remote_objects = Vec::new();
    for ((object, executable, size), locs) in missing.into_iter().zip(local) {
        match locs {
            Some(locs) => plan.push((object, executable, locs)),
            None => remote_objects.push((object, executable, size)),
        }
    }

    // Their chunks: from the store's packs where it has them, else fetched.
    let indexes = crate::remote::open::pack_indexes(store, remote, &record.packs)?;
    let mut chunk_at: HashMap<ChunkId, (PackId, u64, u64)> = HashMap::new();
    let mut recipes: HashMap<ObjectId, (u64, Vec<ChunkId>)> = HashMap::new();
    for (pack, idx) in &indexes {
        for block in &idx.blocks {
            let mut r = block.recipes.iter();
            for e in &block.entries {
                match e.kind {
                    EntryKind::Chunk => {
                        chunk_at
                            .insert(ChunkId::from_bytes(e.id), (*pack, block.offset, block.len));
                    }
                    EntryKind::Recipe => {
                        if let Some(recipe) = r.next().and_then(|b| decode_recipe(b)) {
                            recipes.insert(ObjectId::from_bytes(e.id), recipe);
                        }
                    }
                }
            }
        }
    }
    let mut object_chunks = Vec::with_capacity(remote_objects.len());
    for (object, _, size) in &remote_objects {
        let chunks = match recipes.get(object) {
            Some((recipe_size, chunks)) if recipe_size == size => chunks.clone(),
            Some(_) => {
                return Err(remote.refused(format!(
                    "the recipe of object {object} has another size than its trees say"
                )));
            }
            None => vec![ChunkId::from(*object)],
        };
        object_chunks.push(chunks);
    }
    let all: Vec<ChunkId> = object_chunks.iter().flatten().copied().collect();
    let local_locs = index.chunk_locs(&all)?;
    drop(index);
    let mut have: HashMap<ChunkId, ChunkLoc> = HashMap::new();
    let mut blocks = Vec::new();
    for (chunk, loc) in all.iter().zip(local_locs) {
        if have.contains_key(chunk) {
            continue;
        }
        match loc {
            Some(loc) => {
                report.local_chunks += 1;
                have.insert(*chunk, loc);
            }
            None => match chunk_at.get(chunk) {
                Some(at) => blocks.push(*at),
                None => {
                    return Err(remote.refused(format!(
                        "the packs snapshot {id} lists do not hold chunk {chunk}"
                    )));
                }
            },
        }
    }
    blocks.sort();
    blocks.dedup();
    let tmp = tempfile::Builder::new()
        .prefix("pull-")
        .tempdir_in(store.root().join("tmp"))
        .map_err(Error::io(
            "create a temporary directory in",
            &store.root().join("tmp"),
        ))?;
    let incoming_path = tmp.path().join("incoming.pack");
    let fetched = fetch_blocks(remote, &blocks, &incoming_path, &mut report)?;
    let mut readers = HashMap::new();
    // Every chunk of the fetched blocks, checked: the store keeps them (below).
    let mut incoming = Vec::new();
    if !fetched.is_empty() {
        let reader = PackReader::open(&incoming_path).map_err(pack_err)?;
        for (offset, pack, at) in fetched {
            // Header, checksum and every chunk's id: a block that fails is refused whole.
            let block = reader.block_at(offset).map_err(|e| {
                let why = match e {
                    envstore_pack::PackError::Corrupt { reason, .. } => reason,
                    other => other.to_string(),
                };
                remote.refused(format!("the block at byte {at} of pack {pack}: {why}"))
            })?;
            for (at, e) in block.header.placed() {
                if e.kind == EntryKind::Chunk {
                    let loc = ChunkLoc {
                        pack: INCOMING,
                        block: offset,
                        offset: at,
                        len: e.len,
                    };
                    have.entry(ChunkId::from_bytes(e.id)).or_insert(loc);
                    incoming.push((ChunkId::from_bytes(e.id), loc));
                }
            }
        }
        readers.insert(INCOMING, reader);
    }
    for ((object, executable, _), chunks) in remote_objects.iter().zip(object_chunks) {
        let locs = chunks
            .iter()
            .map(|c| {
                have.get(c).copied().ok_or_else(|| {
                    remote.refused(format!(
                        "a fetched block does not hold chunk {c}, which its pack index lists"
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        plan.push((*object, *executable, locs));
    }
    for (_, _, locs) in &plan {
        for loc in locs {
            if let std::collections::hash_map::Entry::Vacant(e) = readers.entry(loc.pack) {
                let path = pack_path(&store.packs_dir(), &loc.pack);
                e.insert(PackReader::open(&path).map_err(pack_err)?);
            }
        }
    }
    report.fetched_chunks = have.values().filter(|l| l.pack == INCOMING).count() as u64;
    let (objects, bytes) = crate::cold::rehydrate::write_from_packs(store, &plan, &readers)
        .map_err(|e| match e {
            Error::Object(e) => remote.refused(format!("an object did not rebuild: {e}")),
            other => other,
        })?;
    report.objects = objects;
    report.object_bytes = bytes;
    drop(readers);
    if !incoming.is_empty() {
        // Kept as a pack of the store: a later pull of a snapshot sharing these chunks (an
        // edited large file) fetches none of them again. A cache: failing to keep it fails
        // nothing.
        if let Err(e) = crate::cold::packs::adopt_pack(store, &incoming_path, &incoming) {
            store.warn(format!("could not keep the fetched blocks as a pack: {e}"));
        }
    }
    for (object, executable, _) in &checked.needs {
        store.objects().ensure_variant(object, *executable)?;
    }
    for tree in checked.trees.values() {
        store.trees().insert(tree)?;
    }
    let mut meta = checked.meta;
    meta.source = format!("pulled from {}", remote.url);
    store.write_file_atomic(&store.snapshot_file(id), meta.to_text().as_bytes())?;
    let _ = store.update_index(|index| index.put_snapshots(&[(*id, meta)]));
    Ok(report)
}

/// Checks the record's trees against their ids and that, with the store's own trees, they
/// are every tree snapshot `id` needs; counts what it holds.
fn check_trees(
    store: &Store,
    remote: &Remote,
    id: &SnapshotId,
    sent: Vec<(TreeId, Vec<u8>)>,
) -> Result<Checked> {
    let mut trees = HashMap::new();
    for (tid, bytes) in sent {
        let tree = Tree::decode(&bytes)
            .map_err(|e| remote.refused(format!("tree {tid} does not decode: {e}")))?;
        if tree.id() != tid || tree.encode() != bytes {
            return Err(remote.refused(format!("tree {tid} does not match its id")));
        }
        trees.insert(tid, tree);
    }
    let mut meta = SnapshotMeta {
        created: unix_secs(SystemTime::now()),
        files: 0,
        dirs: 0,
        symlinks: 0,
        bytes: 0,
        source: String::new(),
        packed: 0,
    };
    let mut needs = Vec::new();
    let mut pairs = HashSet::new();
    let mut local = HashMap::new();
    let mut stack = vec![id.root()];
    while let Some(tid) = stack.pop() {
        meta.dirs += 1;
        let tree = match trees.get(&tid) {
            Some(t) => t,
            None if store.trees().contains(&tid) => {
                local.insert(tid, store.trees().get(&tid)?);
                &local[&tid]
            }
            None => {
                return Err(remote.refused(format!(
                    "the record of {id} lacks tree {tid}, which the snapshot needs"
                )));
            }
        };
        for entry in tree.entries() {
            match &entry.kind {
                TreeEntry::File {
                    object,
                    size,
                    executable,
                    ..
                } => {
                    meta.files += 1;
                    meta.bytes += size;
                    if pairs.insert((*object, *executable)) {
                        needs.push((*object, *executable, *size));
                    }
                }
                TreeEntry::Dir { tree } => stack.push(*tree),
                TreeEntry::Symlink { .. } => meta.symlinks += 1,
            }
        }
    }
    Ok(Checked { trees, needs, meta })
}

/// Fetches `blocks` (pack, offset, length; sorted) into a temporary pack at `path`,
/// coalescing neighbours into one range and streaming what comes back to disk.
/// Returns each block's offset in the temporary pack, with its pack and offset there.
fn fetch_blocks(
    remote: &Remote,
    blocks: &[(PackId, u64, u64)],
    path: &std::path::Path,
    report: &mut PullReport,
) -> Result<Vec<(u64, PackId, u64)>> {
    if blocks.is_empty() {
        return Ok(Vec::new());
    }
    // (pack, start, end, blocks in it)
    let mut ranges: Vec<(PackId, u64, u64, Vec<u64>)> = Vec::new();
    for &(pack, offset, len) in blocks {
        match ranges.last_mut() {
            Some((p, start, end, lens))
                if *p == pack && *end == offset && *end - *start + len <= MAX_RANGE =>
            {
                *end += len;
                lens.push(len);
            }
            _ => ranges.push((pack, offset, offset + len, vec![len])),
        }
    }
    let mut file = std::fs::File::create(path).map_err(Error::io("create", path))?;
    file.write_all(PACK_MAGIC)
        .map_err(Error::io("write", path))?;
    let mut at = PACK_MAGIC.len() as u64;
    let mut offsets = Vec::new();
    for (pack, start, _, lens) in &ranges {
        let mut there = *start;
        for len in lens {
            offsets.push((at, *pack, there));
            at += len;
            there += len;
            report.blocks += 1;
        }
    }
    let requests: Vec<(String, std::ops::Range<u64>)> = ranges
        .iter()
        .map(|(p, s, e, _)| (format::pack_key(p), *s..*e))
        .collect();
    remote
        .storage()
        .get_ranges_into(&requests, &file, PACK_MAGIC.len() as u64)?;
    report.fetched_bytes += at - PACK_MAGIC.len() as u64;
    Ok(offsets)
}
