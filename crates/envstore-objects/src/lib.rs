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
use std::io::{self, Seek, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use envstore_tree::{DecodeError, ObjectId, Tree, TreeId, fixed_mtime};
use envstore_walk::Stamp;
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
    #[error(transparent)]
    Source(#[from] envstore_walk::WalkError),
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
    #[error("{path} is missing from the store; run `envstore verify --repair`")]
    Missing { path: PathBuf },
    #[error("{path} is damaged: its content hashes to {actual}; run `envstore verify --repair`")]
    Corrupt { path: PathBuf, actual: String },
    #[error("{path} is not a valid tree: {source}; run `envstore verify --repair`")]
    BadTree { path: PathBuf, source: DecodeError },
}

fn io_err<'p>(op: &'static str, path: &'p Path) -> impl FnOnce(io::Error) -> ObjectError + 'p {
    move |source| ObjectError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

const READ_ONLY: u32 = 0o444;
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
}

impl ObjectStore {
    /// `dir` is `<store>/objects`.
    pub fn new(dir: PathBuf) -> Self {
        ObjectStore { dir }
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

    /// Stores the regular file at `source`, which the walk hashed as `expected`, in the variant
    /// for `executable`. The bytes are hashed again while they are copied, so an object's
    /// content always matches its name even if the source changes in between. The source is
    /// only read. Returns the bytes written (0 when the variant was there already).
    ///
    /// With `settled`, the walk's [`Stamp`] of a file that was settled when it was hashed: if
    /// the source still has that stamp after the copy, nothing wrote to it since it was hashed,
    /// so the copy (a consistent clone, or an in-kernel copy) has the hashed bytes and is not
    /// read again. On a reflink file system that read is most of the cost: a clone's pages are
    /// not in the page cache, so re-hashing it reads every byte back from disk.
    pub fn insert_file(
        &self,
        source: &Path,
        expected: ObjectId,
        executable: bool,
        settled: Option<&Stamp>,
    ) -> Result<u64, ObjectError> {
        let dest = self.path(&expected, executable);
        if Self::exists(&dest) {
            return Ok(0);
        }
        if Self::exists(&self.path(&expected, !executable)) {
            // Same bytes, other exec bit: derive the variant from the stored, verified copy.
            return self.make_variant(&expected, executable);
        }
        let (mut src, _) = envstore_walk::open_source_file(source)?;
        let settled = settled.map(|stamp| (stamp, expected));
        let (tmp, size, actual) =
            self.copy_to_temp(&mut src, source, &dest, executable, settled)?;
        if actual != expected {
            return Err(ObjectError::SourceChanged {
                path: source.to_owned(),
                expected,
                actual,
            });
        }
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
        let written = if publish(file, &self.path(&id, executable))? {
            size
        } else {
            0
        };
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
        if Self::exists(&dest) {
            return Ok(0);
        }
        debug_assert_eq!(ObjectId::from(blake3::hash(bytes)), expected);
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
        if Self::exists(&dest) {
            return Ok(0);
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
        if !Self::exists(&dest) {
            self.make_variant(id, executable)?;
        }
        Ok(dest)
    }

    /// Copies the other variant of `id` (verifying it) into the variant for `executable`.
    fn make_variant(&self, id: &ObjectId, executable: bool) -> Result<u64, ObjectError> {
        let from = self.path(id, !executable);
        let mut src = File::open(&from).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => ObjectError::Missing { path: from.clone() },
            _ => io_err("open", &from)(e),
        })?;
        let dest = self.path(id, executable);
        let (tmp, size, actual) = self.copy_to_temp(&mut src, &from, &dest, executable, None)?;
        if actual != *id {
            return Err(ObjectError::Corrupt {
                path: from,
                actual: actual.to_hex(),
            });
        }
        Ok(if publish(tmp, &self.path(id, executable))? {
            size
        } else {
            0
        })
    }

    /// Copies `src` into a new temp file, hashes the copy, and makes it read-only with the
    /// fixed mtime.
    ///
    /// The kernel copies (`copy_file_range`), which XFS and btrfs turn into a clone when the
    /// source is on the store's file system: no data is written. What is hashed is the stored
    /// copy, not what was read, so an object's bytes always match its name.
    ///
    /// The temp file is created next to `dest`, in the same shard directory: a rename within one
    /// directory takes only that directory's lock, while a rename across directories serializes
    /// on the file system's rename mutex (one shared `tmp/` made first-time ingest 4x slower).
    /// With `settled` (a stamp and the id hashed under it), the copy is trusted instead of
    /// re-hashed when the source still has that stamp afterwards (see [`Self::insert_file`]).
    fn copy_to_temp(
        &self,
        src: &mut File,
        src_path: &Path,
        dest: &Path,
        executable: bool,
        settled: Option<(&Stamp, ObjectId)>,
    ) -> Result<(NamedTempFile, u64, ObjectId), ObjectError> {
        let mut tmp = temp_beside(dest, object_mode(executable))?;
        let tmp_path = tmp.path().to_owned();
        // A clone when the file system can (one ioctl, no data written); else the kernel copies.
        let cloned = reflink_copy::reflink_file(src, tmp.as_file()).is_ok();
        let copied = if cloned {
            Ok(0)
        } else {
            io::copy(src, tmp.as_file_mut())
        };
        copied.map_err(|e| match e.kind() {
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => {
                io_err("write", &tmp_path)(e)
            }
            _ => io_err("copy", src_path)(e),
        })?;
        if let Some((stamp, id)) = settled {
            let now = src.metadata().map_err(io_err("stat", src_path))?;
            if Stamp::of(&now) == *stamp {
                finish_file(tmp.as_file(), &tmp_path, object_mode(executable), true)?;
                return Ok((tmp, now.len(), id));
            }
        }
        let file = tmp.as_file_mut();
        file.seek(io::SeekFrom::Start(0))
            .map_err(io_err("read", &tmp_path))?;
        let mut hasher = blake3::Hasher::new();
        let size = COPY_BUF
            .with_borrow_mut(|buf| envstore_walk::hash_reader(file, buf, &mut hasher))
            .map_err(io_err("read", &tmp_path))?;
        finish_file(tmp.as_file(), &tmp_path, object_mode(executable), true)?;
        Ok((tmp, size, ObjectId::from(hasher.finalize())))
    }

    /// Re-hashes a stored object; `Ok(None)` when it is missing.
    pub fn rehash(&self, path: &Path) -> Result<Option<ObjectId>, ObjectError> {
        let mut file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("open", path)(e)),
        };
        let mut hasher = blake3::Hasher::new();
        COPY_BUF
            .with_borrow_mut(|buf| envstore_walk::hash_reader(&mut file, buf, &mut hasher))
            .map_err(io_err("read", path))?;
        Ok(Some(ObjectId::from(hasher.finalize())))
    }
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
}

impl TreeStore {
    /// `dir` is `<store>/trees`.
    pub fn new(dir: PathBuf) -> Self {
        TreeStore { dir }
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

    /// Stores `tree` under its id unless it is there already.
    pub fn insert(&self, tree: &Tree) -> Result<TreeId, ObjectError> {
        let bytes = tree.encode();
        let id = TreeId::from(blake3::hash(&bytes));
        let dest = self.path(&id);
        if fs::symlink_metadata(&dest).is_ok() {
            return Ok(id);
        }
        let mut tmp = temp_beside(&dest, READ_ONLY)?;
        tmp.write_all(&bytes).map_err(io_err("write", tmp.path()))?;
        finish_file(tmp.as_file(), tmp.path(), READ_ONLY, true)?;
        publish(tmp, &dest)?;
        Ok(id)
    }

    /// Reads, verifies and decodes a tree. A tree that does not hash to its name, or does not
    /// decode, is reported as damage rather than trusted.
    pub fn get(&self, id: &TreeId) -> Result<Tree, ObjectError> {
        let path = self.path(id);
        let bytes = fs::read(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => ObjectError::Missing { path: path.clone() },
            _ => io_err("read", &path)(e),
        })?;
        let actual = TreeId::from(blake3::hash(&bytes));
        if actual != *id {
            return Err(ObjectError::Corrupt {
                path,
                actual: actual.to_hex(),
            });
        }
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
            objects.insert_file(&src, id, false, Some(&stamp)).unwrap(),
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
            let err = objects.insert_file(&src, id, false, settled).unwrap_err();
            assert!(matches!(err, ObjectError::SourceChanged { .. }), "{err}");
            assert!(!objects.contains(&id));
        }
        // No temp file is left behind.
        let shard = objects.path(&id, false).parent().unwrap().to_owned();
        assert_eq!(fs::read_dir(shard).unwrap().count(), 0);
    }
}
