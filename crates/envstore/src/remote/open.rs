//! An open remote: its storage, marker, listing of packs, and the cache of its pack indexes.

use std::collections::HashMap;

use envstore_pack::{EntryKind, decode_recipe};
use envstore_remote::format::{self, Marked, PackIndex};
use envstore_remote::{Counters, RemoteError, RemoteUrl, Storage};
use envstore_tree::{ChunkId, ObjectId, PackId, SnapshotId};

use crate::{Error, Result, Store};

pub(crate) use crate::store::cache::CACHE_DIR;

/// An open remote.
#[derive(Debug)]
pub struct Remote {
    /// The configured name, or `None` for a URL given on the command line.
    pub name: Option<String>,
    pub url: RemoteUrl,
    storage: Box<dyn Storage>,
}

impl Remote {
    /// Opens `url` (nothing is contacted until it is used).
    pub fn open(url: &RemoteUrl, name: Option<&str>) -> Result<Remote> {
        Ok(Remote {
            name: name.map(str::to_owned),
            url: url.clone(),
            storage: envstore_remote::open(url)?,
        })
    }

    /// A remote over a given storage (tests wrap a real one to meddle with it).
    #[cfg(test)]
    pub(crate) fn with_storage(url: &RemoteUrl, storage: Box<dyn Storage>) -> Remote {
        Remote {
            name: None,
            url: url.clone(),
            storage,
        }
    }

    /// The name, or the URL (without password) when it has none.
    pub fn label(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.url.to_string())
    }

    /// Requests made and bytes moved so far.
    pub fn counters(&self) -> Counters {
        self.storage.counters()
    }

    pub(crate) fn storage(&self) -> &dyn Storage {
        &*self.storage
    }

    /// Refuses a remote that holds something else than envstore's layout, version 1.
    pub(super) fn check_marker(&self, create: bool) -> Result<()> {
        match self.storage.get(format::MARKER_KEY, 4096)? {
            Some(m) if m == format::MARKER => Ok(()),
            Some(m) => Err(Error::RemoteRefused {
                remote: self.label(),
                reason: format!(
                    "its {} file says {:?}, not {:?}: another envstore version, or not an \
                     envstore remote",
                    format::MARKER_KEY,
                    String::from_utf8_lossy(&m).trim(),
                    String::from_utf8_lossy(format::MARKER).trim()
                ),
            }),
            None if create => {
                self.storage
                    .put(format::MARKER_KEY, format::MARKER.to_vec())?;
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// The packs remote prune has marked for deletion.
    pub(super) fn marked(&self) -> Result<Marked> {
        match self.storage.get(format::MARKED_KEY, format::MAX_MARKED)? {
            None => Ok(Marked::default()),
            Some(bytes) => Marked::decode(&bytes).map_err(|e| self.refused(e.to_string())),
        }
    }

    /// Reads the records of `snapshots` a few at a time (memory follows the largest records,
    /// not the remote) and hands each one there to `f`; missing ones are skipped.
    pub(super) fn for_each_record<'a>(
        &self,
        snapshots: impl IntoIterator<Item = &'a SnapshotId>,
        mut f: impl FnMut(&SnapshotId, Vec<u8>) -> Result<()>,
    ) -> Result<()> {
        const BATCH: usize = 32;
        let snapshots: Vec<&SnapshotId> = snapshots.into_iter().collect();
        for batch in snapshots.chunks(BATCH) {
            let keys: Vec<String> = batch.iter().map(|id| format::record_key(id)).collect();
            let records = self.storage.get_many(&keys, format::MAX_RECORD)?;
            for (id, bytes) in batch.iter().zip(records) {
                if let Some(bytes) = bytes {
                    f(id, bytes)?;
                }
            }
        }
        Ok(())
    }

    /// A file in the store's `remote-cache/` about `key` on this remote (`kind-<hash of the
    /// remote's URL and the key>`): what this store remembers of that key.
    pub(super) fn memo_path(&self, store: &Store, kind: &str, key: &str) -> std::path::PathBuf {
        let of = format!("{}\0{key}", self.url.to_config_string());
        store
            .root()
            .join(CACHE_DIR)
            .join(format!("{kind}-{}", blake3::hash(of.as_bytes()).to_hex()))
    }

    pub(super) fn refused(&self, reason: String) -> Error {
        Error::RemoteRefused {
            remote: self.label(),
            reason,
        }
    }
}

/// What `packs/` of a remote holds: complete packs (a pack and its index) and the rest.
#[derive(Debug, Default)]
pub(crate) struct PackListing {
    /// Packs with both files, with the pack's size and modification time.
    pub(crate) complete: HashMap<PackId, (u64, i64)>,
    /// Files of incomplete packs (a pack without its index or the reverse): key, size, time.
    pub(crate) partial: Vec<(String, u64, i64)>,
}

impl Remote {
    pub(crate) fn list_packs(&self) -> Result<PackListing> {
        // Each pack's .pack and .idx files: (size, time).
        type Files = (Option<(u64, i64)>, Option<(u64, i64)>);
        let mut packs: HashMap<PackId, Files> = HashMap::new();
        let mut listing = PackListing::default();
        for f in self.storage.list("packs")? {
            let parsed = f
                .name
                .strip_suffix(".pack")
                .map(|h| (h, true))
                .or_else(|| f.name.strip_suffix(".idx").map(|h| (h, false)));
            match parsed.and_then(|(h, is_pack)| Some((h.parse::<PackId>().ok()?, is_pack))) {
                Some((id, true)) => packs.entry(id).or_default().0 = Some((f.size, f.modified)),
                Some((id, false)) => packs.entry(id).or_default().1 = Some((f.size, f.modified)),
                None => listing
                    .partial
                    .push((format!("packs/{}", f.name), f.size, f.modified)),
            }
        }
        for (id, files) in packs {
            match files {
                (Some(pack), Some(_)) => {
                    listing.complete.insert(id, pack);
                }
                (Some((size, time)), None) => {
                    listing.partial.push((format::pack_key(&id), size, time))
                }
                (None, Some((size, time))) => {
                    listing.partial.push((format::index_key(&id), size, time))
                }
                (None, None) => {}
            }
        }
        Ok(listing)
    }
}

/// Indexes fetched at once: they are read one pack at a time so memory follows the largest
/// index (a few MiB at most: a push closes a pack at 65,536 entries), not the snapshot.
const INDEX_BATCH: usize = 4;

/// Hands the index of each of `packs` on `remote` to `f`, one at a time: from the cache,
/// else fetched (a few at once), checked and cached.
pub(super) fn for_each_pack_index(
    store: &Store,
    remote: &Remote,
    packs: &[PackId],
    mut f: impl FnMut(&PackId, PackIndex) -> Result<()>,
) -> Result<()> {
    let dir = store.root().join(CACHE_DIR);
    let mut fetch = Vec::new();
    for id in packs {
        let path = dir.join(format!("{id}.idx"));
        match envstore_fs::read_bounded(&path, format::MAX_INDEX)
            .ok()
            .and_then(|b| PackIndex::decode(&b, id).ok())
        {
            Some(idx) => {
                crate::store::cache::touch(&path);
                f(id, idx)?;
            }
            None => fetch.push(*id),
        }
    }
    for batch in fetch.chunks(INDEX_BATCH) {
        let keys: Vec<String> = batch.iter().map(format::index_key).collect();
        let fetched = remote.storage.get_many(&keys, format::MAX_INDEX)?;
        for (id, bytes) in batch.iter().zip(fetched) {
            let Some(bytes) = bytes else {
                return Err(Error::RemoteMissing {
                    remote: remote.label(),
                    what: format!("the index of pack {id} (removed meanwhile? retry)"),
                });
            };
            let idx = PackIndex::decode(&bytes, id).map_err(|e| remote.refused(e.to_string()))?;
            if store.is_writable() {
                let _ = store.write_file_atomic(&dir.join(format!("{id}.idx")), &bytes);
            }
            drop(bytes);
            f(id, idx)?;
        }
    }
    Ok(())
}

/// One entry of a pack index.
pub(super) enum Indexed {
    /// A chunk, in the block of `len` bytes at `offset`.
    Chunk { id: ChunkId, offset: u64, len: u64 },
    /// A chunked object's recipe: its size and chunks, `None` when it does not decode.
    Recipe {
        object: ObjectId,
        recipe: Option<(u64, Vec<ChunkId>)>,
    },
}

/// The entries of `index`, in order.
pub(super) fn index_entries(index: &PackIndex) -> impl Iterator<Item = Indexed> + '_ {
    index.blocks.iter().flat_map(|block| {
        let mut recipes = block.recipes.iter();
        block.entries.iter().map(move |e| match e.kind {
            EntryKind::Chunk => Indexed::Chunk {
                id: ChunkId::from_bytes(e.id),
                offset: block.offset,
                len: block.len,
            },
            EntryKind::Recipe => Indexed::Recipe {
                object: ObjectId::from_bytes(e.id),
                recipe: recipes.next().and_then(|r| decode_recipe(r)),
            },
        })
    })
}

impl From<RemoteError> for Error {
    fn from(e: RemoteError) -> Error {
        Error::Remote(e)
    }
}

impl From<envstore_remote::UrlError> for Error {
    fn from(e: envstore_remote::UrlError) -> Error {
        Error::BadRemoteUrl(e)
    }
}
