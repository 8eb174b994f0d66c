//! Differences between two trees, found by walking both in name order. Subtrees with equal ids
//! are skipped without being read, so comparing two large environments costs only the parts
//! that differ.

use crate::{Entry, EntryKind, Tree, TreeId};

/// What kind of entry a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
}

impl Kind {
    pub fn of(kind: &EntryKind) -> Kind {
        match kind {
            EntryKind::File { .. } => Kind::File,
            EntryKind::Dir { .. } => Kind::Dir,
            EntryKind::Symlink { .. } => Kind::Symlink,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Dir => "dir",
            Kind::Symlink => "symlink",
        }
    }
}

/// One difference. Paths are relative, `/`-separated raw bytes. Added and removed directories
/// are reported with every file, symlink and empty directory below them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Added {
        path: Vec<u8>,
        kind: Kind,
        size: u64,
    },
    Removed {
        path: Vec<u8>,
        kind: Kind,
        size: u64,
    },
    /// Content changed (and possibly the exec bit with it).
    Modified {
        path: Vec<u8>,
        old_size: u64,
        new_size: u64,
    },
    /// Only the exec bit changed.
    Mode { path: Vec<u8>, executable: bool },
    Symlink {
        path: Vec<u8>,
        old_target: Vec<u8>,
        new_target: Vec<u8>,
    },
    /// The same path is another kind of entry now.
    Kind { path: Vec<u8>, old: Kind, new: Kind },
}

impl Change {
    pub fn path(&self) -> &[u8] {
        match self {
            Change::Added { path, .. }
            | Change::Removed { path, .. }
            | Change::Modified { path, .. }
            | Change::Mode { path, .. }
            | Change::Symlink { path, .. }
            | Change::Kind { path, .. } => path,
        }
    }
}

fn join(prefix: &[u8], name: &[u8]) -> Vec<u8> {
    let mut path = Vec::with_capacity(prefix.len() + 1 + name.len());
    if !prefix.is_empty() {
        path.extend_from_slice(prefix);
        path.push(b'/');
    }
    path.extend_from_slice(name);
    path
}

/// Appends the differences from `old` to `new` to `out`. `lookup` loads subtrees.
pub fn diff<E>(
    old: &Tree,
    new: &Tree,
    lookup: &mut dyn FnMut(&TreeId) -> Result<Tree, E>,
    out: &mut Vec<Change>,
) -> Result<(), E> {
    diff_at(b"", old, new, lookup, out)
}

fn diff_at<E>(
    prefix: &[u8],
    old: &Tree,
    new: &Tree,
    lookup: &mut dyn FnMut(&TreeId) -> Result<Tree, E>,
    out: &mut Vec<Change>,
) -> Result<(), E> {
    let (mut a, mut b) = (
        old.entries().iter().peekable(),
        new.entries().iter().peekable(),
    );
    loop {
        match (a.peek(), b.peek()) {
            (None, None) => return Ok(()),
            (Some(x), Some(y)) if x.name == y.name => {
                let path = join(prefix, &x.name);
                compare(path, x, y, lookup, out)?;
                a.next();
                b.next();
            }
            (Some(x), y) if y.is_none_or(|y| x.name < y.name) => {
                every(
                    &join(prefix, &x.name),
                    x,
                    lookup,
                    &mut |path, kind, size| out.push(Change::Removed { path, kind, size }),
                )?;
                a.next();
            }
            (_, Some(y)) => {
                every(
                    &join(prefix, &y.name),
                    y,
                    lookup,
                    &mut |path, kind, size| out.push(Change::Added { path, kind, size }),
                )?;
                b.next();
            }
            (Some(_), None) => unreachable!("handled by the guard above"),
        }
    }
}

fn compare<E>(
    path: Vec<u8>,
    x: &Entry,
    y: &Entry,
    lookup: &mut dyn FnMut(&TreeId) -> Result<Tree, E>,
    out: &mut Vec<Change>,
) -> Result<(), E> {
    match (&x.kind, &y.kind) {
        (EntryKind::Dir { tree: t1 }, EntryKind::Dir { tree: t2 }) => {
            if t1 != t2 {
                let (old, new) = (lookup(t1)?, lookup(t2)?);
                diff_at(&path, &old, &new, lookup, out)?;
            }
        }
        (
            EntryKind::File {
                object: o1,
                size: s1,
                executable: e1,
                relocated: r1,
            },
            EntryKind::File {
                object: o2,
                size: s2,
                executable: e2,
                relocated: r2,
            },
        ) => {
            if o1 != o2 || r1 != r2 {
                out.push(Change::Modified {
                    path,
                    old_size: *s1,
                    new_size: *s2,
                });
            } else if e1 != e2 {
                out.push(Change::Mode {
                    path,
                    executable: *e2,
                });
            }
        }
        (
            EntryKind::Symlink {
                target: t1,
                relocated: r1,
            },
            EntryKind::Symlink {
                target: t2,
                relocated: r2,
            },
        ) => {
            if t1 != t2 || r1 != r2 {
                out.push(Change::Symlink {
                    path,
                    old_target: t1.clone(),
                    new_target: t2.clone(),
                });
            }
        }
        (k1, k2) => out.push(Change::Kind {
            path,
            old: Kind::of(k1),
            new: Kind::of(k2),
        }),
    }
    Ok(())
}

/// Calls `f` for every file, symlink and empty directory at or below `entry`.
fn every<E>(
    path: &[u8],
    entry: &Entry,
    lookup: &mut dyn FnMut(&TreeId) -> Result<Tree, E>,
    f: &mut dyn FnMut(Vec<u8>, Kind, u64),
) -> Result<(), E> {
    match &entry.kind {
        EntryKind::File { size, .. } => f(path.to_vec(), Kind::File, *size),
        EntryKind::Symlink { .. } => f(path.to_vec(), Kind::Symlink, 0),
        EntryKind::Dir { tree } => {
            let tree = lookup(tree)?;
            if tree.entries().is_empty() {
                f(path.to_vec(), Kind::Dir, 0);
            }
            for child in tree.entries() {
                every(&join(path, &child.name), child, lookup, f)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::ObjectId;

    fn file(name: &str, content: &str, executable: bool) -> Entry {
        Entry {
            name: name.into(),
            kind: EntryKind::File {
                object: ObjectId::from(blake3::hash(content.as_bytes())),
                size: content.len() as u64,
                executable,
                relocated: false,
            },
        }
    }

    struct Trees(HashMap<TreeId, Tree>);

    impl Trees {
        fn dir(&mut self, name: &str, entries: Vec<Entry>) -> Entry {
            let tree = Tree::new(entries);
            let id = tree.id();
            self.0.insert(id, tree);
            Entry {
                name: name.into(),
                kind: EntryKind::Dir { tree: id },
            }
        }
    }

    #[test]
    fn reports_each_kind_of_change_and_skips_equal_subtrees() {
        let mut t = Trees(HashMap::new());
        let same = t.dir("same", vec![file("x", "1", false)]);
        let old_sub = t.dir(
            "sub",
            vec![file("a", "old", false), file("gone", "g", false)],
        );
        let new_sub = t.dir(
            "sub",
            vec![file("a", "newer", false), file("b", "bb", false)],
        );
        let link = |target: &str| Entry {
            name: "link".into(),
            kind: EntryKind::Symlink {
                target: target.into(),
                relocated: false,
            },
        };
        let old = Tree::new(vec![
            same.clone(),
            old_sub,
            file("run", "r", false),
            link("a"),
        ]);
        let newdir = t.dir("newdir", vec![]);
        let new = Tree::new(vec![
            same,
            new_sub,
            file("run", "r", true),
            link("b"),
            newdir,
        ]);
        let same_id = match &old.get(b"same").unwrap().kind {
            EntryKind::Dir { tree } => *tree,
            _ => unreachable!(),
        };
        let mut loads = Vec::new();
        let mut lookup = |id: &TreeId| -> Result<Tree, ()> {
            loads.push(*id);
            Ok(t.0[id].clone())
        };
        let mut changes = Vec::new();
        diff(&old, &new, &mut lookup, &mut changes).unwrap();
        assert!(!loads.contains(&same_id), "equal subtrees are not read");
        assert_eq!(
            changes,
            vec![
                Change::Symlink {
                    path: b"link".to_vec(),
                    old_target: b"a".to_vec(),
                    new_target: b"b".to_vec()
                },
                Change::Added {
                    path: b"newdir".to_vec(),
                    kind: Kind::Dir,
                    size: 0
                },
                Change::Mode {
                    path: b"run".to_vec(),
                    executable: true
                },
                Change::Modified {
                    path: b"sub/a".to_vec(),
                    old_size: 3,
                    new_size: 5
                },
                Change::Added {
                    path: b"sub/b".to_vec(),
                    kind: Kind::File,
                    size: 2
                },
                Change::Removed {
                    path: b"sub/gone".to_vec(),
                    kind: Kind::File,
                    size: 1
                },
            ]
        );
    }

    #[test]
    fn a_kind_change_is_reported_as_such() {
        let mut t = Trees(HashMap::new());
        let as_dir = t.dir("p", vec![]);
        let old = Tree::new(vec![file("p", "x", false)]);
        let new = Tree::new(vec![as_dir]);
        let mut changes = Vec::new();
        diff(
            &old,
            &new,
            &mut |id| Ok::<_, ()>(t.0[id].clone()),
            &mut changes,
        )
        .unwrap();
        assert_eq!(
            changes,
            vec![Change::Kind {
                path: b"p".to_vec(),
                old: Kind::File,
                new: Kind::Dir
            }]
        );
    }
}
