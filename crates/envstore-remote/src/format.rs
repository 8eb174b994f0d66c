//! The remote's layout, byte by byte (docs/remote.md explains it with the protocol):
//!
//! ```text
//! <prefix>/envstore-remote      "envstore-remote 1\n", written by the first push
//! <prefix>/packs/<id>.pack      a pack, exactly as in a store's packs/ (docs/format.md)
//! <prefix>/packs/<id>.idx       its index (PackIndex), written after the pack
//! <prefix>/snapshots/<id>       a snapshot record with its trees (Record), written last
//! <prefix>/refs/<name>          a ref: a name for a snapshot, optionally signed (Ref)
//! <prefix>/prune/marked         packs remote prune marked for deletion (Marked)
//! <prefix>/trees/<id>           the packs holding everything below a tree (summary::TreePacks)
//! <prefix>/used/<id>            written by a pull (at most daily per client): its time is when
//!                               the snapshot was last pulled, for `remote prune`
//! ```

use std::fmt::Write as _;

use envstore_pack::{Entry, EntryKind};
use envstore_tree::{PackId, SnapshotId};

use crate::{hex, sign::PublicKey, unhex};

pub const MARKER_KEY: &str = "envstore-remote";
pub const MARKER: &[u8] = b"envstore-remote 1\n";

/// Bounds for what a remote may send (a hostile remote cannot make a client allocate more).
pub const MAX_INDEX: u64 = 64 << 20;
pub const MAX_RECORD: u64 = 512 << 20;
pub const MAX_REF: u64 = 4096;
pub const MAX_MARKED: u64 = 64 << 20;

pub fn pack_key(id: &PackId) -> String {
    format!("packs/{}.pack", id.to_hex())
}
pub fn index_key(id: &PackId) -> String {
    format!("packs/{}.idx", id.to_hex())
}
pub fn record_key(id: &SnapshotId) -> String {
    format!("snapshots/{}", id.to_hex())
}
pub fn ref_key(name: &str) -> String {
    format!("refs/{name}")
}
pub const USED_DIR: &str = "used";
pub fn used_key(id: &SnapshotId) -> String {
    format!("{USED_DIR}/{}", id.to_hex())
}
pub const USED_MARKER: &[u8] = b"envstore-used 1\n";
pub const MARKED_KEY: &str = "prune/marked";

/// Why something read from a remote was refused.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{what} is malformed: {reason}")]
pub struct FormatError {
    pub what: String,
    pub reason: String,
}

pub(crate) fn bad(what: &str, reason: impl Into<String>) -> FormatError {
    FormatError {
        what: what.to_owned(),
        reason: reason.into(),
    }
}

/// Reads little-endian fields from a byte slice, failing instead of panicking at the end.
struct Cursor<'a> {
    bytes: &'a [u8],
    what: &'a str,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FormatError> {
        if self.bytes.len() < n {
            return Err(bad(self.what, "cut short"));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, FormatError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, FormatError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self) -> Result<u64, FormatError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn id(&mut self) -> Result<[u8; 32], FormatError> {
        Ok(self.take(32)?.try_into().expect("32 bytes"))
    }
}

/// `packs/<id>.idx`: what each block of a remote pack holds, so a client learns what a remote
/// has by reading indexes (a listing and one small GET per pack it has not seen), never by
/// asking per chunk. Recipes are copied in, so a pull knows an object's chunks before
/// fetching anything.
///
/// ```text
/// index = "ESIDX\0\x01\n" pack:[32] pack_len:u64 blocks:u32 block*
/// block = offset:u64 len:u64 entries:u32 (kind:u8 id:[32] len:u32 [recipe bytes if kind 1])*
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackIndex {
    pub pack: PackId,
    pub len: u64,
    pub blocks: Vec<IndexBlock>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexBlock {
    /// Where the block starts in the pack and how many bytes it spans (header and frame).
    pub offset: u64,
    pub len: u64,
    pub entries: Vec<Entry>,
    /// The bytes of each recipe entry, in entry order.
    pub recipes: Vec<Vec<u8>>,
}

const INDEX_MAGIC: &[u8; 8] = b"ESIDX\0\x01\n";

impl PackIndex {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = INDEX_MAGIC.to_vec();
        out.extend_from_slice(self.pack.as_bytes());
        out.extend_from_slice(&self.len.to_le_bytes());
        out.extend_from_slice(&(self.blocks.len() as u32).to_le_bytes());
        for b in &self.blocks {
            out.extend_from_slice(&b.offset.to_le_bytes());
            out.extend_from_slice(&b.len.to_le_bytes());
            out.extend_from_slice(&(b.entries.len() as u32).to_le_bytes());
            let mut recipes = b.recipes.iter();
            for e in &b.entries {
                out.push(match e.kind {
                    EntryKind::Chunk => 0,
                    EntryKind::Recipe => 1,
                });
                out.extend_from_slice(&e.id);
                out.extend_from_slice(&e.len.to_le_bytes());
                if e.kind == EntryKind::Recipe {
                    out.extend_from_slice(recipes.next().expect("one recipe per recipe entry"));
                }
            }
        }
        out
    }

    /// Decodes an index and checks it is consistent with the pack it names: blocks in order,
    /// inside the pack, entry lengths within a block's limits, recipes well formed.
    pub fn decode(bytes: &[u8], expected: &PackId) -> Result<PackIndex, FormatError> {
        let what = format!("the index of pack {expected}");
        let mut c = Cursor { bytes, what: &what };
        if c.take(8)? != INDEX_MAGIC {
            return Err(bad(&what, "not a pack index"));
        }
        let pack = PackId::from_bytes(c.id()?);
        if pack != *expected {
            return Err(bad(&what, format!("it names pack {pack}")));
        }
        let len = c.u64()?;
        let count = c.u32()?;
        let mut blocks = Vec::new();
        let mut at = 8u64;
        for _ in 0..count {
            let (offset, block_len, n) = (c.u64()?, c.u64()?, c.u32()?);
            if offset != at || block_len == 0 || block_len > 32 << 20 || offset + block_len > len {
                return Err(bad(&what, format!("block at {offset} is out of place")));
            }
            at = offset + block_len;
            if n > 65536 {
                return Err(bad(&what, "too many entries in a block"));
            }
            let (mut entries, mut recipes) = (Vec::with_capacity(n as usize), Vec::new());
            let mut raw = 0u64;
            for _ in 0..n {
                let kind = match c.u8()? {
                    0 => EntryKind::Chunk,
                    1 => EntryKind::Recipe,
                    k => return Err(bad(&what, format!("unknown entry kind {k}"))),
                };
                let (id, entry_len) = (c.id()?, c.u32()?);
                raw += u64::from(entry_len);
                if raw > 16 << 20 {
                    return Err(bad(&what, "a block holds more than 16 MiB"));
                }
                if kind == EntryKind::Recipe {
                    let recipe = c.take(entry_len as usize)?;
                    if envstore_pack::decode_recipe(recipe).is_none() {
                        return Err(bad(&what, "a recipe is malformed"));
                    }
                    recipes.push(recipe.to_vec());
                }
                entries.push(Entry {
                    kind,
                    id,
                    len: entry_len,
                });
            }
            blocks.push(IndexBlock {
                offset,
                len: block_len,
                entries,
                recipes,
            });
        }
        if at != len && count > 0 || !c.bytes.is_empty() {
            return Err(bad(&what, "it does not cover the pack exactly"));
        }
        Ok(PackIndex { pack, len, blocks })
    }
}

/// `refs/<name>`: a name for a snapshot. Text; the optional last line signs every byte before
/// it. `seq` (unix milliseconds when it was pushed) lets a client refuse an older signed ref
/// than one it has seen (a replayed one).
///
/// ```text
/// envstore-ref 1
/// name <name>
/// snapshot <hex>
/// seq <n>
/// signature <key name> <128 hex digits>     (optional)
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ref {
    pub name: String,
    pub snapshot: SnapshotId,
    pub seq: u64,
    /// The signing key's name and the signature, when signed.
    pub signature: Option<(String, Vec<u8>)>,
    /// The bytes the signature covers.
    pub signed_text: String,
}

const REF_HEADER: &str = "envstore-ref 1";

impl Ref {
    pub fn new(name: &str, snapshot: SnapshotId, seq: u64) -> Ref {
        Ref {
            name: name.to_owned(),
            snapshot,
            seq,
            signature: None,
            signed_text: format!("{REF_HEADER}\nname {name}\nsnapshot {snapshot}\nseq {seq}\n"),
        }
    }

    pub fn sign(&mut self, key: &crate::sign::SecretKey) {
        let sig = key.sign(self.signed_text.as_bytes());
        self.signature = Some((key.name().to_owned(), sig.to_vec()));
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut text = self.signed_text.clone();
        if let Some((name, sig)) = &self.signature {
            let _ = writeln!(text, "signature {name} {}", hex(sig));
        }
        text.into_bytes()
    }

    pub fn decode(bytes: &[u8], name: &str) -> Result<Ref, FormatError> {
        let what = format!("the remote ref {name:?}");
        let text = std::str::from_utf8(bytes).map_err(|_| bad(&what, "not UTF-8"))?;
        let (signed_text, signature) = match text.rfind("\nsignature ") {
            Some(at) => {
                let line = text[at + 1..].trim_end_matches('\n');
                let mut w = line.split(' ').skip(1);
                let (Some(key), Some(sig), None) = (w.next(), w.next(), w.next()) else {
                    return Err(bad(&what, "bad signature line"));
                };
                let sig = unhex(sig).ok_or_else(|| bad(&what, "bad signature line"))?;
                (&text[..=at], Some((key.to_owned(), sig)))
            }
            None => (text, None),
        };
        let mut lines = signed_text.lines();
        if lines.next() != Some(REF_HEADER) {
            return Err(bad(&what, format!("expected {REF_HEADER:?}")));
        }
        let (mut ref_name, mut snapshot, mut seq) = (None, None, None);
        for l in lines {
            match l.split_once(' ') {
                Some(("name", v)) => ref_name = Some(v),
                Some(("snapshot", v)) => snapshot = v.parse().ok(),
                Some(("seq", v)) => seq = v.parse().ok(),
                _ => {}
            }
        }
        match (ref_name, snapshot, seq) {
            (Some(n), Some(snapshot), Some(seq)) if n == name => Ok(Ref {
                name: n.to_owned(),
                snapshot,
                seq,
                signature,
                signed_text: signed_text.to_owned(),
            }),
            (Some(n), ..) if n != name => Err(bad(&what, format!("it names itself {n:?}"))),
            _ => Err(bad(&what, "it lacks a name, snapshot or seq line")),
        }
    }

    /// Checks the signature against `trusted`: `Ok(key name)` when a trusted key signed it.
    pub fn check(&self, trusted: &[PublicKey]) -> Result<String, String> {
        let Some((key, sig)) = &self.signature else {
            return Err("it is not signed".into());
        };
        let Some(public) = trusted.iter().find(|k| &k.name == key) else {
            return Err(format!(
                "it is signed by {key:?}, which is not a trusted key"
            ));
        };
        if public.verify(self.signed_text.as_bytes(), sig) {
            Ok(key.clone())
        } else {
            Err(format!("its signature by {key:?} does not verify"))
        }
    }
}

/// `prune/marked`: packs remote prune found unneeded, with when it marked them. A later prune
/// deletes a marked pack only after the grace period and only if nothing needs it then;
/// pushes never rely on a marked pack.
///
/// ```text
/// envstore-marked 1
/// <pack hex> <unix seconds when marked>
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Marked {
    pub packs: Vec<(PackId, i64)>,
}

const MARKED_HEADER: &str = "envstore-marked 1";

impl Marked {
    pub fn encode(&self) -> Vec<u8> {
        let mut text = format!("{MARKED_HEADER}\n");
        for (p, t) in &self.packs {
            let _ = writeln!(text, "{p} {t}");
        }
        text.into_bytes()
    }

    pub fn decode(bytes: &[u8]) -> Result<Marked, FormatError> {
        let what = MARKED_KEY;
        let text = std::str::from_utf8(bytes).map_err(|_| bad(what, "not UTF-8"))?;
        let mut lines = text.lines();
        if lines.next() != Some(MARKED_HEADER) {
            return Err(bad(what, format!("expected {MARKED_HEADER:?}")));
        }
        let mut packs = Vec::new();
        for l in lines {
            let (p, t) = l.split_once(' ').ok_or_else(|| bad(what, "bad line"))?;
            packs.push((
                p.parse().map_err(|_| bad(what, "bad pack id"))?,
                t.parse().map_err(|_| bad(what, "bad time"))?,
            ));
        }
        Ok(Marked { packs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(b: u8) -> [u8; 32] {
        [b; 32]
    }

    #[test]
    fn index_round_trip_and_refusals() {
        let recipe = envstore_pack::encode_recipe(10, &[envstore_tree::ChunkId::from_bytes(id(1))]);
        let idx = PackIndex {
            pack: PackId::from_bytes(id(9)),
            len: 108,
            blocks: vec![IndexBlock {
                offset: 8,
                len: 100,
                entries: vec![
                    Entry {
                        kind: EntryKind::Chunk,
                        id: id(1),
                        len: 10,
                    },
                    Entry {
                        kind: EntryKind::Recipe,
                        id: id(2),
                        len: recipe.len() as u32,
                    },
                ],
                recipes: vec![recipe],
            }],
        };
        let bytes = idx.encode();
        assert_eq!(PackIndex::decode(&bytes, &idx.pack).unwrap(), idx);
        assert!(PackIndex::decode(&bytes, &PackId::from_bytes(id(8))).is_err());
        for cut in 0..bytes.len() {
            assert!(
                PackIndex::decode(&bytes[..cut], &idx.pack).is_err(),
                "{cut}"
            );
        }
    }

    #[test]
    fn refs_sign_and_check() {
        let key = crate::sign::SecretKey::generate("k").unwrap();
        let mut r = Ref::new("main", SnapshotId::from_bytes(id(1)), 7);
        assert!(r.check(&[key.public()]).is_err());
        r.sign(&key);
        let back = Ref::decode(&r.encode(), "main").unwrap();
        assert_eq!(back, r);
        assert_eq!(back.check(&[key.public()]).unwrap(), "k");
        let other = crate::sign::SecretKey::generate("k").unwrap();
        assert!(back.check(&[other.public()]).is_err());
        let forged = String::from_utf8(r.encode())
            .unwrap()
            .replace("seq 7", "seq 8");
        assert!(
            Ref::decode(forged.as_bytes(), "main")
                .unwrap()
                .check(&[key.public()])
                .is_err()
        );
        assert!(Ref::decode(&r.encode(), "other").is_err());
    }
}
