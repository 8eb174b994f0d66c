//! File operations inside a directory that other processes and people can touch.
//!
//! A store is shared: anything in it may have been replaced by a symbolic link, a fifo, a
//! device, a directory or a huge file since envstore wrote it. Everything here treats a path
//! inside the store that way: opens never follow a final symbolic link (`O_NOFOLLOW`) and never
//! block on a fifo (`O_NONBLOCK`), the kind of what was opened is checked on the open
//! descriptor (`fstat`), small files are read with a bound, and removal never follows a link.
//! Intermediate directories are checked by the callers (the store checks its own directories
//! with `lstat` when it opens them); see docs/design.md for what this does and does not
//! protect against.

use std::fs::{self, File, FileType, Metadata, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// What kind of entry `meta` (from `lstat` or `fstat`) describes, for messages.
pub fn kind_name(meta: &Metadata) -> &'static str {
    type_name(&meta.file_type())
}

/// What kind of entry a file type (from `readdir`, `lstat` or `fstat`) is: "a fifo".
pub fn type_name(t: &FileType) -> &'static str {
    if t.is_symlink() {
        "a symbolic link"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_file() {
        "a regular file"
    } else if t.is_fifo() {
        "a fifo"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_char_device() {
        "a character device"
    } else {
        "a special file"
    }
}

/// An error whose message says what the entry is instead of what was expected.
fn wrong_kind(what: &'static str, expected: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "it is {what}, not {expected}; envstore does not follow links or read special files in its store"
        ),
    )
}

/// ELOOP from `O_NOFOLLOW` means the final component is a symbolic link: say so.
fn explain_open(e: io::Error, expected: &str) -> io::Error {
    if e.raw_os_error() == Some(libc::ELOOP) {
        wrong_kind("a symbolic link", expected)
    } else {
        e
    }
}

/// Opens `path` for reading without following a symbolic link (ELOOP, explained) or blocking
/// on a fifo (`O_NONBLOCK`), and `fstat`s what was opened; the caller checks its kind.
pub fn open_nofollow(path: &Path) -> io::Result<(File, Metadata)> {
    open_with(path, 0)
}

/// [`open_nofollow`] with `extra` open flags.
fn open_with(path: &Path, extra: libc::c_int) -> io::Result<(File, Metadata)> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | extra)
        .open(path)
        .map_err(|e| explain_open(e, "a regular file"))?;
    let meta = file.metadata()?;
    Ok((file, meta))
}

/// Opens the regular file at `path` for reading without following a symbolic link or blocking
/// on a fifo; anything but a regular file is an error saying what it is.
pub fn open_regular(path: &Path) -> io::Result<(File, Metadata)> {
    let (file, meta) = open_nofollow(path)?;
    regular(file, meta)
}

fn regular(file: File, meta: Metadata) -> io::Result<(File, Metadata)> {
    if !meta.is_file() {
        return Err(wrong_kind(kind_name(&meta), "a regular file"));
    }
    Ok((file, meta))
}

/// Set once the kernel refuses `O_NOATIME` (files of another owner, without `CAP_FOWNER`).
static NOATIME_REFUSED: AtomicBool = AtomicBool::new(false);

/// Like [`open_regular`], for envstore's own files: also without updating the access time
/// (`O_NOATIME`), which would otherwise make every first read of a new object write its inode
/// back (relatime), a write per object for `verify`, `pack` and `export` of a large store.
/// Where the kernel refuses the flag (another owner's file), opens without it.
pub fn open_stored(path: &Path) -> io::Result<(File, Metadata)> {
    if !NOATIME_REFUSED.load(Ordering::Relaxed) {
        match open_with(path, libc::O_NOATIME) {
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                NOATIME_REFUSED.store(true, Ordering::Relaxed);
            }
            opened => return opened.and_then(|(file, meta)| regular(file, meta)),
        }
    }
    open_regular(path)
}

/// Reads the regular file at `path` whole, if it holds at most `max` bytes (checked before
/// reading, and again while reading, since it may grow meanwhile).
pub fn read_bounded(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    read_bounded_with(open_regular(path)?, max)
}

/// [`read_bounded`] for envstore's own files, without updating their access time (see
/// [`open_stored`]).
pub fn read_stored(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    read_bounded_with(open_stored(path)?, max)
}

fn read_bounded_with((file, meta): (File, Metadata), max: u64) -> io::Result<Vec<u8>> {
    let too_large = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("it is larger than the {max} bytes such a file can hold"),
        )
    };
    if meta.len() > max {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(too_large());
    }
    Ok(bytes)
}

/// Opens a file a user named (a key file, a requirements file, a pyproject.toml): links are
/// followed, since the user chose the path, but the open never blocks (`O_NONBLOCK`: a fifo
/// opens at once) and anything but a regular file is refused with what it is, so a fifo or
/// `/dev/zero` can never hang a command or feed it without end. Reads of it then end at its
/// size.
pub fn open_input(path: &Path) -> io::Result<(File, Metadata)> {
    let (file, meta) = open_named(path)?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("it is {}, not a regular file", kind_name(&meta)),
        ));
    }
    Ok((file, meta))
}

/// Opens a stream a user named (an archive to import): a regular file, or a fifo or pipe
/// (`import <(zstdcat x.tar.zst)`). The open itself never blocks (`O_NONBLOCK`: a fifo nobody
/// writes to would otherwise wait forever for a writer); then reads block as usual, and a fifo
/// without a writer reads as empty at once. A directory is refused with what it is.
pub fn open_stream(path: &Path) -> io::Result<File> {
    let (file, meta) = open_named(path)?;
    if meta.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "it is a directory, not a file or a stream",
        ));
    }
    let flags = rustix::fs::fcntl_getfl(&file)?;
    rustix::fs::fcntl_setfl(&file, flags - rustix::fs::OFlags::NONBLOCK)?;
    Ok(file)
}

/// Opens what a user named for reading, following links (the user chose the path) but never
/// blocking in the open (`O_NONBLOCK`: a fifo opens at once), and `fstat`s it.
fn open_named(path: &Path) -> io::Result<(File, Metadata)> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    Ok((file, meta))
}

/// Reads a file a user named (see [`open_input`]) whole, if it holds at most `max` bytes.
pub fn read_input(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    read_bounded_with(open_input(path)?, max)
}

/// What is at a path that should be a directory envstore made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirState {
    Missing,
    Dir,
    /// Something else: a symbolic link, a file, a fifo... (its kind, for messages).
    Other(&'static str),
}

/// `lstat`s `path`: a real directory, nothing, or something else (a link is not followed).
pub fn dir_state(path: &Path) -> io::Result<DirState> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => Ok(DirState::Dir),
        Ok(meta) => Ok(DirState::Other(kind_name(&meta))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(DirState::Missing),
        Err(e) => Err(e),
    }
}

/// Opens the directory at `path` without following a symbolic link.
fn open_dir_nofollow(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_DIRECTORY | libc::O_NONBLOCK)
        .open(path)
}

/// Removes the file, link or directory tree at `path`, never following a symbolic link (a link
/// is removed, not what it points at). Materializations are read-only down to the last
/// directory, so directories are made writable first, each through a descriptor opened with
/// `O_NOFOLLOW`. A missing `path` is not an error.
pub fn remove_all(path: &Path) -> io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.is_dir() {
        return match fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
    }
    make_tree_writable(path)?;
    // std's remove_dir_all opens each level with O_NOFOLLOW and unlinks links as entries.
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Gives every directory below `root` (and `root`) its owner's write bit, without following
/// links, so the tree can be removed by a user who is not root.
fn make_tree_writable(root: &Path) -> io::Result<()> {
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        let file = match open_dir_nofollow(&dir) {
            Ok(f) => f,
            // Replaced meanwhile (by a link, or removed): nothing of ours to open.
            Err(_) => continue,
        };
        let meta = file.metadata()?;
        if meta.mode() & 0o700 != 0o700 {
            file.set_permissions(fs::Permissions::from_mode((meta.mode() | 0o700) & 0o7777))?;
        }
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries.flatten() {
            // DirEntry::file_type comes from readdir or lstat: a link is never a directory here.
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(entry.path());
            }
        }
    }
    Ok(())
}

/// Copies `src` into `dst` (both open, `dst` empty) keeping holes where the file system can
/// say where they are (`SEEK_DATA`/`SEEK_HOLE`), so a sparse file stays sparse. The kernel
/// copies each data range (`copy_file_range`, which XFS and btrfs may turn into a clone).
/// Returns the bytes of content (the file's length).
pub fn copy_sparse(src: &File, dst: &mut File) -> io::Result<u64> {
    let meta = src.metadata()?;
    let len = meta.len();
    // Blocks covering the whole length: no hole to keep, and no seeks per file.
    if meta.blocks().saturating_mul(512) >= len {
        return plain_copy(src, dst);
    }
    #[cfg(target_os = "linux")]
    {
        use rustix::fs::SeekFrom;
        let mut pos = 0u64;
        while pos < len {
            let data = match rustix::fs::seek(src, SeekFrom::Data(pos)) {
                Ok(d) => d,
                Err(rustix::io::Errno::NXIO) => break, // only a hole to the end
                Err(rustix::io::Errno::INVAL | rustix::io::Errno::OPNOTSUPP) if pos == 0 => {
                    return plain_copy(src, dst);
                }
                Err(e) => return Err(e.into()),
            };
            let hole = rustix::fs::seek(src, SeekFrom::Hole(data))?.min(len);
            let (mut off_in, mut off_out) = (data, data);
            while off_in < hole {
                let want = usize::try_from(hole - off_in).unwrap_or(usize::MAX);
                let n = rustix::fs::copy_file_range(
                    src,
                    Some(&mut off_in),
                    &*dst,
                    Some(&mut off_out),
                    want,
                )?;
                if n == 0 {
                    break; // the file shrank meanwhile
                }
            }
            pos = hole;
        }
        dst.set_len(len)?;
        Ok(len)
    }
    #[cfg(not(target_os = "linux"))]
    plain_copy(src, dst)
}

fn plain_copy(src: &File, dst: &mut File) -> io::Result<u64> {
    use std::io::{Seek, SeekFrom};
    let mut src = src;
    src.seek(SeekFrom::Start(0))?;
    io::copy(&mut src, dst)
}

/// Whether `bytes` are all zero (a block that can stay a hole).
pub fn is_zero(bytes: &[u8]) -> bool {
    // Compares 16-byte chunks; the compiler turns this into wide vector compares.
    let (chunks, rest) = bytes.as_chunks::<16>();
    chunks.iter().all(|c| u128::from_le_bytes(*c) == 0) && rest.iter().all(|&b| b == 0)
}

/// Whether an I/O error means "this store cannot be written here" (a read-only mount, or a
/// store owned by another user).
pub fn is_read_only_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EROFS | libc::EACCES | libc::EPERM)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn opens_refuse_links_fifos_and_directories() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        fs::write(&target, b"outside").unwrap();
        let link = dir.path().join("link");
        symlink(&target, &link).unwrap();
        let err = open_regular(&link).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        let fifo = dir.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        // Would block forever without O_NONBLOCK.
        let err = open_regular(&fifo).unwrap_err();
        assert!(err.to_string().contains("fifo"), "{err}");
        let err = open_regular(dir.path()).unwrap_err();
        assert!(err.to_string().contains("directory"), "{err}");
    }

    #[test]
    fn stored_files_are_read_without_following_links_or_touching_access_times() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("object");
        fs::write(&path, b"bytes").unwrap();
        let long_ago = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1000);
        let reset = || {
            let times = fs::FileTimes::new().set_accessed(long_ago);
            File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_times(times)
                .unwrap();
        };
        let accessed = || fs::metadata(&path).unwrap().accessed().unwrap();
        // An access time older than the change time is updated by the first read (relatime,
        // strictatime) ...
        reset();
        let mut out = Vec::new();
        open_regular(&path)
            .unwrap()
            .0
            .read_to_end(&mut out)
            .unwrap();
        assert_ne!(
            accessed(),
            long_ago,
            "this file system does not keep access times"
        );
        // ... but not by envstore reading its own files.
        reset();
        assert_eq!(read_stored(&path, 100).unwrap(), b"bytes");
        assert_eq!(accessed(), long_ago);

        let link = dir.path().join("link");
        symlink(&path, &link).unwrap();
        let err = open_stored(&link).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        let err = open_stored(dir.path()).unwrap_err();
        assert!(err.to_string().contains("directory"), "{err}");
    }

    #[test]
    fn bounded_reads_refuse_large_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, vec![b'x'; 100]).unwrap();
        assert_eq!(read_bounded(&path, 100).unwrap().len(), 100);
        assert!(read_bounded(&path, 99).is_err());
    }

    #[test]
    fn remove_all_removes_a_link_not_its_target_and_read_only_trees() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("keep"), b"user data").unwrap();
        let link = dir.path().join("link");
        symlink(&outside, &link).unwrap();
        remove_all(&link).unwrap();
        assert!(outside.join("keep").exists());

        let tree = dir.path().join("tree");
        fs::create_dir_all(tree.join("a/b")).unwrap();
        fs::write(tree.join("a/b/f"), b"x").unwrap();
        symlink(&outside, tree.join("a/out")).unwrap();
        for d in ["a/b", "a", ""] {
            fs::set_permissions(tree.join(d), fs::Permissions::from_mode(0o555)).unwrap();
        }
        remove_all(&tree).unwrap();
        assert!(!tree.exists());
        assert!(outside.join("keep").exists());
        // Making the tree writable never went through the link to `outside`.
        assert_eq!(fs::metadata(&outside).unwrap().mode() & 0o777, 0o755);
    }

    #[test]
    fn sparse_copies_keep_holes_and_content() {
        let dir = tempfile::tempdir().unwrap();
        let src_path = dir.path().join("sparse");
        let src = File::create(&src_path).unwrap();
        src.set_len(64 << 20).unwrap();
        std::os::unix::fs::FileExt::write_at(&src, b"middle", 32 << 20).unwrap();
        let mut dst = File::create(dir.path().join("copy")).unwrap();
        let src = File::open(&src_path).unwrap();
        assert_eq!(copy_sparse(&src, &mut dst).unwrap(), 64 << 20);
        let copy = fs::read(dir.path().join("copy")).unwrap();
        assert_eq!(copy, fs::read(&src_path).unwrap());
        assert!(dst.metadata().unwrap().blocks() * 512 < 8 << 20);
    }

    #[test]
    fn zero_detection() {
        assert!(is_zero(&[0; 100]));
        let mut v = vec![0u8; 100];
        v[99] = 1;
        assert!(!is_zero(&v));
        v[99] = 0;
        v[3] = 1;
        assert!(!is_zero(&v));
    }
}

/// What changes whenever a file's content does: device, inode, size, mtime and ctime.
///
/// Every write (and every chmod, rename or link) sets ctime to the current time, which no
/// user can set back. So a file whose ctime was already older than the walk's start when it
/// was hashed (by more than [`SETTLE`], which covers the kernel's coarse clock), and whose stamp
/// is the same later, has not been written in between, as git's "racily clean" rule reasons.
/// Files younger than that are re-read instead of trusted. Not covered: a process writing
/// through a shared writable mapping it dirtied before the walk (no ctime update until
/// writeback); environments are not written that way, and `verify` re-hashes everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

/// How much older than the walk a file's ctime must be for its stamp to be trusted.
pub const SETTLE: std::time::Duration = std::time::Duration::from_secs(2);

impl Stamp {
    pub fn of(meta: &Metadata) -> Stamp {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// Reads `reader` to its end through `buf`, handing each block to `f`; returns the byte count.
/// (Hashing a file without holding it: `f` updates a hasher.)
pub fn read_chunks(
    reader: &mut impl io::Read,
    buf: &mut [u8],
    mut f: impl FnMut(&[u8]),
) -> io::Result<u64> {
    let mut total = 0;
    loop {
        match reader.read(buf) {
            Ok(0) => return Ok(total),
            Ok(n) => {
                f(&buf[..n]);
                total += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}
