//! Which pack holds each chunk, for a push: the chunks of the base's packs, and those this push
//! already wrote. Both grow with the files moved (a million small files are a million chunks),
//! so the newest entries are kept in a small map and the rest in a table on disk, merged into
//! it whenever the map fills: a lookup is one map probe and at most one positioned read.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use envstore_idset::{Table, TableBuilder};
use envstore_tree::ChunkId;

use crate::{Error, Result};

/// Entries kept in memory before they are merged into the table: a map this full stays
/// within 65,536 buckets (about 2.5 MiB).
const RECENT: usize = 57_344;

/// Chunk id to a pack's slot (see `upload::Slots`).
pub(super) struct Homes {
    dir: PathBuf,
    cap: usize,
    recent: HashMap<ChunkId, u32>,
    sealed: Table<36>,
}

impl Homes {
    /// Spills its table into anonymous files in `dir`.
    pub(super) fn new(dir: &Path) -> Homes {
        Homes {
            dir: dir.to_owned(),
            cap: envstore_idset::buffer().min(RECENT),
            recent: HashMap::new(),
            sealed: Table::default(),
        }
    }

    /// The slot of the pack holding `chunk`, if any.
    pub(super) fn get(&self, chunk: &ChunkId) -> Result<Option<u32>> {
        if let Some(slot) = self.recent.get(chunk) {
            return Ok(Some(*slot));
        }
        let found = self
            .sealed
            .get(chunk.as_bytes())
            .map_err(Error::io("read a temporary table in", &self.dir))?;
        Ok(found.map(|r| u32::from_le_bytes(r[32..].try_into().expect("4 bytes"))))
    }

    /// Records that `slot` holds `chunk` (the first slot recorded for a chunk stays).
    pub(super) fn insert(&mut self, chunk: ChunkId, slot: u32) -> Result<()> {
        self.recent.entry(chunk).or_insert(slot);
        if self.recent.len() >= self.cap {
            self.seal()?;
        }
        Ok(())
    }

    /// Merges the map into the table.
    fn seal(&mut self) -> Result<()> {
        let err = |e: std::io::Error| Error::io("write a temporary table in", &self.dir)(e);
        let sealed = std::mem::take(&mut self.sealed);
        let mut builder = TableBuilder::from_table(sealed, &self.dir, self.cap).map_err(err)?;
        for (chunk, slot) in self.recent.drain() {
            builder
                .insert(chunk.as_bytes(), &slot.to_le_bytes())
                .map_err(err)?;
        }
        self.sealed = builder.finish().map_err(err)?;
        Ok(())
    }
}
