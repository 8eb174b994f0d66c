//! Summaries: which packs hold everything below a tree (`trees/<tree id>`), or everything of
//! one large object (`objects/<object id>`).
//!
//! ```text
//! envstore-packs 1
//! tree <tree hex>        or: object <object hex>
//! pack <pack hex>        one line per pack; every chunk and recipe of every object below the
//!                        tree (of the object) is in these packs
//! ```
//!
//! A push writes the summaries of the trees it uploaded after checking that every pack they
//! list is present and unmarked, and before its record. A later push that finds a summary, and
//! every pack it lists present and unmarked, skips the whole subtree. A summary is a hint that a
//! push checks, never a promise: a pack it lists can be pruned or lost, and then the push
//! descends below the tree instead (docs/remote.md).

use std::fmt::Write as _;

use envstore_tree::{ObjectId, PackId, TreeId};

use crate::format::FormatError;

/// What a summary is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Of {
    Tree(TreeId),
    Object(ObjectId),
}

impl Of {
    fn word(&self) -> &'static str {
        match self {
            Of::Tree(_) => "tree",
            Of::Object(_) => "object",
        }
    }

    fn hex(&self) -> String {
        match self {
            Of::Tree(t) => t.to_hex(),
            Of::Object(o) => o.to_hex(),
        }
    }

    /// Where its summary is kept.
    pub fn key(&self) -> String {
        format!("{}s/{}", self.word(), self.hex())
    }
}

/// The key of the summary of `tree`.
pub fn tree_key(tree: &TreeId) -> String {
    Of::Tree(*tree).key()
}

/// The largest summary a client reads (about 12,000 packs).
pub const MAX_SUMMARY: u64 = 1 << 20;

const HEADER: &str = "envstore-packs 1";

/// The packs holding everything below a tree, or of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub of: Of,
    pub packs: Vec<PackId>,
}

impl Summary {
    pub fn encode(&self) -> Vec<u8> {
        let mut text = format!("{HEADER}\n{} {}\n", self.of.word(), self.of.hex());
        for p in &self.packs {
            let _ = writeln!(text, "pack {}", p.to_hex());
        }
        text.into_bytes()
    }

    /// Parses a summary read at the key of `of`; one naming something else is refused.
    pub fn decode(bytes: &[u8], of: &Of) -> Result<Summary, FormatError> {
        let what = of.key();
        let bad = |reason: &str| FormatError {
            what: what.clone(),
            reason: reason.to_owned(),
        };
        let text = std::str::from_utf8(bytes).map_err(|_| bad("not UTF-8"))?;
        let mut lines = text.lines();
        if lines.next() != Some(HEADER) {
            return Err(bad("not a summary, version 1"));
        }
        if lines.next() != Some(&format!("{} {}", of.word(), of.hex())) {
            return Err(bad("it names something else"));
        }
        let mut packs = Vec::new();
        for line in lines {
            let pack = line
                .strip_prefix("pack ")
                .and_then(|h| h.parse::<PackId>().ok())
                .ok_or_else(|| bad("a line is not `pack <hex>`"))?;
            packs.push(pack);
        }
        Ok(Summary { of: *of, packs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let tree = Of::Tree(TreeId::from_bytes([1; 32]));
        let s = Summary {
            of: tree,
            packs: vec![PackId::from_bytes([2; 32]), PackId::from_bytes([3; 32])],
        };
        assert_eq!(Summary::decode(&s.encode(), &tree).unwrap(), s);
        assert!(s.of.key().starts_with("trees/0101"));
        // The same id as an object, or another tree: refused.
        let object = Of::Object(ObjectId::from_bytes([1; 32]));
        assert!(Summary::decode(&s.encode(), &object).is_err());
        let other = Of::Tree(TreeId::from_bytes([4; 32]));
        assert!(Summary::decode(&s.encode(), &other).is_err());
        assert!(Summary::decode(b"envstore-packs 2\n", &tree).is_err());
        let mut bad = s.encode();
        bad.extend_from_slice(b"pack zz\n");
        assert!(Summary::decode(&bad, &tree).is_err());
        assert!(Summary::decode(&[0xff, 0xfe], &tree).is_err());
    }
}
