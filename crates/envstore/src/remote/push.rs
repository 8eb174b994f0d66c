//! `push`: upload what a remote lacks (chunks and recipes in new packs, each pack before its
//! index), then publish the snapshot record last. A record on the remote therefore means every
//! pack it lists is complete; a killed push leaves only packs nobody lists, which the next push
//! reuses and `remote prune` removes after its grace period.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use envstore_remote::config::valid_name;
use envstore_remote::format::{self, Ref};
use envstore_remote::record::{Record, RecordHead, RecordWriter};
use envstore_remote::sign::SecretKey;
use envstore_remote::summary::Summary;
use envstore_tree::{PackId, SnapshotId};

use crate::remote::negotiate::{Shape, check_packs, negotiate};
use crate::remote::open::Remote;
use crate::remote::upload::Outgoing;
use crate::{Error, Result, Store};

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
    /// Files below directories the remote lacked whose objects it had already (in the base's
    /// packs, or by a large object's summary): found one by one, each occurrence counted.
    pub reused_objects: u64,
    /// Directories the remote had whole (skipped without looking inside), and the tree
    /// summaries asked for to find them.
    pub present_trees: u64,
    pub asked_trees: u64,
    /// Large files (in directories the remote lacked) it had, found by their summaries.
    pub present_objects: u64,
    /// Key records of this store naming the snapshot, published as `keys/<key>`.
    pub keys: u64,
    /// The ref published, and the key that signed it.
    pub ref_name: Option<String>,
    pub signed_by: Option<String>,
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
    let shape = Shape::load(store, id)?;
    remote.check_marker(true)?;
    // The base: what the snapshot last published under this name needs (an edited file's
    // unchanged chunks are there), and the snapshot itself when pushed before.
    let mut candidates = base_packs(remote, id, name)?;
    let tmp = tempfile::Builder::new()
        .prefix("push-")
        .tempdir_in(store.root().join("tmp"))
        .map_err(Error::io(
            "create a temporary directory in",
            &store.root().join("tmp"),
        ))?;
    let mut out = Outgoing::new(store, remote, tmp.path());
    let mut report = PushReport {
        id: *id,
        packs: Vec::new(),
        pack_bytes: 0,
        new_chunks: 0,
        new_chunk_bytes: 0,
        reused_objects: 0,
        present_trees: 0,
        asked_trees: 0,
        present_objects: 0,
        keys: 0,
        ref_name: None,
        signed_by: None,
    };
    let mut published = false;
    for _ in 0..ATTEMPTS {
        let uploaded: HashSet<PackId> = out.tally.packs.iter().copied().collect();
        candidates.extend(out.tally.packs.iter().copied());
        // `prune/marked` first, then the packs: a pack unmarked before it was seen present
        // stays for a grace period at least.
        let marked = marked_set(remote)?;
        let mut checked = HashMap::new();
        let found = negotiate(
            remote,
            &shape,
            &candidates,
            &marked,
            &uploaded,
            &mut checked,
        )?;
        report.asked_trees += found.asked;
        report.present_trees = found.present.len() as u64;
        report.present_objects = found.objects.len() as u64;
        let (summaries, needed) = out.upload_missing(&shape, &found)?;
        // Publish only when everything relied on is still there and unmarked.
        let uploaded: HashSet<PackId> = out.tally.packs.iter().copied().collect();
        let marked = marked_set(remote)?;
        let mut rechecked = HashMap::new();
        check_packs(
            remote,
            needed.iter().copied(),
            &marked,
            &uploaded,
            &mut rechecked,
        )?;
        let gone: Vec<PackId> = needed.iter().filter(|p| !rechecked[p]).copied().collect();
        if !gone.is_empty() {
            candidates.retain(|p| !gone.contains(p));
            continue;
        }
        // Summaries before the record: data first, the record that makes it visible last.
        for (of, packs) in summaries {
            remote
                .storage()
                .put(&of.key(), Summary { of, packs }.encode())?;
        }
        let head = RecordHead {
            files: meta.files,
            dirs: meta.dirs,
            symlinks: meta.symlinks,
            bytes: meta.bytes,
            packs: needed.into_iter().collect(),
            ..RecordHead::default()
        };
        let record = write_record(&shape, head, tmp.path())?;
        remote
            .storage()
            .put_file(&format::record_key(id), &record)?;
        let _ = std::fs::remove_file(&record);
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
    let tally = out.tally;
    report.packs = tally.packs;
    report.pack_bytes = tally.pack_bytes;
    report.new_chunks = tally.new_chunks;
    report.new_chunk_bytes = tally.new_chunk_bytes;
    report.reused_objects = tally.reused_objects;
    report.keys = crate::remote::keys::push_keys(store, remote, id, seq, key)?;
    if let Some(name) = name {
        let mut r = Ref::new(name, *id, seq);
        if let Some(key) = key {
            r.sign(key);
            report.signed_by = Some(key.name().to_owned());
        }
        remote.storage().put(&format::ref_key(name), r.encode())?;
        report.ref_name = Some(name.to_owned());
    }
    Ok(report)
}

fn marked_set(remote: &Remote) -> Result<HashSet<PackId>> {
    Ok(remote.marked()?.packs.iter().map(|p| p.0).collect())
}

/// The packs of what `name` names on the remote now, and of `id` if it was pushed before:
/// one or two small reads, sized by those snapshots. Missing or unreadable: none.
fn base_packs(remote: &Remote, id: &SnapshotId, name: Option<&str>) -> Result<Vec<PackId>> {
    let mut bases = vec![*id];
    if let Some(name) = name
        && let Some(bytes) = remote
            .storage()
            .get(&format::ref_key(name), format::MAX_REF)?
        && let Ok(r) = Ref::decode(&bytes, name)
        && r.snapshot != *id
    {
        bases.push(r.snapshot);
    }
    let mut packs = Vec::new();
    for base in bases {
        let Some(bytes) = remote
            .storage()
            .get(&format::record_key(&base), format::MAX_RECORD)?
        else {
            continue;
        };
        if let Ok(packs_of) = Record::pack_lines(&bytes) {
            packs.extend(packs_of);
        }
    }
    Ok(packs)
}

/// Writes the record of `shape` into a file in `dir` (the trees compressed one at a time,
/// then the text lines and the trees together) and returns its path: a large snapshot's
/// record is tens of megabytes, and memory must not follow it.
fn write_record(shape: &Shape, mut head: RecordHead, dir: &Path) -> Result<PathBuf> {
    let frame_path = dir.join("record-trees");
    let frame = File::create(&frame_path).map_err(Error::io("create", &frame_path))?;
    let mut out = RecordWriter::new(BufWriter::with_capacity(256 << 10, frame))
        .map_err(Error::io("write", &frame_path))?;
    shape.write_trees(&mut out)?;
    let frame = out
        .finish(&mut head)
        .map_err(Error::io("write", &frame_path))?
        .into_inner()
        .map_err(|e| Error::io("write", &frame_path)(e.into_error()))?;
    drop(frame);
    let path = dir.join("record");
    let mut record = File::create(&path).map_err(Error::io("create", &path))?;
    record
        .write_all(&head.encode())
        .map_err(Error::io("write", &path))?;
    let mut frame = File::open(&frame_path).map_err(Error::io("read", &frame_path))?;
    std::io::copy(&mut frame, &mut record).map_err(Error::io("write", &path))?;
    let _ = std::fs::remove_file(&frame_path);
    Ok(path)
}
