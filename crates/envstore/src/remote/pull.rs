//! `pull`: bring a snapshot from a remote into the store, fetching only the chunks the store
//! lacks, and checking everything against its hash before it enters the store: trees against
//! their ids, fetched blocks against their checksums and every chunk against its id (in a
//! temporary pack outside the store's packs), and every object against its id as it is
//! written. The record comes last, so a refused or interrupted pull leaves no snapshot.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufReader, Seek as _};

use envstore_remote::config::valid_name;
use envstore_remote::format::{self, Ref};
use envstore_remote::record::RecordHead;
use envstore_tree::{ObjectId, SnapshotId};

use crate::remote::blocks::{BATCH, Brought, RemoteChunks, bring};
use crate::remote::incoming::Received;
use crate::remote::open::Remote;
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
    let tmp = tempfile::Builder::new()
        .prefix("pull-")
        .tempdir_in(store.root().join("tmp"))
        .map_err(Error::io(
            "create a temporary directory in",
            &store.root().join("tmp"),
        ))?;
    // The record, streamed to disk and read back a tree at a time: it grows with the files.
    let record_path = tmp.path().join("record");
    let file = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&record_path)
        .map_err(Error::io("create", &record_path))?;
    let len = remote
        .storage()
        .get_into(&format::record_key(id), &file, format::MAX_RECORD)?
        .ok_or_else(|| Error::RemoteMissing {
            remote: remote.label(),
            what: format!("snapshot {id}"),
        })?;
    remote.check_marker(false)?;
    let mut reader = BufReader::with_capacity(64 << 10, &file);
    let head = RecordHead::read(&mut reader, id).map_err(|e| remote.refused(e.to_string()))?;
    let text_len = reader
        .stream_position()
        .map_err(Error::io("read", &record_path))?;
    let trees = head
        .trees(reader, len.saturating_sub(text_len), id)
        .map_err(|e| remote.refused(e.to_string()))?;
    let received = Received::receive(remote, trees, &tmp.path().join("trees"))?;
    drop(file);
    let _ = std::fs::remove_file(&record_path);

    let chunks = RemoteChunks::build(store, remote, &head.packs, tmp.path())?;
    let mut brought = Brought::default();
    // What the store lacks, a batch at a time, in the order of the trees (an object written
    // by one batch is found in the store by the next, so one needed twice is written once).
    let mut batch: Vec<(ObjectId, bool, u64)> = Vec::with_capacity(BATCH);
    let mut flush = |batch: &mut Vec<(ObjectId, bool, u64)>| -> Result<()> {
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
        for (object, executable, _) in batch.drain(..) {
            store.objects().ensure_variant(&object, executable)?;
        }
        Ok(())
    };
    let mut meta = received.walk(store, remote, id, |object, executable, size| {
        batch.push((object, executable, size));
        if batch.len() >= BATCH {
            flush(&mut batch)?;
        }
        Ok(())
    })?;
    flush(&mut batch)?;
    received.store_trees(store)?;
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
