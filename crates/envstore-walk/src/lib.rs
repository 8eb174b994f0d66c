//! Walks a directory tree in parallel and hashes it into envstore trees.
//!
//! The walk is the whole cost of the hot path (`materialize` of an environment the store already
//! has), so it does one `open` + `fstat` + read per file and nothing else: entry types come from
//! `readdir`, directories are visited in parallel with rayon, small files are read into a
//! per-thread buffer, large ones are hashed through memory-map windows. Source files are only
//! ever opened for reading.

mod filter;
mod mmap;
mod relocate;

pub use filter::{DEFAULT_EXCLUDES, Filter};
pub use relocate::MAX_SCAN as MAX_RELOCATED_SIZE;

use relocate::{Relocator, Scan};

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{self, File, FileType};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use envstore_tree::{Entry, EntryKind, MAX_NAME_LEN, ObjectId, Tree, TreeId};
use rayon::prelude::*;

/// Files at least this large are hashed through memory maps instead of `read`.
const MMAP_THRESHOLD: u64 = 1 << 20;
/// Per-thread read buffer for smaller files.
const BUF_SIZE: usize = 256 << 10;

/// What went wrong while walking. Every variant names the path involved.
#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    #[error("{path} does not exist")]
    NotFound { path: PathBuf },
    #[error("{path} is not a directory; give the directory of the environment")]
    NotADirectory { path: PathBuf },
    #[error("failed to {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error(
        "{path} is {kind}; envstore stores only regular files, directories and symlinks \
         (remove it, or skip it with --exclude)"
    )]
    SpecialFile { path: PathBuf, kind: &'static str },
    #[error("{path}: the name is longer than {MAX_NAME_LEN} bytes")]
    NameTooLong { path: PathBuf },
    #[error("a relocatable walk cannot stream (RECORD files are rewritten at its end)")]
    Relocating,
    #[error("invalid exclude pattern `{pattern}`: {source}")]
    BadPattern {
        pattern: String,
        source: globset::Error,
    },
}

impl WalkError {
    /// A lazy error constructor for `map_err`: the path is copied only when an error happens.
    fn io<'p>(op: &'static str, path: &'p Path) -> impl FnOnce(io::Error) -> WalkError + 'p {
        move |source| WalkError::Io {
            op,
            path: path.to_owned(),
            source,
        }
    }
}

/// A regular file found by the walk, with its content id.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: PathBuf,
    pub object: ObjectId,
    pub size: u64,
    pub executable: bool,
    /// The bytes to store when they differ from the file's (a relocated file, a rewritten
    /// RECORD); `object` is their hash.
    pub content: Option<Vec<u8>>,
    /// The file's stamp when it was hashed, if it was settled then (see [`Stamp`]).
    pub stamp: Option<Stamp>,
}

pub use envstore_fs::{SETTLE, Stamp};

/// Counts of what the walk saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalkStats {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub bytes: u64,
    pub excluded: u64,
}

/// Receives a walk's results as they are made, so that the walk itself keeps nothing: each
/// regular file as soon as it is hashed, each directory's tree as soon as its entries are known
/// (after every file and subtree below it). Called from several threads.
pub trait Sink: Sync {
    type Error: From<WalkError> + Send;
    fn file(&self, file: SourceFile) -> Result<(), Self::Error>;
    fn tree(&self, id: TreeId, tree: Tree) -> Result<(), Self::Error>;
}

/// A sink that drops everything: the walk only computes the root id and counts.
#[derive(Debug)]
pub struct Discard;

impl Sink for Discard {
    type Error = WalkError;
    fn file(&self, _: SourceFile) -> Result<(), WalkError> {
        Ok(())
    }
    fn tree(&self, _: TreeId, _: Tree) -> Result<(), WalkError> {
        Ok(())
    }
}

/// What a streaming walk ([`walk_into`]) returns: the root, the counts, and (in a relocatable
/// walk) the paths relocated.
#[derive(Debug)]
pub struct WalkSummary {
    pub root: TreeId,
    pub stats: WalkStats,
    pub relocated: Vec<PathBuf>,
    pub binary_with_prefix: Vec<PathBuf>,
}

/// Keeps everything, for [`walk`].
#[derive(Default)]
struct Collect {
    trees: Mutex<HashMap<TreeId, Tree>>,
    files: Mutex<Vec<SourceFile>>,
}

impl Sink for Collect {
    type Error = WalkError;
    fn file(&self, file: SourceFile) -> Result<(), WalkError> {
        self.files
            .lock()
            .expect("no panics while locked")
            .push(file);
        Ok(())
    }
    fn tree(&self, id: TreeId, tree: Tree) -> Result<(), WalkError> {
        self.trees
            .lock()
            .expect("no panics while locked")
            .insert(id, tree);
        Ok(())
    }
}

/// A walked directory: its root tree id, every tree in it, and every regular file.
#[derive(Debug)]
pub struct Walked {
    pub root: TreeId,
    pub trees: HashMap<TreeId, Tree>,
    pub files: Vec<SourceFile>,
    pub stats: WalkStats,
    /// In a relocatable walk: the files and symlinks stored with the placeholder.
    pub relocated: Vec<PathBuf>,
    /// In a relocatable walk: binary files that contain the root's path, stored as they are.
    pub binary_with_prefix: Vec<PathBuf>,
}

/// Walks and hashes `root`, which must be a directory (a symlink to one is followed; symlinks
/// inside it are not), keeping every tree and file in memory: O(files). Relocatable walks need
/// it (RECORD files are rewritten once every relocated path is known); everything else streams
/// with [`walk_into`].
/// `skip` names a directory that is never entered (the store itself, when it lives inside the
/// tree being stored). `on_file`, if given, is called with each regular file's size as it is
/// hashed (for progress displays); it is called from several threads.
pub fn walk(
    root: &Path,
    filter: &Filter,
    skip: Option<&Path>,
    on_file: Option<&(dyn Fn(u64) + Sync)>,
) -> Result<Walked, WalkError> {
    let collect = Collect::default();
    let summary = walk_with(root, filter, skip, on_file, &collect)?;
    let mut walked = Walked {
        root: summary.root,
        trees: collect.trees.into_inner().expect("no panics while locked"),
        files: collect.files.into_inner().expect("no panics while locked"),
        stats: summary.stats,
        relocated: summary.relocated,
        binary_with_prefix: summary.binary_with_prefix,
    };
    if filter.relocates() {
        relocate::fix_records(&mut walked, root, filter)?;
        walked.relocated.sort();
        walked.binary_with_prefix.sort();
    }
    Ok(walked)
}

/// Walks and hashes `root` like [`walk`], handing each file and tree to `sink` as soon as it is
/// made and keeping only the open directories' entries: memory grows with depth x width, not
/// with the number of files. Refuses a relocatable filter (see [`walk`]).
pub fn walk_into<S: Sink>(
    root: &Path,
    filter: &Filter,
    skip: Option<&Path>,
    on_file: Option<&(dyn Fn(u64) + Sync)>,
    sink: &S,
) -> Result<WalkSummary, S::Error> {
    if filter.relocates() {
        return Err(WalkError::Relocating.into());
    }
    walk_with(root, filter, skip, on_file, sink)
}

fn walk_with<S: Sink>(
    root: &Path,
    filter: &Filter,
    skip: Option<&Path>,
    on_file: Option<&(dyn Fn(u64) + Sync)>,
    sink: &S,
) -> Result<WalkSummary, S::Error> {
    let meta = fs::metadata(root).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => WalkError::NotFound {
            path: root.to_owned(),
        },
        _ => WalkError::Io {
            op: "read",
            path: root.to_owned(),
            source,
        },
    })?;
    if !meta.is_dir() {
        return Err(WalkError::NotADirectory {
            path: root.to_owned(),
        }
        .into());
    }
    let settled_before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.saturating_sub(SETTLE).as_secs() as i64);
    let walker = Walker {
        filter,
        on_file,
        settled_before,
        relocator: filter.relocates().then(|| Relocator::new(root)),
        relocated: Mutex::new(Vec::new()),
        binary_with_prefix: Mutex::new(Vec::new()),
        skip: skip
            .and_then(|s| fs::metadata(s).ok())
            .map(|m| (m.dev(), m.ino())),
        sink,
        stats: Default::default(),
    };
    let root_id = walker.walk_dir(root, Path::new(""))?;
    let s = &walker.stats;
    Ok(WalkSummary {
        root: root_id,
        stats: WalkStats {
            files: s.files.load(Ordering::Relaxed),
            dirs: s.dirs.load(Ordering::Relaxed),
            symlinks: s.symlinks.load(Ordering::Relaxed),
            bytes: s.bytes.load(Ordering::Relaxed),
            excluded: s.excluded.load(Ordering::Relaxed),
        },
        relocated: walker
            .relocated
            .into_inner()
            .expect("no panics while locked"),
        binary_with_prefix: walker
            .binary_with_prefix
            .into_inner()
            .expect("no panics while locked"),
    })
}

#[derive(Default)]
struct AtomicStats {
    files: AtomicU64,
    dirs: AtomicU64,
    symlinks: AtomicU64,
    bytes: AtomicU64,
    excluded: AtomicU64,
}

struct Walker<'a, S> {
    /// Unix seconds: files whose ctime is older are settled (see [`Stamp`]).
    settled_before: i64,
    filter: &'a Filter,
    on_file: Option<&'a (dyn Fn(u64) + Sync)>,
    relocator: Option<Relocator>,
    relocated: Mutex<Vec<PathBuf>>,
    binary_with_prefix: Mutex<Vec<PathBuf>>,
    skip: Option<(u64, u64)>,
    sink: &'a S,
    stats: AtomicStats,
}

impl<S: Sink> Walker<'_, S> {
    fn walk_dir(&self, dir: &Path, rel: &Path) -> Result<TreeId, S::Error> {
        let mut children: Vec<(OsString, FileType)> = Vec::new();
        for entry in fs::read_dir(dir).map_err(WalkError::io("read directory", dir))? {
            let entry = entry.map_err(WalkError::io("read directory", dir))?;
            let name = entry.file_name();
            // d_type from readdir: no stat unless the file system does not report it.
            let file_type = entry
                .file_type()
                .map_err(WalkError::io("stat", &entry.path()))?;
            if self.filter.excludes(rel, &name, file_type.is_dir()) {
                self.stats.excluded.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if name.len() > MAX_NAME_LEN {
                return Err(WalkError::NameTooLong { path: entry.path() }.into());
            }
            children.push((name, file_type));
        }
        let entries = children
            .into_par_iter()
            .filter_map(|(name, file_type)| self.visit(dir, rel, name, file_type).transpose())
            .collect::<Result<Vec<Entry>, S::Error>>()?;
        let tree = Tree::new(entries);
        let id = tree.id();
        self.stats.dirs.fetch_add(1, Ordering::Relaxed);
        self.sink.tree(id, tree)?;
        Ok(id)
    }

    fn visit(
        &self,
        dir: &Path,
        rel: &Path,
        name: OsString,
        file_type: FileType,
    ) -> Result<Option<Entry>, S::Error> {
        let path = dir.join(&name);
        let kind = if file_type.is_symlink() {
            let target = fs::read_link(&path).map_err(WalkError::io("read symlink", &path))?;
            let target = target.into_os_string().into_encoded_bytes();
            self.stats.symlinks.fetch_add(1, Ordering::Relaxed);
            match self.relocator.as_ref().and_then(|r| r.symlink(&target)) {
                Some(relocated) => {
                    self.relocated
                        .lock()
                        .expect("no panics while locked")
                        .push(path);
                    EntryKind::Symlink {
                        target: relocated,
                        relocated: true,
                    }
                }
                None => EntryKind::Symlink {
                    target,
                    relocated: false,
                },
            }
        } else if file_type.is_dir() {
            if let Some(skip) = self.skip {
                let meta = fs::symlink_metadata(&path).map_err(WalkError::io("stat", &path))?;
                if (meta.dev(), meta.ino()) == skip {
                    self.stats.excluded.fetch_add(1, Ordering::Relaxed);
                    return Ok(None);
                }
            }
            EntryKind::Dir {
                tree: self.walk_dir(&path, &rel.join(&name))?,
            }
        } else if file_type.is_file() {
            // Venv prompts carry the root's name: relocated in bin/activate* only.
            let activate = rel == Path::new("bin") && name.as_bytes().starts_with(b"activate");
            let hashed = hash_file(
                &path,
                self.relocator.as_ref(),
                activate,
                self.settled_before,
            )?;
            let (object, size, executable) = (hashed.object, hashed.size, hashed.executable);
            let relocated = hashed.content.is_some();
            if relocated {
                self.relocated
                    .lock()
                    .expect("no panics while locked")
                    .push(path.clone());
            } else if hashed.binary_with_prefix {
                self.binary_with_prefix
                    .lock()
                    .expect("no panics while locked")
                    .push(path.clone());
            }
            self.stats.files.fetch_add(1, Ordering::Relaxed);
            self.stats.bytes.fetch_add(size, Ordering::Relaxed);
            if let Some(on_file) = self.on_file {
                on_file(size);
            }
            let (content, stamp) = (hashed.content, hashed.stamp);
            self.sink.file(SourceFile {
                path,
                object,
                size,
                executable,
                content,
                stamp,
            })?;
            EntryKind::File {
                object,
                size,
                executable,
                relocated,
            }
        } else {
            return Err(WalkError::SpecialFile {
                kind: envstore_fs::type_name(&file_type),
                path,
            }
            .into());
        };
        Ok(Some(Entry {
            name: name.as_bytes().to_vec(),
            kind,
        }))
    }
}

/// Opens a regular file for reading without following a symlink or blocking on a fifo that
/// replaced it since `readdir`.
pub fn open_source_file(path: &Path) -> Result<(File, std::fs::Metadata), WalkError> {
    let (file, meta) = envstore_fs::open_nofollow(path).map_err(WalkError::io("open", path))?;
    if !meta.is_file() {
        return Err(WalkError::SpecialFile {
            kind: envstore_fs::kind_name(&meta),
            path: path.to_owned(),
        });
    }
    Ok((file, meta))
}

thread_local! {
    static BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; BUF_SIZE]);
}

/// One hashed file.
struct Hashed {
    object: ObjectId,
    size: u64,
    executable: bool,
    /// Relocated bytes (with the placeholder), when they differ from the file's.
    content: Option<Vec<u8>>,
    binary_with_prefix: bool,
    stamp: Option<Stamp>,
}

/// Hashes one regular file; in a relocatable walk, small files are read whole and scanned.
fn hash_file(
    path: &Path,
    relocator: Option<&Relocator>,
    activate: bool,
    settled_before: i64,
) -> Result<Hashed, WalkError> {
    let (mut file, meta) = open_source_file(path)?;
    let executable = meta.mode() & 0o100 != 0;
    if let Some(relocator) = relocator.filter(|_| meta.len() < relocate::MAX_SCAN) {
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        file.read_to_end(&mut bytes)
            .map_err(WalkError::io("read", path))?;
        let (content, binary_with_prefix) = match relocator.scan(&bytes, activate) {
            Scan::Untouched => (None, false),
            Scan::Binary => (None, true),
            Scan::Relocated(new) => (Some(new), false),
        };
        let stored = content.as_deref().unwrap_or(&bytes);
        let (object, size) = (ObjectId::from(blake3::hash(stored)), stored.len() as u64);
        return Ok(Hashed {
            object,
            size,
            executable,
            content,
            binary_with_prefix,
            stamp: None,
        });
    }
    let mut hasher = blake3::Hasher::new();
    let size = if meta.len() >= MMAP_THRESHOLD {
        // SAFETY: see `hash_mapped`: sources are environments nobody writes to meanwhile.
        #[allow(unsafe_code)]
        unsafe { mmap::hash_mapped(&file, meta.len(), &mut hasher) }
            .map_err(WalkError::io("read", path))?;
        meta.len()
    } else {
        BUF.with_borrow_mut(|buf| hash_reader(&mut file, buf, &mut hasher))
            .map_err(WalkError::io("read", path))?
    };
    let object = ObjectId::from(hasher.finalize());
    let settled = meta.ctime() < settled_before && size == meta.len();
    Ok(Hashed {
        object,
        size,
        executable,
        content: None,
        binary_with_prefix: false,
        stamp: settled.then(|| Stamp::of(&meta)),
    })
}

/// Feeds everything `reader` yields to `hasher` through `buf`; returns the byte count.
pub fn hash_reader(
    reader: &mut impl Read,
    buf: &mut [u8],
    hasher: &mut blake3::Hasher,
) -> io::Result<u64> {
    envstore_fs::read_chunks(reader, buf, |bytes| {
        hasher.update(bytes);
    })
}
