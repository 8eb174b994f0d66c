//! Loose objects and trees, each named by its blake3 hash.
//!
//! `objects/ab/cdef...` holds one file's bytes, uncompressed (reflinks and hardlinks need whole
//! files), read-only with the fixed mtime. A hardlinked materialization shares the object's
//! inode and so its mode, so objects come in two variants: `cdef...` (0444) for plain files and
//! `cdef....x` (0555) for executables. Each object is stored in the variant its first file
//! needs; the other variant is made only when the same bytes also appear with the other exec
//! bit (rare), so executables are not stored twice. `trees/ab/cdef...` holds canonical tree
//! encodings. Everything is written to a temporary file `.tmp-*` in its shard directory and
//! published by a rename that never replaces an existing entry, so readers see whole files or nothing, and a process that
//! loses a race simply uses the winner's identical copy.

use std::fs::{self, File, Permissions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use envstore_fs::DirState;

use envstore_fs::Stamp;
use envstore_tree::{DecodeError, ObjectId, Tree, TreeId, fixed_mtime};
use tempfile::NamedTempFile;

/// What went wrong with an object or tree. Every variant names the path involved.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error("failed to {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error(
        "{path} changed while it was being stored (expected {expected}, read {actual}); run again once nothing writes to it"
    )]
    SourceChanged {
        path: PathBuf,
        expected: ObjectId,
        actual: ObjectId,
    },
    /// The reader given to [`ObjectStore::insert_reader`] failed (the caller knows what it was).
    #[error("failed to read the content to store: {0}")]
    Reader(io::Error),
    #[error("{path} is missing from the store")]
    Missing { path: PathBuf },
    #[error("{path} is damaged: its content hashes to {actual}")]
    Corrupt { path: PathBuf, actual: String },
    #[error("{path} is not a valid tree: {source}")]
    BadTree { path: PathBuf, source: DecodeError },
    #[error(
        "{path} is {what}, not a directory envstore made; envstore never follows links or \
         writes through them in its store"
    )]
    NotAStoreDir { path: PathBuf, what: &'static str },
    #[error("{path} is damaged ({reason})")]
    Damaged { path: PathBuf, reason: String },
}

fn io_err<'p>(op: &'static str, path: &'p Path) -> impl FnOnce(io::Error) -> ObjectError + 'p {
    move |source| ObjectError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

const READ_ONLY: u32 = 0o444;
/// The largest relocated file (they are under 1 MiB before relocation) read whole.
const MAX_SMALL: u64 = 16 << 20;
/// The largest tree read: a directory of about a million entries. A bound, so that a tree file
/// replaced by something huge cannot take the machine's memory.
pub const MAX_TREE: u64 = 256 << 20;
const READ_ONLY_EXEC: u32 = 0o555;

/// The mode of an object file: its variant's.
fn object_mode(executable: bool) -> u32 {
    if executable {
        READ_ONLY_EXEC
    } else {
        READ_ONLY
    }
}
thread_local! {
    /// One copy buffer per thread, instead of an allocation (and its page faults) per object.
    static COPY_BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; 256 << 10]);
}

/// A temporary file in the directory of `dest`, for publishing by a same-directory rename.
/// Its name starts with `.tmp-`, which no object or tree name does. It is created with `mode`
/// (the handle stays writable), which saves an fchmod when the umask allows it.
fn temp_beside(dest: &Path, mode: u32) -> Result<NamedTempFile, ObjectError> {
    let dir = dest.parent().expect("store paths have a parent");
    tempfile::Builder::new()
        .prefix(".tmp-")
        .permissions(Permissions::from_mode(mode))
        .tempfile_in(dir)
        .map_err(io_err("create a temporary file in", dir))
}

fn shard_path(dir: &Path, hex: &str) -> PathBuf {
    let mut path = dir.join(&hex[..2]);
    path.push(&hex[2..]);
    path
}

/// Which of the 256 shard directories this process has seen to be real directories (not
/// links): each is checked with one `lstat` before the first write, read or removal in it.
#[derive(Debug)]
struct Shards {
    checked: [AtomicBool; 256],
}

impl Default for Shards {
    fn default() -> Self {
        Shards {
            checked: std::array::from_fn(|_| AtomicBool::new(false)),
        }
    }
}

impl Shards {
    /// Checks, once per process, that the shard holding `path` is a real directory.
    fn check(&self, path: &Path) -> Result<(), ObjectError> {
        let shard = path.parent().expect("store paths have a parent");
        let index = shard
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| u8::from_str_radix(n, 16).ok())
            .map(usize::from);
        if index.is_some_and(|i| self.checked[i].load(Ordering::Relaxed)) {
            return Ok(());
        }
        match envstore_fs::dir_state(shard).map_err(io_err("read", shard))? {
            DirState::Dir => {
                if let Some(i) = index {
                    self.checked[i].store(true, Ordering::Relaxed);
                }
                Ok(())
            }
            DirState::Missing => Err(ObjectError::Missing {
                path: shard.to_owned(),
            }),
            DirState::Other(what) => Err(ObjectError::NotAStoreDir {
                path: shard.to_owned(),
                what,
            }),
        }
    }
}

/// What is at the path of an object or tree that is about to be stored or reused.
enum Existing {
    Absent,
    /// A regular file of the expected size: reused (verify checks the bytes).
    Intact,
    /// Something else: a link, a directory, a file of the wrong size. Replaced.
    Damaged,
}

/// Checks the entry at `path` with one `lstat` (never following a link): the cheap half of the
/// reuse guarantee (docs/design.md, "What envstore guarantees").
fn existing(path: &Path, size: Option<u64>) -> Existing {
    match fs::symlink_metadata(path) {
        Err(_) => Existing::Absent,
        Ok(meta) if meta.is_file() && size.is_none_or(|s| s == meta.len()) => Existing::Intact,
        Ok(_) => Existing::Damaged,
    }
}

/// An error opening or reading a stored file: missing, or damaged (a link, a fifo, too large).
fn stored_err(path: &Path) -> impl FnOnce(io::Error) -> ObjectError + '_ {
    move |e| match e.kind() {
        io::ErrorKind::NotFound => ObjectError::Missing {
            path: path.to_owned(),
        },
        _ => ObjectError::Damaged {
            path: path.to_owned(),
            reason: e.to_string(),
        },
    }
}

/// Reads a stored file whole (bounded, never through a link) and checks that it hashes to
/// `name`, the 32 bytes of its id.
fn read_named(path: &Path, max: u64, name: &[u8; 32]) -> Result<Vec<u8>, ObjectError> {
    let bytes = envstore_fs::read_stored(path, max).map_err(stored_err(path))?;
    let actual = blake3::hash(&bytes);
    if actual.as_bytes() != name {
        return Err(ObjectError::Corrupt {
            path: path.to_owned(),
            actual: actual.to_hex().to_string(),
        });
    }
    Ok(bytes)
}

/// Removes a damaged entry so that a good copy can take its name (a link is removed, never
/// followed; a directory is removed as a tree).
fn remove_damaged(path: &Path) -> Result<(), ObjectError> {
    envstore_fs::remove_all(path).map_err(io_err("remove the damaged", path))
}

fn create_shards(dir: &Path) -> Result<(), ObjectError> {
    for i in 0..=255u8 {
        let shard = dir.join(format!("{i:02x}"));
        match fs::create_dir(&shard) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err("create", &shard)(e)),
        }
    }
    Ok(())
}

/// Publishes `tmp` at `dest` unless something is there already (then the existing, identical
/// copy wins and `tmp` is removed). Returns whether this call published it.
fn publish(tmp: NamedTempFile, dest: &Path) -> Result<bool, ObjectError> {
    match tmp.persist_noclobber(dest) {
        Ok(_) => Ok(true),
        Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(io_err("publish", dest)(e.error)),
    }
}

/// The loose-object tier.
#[derive(Debug, Clone)]
pub struct ObjectStore {
    dir: PathBuf,
    shards: Arc<Shards>,
}

impl ObjectStore {
    /// `dir` is `<store>/objects`.
    pub fn new(dir: PathBuf) -> Self {
        ObjectStore {
            dir,
            shards: Arc::default(),
        }
    }

    /// Checks (once per process and shard) that the shard directory of `path` is a real
    /// directory, before anything is written, linked or removed in it.
    pub fn check_shard(&self, path: &Path) -> Result<(), ObjectError> {
        self.shards.check(path)
    }

    /// Opens a stored object for reading (never through a link) and checks the cheap half of
    /// its integrity: a regular file of `size` bytes. The bytes are checked by `verify`.
    pub fn open_checked(
        &self,
        path: &Path,
        size: u64,
    ) -> Result<(File, fs::Metadata), ObjectError> {
        self.check_shard(path)?;
        let (file, meta) = envstore_fs::open_stored(path).map_err(stored_err(path))?;
        if meta.len() != size {
            return Err(ObjectError::Damaged {
                path: path.to_owned(),
                reason: format!("{} bytes where its snapshot says {size}", meta.len()),
            });
        }
        Ok((file, meta))
    }

    /// Opens an object in the variant for `executable`, else the other, like
    /// [`Self::open_checked`], trying each by opening it (no `stat` first). Returns the file
    /// and the path it was opened at.
    pub fn open_either(
        &self,
        id: &ObjectId,
        executable: bool,
        size: u64,
    ) -> Result<(File, PathBuf), ObjectError> {
        let first = self.path(id, executable);
        let path = match self.open_checked(&first, size) {
            Err(ObjectError::Missing { .. }) => self.path(id, !executable),
            opened => return opened.map(|(file, _)| (file, first)),
        };
        match self.open_checked(&path, size) {
            Err(ObjectError::Missing { .. }) => Err(ObjectError::Missing { path: first }),
            opened => opened.map(|(file, _)| (file, path)),
        }
    }

    /// Reads a small stored object whole (a relocated file) and checks its bytes against its
    /// name: relocated files are rewritten, not linked, so this is where they are verified.
    pub fn read_verified(&self, id: &ObjectId, executable: bool) -> Result<Vec<u8>, ObjectError> {
        let path = self.require(id, executable)?;
        self.check_shard(&path)?;
        read_named(&path, MAX_SMALL, id.as_bytes())
    }

    /// Creates the 256 shard directories (idempotent, safe to race).
    pub fn init(&self) -> Result<(), ObjectError> {
        create_shards(&self.dir)
    }

    /// The path of one variant of an object: `ab/<rest>` (0444) or `ab/<rest>.x` (0555).
    pub fn path(&self, id: &ObjectId, executable: bool) -> PathBuf {
        let path = shard_path(&self.dir, &id.to_hex());
        if executable {
            let mut path = path.into_os_string();
            path.push(".x");
            path.into()
        } else {
            path
        }
    }

    fn exists(path: &Path) -> bool {
        fs::symlink_metadata(path).is_ok()
    }

    /// Whether the store has the object in either variant.
    pub fn contains(&self, id: &ObjectId) -> bool {
        self.find(id, false).is_some()
    }

    /// An existing variant of the object, preferring the one with the given exec bit. Either
    /// serves as the source of a reflink or copy; hardlinks need [`Self::ensure_variant`].
    pub fn find(&self, id: &ObjectId, executable: bool) -> Option<PathBuf> {
        [executable, !executable]
            .into_iter()
            .map(|x| self.path(id, x))
            .find(|p| Self::exists(p))
    }

    /// Like [`Self::find`], but a missing object is an error naming the path it should be at.
    pub fn require(&self, id: &ObjectId, executable: bool) -> Result<PathBuf, ObjectError> {
        self.find(id, executable)
            .ok_or_else(|| ObjectError::Missing {
                path: self.path(id, executable),
            })
    }

    /// Stores the regular file at `source`, which the walk hashed as `expected` (`size` bytes),
    /// in the variant for `executable`. The source is only read. Returns the bytes written (0
    /// when an intact variant was there already).
    ///
    /// An object is published only when the bytes stored are known to hash to its name: they
    /// are hashed as they are written (one read of the source feeds both), or, when the file
    /// system clones, the source is hashed again right after the clone (see
    /// [`Self::copy_to_temp`]). A source that changed since the walk hashed it is refused with
    /// [`ObjectError::SourceChanged`]. An existing entry that is not a regular file of the
    /// right size (a link, a truncated file) is replaced, not reused.
    pub fn insert_file(
        &self,
        source: &Path,
        expected: ObjectId,
        executable: bool,
        size: u64,
        settled: Option<&Stamp>,
    ) -> Result<u64, ObjectError> {
        let dest = self.path(&expected, executable);
        self.check_shard(&dest)?;
        match existing(&dest, Some(size)) {
            Existing::Intact => return Ok(0),
            Existing::Damaged => remove_damaged(&dest)?,
            Existing::Absent => {}
        }
        let other = self.path(&expected, !executable);
        if let Existing::Intact = existing(&other, Some(size)) {
            // Same bytes, other exec bit: derive the variant from the stored, verified copy.
            if let Ok(written) = self.make_variant(&expected, executable) {
                return Ok(written);
            }
        }
        let (mut src, _) = envstore_fs::open_regular(source).map_err(io_err("open", source))?;
        let (tmp, size) =
            self.copy_to_temp(&mut src, source, &dest, executable, expected, settled)?;
        Ok(if publish(tmp, &dest)? { size } else { 0 })
    }

    /// Stores whatever `reader` yields (an imported file: its hash is not known in advance) in
    /// the variant for `executable`: copied into `tmp` (on the store's file system) while hashed,
    /// then published under its name. Returns the id, the size and the bytes written.
    pub fn insert_reader(
        &self,
        reader: &mut dyn io::Read,
        tmp: &Path,
        executable: bool,
    ) -> Result<(ObjectId, u64, u64), ObjectError> {
        let mut file = tempfile::Builder::new()
            .prefix(".tmp-import-")
            .tempfile_in(tmp)
            .map_err(io_err("create a temporary file in", tmp))?;
        let mut hasher = blake3::Hasher::new();
        let size = COPY_BUF.with_borrow_mut(|buf| -> Result<u64, ObjectError> {
            let mut size = 0;
            loop {
                let n = match reader.read(buf) {
                    Ok(0) => return Ok(size),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(ObjectError::Reader(e)),
                };
                hasher.update(&buf[..n]);
                file.write_all(&buf[..n])
                    .map_err(io_err("write", file.path()))?;
                size += n as u64;
            }
        })?;
        let id = ObjectId::from(hasher.finalize());
        finish_file(file.as_file(), file.path(), object_mode(executable), false)?;
        let dest = self.path(&id, executable);
        self.check_shard(&dest)?;
        if let Existing::Damaged = existing(&dest, Some(size)) {
            remove_damaged(&dest)?;
        }
        let written = if publish(file, &dest)? { size } else { 0 };
        Ok((id, size, written))
    }

    /// Stores `bytes` (already hashed as `expected`, e.g. a relocated file's content) in the
    /// variant for `executable`. Returns the bytes written (0 when it was there already).
    pub fn insert_bytes(
        &self,
        bytes: &[u8],
        expected: ObjectId,
        executable: bool,
    ) -> Result<u64, ObjectError> {
        let dest = self.path(&expected, executable);
        self.check_shard(&dest)?;
        match existing(&dest, Some(bytes.len() as u64)) {
            Existing::Intact => return Ok(0),
            Existing::Damaged => remove_damaged(&dest)?,
            Existing::Absent => {}
        }
        let actual = ObjectId::from(blake3::hash(bytes));
        if actual != expected {
            return Err(ObjectError::Corrupt {
                path: dest,
                actual: format!("{actual} for object {expected}"),
            });
        }
        let mut tmp = temp_beside(&dest, object_mode(executable))?;
        tmp.write_all(bytes).map_err(io_err("write", tmp.path()))?;
        finish_file(tmp.as_file(), tmp.path(), object_mode(executable), true)?;
        Ok(if publish(tmp, &dest)? {
            bytes.len() as u64
        } else {
            0
        })
    }

    /// Stores the object `expected` from bytes that `fill` writes (e.g. chunks rehydrated from
    /// packs), in the variant for `executable`. What was written is hashed on the way, and
    /// published only if it matches `expected`; otherwise the error names `source`, where the
    /// bytes came from. Returns the bytes written (0 when the variant was there already).
    pub fn insert_with(
        &self,
        expected: ObjectId,
        executable: bool,
        source: &Path,
        fill: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> Result<u64, ObjectError> {
        let dest = self.path(&expected, executable);
        self.check_shard(&dest)?;
        match existing(&dest, None) {
            Existing::Intact => return Ok(0),
            Existing::Damaged => remove_damaged(&dest)?,
            Existing::Absent => {}
        }
        let mut tmp = temp_beside(&dest, object_mode(executable))?;
        let tmp_path = tmp.path().to_owned();
        let mut writer = HashingWriter {
            inner: io::BufWriter::with_capacity(256 << 10, tmp.as_file_mut()),
            hasher: blake3::Hasher::new(),
            len: 0,
        };
        fill(&mut writer).map_err(|e| match e.kind() {
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => {
                io_err("write", &tmp_path)(e)
            }
            _ => io_err("read", source)(e),
        })?;
        writer.inner.flush().map_err(io_err("write", &tmp_path))?;
        let (actual, size) = (ObjectId::from(writer.hasher.finalize()), writer.len);
        drop(writer);
        if actual != expected {
            return Err(ObjectError::Corrupt {
                path: source.to_owned(),
                actual: format!("{actual} for object {expected}"),
            });
        }
        finish_file(tmp.as_file(), &tmp_path, object_mode(executable), true)?;
        Ok(if publish(tmp, &dest)? { size } else { 0 })
    }

    /// The path of the variant of `id` with the given exec bit, creating it from the other
    /// variant if needed (hardlinks need the inode with the right mode).
    pub fn ensure_variant(&self, id: &ObjectId, executable: bool) -> Result<PathBuf, ObjectError> {
        let dest = self.path(id, executable);
        self.check_shard(&dest)?;
        match existing(&dest, None) {
            Existing::Intact => {}
            Existing::Damaged => {
                remove_damaged(&dest)?;
                self.make_variant(id, executable)?;
            }
            Existing::Absent => {
                self.make_variant(id, executable)?;
            }
        }
        Ok(dest)
    }

    /// Copies the other variant of `id` (verifying it) into the variant for `executable`.
    fn make_variant(&self, id: &ObjectId, executable: bool) -> Result<u64, ObjectError> {
        let from = self.path(id, !executable);
        self.check_shard(&from)?;
        let (mut src, _) = envstore_fs::open_stored(&from).map_err(stored_err(&from))?;
        let dest = self.path(id, executable);
        let (tmp, size) = self
            .copy_to_temp(&mut src, &from, &dest, executable, *id, None)
            .map_err(|e| match e {
                ObjectError::SourceChanged { path, actual, .. } => ObjectError::Corrupt {
                    path,
                    actual: actual.to_hex(),
                },
                other => other,
            })?;
        Ok(if publish(tmp, &dest)? { size } else { 0 })
    }

    /// Copies `src` into a new temp file beside `dest`, read-only with the fixed mtime, and
    /// makes sure the copy holds bytes that hash to `expected`; otherwise
    /// [`ObjectError::SourceChanged`] (nothing is published).
    ///
    /// Where the file system clones (XFS, btrfs), the copy is a clone: no data is written. A
    /// clone's pages are not cached, so hashing it reads every byte back from disk (40% of a
    /// first materialization on XFS). For a source that was *settled* when the walk hashed it
    /// (`settled`: its ctime was then more than 2 s old) the source is hashed again instead,
    /// from the page cache, and trusted if its stamp did not move from before the clone to
    /// after that hash: the clone flushes the source's dirty pages and write-protects them, so
    /// any later write, through `write(2)` or a shared mapping, moves ctime. (Comparing stamps
    /// alone was not enough: a writer holding a mapping it dirtied before the walk changes
    /// bytes without moving ctime until writeback.) Otherwise the clone itself is hashed.
    ///
    /// Without a clone, one read of the source feeds both the hash and the write, so the hash
    /// is of exactly the bytes stored. All-zero blocks are skipped, not written, so a sparse
    /// file stays sparse in the store.
    ///
    /// The temp file is created next to `dest`, in the same shard directory: a rename within one
    /// directory takes only that directory's lock, while a rename across directories serializes
    /// on the file system's rename mutex (one shared `tmp/` made first-time ingest 4x slower).
    fn copy_to_temp(
        &self,
        src: &mut File,
        src_path: &Path,
        dest: &Path,
        executable: bool,
        expected: ObjectId,
        settled: Option<&Stamp>,
    ) -> Result<(NamedTempFile, u64), ObjectError> {
        let mut tmp = temp_beside(dest, object_mode(executable))?;
        let tmp_path = tmp.path().to_owned();
        let before = src.metadata().map_err(io_err("stat", src_path))?;
        let (actual, size) = if reflink_copy::reflink_file(src, tmp.as_file()).is_ok() {
            let unchanged = |a: &fs::Metadata| settled.is_some_and(|s| *s == Stamp::of(a));
            let mut trusted = None;
            if unchanged(&before) {
                let again = hash_file(src).map_err(io_err("read", src_path))?;
                let after = src.metadata().map_err(io_err("stat", src_path))?;
                if unchanged(&after) && again.0 == expected {
                    trusted = Some(again);
                }
            }
            match trusted {
                Some(hashed) => hashed,
                None => hash_file(tmp.as_file_mut()).map_err(io_err("read", &tmp_path))?,
            }
        } else {
            copy_hashing(src, tmp.as_file_mut()).map_err(|e| match e.kind() {
                io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => {
                    io_err("write", &tmp_path)(e)
                }
                _ => io_err("copy", src_path)(e),
            })?
        };
        if actual != expected {
            return Err(ObjectError::SourceChanged {
                path: src_path.to_owned(),
                expected,
                actual,
            });
        }
        finish_file(tmp.as_file(), &tmp_path, object_mode(executable), true)?;
        Ok((tmp, size))
    }

    /// Re-hashes a stored object; `Ok(None)` when it is missing. Anything but a regular file
    /// (a link is not followed) is an error.
    pub fn rehash(&self, path: &Path) -> Result<Option<ObjectId>, ObjectError> {
        let mut file = match envstore_fs::open_stored(path) {
            Ok((f, _)) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("open", path)(e)),
        };
        let (id, _) = hash_file(&mut file).map_err(io_err("read", path))?;
        Ok(Some(id))
    }
}

/// Hashes a file from its start; returns the id and the byte count.
fn hash_file(file: &mut File) -> io::Result<(ObjectId, u64)> {
    file.seek(io::SeekFrom::Start(0))?;
    let mut hasher = blake3::Hasher::new();
    let size = COPY_BUF.with_borrow_mut(|buf| {
        envstore_fs::read_chunks(file, buf, |bytes| {
            hasher.update(bytes);
        })
    })?;
    Ok((ObjectId::from(hasher.finalize()), size))
}

/// Copies `src` to `dst` from one read: each block read is hashed and written (or, when it is
/// all zeros, skipped, leaving a hole), so the hash is of exactly what was stored.
fn copy_hashing(src: &mut File, dst: &mut File) -> io::Result<(ObjectId, u64)> {
    let mut hasher = blake3::Hasher::new();
    let size = COPY_BUF.with_borrow_mut(|buf| -> io::Result<u64> {
        let mut size = 0u64;
        loop {
            let n = match src.read(buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let block = &buf[..n];
            hasher.update(block);
            if n >= 4096 && envstore_fs::is_zero(block) {
                dst.seek(io::SeekFrom::Current(n as i64))?;
            } else {
                dst.write_all(block)?;
            }
            size += n as u64;
        }
        Ok(size)
    })?;
    // Trailing zero blocks were skipped: the length makes them a hole.
    dst.set_len(size)?;
    Ok((ObjectId::from(hasher.finalize()), size))
}

/// Hashes what passes through it.
struct HashingWriter<W> {
    inner: W,
    hasher: blake3::Hasher,
    len: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Sets a stored file's mode and the fixed mtime through its open handle.
/// `created_with_mode`: the file was created asking for `mode` (see [`temp_beside`]).
fn finish_file(
    file: &File,
    path: &Path,
    mode: u32,
    created_with_mode: bool,
) -> Result<(), ObjectError> {
    envstore_link::set_mode_unless_created_with(file, mode, created_with_mode)
        .map_err(io_err("chmod", path))?;
    let t = fixed_mtime();
    file.set_times(fs::FileTimes::new().set_modified(t).set_accessed(t))
        .map_err(io_err("set the mtime of", path))
}

/// The tree store: canonical encodings under `trees/ab/cdef...`.
#[derive(Debug, Clone)]
pub struct TreeStore {
    dir: PathBuf,
    shards: Arc<Shards>,
}

impl TreeStore {
    /// `dir` is `<store>/trees`.
    pub fn new(dir: PathBuf) -> Self {
        TreeStore {
            dir,
            shards: Arc::default(),
        }
    }

    pub fn init(&self) -> Result<(), ObjectError> {
        create_shards(&self.dir)
    }

    pub fn path(&self, id: &TreeId) -> PathBuf {
        shard_path(&self.dir, &id.to_hex())
    }

    pub fn contains(&self, id: &TreeId) -> bool {
        fs::symlink_metadata(self.path(id)).is_ok()
    }

    /// Stores `tree` under its id unless an intact copy is there already. An entry of the
    /// wrong size or kind (truncated, a link) is replaced, so storing a tree again heals it.
    pub fn insert(&self, tree: &Tree) -> Result<TreeId, ObjectError> {
        let bytes = tree.encode();
        let id = TreeId::from(blake3::hash(&bytes));
        let dest = self.path(&id);
        self.shards.check(&dest)?;
        match existing(&dest, Some(bytes.len() as u64)) {
            Existing::Intact => return Ok(id),
            Existing::Damaged => remove_damaged(&dest)?,
            Existing::Absent => {}
        }
        let mut tmp = temp_beside(&dest, READ_ONLY)?;
        tmp.write_all(&bytes).map_err(io_err("write", tmp.path()))?;
        finish_file(tmp.as_file(), tmp.path(), READ_ONLY, true)?;
        publish(tmp, &dest)?;
        Ok(id)
    }

    /// Stores `tree` for repair: like [`Self::insert`], but an existing copy is read and
    /// compared, so that one damaged without changing its size is replaced too.
    pub fn repair(&self, tree: &Tree) -> Result<TreeId, ObjectError> {
        let bytes = tree.encode();
        let id = TreeId::from(blake3::hash(&bytes));
        let dest = self.path(&id);
        self.shards.check(&dest)?;
        let intact = envstore_fs::read_bounded(&dest, MAX_TREE).is_ok_and(|b| b == bytes);
        if !intact && fs::symlink_metadata(&dest).is_ok() {
            remove_damaged(&dest)?;
        }
        self.insert(tree)
    }

    /// Reads, verifies and decodes a tree. A tree that does not hash to its name, does not
    /// decode, or is not a regular file of bounded size is reported as damage, never trusted.
    pub fn get(&self, id: &TreeId) -> Result<Tree, ObjectError> {
        let path = self.path(id);
        self.shards.check(&path)?;
        let bytes = read_named(&path, MAX_TREE, id.as_bytes())?;
        Tree::decode(&bytes).map_err(|source| ObjectError::BadTree { path, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, ObjectStore) {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("objects")).unwrap();
        let objects = ObjectStore::new(dir.path().join("objects"));
        objects.init().unwrap();
        (dir, objects)
    }

    #[test]
    fn a_settled_unchanged_source_is_stored_without_rereading() {
        let (dir, objects) = store();
        let src = dir.path().join("src");
        fs::write(&src, b"settled bytes").unwrap();
        let id = ObjectId::from(blake3::hash(b"settled bytes"));
        let stamp = Stamp::of(&fs::metadata(&src).unwrap());
        assert_eq!(
            objects
                .insert_file(&src, id, false, 13, Some(&stamp))
                .unwrap(),
            13
        );
        let stored = objects.path(&id, false);
        assert_eq!(fs::read(&stored).unwrap(), b"settled bytes");
        assert_eq!(
            fs::metadata(&stored).unwrap().permissions().mode() & 0o777,
            0o444
        );
    }

    #[test]
    fn a_source_written_after_it_was_hashed_is_caught_with_or_without_a_stamp() {
        let (dir, objects) = store();
        let src = dir.path().join("src");
        fs::write(&src, b"original").unwrap();
        let id = ObjectId::from(blake3::hash(b"original"));
        let stamp = Stamp::of(&fs::metadata(&src).unwrap());
        // Same size, new bytes: the write moves ctime (and mtime), so the stamp no longer
        // matches and the copy is hashed, which reveals the change.
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(&src, b"modified").unwrap();
        for settled in [Some(&stamp), None] {
            let err = objects
                .insert_file(&src, id, false, 8, settled)
                .unwrap_err();
            assert!(matches!(err, ObjectError::SourceChanged { .. }), "{err}");
            assert!(!objects.contains(&id));
        }
        // No temp file is left behind.
        let shard = objects.path(&id, false).parent().unwrap().to_owned();
        assert_eq!(fs::read_dir(shard).unwrap().count(), 0);
    }
}
