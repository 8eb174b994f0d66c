//! `pull`: bring a snapshot from a remote into the store, fetching only the chunks the store
//! lacks, and checking everything against its hash before it enters the store: trees against
//! their ids, fetched blocks against their checksums and every chunk against its id (in a
//! temporary pack outside the store's packs), and every object against its id as it is
//! written. The record comes last, so a refused or interrupted pull leaves no snapshot.

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use envstore_index::SnapshotMeta;
use envstore_pack::{EntryKind, decode_recipe};
use envstore_remote::config::valid_name;
use envstore_remote::format::{self, Record, Ref};
use envstore_tree::{ChunkId, EntryKind as TreeEntry, ObjectId, PackId, SnapshotId, Tree, TreeId};

use crate::remote::blocks::{BATCH, Brought, RemoteChunks, bring};
use crate::remote::open::Remote;
use crate::store::files::unix_secs;
use crate::{Error, Result, Store};

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

impl PullReport {
    fn of(id: &SnapshotId, already: bool, b: Brought) -> PullReport {
        PullReport {
            id: *id,
            already,
            objects: b.objects,
            object_bytes: b.object_bytes,
            blocks: b.blocks,
            fetched_bytes: b.fetched_bytes,
            fetched_chunks: b.fetched_chunks,
            local_chunks: b.local_chunks,
        }
    }
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
    let seen_path = remote.memo_path(store, "ref", key);
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
    if store.has_snapshot(id) {
        crate::store::records::touch(store, id);
        return Ok(PullReport::of(id, true, Brought::default()));
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
    drop(bytes);
    let checked = check_trees(store, remote, id, record.trees)?;

    // Where the remote keeps each chunk (sized once: this map grows with the snapshot).
    let indexes = crate::remote::open::pack_indexes(store, remote, &record.packs)?;
    let packs: Vec<PackId> = indexes.keys().copied().collect();
    let count = indexes
        .values()
        .flat_map(|idx| &idx.blocks)
        .flat_map(|b| &b.entries)
        .filter(|e| e.kind == EntryKind::Chunk)
        .count();
    let mut chunks = RemoteChunks {
        packs,
        chunk_at: HashMap::with_capacity(count),
        recipes: HashMap::new(),
    };
    for (n, pack) in chunks.packs.iter().enumerate() {
        for block in &indexes[pack].blocks {
            let mut r = block.recipes.iter();
            let len = u32::try_from(block.len)
                .map_err(|_| remote.refused(format!("a block of pack {pack} is too long")))?;
            for e in &block.entries {
                match e.kind {
                    EntryKind::Chunk => {
                        chunks
                            .chunk_at
                            .insert(ChunkId::from_bytes(e.id), (n as u32, len, block.offset));
                    }
                    EntryKind::Recipe => {
                        if let Some(recipe) = r.next().and_then(|b| decode_recipe(b)) {
                            chunks.recipes.insert(ObjectId::from_bytes(e.id), recipe);
                        }
                    }
                }
            }
        }
    }
    drop(indexes);
    let tmp = tempfile::Builder::new()
        .prefix("pull-")
        .tempdir_in(store.root().join("tmp"))
        .map_err(Error::io(
            "create a temporary directory in",
            &store.root().join("tmp"),
        ))?;
    let mut brought = Brought::default();
    // What the store lacks, a batch at a time (an object written by one batch is found in
    // the store by the next, so one needed both plain and executable is written once).
    for batch in checked.needs.chunks(BATCH) {
        let mut seen = HashSet::new();
        let missing: Vec<(ObjectId, bool, u64)> = batch
            .iter()
            .filter(|(o, _, _)| !store.objects().contains(o) && seen.insert(*o))
            .copied()
            .collect();
        bring(
            store,
            remote,
            id,
            &missing,
            &chunks,
            tmp.path(),
            &mut brought,
        )?;
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
    mark_used(store, remote, id);
    Ok(PullReport::of(id, false, brought))
}

/// How often one store tells a remote it pulled a snapshot.
const USED_EVERY: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Tells `remote` that snapshot `id` was just pulled (`used/<id>`, whose time `remote prune`
/// reads), so a budget removes what nobody pulls before what everybody does. At most once a
/// day per store, and best effort: a read-only identity's refusal is not an error of the pull.
fn mark_used(store: &Store, remote: &Remote, id: &SnapshotId) {
    let key = format::used_key(id);
    let seen = remote.memo_path(store, "used", &key);
    let recent = std::fs::metadata(&seen)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t.elapsed().is_ok_and(|age| age < USED_EVERY));
    if recent {
        return;
    }
    if remote
        .storage()
        .put(&key, format::USED_MARKER.to_vec())
        .is_ok()
    {
        let _ = store.write_file_atomic(&seen, b"");
    }
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
