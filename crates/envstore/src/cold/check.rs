//! Checking packs through (verify) and rewriting damaged ones (repair).

use std::collections::HashSet;
use std::path::PathBuf;

use envstore_index::ChunkLoc;
use envstore_pack::{BlockBuilder, Entry, EntryKind, PackReader, pack_path};
use envstore_tree::{ObjectId, PackId};
use rayon::prelude::*;

use crate::cold::packs::{flush_blocks, pack_err, written_chunks};
use crate::{Result, Store};

/// Damage found in packs by [`Store::check_packs`].
#[derive(Debug, Default)]
pub(crate) struct PackCheck {
    /// Damaged packs: path, what is wrong, and where damage starts in each bad block (or the
    /// offset from which nothing could be read).
    pub(crate) damaged: Vec<DamagedPack>,
    /// Packs on disk the index does not know.
    pub(crate) unindexed: Vec<PathBuf>,
    /// Packs the index knows that are gone.
    pub(crate) missing: Vec<PackId>,
    pub(crate) checked: u64,
}

#[derive(Debug)]
pub(crate) struct DamagedPack {
    pub(crate) id: PackId,
    pub(crate) path: PathBuf,
    pub(crate) reason: String,
    pub(crate) bad_blocks: HashSet<u64>,
    /// Blocks at or after this offset could not even be found.
    pub(crate) unreadable_from: Option<u64>,
}

impl PackCheck {
    /// Whether the chunk at `loc` can be read back intact.
    pub(crate) fn intact(&self, loc: &ChunkLoc) -> bool {
        if self.missing.contains(&loc.pack) {
            return false;
        }
        !self.damaged.iter().any(|d| {
            d.id == loc.pack
                && (d.bad_blocks.contains(&loc.block)
                    || d.unreadable_from.is_some_and(|from| loc.block >= from))
        })
    }
}

/// Reads every pack (or those in `only`) through: its bytes against its name, every block
/// against its checksum, every chunk against its id; and compares `packs/` with the index.
pub(crate) fn check_packs(store: &Store, only: Option<&HashSet<PackId>>) -> Result<PackCheck> {
    let mut check = PackCheck::default();
    let on_disk = crate::cold::packs::pack_files(store)?;
    if on_disk.is_empty() && !store.root().join("index.redb").exists() {
        return Ok(check);
    }
    // A broken index is verify's to report; here it just knows no packs.
    let indexed: HashSet<PackId> = store
        .open_index()
        .and_then(|index| Ok(index.packs()?))
        .unwrap_or_default()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let present: HashSet<PackId> = on_disk.iter().map(|(id, _)| *id).collect();
    check.missing = indexed.difference(&present).copied().collect();
    check.missing.sort();
    let results: Vec<Option<DamagedPack>> = on_disk
        .par_iter()
        .filter(|(id, _)| only.is_none_or(|o| o.contains(id)))
        .map(|(id, path)| check_pack(*id, path))
        .collect();
    for (id, path) in &on_disk {
        if !indexed.contains(id) {
            check.unindexed.push(path.clone());
        }
    }
    check.checked = results.len() as u64;
    check.damaged = results.into_iter().flatten().collect();
    Ok(check)
}

/// Replaces pack `pack` by a new pack holding the entries `keep` accepts (given the block's
/// offset, the entry's offset in the block and the entry), re-compressed; the new pack is
/// durable and indexed before the old one is forgotten and deleted. With `damaged`, blocks
/// the check found bad (and everything from where no block could be read) are left out;
/// without, any damage is an error. Returns the new pack's length (0 when nothing is kept).
pub(super) fn rewrite_pack(
    store: &Store,
    pack: PackId,
    keep: &dyn Fn(u64, u32, &Entry) -> bool,
    damaged: Option<&DamagedPack>,
) -> Result<u64> {
    let path = pack_path(&store.packs_dir(), &pack);
    let reader = match PackReader::open(&path) {
        Ok(reader) => Some(reader),
        Err(_) if damaged.is_some() => None,
        Err(e) => return Err(pack_err(e)),
    };
    let mut writer = None;
    let (mut chunks, mut recipes) = (BlockBuilder::default(), BlockBuilder::default());
    let mut new_recipes = Vec::new();
    let mut at = envstore_pack::PACK_MAGIC.len() as u64;
    while let Some(reader) = &reader {
        let readable = damaged.is_none_or(|d| d.unreadable_from.is_none_or(|from| at < from));
        if at >= reader.len() || !readable {
            break;
        }
        let header = reader.header_at(at).map_err(pack_err)?;
        at = header.end();
        if damaged.is_some_and(|d| d.bad_blocks.contains(&header.offset)) {
            continue;
        }
        let block = reader.block_at(header.offset).map_err(pack_err)?;
        for (offset, e) in block.header.placed() {
            if !keep(header.offset, offset, e) {
                continue;
            }
            let bytes = block.slice(offset, e.len).expect("a checked block");
            let builder = match e.kind {
                EntryKind::Chunk => &mut chunks,
                EntryKind::Recipe => {
                    new_recipes.push((ObjectId::from_bytes(e.id), bytes.to_vec()));
                    &mut recipes
                }
            };
            builder.push(e.kind, e.id, bytes);
            if builder.full() {
                let full = std::mem::take(builder);
                flush_blocks(store, &mut writer, vec![full])?;
            }
        }
    }
    let open: Vec<BlockBuilder> = [chunks, recipes]
        .into_iter()
        .filter(|b| !b.is_empty())
        .collect();
    flush_blocks(store, &mut writer, open)?;
    let index = store.open_index()?;
    let mut len = 0;
    if let Some(writer) = writer {
        let written = writer.finish().map_err(pack_err)?;
        len = written.len;
        index.add_pack(
            &written.id,
            written.len,
            &written_chunks(&written),
            &new_recipes,
        )?;
    }
    index.remove_packs(&[pack])?;
    drop(index);
    envstore_pack::remove_pack(&path).map_err(pack_err)?;
    Ok(len)
}

/// Mends packs: indexes unknown packs, forgets missing ones, and rewrites each damaged pack's
/// intact blocks into a new pack before deleting it. Returns what was done. The caller holds
/// the store lock exclusively.
pub(crate) fn repair_packs(store: &Store, check: &PackCheck) -> Result<Vec<String>> {
    let mut done = Vec::new();
    let added = crate::cold::packs::reconcile_packs(store)?;
    if added > 0 {
        done.push(format!("indexed {added} packs the index did not know"));
    }
    if !check.missing.is_empty() {
        done.push(format!("forgot {} missing packs", check.missing.len()));
    }
    for damaged in &check.damaged {
        rewrite_pack(store, damaged.id, &|_, _, _| true, Some(damaged))?;
        done.push(format!(
            "rewrote the intact blocks of {} and removed it",
            damaged.path.display()
        ));
    }
    Ok(done)
}

/// Checks one pack; `None` when it is intact.
fn check_pack(id: PackId, path: &std::path::Path) -> Option<DamagedPack> {
    let mut damaged = DamagedPack {
        id,
        path: path.to_owned(),
        reason: String::new(),
        bad_blocks: HashSet::new(),
        unreadable_from: None,
    };
    let reader = match PackReader::open(path) {
        Ok(r) => r,
        Err(e) => {
            damaged.reason = e.to_string();
            damaged.unreadable_from = Some(0);
            return Some(damaged);
        }
    };
    let mut reasons = Vec::new();
    let mut at = envstore_pack::PACK_MAGIC.len() as u64;
    while at < reader.len() {
        match reader.header_at(at) {
            Ok(header) => {
                if let Err(e) = reader.block_at(header.offset) {
                    reasons.push(e.to_string());
                    damaged.bad_blocks.insert(header.offset);
                }
                at = header.end();
            }
            Err(e) => {
                reasons.push(e.to_string());
                damaged.unreadable_from = Some(at);
                break;
            }
        }
    }
    if reasons.is_empty() {
        match reader.content_id() {
            Ok(actual) if actual == id => return None,
            Ok(_) => reasons.push(format!(
                "{} does not match its name (cut short?)",
                path.display()
            )),
            Err(e) => reasons.push(e.to_string()),
        }
    }
    damaged.reason = reasons.join("; ");
    Some(damaged)
}
