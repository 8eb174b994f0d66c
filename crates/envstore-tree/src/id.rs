use std::fmt;
use std::str::FromStr;

/// A malformed id string.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdParseError {
    #[error("`{0}` is not a 64-digit hex id")]
    Invalid(String),
}

macro_rules! define_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name([u8; 32]);

        impl $name {
            pub const fn from_bytes(bytes: [u8; 32]) -> Self {
                Self(bytes)
            }

            pub const fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            /// The id as 64 lowercase hex digits.
            pub fn to_hex(&self) -> String {
                hex_encode(&self.0)
            }

            /// The first 12 hex digits, for messages and tables (`ls` prints ids this way);
            /// [`Self::short_key`] gives 16 for keys, which users compare across machines.
            pub fn short(&self) -> String {
                hex_encode(&self.0[..6])
            }

            /// The first 16 hex digits.
            pub fn short_key(&self) -> String {
                hex_encode(&self.0[..8])
            }
        }

        impl From<blake3::Hash> for $name {
            fn from(hash: blake3::Hash) -> Self {
                Self(*hash.as_bytes())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.short_key())
            }
        }

        impl FromStr for $name {
            type Err = IdParseError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                hex_decode_32(s).map(Self).ok_or_else(|| IdParseError::Invalid(s.to_owned()))
            }
        }
    };
}

define_id!(
    /// The blake3 hash of one file's bytes (the same digest `b3sum` prints).
    ObjectId
);
define_id!(
    /// The blake3 hash of a tree's canonical encoding.
    TreeId
);
define_id!(
    /// A snapshot: the id of its root tree, under its own type so the two are never confused.
    SnapshotId
);
define_id!(
    /// The blake3 hash of one content-defined chunk of a file (a file stored as one chunk has
    /// the same id as its object).
    ChunkId
);
define_id!(
    /// The blake3 hash of a whole pack file: its name under `packs/`.
    PackId
);
define_id!(
    /// The blake3 hash of the inputs an environment is built from (key files, texts,
    /// environment variables, the build command): its name under `keys/`.
    KeyId
);

impl From<ObjectId> for ChunkId {
    /// The chunk that is the whole file: same bytes, same hash.
    fn from(object: ObjectId) -> Self {
        ChunkId(object.0)
    }
}

impl SnapshotId {
    pub const fn root(&self) -> TreeId {
        TreeId(self.0)
    }
}

impl From<TreeId> for SnapshotId {
    fn from(tree: TreeId) -> Self {
        SnapshotId(tree.0)
    }
}

fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

fn hex_decode_32(s: &str) -> Option<[u8; 32]> {
    let s = s.as_bytes();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        out[i] = (hex_val(pair[0])? << 4) | hex_val(pair[1])?;
    }
    Some(out)
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        let id = ObjectId::from(blake3::hash(b"hello"));
        let hex = id.to_hex();
        assert_eq!(hex.len(), 64);
        assert_eq!(hex.parse::<ObjectId>().unwrap(), id);
        assert_eq!(hex.to_uppercase().parse::<ObjectId>().unwrap(), id);
    }

    #[test]
    fn object_id_is_plain_blake3_like_b3sum() {
        // b3sum of "hello" (no newline).
        let id = ObjectId::from(blake3::hash(b"hello"));
        assert_eq!(
            id.to_hex(),
            "ea8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200f"
        );
    }

    #[test]
    fn bad_hex_is_refused() {
        assert!("xyz".parse::<TreeId>().is_err());
        assert!("g".repeat(64).parse::<TreeId>().is_err());
        assert!("a".repeat(63).parse::<TreeId>().is_err());
    }
}
