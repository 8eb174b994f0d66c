//! Export and import: a snapshot as one tar or tar.zst file, and back.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::SystemTime;

use envstore_archive::{ArchiveError, Event, Format, Item, Writer};
use envstore_index::SnapshotMeta;
use envstore_objects::ObjectError;
use envstore_tree::{Entry, EntryKind, SnapshotId, Tree, TreeId};

use crate::store::files::unix_secs;
use crate::{Error, Result, Store};

/// The export's destination: its write errors are told apart from errors reading the store, so
/// that a full disk or a closed pipe names the output, not the store.
struct Output<W>(W);

/// Marks an I/O error as the output's.
#[derive(Debug)]
struct OutputFailed(std::io::Error);

impl std::fmt::Display for OutputFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for OutputFailed {}

impl<W: Write> Write for Output<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .write(buf)
            .map_err(|e| std::io::Error::new(e.kind(), OutputFailed(e)))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0
            .flush()
            .map_err(|e| std::io::Error::new(e.kind(), OutputFailed(e)))
    }
}

/// An export error: the output's own ([`Error::Output`]), or one reading the store.
fn export_err(store: &std::path::Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| {
        if e.get_ref().is_some_and(|inner| inner.is::<OutputFailed>()) {
            let inner = e.into_inner().expect("checked above");
            let OutputFailed(source) = *inner.downcast::<OutputFailed>().expect("checked above");
            Error::Output { source }
        } else {
            Error::io("read the snapshot from", store)(e)
        }
    }
}

/// What an import built: the tree, as it will be stored.
enum Node {
    Dir(BTreeMap<Vec<u8>, Node>),
    Leaf(EntryKind),
}

/// Writes snapshot `id` to `out` as a deterministic archive; returns `out`.
pub(crate) fn export<W: Write>(
    store: &Store,
    id: &SnapshotId,
    out: W,
    format: Format,
) -> Result<W> {
    if !store.has_snapshot(id) {
        return Err(Error::UnknownSnapshot {
            prefix: id.to_hex(),
        });
    }
    let _lock = store.lock_shared()?;
    crate::cold::rehydrate::ensure_loose(store, id)?;
    let mut writer = Writer::new(Output(out), format).map_err(export_err(store.root()))?;
    export_tree(store, &mut writer, &id.root(), &[])?;
    writer
        .finish()
        .map(|Output(out)| out)
        .map_err(export_err(store.root()))
}

fn export_tree<W: Write>(
    store: &Store,
    writer: &mut Writer<Output<W>>,
    tree: &TreeId,
    prefix: &[u8],
) -> Result<()> {
    let tree = store.trees().get(tree)?;
    for entry in tree.entries() {
        let mut path = prefix.to_vec();
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(&entry.name);
        let io = export_err(store.root());
        match &entry.kind {
            EntryKind::Dir { tree } => {
                writer.add(&path, Item::Dir).map_err(io)?;
                export_tree(store, writer, tree, &path)?;
            }
            EntryKind::Symlink { target, relocated } => {
                writer
                    .add(
                        &path,
                        Item::Symlink {
                            target,
                            relocated: *relocated,
                        },
                    )
                    .map_err(io)?;
            }
            EntryKind::File {
                object,
                size,
                executable,
                relocated,
            } => {
                let (mut file, _) = store.objects().open_either(object, *executable, *size)?;
                let (size, executable, relocated) = (*size, *executable, *relocated);
                let item = Item::File {
                    size,
                    executable,
                    relocated,
                    content: &mut file,
                };
                writer.add(&path, item).map_err(io)?;
            }
        }
    }
    Ok(())
}

/// Stores the snapshot in an archive read from `input` (tar or tar.zst) and returns its id.
/// Nothing becomes visible unless the whole archive is valid: objects are written as the
/// archive streams by, the trees and the snapshot record only at the end (objects of a
/// refused archive are unreferenced, and prune removes them). `limit` bounds the bytes
/// after decompression. `label` says where it came from (recorded as the source).
pub(crate) fn import(
    store: &Store,
    input: impl Read,
    limit: u64,
    label: &str,
) -> Result<SnapshotId> {
    store.require_writable("import into it")?;
    let _lock = store.lock_shared()?;
    let tmp = store.root().join("tmp");
    let mut root = BTreeMap::new();
    let (mut files, mut symlinks, mut bytes) = (0u64, 0u64, 0u64);
    envstore_archive::read(input, limit, &mut |event| -> Result<()> {
        let (path, node) = match event {
            Event::Dir { path } => (path, None),
            Event::File {
                path,
                executable,
                relocated,
                content,
            } => {
                let (object, size, _) = store
                    .objects()
                    .insert_reader(content, &tmp, executable)
                    .map_err(|e| match e {
                        ObjectError::Reader(e) => {
                            Error::Archive(envstore_archive::classify(e, limit))
                        }
                        other => other.into(),
                    })?;
                files += 1;
                bytes += size;
                (
                    path,
                    Some(EntryKind::File {
                        object,
                        size,
                        executable,
                        relocated,
                    }),
                )
            }
            Event::Symlink {
                path,
                target,
                relocated,
            } => {
                symlinks += 1;
                (path, Some(EntryKind::Symlink { target, relocated }))
            }
            Event::Hardlink { path, target } => {
                let kind = match lookup(&root, &target) {
                    Some(Node::Leaf(kind @ EntryKind::File { .. })) => kind.clone(),
                    _ => unreachable!("the reader checked the hard link's target"),
                };
                if let EntryKind::File { size, .. } = kind {
                    files += 1;
                    bytes += size;
                }
                (path, Some(kind))
            }
        };
        insert(&mut root, &path, node);
        Ok(())
    })?;
    let mut dirs = 0;
    let root_id = store_node_tree(store, root, &mut dirs)?;
    let id = SnapshotId::from(root_id);
    if !store.has_snapshot(&id) {
        let meta = SnapshotMeta {
            created: unix_secs(SystemTime::now()),
            files,
            dirs,
            symlinks,
            bytes,
            source: label.to_owned(),
            packed: 0,
        };
        store.write_file_atomic(&store.snapshot_file(&id), meta.to_text().as_bytes())?;
        let _ = store.update_index(|index| index.put_snapshots(&[(id, meta)]));
    } else {
        crate::store::records::touch(store, &id);
    }
    Ok(id)
}

fn store_node_tree(store: &Store, dir: BTreeMap<Vec<u8>, Node>, dirs: &mut u64) -> Result<TreeId> {
    *dirs += 1;
    let mut entries = Vec::with_capacity(dir.len());
    for (name, node) in dir {
        let kind = match node {
            Node::Leaf(kind) => kind,
            Node::Dir(sub) => EntryKind::Dir {
                tree: store_node_tree(store, sub, dirs)?,
            },
        };
        entries.push(Entry { name, kind });
    }
    Ok(store.trees().insert(&Tree::new(entries))?)
}

fn lookup<'a>(dir: &'a BTreeMap<Vec<u8>, Node>, path: &[Vec<u8>]) -> Option<&'a Node> {
    let (first, rest) = path.split_first()?;
    match (dir.get(first)?, rest.is_empty()) {
        (node, true) => Some(node),
        (Node::Dir(sub), false) => lookup(sub, rest),
        _ => None,
    }
}

/// Inserts a leaf (or, with `None`, a directory) at `path`, creating parent directories.
fn insert(dir: &mut BTreeMap<Vec<u8>, Node>, path: &[Vec<u8>], leaf: Option<EntryKind>) {
    let (first, rest) = path.split_first().expect("the reader refuses empty paths");
    if rest.is_empty() {
        match leaf {
            Some(kind) => {
                dir.insert(first.clone(), Node::Leaf(kind));
            }
            None => {
                dir.entry(first.clone())
                    .or_insert_with(|| Node::Dir(BTreeMap::new()));
            }
        }
        return;
    }
    match dir
        .entry(first.clone())
        .or_insert_with(|| Node::Dir(BTreeMap::new()))
    {
        Node::Dir(sub) => insert(sub, rest, leaf),
        Node::Leaf(_) => unreachable!("the reader refuses entries under files and symlinks"),
    }
}

impl From<ArchiveError> for Error {
    fn from(e: ArchiveError) -> Error {
        Error::Archive(e)
    }
}
