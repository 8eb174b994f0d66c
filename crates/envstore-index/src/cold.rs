//! The chunk index: where each chunk is, which chunks make each multi-chunk object, and which
//! packs exist. All of it is read from the packs themselves (their block headers and recipe
//! entries), so it can be rebuilt; a pack is added only after it is durable under its name.

use envstore_tree::{ChunkId, ObjectId, PackId};
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::{Index, IndexError};

/// chunk id -> [`ChunkLoc`] (48 bytes).
const CHUNKS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("chunks");
/// object id -> pack id (32 bytes) then the recipe bytes (size, chunk ids).
const RECIPES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("recipes");
/// pack id -> its length in bytes.
const PACKS: TableDefinition<&[u8], u64> = TableDefinition::new("packs");

/// Where a chunk's bytes are: a block of a pack, and a range of that block's raw bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChunkLoc {
    pub pack: PackId,
    /// Offset of the block in the pack.
    pub block: u64,
    /// Offset and length in the block's decompressed bytes.
    pub offset: u32,
    pub len: u32,
}

impl ChunkLoc {
    fn encode(&self) -> [u8; 48] {
        let mut out = [0u8; 48];
        out[..32].copy_from_slice(self.pack.as_bytes());
        out[32..40].copy_from_slice(&self.block.to_le_bytes());
        out[40..44].copy_from_slice(&self.offset.to_le_bytes());
        out[44..48].copy_from_slice(&self.len.to_le_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Option<ChunkLoc> {
        let bytes: &[u8; 48] = bytes.try_into().ok()?;
        Some(ChunkLoc {
            pack: PackId::from_bytes(bytes[..32].try_into().ok()?),
            block: u64::from_le_bytes(bytes[32..40].try_into().ok()?),
            offset: u32::from_le_bytes(bytes[40..44].try_into().ok()?),
            len: u32::from_le_bytes(bytes[44..48].try_into().ok()?),
        })
    }
}

/// Counts for `stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ColdTotals {
    pub packs: u64,
    pub pack_bytes: u64,
    pub chunks: u64,
    /// Sum of the chunks' uncompressed lengths.
    pub chunk_bytes: u64,
    pub recipes: u64,
}

/// A multi-chunk object as recorded: the pack its recipe is in, and the recipe bytes.
type RecipeRow = (PackId, Vec<u8>);

fn bad(what: &str) -> IndexError {
    IndexError::BadRecord {
        id: what.to_owned(),
        reason: "malformed chunk index entry".to_owned(),
    }
}

fn id32(bytes: &[u8]) -> Result<[u8; 32], IndexError> {
    bytes.try_into().map_err(|_| bad("key"))
}

fn decode_loc(value: &[u8]) -> Result<ChunkLoc, IndexError> {
    ChunkLoc::decode(value).ok_or_else(|| bad("chunk location"))
}

fn decode_recipe_row(value: &[u8]) -> Result<RecipeRow, IndexError> {
    let pack = id32(value.get(..32).ok_or_else(|| bad("recipe"))?)?;
    Ok((PackId::from_bytes(pack), value[32..].to_vec()))
}

macro_rules! read_table {
    ($self:ident, $txn:ident, $def:expr, $empty:expr) => {
        match $txn.open_table($def) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok($empty),
            Err(e) => return Err(($self.db_err())(e.into())),
        }
    };
}

/// A visitor of raw index rows: key and value.
type RowFn<'a> = dyn FnMut([u8; 32], &[u8]) -> Result<(), IndexError> + 'a;

impl Index {
    /// Records a durable pack: its length, the chunks in it and the recipes in it, in one
    /// transaction. A chunk already indexed elsewhere now points here (the newest copy wins).
    pub fn add_pack(
        &self,
        pack: &PackId,
        len: u64,
        chunks: &[(ChunkId, ChunkLoc)],
        recipes: &[(ObjectId, Vec<u8>)],
    ) -> Result<(), IndexError> {
        self.guarded(|| {
            let err = self.db_err();
            let txn = self.db.begin_write().map_err(|e| err(e.into()))?;
            {
                let mut packs = txn.open_table(PACKS).map_err(|e| err(e.into()))?;
                packs
                    .insert(&pack.as_bytes()[..], len)
                    .map_err(|e| err(e.into()))?;
                let mut table = txn.open_table(CHUNKS).map_err(|e| err(e.into()))?;
                // In key order: each leaf of a large table is then written once, not once per
                // chunk (ids are random, and the page cache is small).
                let mut sorted: Vec<&(ChunkId, ChunkLoc)> = chunks.iter().collect();
                sorted.sort_unstable_by_key(|(id, _)| *id.as_bytes());
                for (id, loc) in sorted {
                    table
                        .insert(&id.as_bytes()[..], &loc.encode()[..])
                        .map_err(|e| err(e.into()))?;
                }
                let mut table = txn.open_table(RECIPES).map_err(|e| err(e.into()))?;
                for (id, recipe) in recipes {
                    let mut value = pack.as_bytes().to_vec();
                    value.extend_from_slice(recipe);
                    table
                        .insert(&id.as_bytes()[..], &value[..])
                        .map_err(|e| err(e.into()))?;
                }
            }
            txn.commit().map_err(|e| err(e.into()))
        })
    }

    /// Forgets packs, with every chunk and recipe entry that points into them (entries that
    /// point to another copy stay), in one transaction. Chunk locations and recipe rows both
    /// start with their pack's id.
    pub fn remove_packs(&self, packs: &[PackId]) -> Result<(), IndexError> {
        self.guarded(|| {
            let err = self.db_err();
            let gone = |value: &[u8]| {
                packs
                    .iter()
                    .any(|p| value.get(..32) == Some(&p.as_bytes()[..]))
            };
            let txn = self.db.begin_write().map_err(|e| err(e.into()))?;
            {
                let mut table = txn.open_table(PACKS).map_err(|e| err(e.into()))?;
                for pack in packs {
                    table
                        .remove(&pack.as_bytes()[..])
                        .map_err(|e| err(e.into()))?;
                }
                for def in [CHUNKS, RECIPES] {
                    let mut table = txn.open_table(def).map_err(|e| err(e.into()))?;
                    table
                        .retain(|_, value| !gone(value))
                        .map_err(|e| err(e.into()))?;
                }
            }
            txn.commit().map_err(|e| err(e.into()))
        })
    }

    /// Every indexed pack and its length.
    pub fn packs(&self) -> Result<Vec<(PackId, u64)>, IndexError> {
        self.guarded(|| {
            let txn = self
                .db
                .begin_read()
                .map_err(|e| (self.db_err())(e.into()))?;
            let table = read_table!(self, txn, PACKS, Vec::new());
            let mut out = Vec::new();
            for row in table.iter().map_err(|e| (self.db_err())(e.into()))? {
                let (k, v) = row.map_err(|e| (self.db_err())(e.into()))?;
                out.push((PackId::from_bytes(id32(k.value())?), v.value()));
            }
            Ok(out)
        })
    }

    /// The values of `keys` in a table of byte values, decoded; `None` where a key is absent.
    fn get_many<T>(
        &self,
        def: TableDefinition<&[u8], &[u8]>,
        keys: &[[u8; 32]],
        decode: impl Fn(&[u8]) -> Result<T, IndexError>,
    ) -> Result<Vec<Option<T>>, IndexError> {
        let err = self.db_err();
        let txn = self.db.begin_read().map_err(|e| err(e.into()))?;
        let table = read_table!(self, txn, def, keys.iter().map(|_| None).collect());
        // Looked up in key order (random ids would touch a random page each), answered in the
        // order asked.
        let mut order: Vec<usize> = (0..keys.len()).collect();
        order.sort_unstable_by_key(|&i| keys[i]);
        let mut out: Vec<Option<T>> = keys.iter().map(|_| None).collect();
        for i in order {
            let value = table.get(&keys[i][..]).map_err(|e| err(e.into()))?;
            out[i] = value.map(|v| decode(v.value())).transpose()?;
        }
        Ok(out)
    }

    /// Every row of a table of byte values, decoded.
    fn scan<T>(
        &self,
        def: TableDefinition<&[u8], &[u8]>,
        decode: impl Fn([u8; 32], &[u8]) -> Result<T, IndexError>,
    ) -> Result<Vec<T>, IndexError> {
        let mut out = Vec::new();
        self.scan_with(def, &mut |k, v| {
            out.push(decode(k, v)?);
            Ok(())
        })?;
        Ok(out)
    }

    /// Visits every row of `def` in key order without collecting them.
    fn scan_with(
        &self,
        def: TableDefinition<&[u8], &[u8]>,
        f: &mut RowFn<'_>,
    ) -> Result<(), IndexError> {
        let err = self.db_err();
        let txn = self.db.begin_read().map_err(|e| err(e.into()))?;
        let table = read_table!(self, txn, def, ());
        for row in table.iter().map_err(|e| err(e.into()))? {
            let (k, v) = row.map_err(|e| err(e.into()))?;
            f(id32(k.value())?, v.value())?;
        }
        Ok(())
    }

    /// Where each chunk is, if indexed.
    pub fn chunk_locs(&self, ids: &[ChunkId]) -> Result<Vec<Option<ChunkLoc>>, IndexError> {
        self.guarded(|| {
            let keys: Vec<[u8; 32]> = ids.iter().map(|id| *id.as_bytes()).collect();
            self.get_many(CHUNKS, &keys, decode_loc)
        })
    }

    /// The recipe of each object, if it has one (objects stored as one chunk have none: their
    /// chunk has their id).
    pub fn recipes(&self, ids: &[ObjectId]) -> Result<Vec<Option<RecipeRow>>, IndexError> {
        self.guarded(|| {
            let keys: Vec<[u8; 32]> = ids.iter().map(|id| *id.as_bytes()).collect();
            self.get_many(RECIPES, &keys, decode_recipe_row)
        })
    }

    /// Every recipe: object, the pack holding the recipe, recipe bytes.
    pub fn all_recipes(&self) -> Result<Vec<(ObjectId, PackId, Vec<u8>)>, IndexError> {
        self.guarded(|| {
            self.scan(RECIPES, |key, value| {
                let (pack, recipe) = decode_recipe_row(value)?;
                Ok((ObjectId::from_bytes(key), pack, recipe))
            })
        })
    }

    /// Every chunk and where it is, in chunk id order, without holding them all.
    pub fn for_each_chunk(
        &self,
        f: &mut dyn FnMut(ChunkId, ChunkLoc) -> Result<(), IndexError>,
    ) -> Result<(), IndexError> {
        self.guarded(|| {
            self.scan_with(CHUNKS, &mut |key, value| {
                f(ChunkId::from_bytes(key), decode_loc(value)?)
            })
        })
    }

    /// Totals of the cold tier.
    pub fn cold_totals(&self) -> Result<ColdTotals, IndexError> {
        self.guarded(|| {
            let err = self.db_err();
            let mut totals = ColdTotals::default();
            for (_, len) in self.packs()? {
                totals.packs += 1;
                totals.pack_bytes += len;
            }
            let txn = self.db.begin_read().map_err(|e| err(e.into()))?;
            if let Ok(recipes) = txn.open_table(RECIPES) {
                totals.recipes = recipes.len().map_err(|e| err(e.into()))?;
            }
            self.for_each_chunk(&mut |_, loc| {
                totals.chunks += 1;
                totals.chunk_bytes += u64::from(loc.len);
                Ok(())
            })?;
            Ok(totals)
        })
    }

    /// Empties the chunk index (before rebuilding it from the packs).
    pub fn clear_cold(&self) -> Result<(), IndexError> {
        self.guarded(|| {
            let err = self.db_err();
            let txn = self.db.begin_write().map_err(|e| err(e.into()))?;
            for name in ["chunks", "recipes", "packs"] {
                let def: TableDefinition<&[u8], &[u8]> = TableDefinition::new(name);
                match txn.delete_table(def) {
                    Ok(_) => {}
                    Err(e) => return Err(err(e.into())),
                }
            }
            txn.commit().map_err(|e| err(e.into()))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn packs_chunks_and_recipes_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(dir.path(), Duration::from_secs(1)).unwrap();
        let (p1, p2) = (PackId::from_bytes([1; 32]), PackId::from_bytes([2; 32]));
        let (c1, c2) = (ChunkId::from_bytes([3; 32]), ChunkId::from_bytes([4; 32]));
        let o = ObjectId::from_bytes([5; 32]);
        let loc = |pack, block| ChunkLoc {
            pack,
            block,
            offset: 7,
            len: 100,
        };
        assert_eq!(index.chunk_locs(&[c1]).unwrap(), [None]);
        index
            .add_pack(
                &p1,
                1000,
                &[(c1, loc(p1, 8)), (c2, loc(p1, 9))],
                &[(o, b"recipe".to_vec())],
            )
            .unwrap();
        // c2 is written again into p2: the index now points there.
        index.add_pack(&p2, 500, &[(c2, loc(p2, 8))], &[]).unwrap();
        assert_eq!(
            index.chunk_locs(&[c1, c2]).unwrap(),
            [Some(loc(p1, 8)), Some(loc(p2, 8))]
        );
        assert_eq!(
            index.recipes(&[o]).unwrap(),
            [Some((p1, b"recipe".to_vec()))]
        );
        let totals = index.cold_totals().unwrap();
        assert_eq!(
            (totals.packs, totals.pack_bytes, totals.chunks),
            (2, 1500, 2)
        );
        // Removing p1 keeps c2, which lives in p2.
        index.remove_packs(&[p1]).unwrap();
        assert_eq!(
            index.chunk_locs(&[c1, c2]).unwrap(),
            [None, Some(loc(p2, 8))]
        );
        assert_eq!(index.recipes(&[o]).unwrap(), [None]);
        assert_eq!(index.packs().unwrap(), [(p2, 500)]);
        index.clear_cold().unwrap();
        assert!(index.packs().unwrap().is_empty());
        assert_eq!(index.chunk_locs(&[c2]).unwrap(), [None]);
    }
}
