use crate::{ObjectId, TreeId};

/// The first eight bytes of every encoded tree: a name and a format version in one.
pub const TREE_MAGIC: &[u8; 8] = b"ESTREE\x00\x01";

/// Longest entry name the decoder accepts (Linux allows 255 bytes; other systems a little more).
pub const MAX_NAME_LEN: usize = 1024;

/// Longest symlink target the decoder accepts (Linux's PATH_MAX, including the terminator).
const MAX_TARGET_LEN: usize = 4096;

const KIND_FILE: u8 = 1;
const KIND_EXEC_FILE: u8 = 2;
const KIND_DIR: u8 = 3;
const KIND_SYMLINK: u8 = 4;
const KIND_RELOC_FILE: u8 = 5;
const KIND_RELOC_EXEC_FILE: u8 = 6;
const KIND_RELOC_SYMLINK: u8 = 7;

/// Stands for the absolute path of the directory a relocatable snapshot was stored from (in
/// relocated files and symlink targets), and for its materialized path when it is laid out.
pub const PLACEHOLDER: &[u8] = b"@@ENVSTORE_PREFIX@@";

/// Stands for the source directory's name in a venv's `bin/activate*` prompt, and for the
/// materialized directory's name when it is laid out.
pub const NAME_PLACEHOLDER: &[u8] = b"@@ENVSTORE_NAME@@";

/// What a tree entry is. Nothing else of a file's metadata takes part in identity.
///
/// `relocated` marks a file whose stored bytes (or a symlink whose target) contain
/// [`PLACEHOLDER`] where the source directory's own path was; materializing writes the
/// materialized path there instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    File {
        object: ObjectId,
        size: u64,
        executable: bool,
        relocated: bool,
    },
    Dir {
        tree: TreeId,
    },
    Symlink {
        target: Vec<u8>,
        relocated: bool,
    },
}

/// One named entry of a directory. Names are raw bytes: non-UTF-8 names are stored as they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: Vec<u8>,
    pub kind: EntryKind,
}

/// One directory's entries, sorted by name bytes. Build it with [`Tree::new`] so the order, and
/// with it the id, is canonical.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tree {
    entries: Vec<Entry>,
}

/// Why bytes are not a valid tree encoding. The decoder is strict: every tree has exactly one
/// encoding, so anything else (unsorted entries, trailing bytes, an unknown kind) is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("not an envstore tree (bad magic or version)")]
    BadMagic,
    #[error("tree encoding ends early")]
    Truncated,
    #[error("tree encoding has {0} bytes after its last entry")]
    TrailingBytes(usize),
    #[error("unknown entry kind {0}")]
    UnknownKind(u8),
    #[error("invalid entry name {0:?}: empty, `.`, `..`, too long, or contains `/` or NUL")]
    InvalidName(Vec<u8>),
    #[error("invalid symlink target for {0:?}: empty, too long, or contains NUL")]
    InvalidTarget(Vec<u8>),
    #[error("entries are not strictly sorted by name at {0:?}")]
    Unsorted(Vec<u8>),
}

impl Tree {
    /// A tree of these entries, sorted into canonical order. Names must be unique and valid
    /// (as every name read from a directory is); see [`is_valid_name`].
    pub fn new(mut entries: Vec<Entry>) -> Self {
        entries.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        debug_assert!(entries.windows(2).all(|w| w[0].name < w[1].name));
        debug_assert!(entries.iter().all(|e| is_valid_name(&e.name)));
        Tree { entries }
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The entry named `name`, found by binary search.
    pub fn get(&self, name: &[u8]) -> Option<&Entry> {
        self.entries
            .binary_search_by(|e| e.name.as_slice().cmp(name))
            .ok()
            .map(|i| &self.entries[i])
    }

    /// The canonical encoding (see docs/format.md).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(12 + self.entries.len() * 64);
        out.extend_from_slice(TREE_MAGIC);
        let count = u32::try_from(self.entries.len()).expect("a directory has < 2^32 entries");
        out.extend_from_slice(&count.to_le_bytes());
        for entry in &self.entries {
            let kind = match entry.kind {
                EntryKind::File {
                    executable,
                    relocated,
                    ..
                } => match (executable, relocated) {
                    (false, false) => KIND_FILE,
                    (true, false) => KIND_EXEC_FILE,
                    (false, true) => KIND_RELOC_FILE,
                    (true, true) => KIND_RELOC_EXEC_FILE,
                },
                EntryKind::Dir { .. } => KIND_DIR,
                EntryKind::Symlink {
                    relocated: false, ..
                } => KIND_SYMLINK,
                EntryKind::Symlink {
                    relocated: true, ..
                } => KIND_RELOC_SYMLINK,
            };
            out.push(kind);
            let name_len = u16::try_from(entry.name.len()).expect("names are at most 1024 bytes");
            out.extend_from_slice(&name_len.to_le_bytes());
            out.extend_from_slice(&entry.name);
            match &entry.kind {
                EntryKind::File { object, size, .. } => {
                    out.extend_from_slice(&size.to_le_bytes());
                    out.extend_from_slice(object.as_bytes());
                }
                EntryKind::Dir { tree } => out.extend_from_slice(tree.as_bytes()),
                EntryKind::Symlink { target, .. } => {
                    let len = u32::try_from(target.len()).expect("targets are at most 4096 bytes");
                    out.extend_from_slice(&len.to_le_bytes());
                    out.extend_from_slice(target);
                }
            }
        }
        out
    }

    /// The tree's id: blake3 of [`Tree::encode`].
    pub fn id(&self) -> TreeId {
        TreeId::from(blake3::hash(&self.encode()))
    }

    /// Decodes and validates an encoding. Never panics, whatever the input (fuzzed).
    pub fn decode(bytes: &[u8]) -> Result<Tree, DecodeError> {
        let mut r = Reader { bytes, pos: 0 };
        if r.take(8)? != TREE_MAGIC {
            return Err(DecodeError::BadMagic);
        }
        let count = u32::from_le_bytes(r.array()?) as usize;
        // Every entry takes at least 4 bytes, so a count larger than that is a lie; don't let it
        // size an allocation.
        let mut entries = Vec::with_capacity(count.min(r.remaining() / 4));
        for _ in 0..count {
            let kind = r.take(1)?[0];
            let name_len = usize::from(u16::from_le_bytes(r.array()?));
            let name = r.take(name_len)?.to_vec();
            if !is_valid_name(&name) {
                return Err(DecodeError::InvalidName(name));
            }
            if entries.last().is_some_and(|prev: &Entry| prev.name >= name) {
                return Err(DecodeError::Unsorted(name));
            }
            let kind = match kind {
                KIND_FILE | KIND_EXEC_FILE | KIND_RELOC_FILE | KIND_RELOC_EXEC_FILE => {
                    let size = u64::from_le_bytes(r.array()?);
                    let object = ObjectId::from_bytes(r.array()?);
                    EntryKind::File {
                        object,
                        size,
                        executable: matches!(kind, KIND_EXEC_FILE | KIND_RELOC_EXEC_FILE),
                        relocated: matches!(kind, KIND_RELOC_FILE | KIND_RELOC_EXEC_FILE),
                    }
                }
                KIND_DIR => EntryKind::Dir {
                    tree: TreeId::from_bytes(r.array()?),
                },
                KIND_SYMLINK | KIND_RELOC_SYMLINK => {
                    let len = u32::from_le_bytes(r.array()?) as usize;
                    let target = r.take(len)?.to_vec();
                    if target.is_empty() || target.len() > MAX_TARGET_LEN || target.contains(&0) {
                        return Err(DecodeError::InvalidTarget(name));
                    }
                    EntryKind::Symlink {
                        target,
                        relocated: kind == KIND_RELOC_SYMLINK,
                    }
                }
                other => return Err(DecodeError::UnknownKind(other)),
            };
            entries.push(Entry { name, kind });
        }
        if r.remaining() != 0 {
            return Err(DecodeError::TrailingBytes(r.remaining()));
        }
        Ok(Tree { entries })
    }
}

/// `bytes` with every [`PLACEHOLDER`] replaced by `path` and every [`NAME_PLACEHOLDER`] by its
/// last component: how a relocated file or symlink target is written when it is materialized
/// at `path`.
pub fn substitute_placeholder(bytes: &[u8], path: &[u8]) -> Vec<u8> {
    let name = path.rsplit(|&b| b == b'/').next().unwrap_or(path);
    let mut out = Vec::with_capacity(bytes.len() + path.len());
    let mut rest = bytes;
    loop {
        let next = [(PLACEHOLDER, path), (NAME_PLACEHOLDER, name)]
            .into_iter()
            .filter_map(|(p, with)| {
                rest.windows(p.len())
                    .position(|w| w == p)
                    .map(|i| (i, p, with))
            })
            .min_by_key(|(i, _, _)| *i);
        let Some((i, placeholder, with)) = next else {
            break;
        };
        out.extend_from_slice(&rest[..i]);
        out.extend_from_slice(with);
        rest = &rest[i + placeholder.len()..];
    }
    out.extend_from_slice(rest);
    out
}

/// Whether `name` can be one path component: not empty, not `.` or `..`, no `/` or NUL, and at
/// most [`MAX_NAME_LEN`] bytes. The decoder enforces this, so a tree read from a damaged or
/// hostile store can never make materialize write outside its directory.
pub fn is_valid_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name != b"."
        && name != b".."
        && !name.iter().any(|&b| b == b'/' || b == 0)
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(DecodeError::Truncated);
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        Ok(self.take(N)?.try_into().expect("take returned N bytes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, content: &[u8], executable: bool) -> Entry {
        Entry {
            name: name.as_bytes().to_vec(),
            kind: EntryKind::File {
                object: ObjectId::from(blake3::hash(content)),
                size: content.len() as u64,
                executable,
                relocated: false,
            },
        }
    }

    /// The tree of the test vector in docs/format.md.
    fn vector_tree() -> Tree {
        let empty = Tree::new(vec![]);
        Tree::new(vec![
            file("run.sh", b"#!/bin/sh\necho hi\n", true),
            Entry {
                name: b"sub".to_vec(),
                kind: EntryKind::Dir { tree: empty.id() },
            },
            file("a.txt", b"hello\n", false),
            Entry {
                name: b"link".to_vec(),
                kind: EntryKind::Symlink {
                    target: b"a.txt".to_vec(),
                    relocated: false,
                },
            },
        ])
    }

    #[test]
    fn empty_tree_test_vector() {
        let empty = Tree::new(vec![]);
        assert_eq!(empty.encode(), b"ESTREE\x00\x01\x00\x00\x00\x00");
        assert_eq!(
            empty.id().to_hex(),
            "2ce26b8825cd6079e95fe9d6a5b4ca38b34f0ab647a6576359d20e3b1be50927"
        );
    }

    #[test]
    fn tree_test_vector_is_pinned() {
        // If this fails, the identity of every snapshot ever stored has changed: bump the format.
        assert_eq!(
            vector_tree().id().to_hex(),
            "0eaa7ea53e23cc5b98a25bd64ed82ef9734114b35ee93e642ae5988a925dc1d5"
        );
    }

    #[test]
    fn entries_are_sorted_by_raw_bytes() {
        let names: Vec<_> = vector_tree()
            .entries()
            .iter()
            .map(|e| e.name.clone())
            .collect();
        assert_eq!(names, [&b"a.txt"[..], b"link", b"run.sh", b"sub"]);
    }

    #[test]
    fn decode_inverts_encode() {
        let tree = vector_tree();
        assert_eq!(Tree::decode(&tree.encode()).unwrap(), tree);
    }

    #[test]
    fn non_utf8_names_round_trip() {
        let tree = Tree::new(vec![
            file("x", b"", false),
            Entry {
                name: vec![0xff, 0xfe, b'a'],
                kind: EntryKind::Symlink {
                    target: vec![0xc3, 0x28],
                    relocated: false,
                },
            },
        ]);
        assert_eq!(Tree::decode(&tree.encode()).unwrap(), tree);
    }

    #[test]
    fn exec_bit_changes_the_id() {
        let a = Tree::new(vec![file("f", b"x", false)]);
        let b = Tree::new(vec![file("f", b"x", true)]);
        assert_ne!(a.id(), b.id());
    }

    #[test]
    fn decoder_refuses_unsorted_and_duplicate_entries() {
        let mut bytes = Tree::new(vec![file("a", b"", false)]).encode();
        // Hand-build two identical entries.
        let entry = bytes[12..].to_vec();
        bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
        bytes.extend_from_slice(&entry);
        assert_eq!(
            Tree::decode(&bytes),
            Err(DecodeError::Unsorted(b"a".to_vec()))
        );
    }

    #[test]
    fn decoder_refuses_path_traversal_names() {
        for bad in [&b".."[..], b".", b"", b"a/b", b"a\0b"] {
            let mut bytes = TREE_MAGIC.to_vec();
            bytes.extend_from_slice(&1u32.to_le_bytes());
            bytes.push(KIND_DIR);
            bytes.extend_from_slice(&(bad.len() as u16).to_le_bytes());
            bytes.extend_from_slice(bad);
            bytes.extend_from_slice(&[0; 32]);
            assert_eq!(
                Tree::decode(&bytes),
                Err(DecodeError::InvalidName(bad.to_vec()))
            );
        }
    }

    #[test]
    fn decoder_refuses_truncation_and_trailing_bytes() {
        let bytes = vector_tree().encode();
        for len in 0..bytes.len() {
            assert!(
                Tree::decode(&bytes[..len]).is_err(),
                "prefix of {len} bytes accepted"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(Tree::decode(&longer), Err(DecodeError::TrailingBytes(1)));
    }

    #[test]
    fn decoder_survives_garbage() {
        // A cheap deterministic fuzz; fuzz/ has the real target.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let seed = vector_tree().encode();
        for _ in 0..20_000 {
            let mut bytes = seed.clone();
            for _ in 0..4 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let pos = (state as usize) % bytes.len();
                bytes[pos] = (state >> 32) as u8;
            }
            if let Ok(tree) = Tree::decode(&bytes) {
                assert_eq!(tree.encode(), bytes, "accepted a non-canonical encoding");
            }
        }
    }
}
