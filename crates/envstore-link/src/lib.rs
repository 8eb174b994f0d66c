//! Lays files out of the store: reflink, then hardlink, then copy.
//!
//! `auto` probes once per [`Linker`] (one `Linker` serves one materialization, whose files all
//! go from `objects/` to `envs/` on the store's file system) and keeps the first mode that
//! works; the fallback and its reason are reported, never silent (ROCm/rocm-cli#352). An explicit
//! mode is strict and fails with a clear error. Empty files are never hardlinked: one write
//! would change them everywhere (ostree#925, pnpm#4382). A file whose object has too many links
//! (EMLINK) is copied instead (ostree#2197).

use std::fmt;
use std::fs::{self, File, FileTimes, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use envstore_tree::fixed_mtime;

/// How a file was laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LinkMode {
    /// A copy-on-write clone: no data blocks, an inode of its own.
    Reflink,
    /// The object's own inode: no data blocks, but shared mode and mtime, and writes through it
    /// would damage the store (files are read-only and `verify` detects it).
    Hardlink,
    /// A full copy.
    Copy,
}

impl LinkMode {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkMode::Reflink => "reflink",
            LinkMode::Hardlink => "hardlink",
            LinkMode::Copy => "copy",
        }
    }
}

impl fmt::Display for LinkMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the user asked for: `auto` or one strict mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LinkPolicy {
    #[default]
    Auto,
    Only(LinkMode),
}

impl FromStr for LinkPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "auto" => LinkPolicy::Auto,
            "reflink" => LinkPolicy::Only(LinkMode::Reflink),
            "hardlink" => LinkPolicy::Only(LinkMode::Hardlink),
            "copy" => LinkPolicy::Only(LinkMode::Copy),
            other => {
                return Err(format!(
                    "unknown link mode `{other}` (use auto, reflink, hardlink or copy)"
                ));
            }
        })
    }
}

/// A failure to lay out one file.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error(
        "--link-mode {mode} is not possible here: failed to {mode} {from} to {to}: {source}; \
         use --link-mode auto{hint}"
    )]
    Unsupported {
        mode: LinkMode,
        from: PathBuf,
        to: PathBuf,
        source: io::Error,
        hint: &'static str,
    },
    #[error("failed to {mode} {from} to {to}: {source}")]
    Failed {
        mode: LinkMode,
        from: PathBuf,
        to: PathBuf,
        source: io::Error,
    },
    #[error("{path} is damaged ({reason})")]
    Damaged { path: PathBuf, reason: String },
    #[error("failed to prepare {path}: {source}")]
    Source {
        path: PathBuf,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Whether an error says "this file system (or this pair of paths) cannot do that at all",
/// as opposed to a failure of this one file.
fn is_unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::EOPNOTSUPP
                | libc::EXDEV
                | libc::EINVAL
                | libc::ENOTTY
                | libc::ENOSYS
                | libc::EPERM
        )
    ) || e.kind() == io::ErrorKind::Unsupported
}

const UNKNOWN: u8 = 0;

fn encode(mode: LinkMode) -> u8 {
    mode as u8 + 1
}

fn decode(v: u8) -> Option<LinkMode> {
    [LinkMode::Reflink, LinkMode::Hardlink, LinkMode::Copy]
        .get(usize::from(v).checked_sub(1)?)
        .copied()
}

/// Lays out files for one materialization. Shared between threads.
#[derive(Debug)]
pub struct Linker {
    policy: LinkPolicy,
    state: AtomicU8,
    fallback: Mutex<Option<String>>,
    counts: [AtomicU64; 3],
}

impl Linker {
    pub fn new(policy: LinkPolicy) -> Self {
        let state = match policy {
            LinkPolicy::Auto => UNKNOWN,
            LinkPolicy::Only(mode) => encode(mode),
        };
        Linker {
            policy,
            state: AtomicU8::new(state),
            fallback: Mutex::new(None),
            counts: Default::default(),
        }
    }

    /// The mode in use (after the probe), if any file has been linked yet or the mode is strict.
    pub fn mode(&self) -> Option<LinkMode> {
        decode(self.state.load(Ordering::Acquire))
    }

    /// Why `auto` did not use reflinks, if it fell back.
    pub fn fallback_reason(&self) -> Option<String> {
        self.fallback
            .lock()
            .expect("no panics while locked")
            .clone()
    }

    /// How many files were laid out with each mode (empty files count as copies).
    pub fn counts(&self) -> [(LinkMode, u64); 3] {
        [LinkMode::Reflink, LinkMode::Hardlink, LinkMode::Copy]
            .map(|m| (m, self.counts[m as usize].load(Ordering::Relaxed)))
    }

    /// Creates `dest` (which must not exist) with the content of the object at `object`, mode
    /// 0444 or 0555, and the fixed mtime. `hardlink_source` gives the object's variant whose
    /// mode matches `executable`, for hardlinks (all links of an inode share its mode); it is
    /// called only if a hardlink is attempted. Returns the mode used.
    pub fn link(
        &self,
        object: &Path,
        dest: &Path,
        executable: bool,
        size: u64,
        hardlink_source: impl FnOnce() -> Result<PathBuf, LinkError>,
    ) -> Result<LinkMode, LinkError> {
        let used = self.link_inner(object, dest, executable, size, hardlink_source)?;
        self.counts[used as usize].fetch_add(1, Ordering::Relaxed);
        Ok(used)
    }

    fn link_inner(
        &self,
        object: &Path,
        dest: &Path,
        executable: bool,
        size: u64,
        hardlink_source: impl FnOnce() -> Result<PathBuf, LinkError>,
    ) -> Result<LinkMode, LinkError> {
        let mode = if executable { 0o555 } else { 0o444 };
        check_object(object, size)?;
        if size == 0 {
            create_empty(dest, mode)
                .map_err(|source| failed(LinkMode::Copy, object, dest, source))?;
            return Ok(LinkMode::Copy);
        }
        let mut hardlink_source = Some(hardlink_source);
        loop {
            let current = decode(self.state.load(Ordering::Acquire)).unwrap_or(LinkMode::Reflink);
            let result = match current {
                LinkMode::Reflink => reflink(object, dest, mode, size),
                LinkMode::Hardlink => {
                    let source = hardlink_source
                        .take()
                        .expect("hardlink is attempted once per file");
                    let from = source()?;
                    check_object(&from, size)?;
                    match hard_link_checked(&from, dest, size) {
                        // Too many links to this object: copy this one file.
                        Err(e) if e.raw_os_error() == Some(libc::EMLINK) => {
                            copy(object, dest, mode, size)
                                .map_err(|source| failed(LinkMode::Copy, object, dest, source))?;
                            return Ok(LinkMode::Copy);
                        }
                        other => other,
                    }
                }
                LinkMode::Copy => copy(object, dest, mode, size),
            };
            match result {
                Ok(()) => {
                    if self.policy == LinkPolicy::Auto {
                        let _ = self.state.compare_exchange(
                            UNKNOWN,
                            encode(current),
                            Ordering::AcqRel,
                            Ordering::Acquire,
                        );
                    }
                    return Ok(current);
                }
                Err(source) if is_unsupported(&source) => {
                    let next = match (self.policy, current) {
                        (LinkPolicy::Auto, LinkMode::Reflink) => LinkMode::Hardlink,
                        (LinkPolicy::Auto, LinkMode::Hardlink) => LinkMode::Copy,
                        _ => {
                            let hint = match current {
                                LinkMode::Reflink => {
                                    ", or put the store on a file system that can clone (XFS with reflink=1, btrfs)"
                                }
                                LinkMode::Hardlink => ", or keep the store on one file system",
                                LinkMode::Copy => "",
                            };
                            return Err(LinkError::Unsupported {
                                mode: current,
                                from: object.to_owned(),
                                to: dest.to_owned(),
                                source,
                                hint,
                            });
                        }
                    };
                    // A partially created destination must not block the next attempt.
                    let _ = fs::remove_file(dest);
                    let mut fallback = self.fallback.lock().expect("no panics while locked");
                    if fallback.is_none() {
                        *fallback = Some(format!("{current} not possible: {source}"));
                    }
                    self.state.store(encode(next), Ordering::Release);
                }
                Err(source) => return Err(failed(current, object, dest, source)),
            }
        }
    }
}

/// Which link modes work in `dir` (a directory on the store's file system), tried on a small
/// scratch file: for `stats`.
pub fn probe(dir: &Path) -> Vec<(LinkMode, Result<(), String>)> {
    let scratch = dir.join(format!(".probe-{}", std::process::id()));
    let source = scratch.with_extension("src");
    let result = |r: io::Result<()>| r.map_err(|e| e.to_string());
    let out = match fs::write(&source, b"envstore link probe") {
        Err(e) => {
            let reason = format!("cannot write in {}: {e}", dir.display());
            [LinkMode::Reflink, LinkMode::Hardlink, LinkMode::Copy]
                .map(|m| (m, Err(reason.clone())))
                .to_vec()
        }
        Ok(()) => [LinkMode::Reflink, LinkMode::Hardlink, LinkMode::Copy]
            .into_iter()
            .map(|mode| {
                let _ = fs::remove_file(&scratch);
                let r = match mode {
                    LinkMode::Reflink => reflink_copy::reflink(&source, &scratch),
                    LinkMode::Hardlink => fs::hard_link(&source, &scratch),
                    LinkMode::Copy => fs::copy(&source, &scratch).map(drop),
                };
                (mode, result(r))
            })
            .collect(),
    };
    let _ = fs::remove_file(&scratch);
    let _ = fs::remove_file(&source);
    out
}

fn failed(mode: LinkMode, from: &Path, to: &Path, source: io::Error) -> LinkError {
    LinkError::Failed {
        mode,
        from: from.to_owned(),
        to: to.to_owned(),
        source,
    }
}

/// Sets the mode (unless creation already gave it) and the fixed mtime through `file`.
fn finish(file: &File, mode: u32) -> io::Result<()> {
    set_mode_unless_created_with(file, mode, true)?;
    let t = fixed_mtime();
    file.set_times(FileTimes::new().set_modified(t).set_accessed(t))
}

/// Creates `dest`, which must not exist, for writing, asking for `mode` at creation.
fn create_new(dest: &Path, mode: u32) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(dest)
}

/// Gives `file` `mode`: with `created_with_mode` (it was created asking for `mode`) and a umask
/// that lets the mode through, only checks it (a default ACL on the directory can still change
/// it; an fstat is cheaper than the fchmod, which XFS logs as a transaction).
pub fn set_mode_unless_created_with(
    file: &File,
    mode: u32,
    created_with_mode: bool,
) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    if created_with_mode
        && mode_applies_at_creation(mode)
        && file.metadata()?.mode() & 0o7777 == mode
    {
        return Ok(());
    }
    file.set_permissions(Permissions::from_mode(mode))
}

/// Whether a file created with `mode` gets exactly that mode, so no `fchmod` is needed: true
/// when the process umask (read once, from /proc/self/status, which unlike umask(2) does not
/// change it under other threads' feet) clears none of its bits. On XFS every fchmod is a
/// logged transaction; a first materialization saves one per object and one per file.
fn mode_applies_at_creation(mode: u32) -> bool {
    static UMASK: std::sync::OnceLock<Option<u32>> = std::sync::OnceLock::new();
    let umask = UMASK.get_or_init(|| {
        let status = fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
        u32::from_str_radix(line.trim(), 8).ok()
    });
    umask.is_some_and(|umask| mode & umask == 0)
}

fn create_empty(dest: &Path, mode: u32) -> io::Result<()> {
    write_new(dest, b"", mode == 0o555)
}

/// Creates `dest` (which must not exist) holding `bytes`, read-only (0444, or 0555 when
/// executable), with the fixed mtime: how relocated files are materialized.
pub fn write_new(dest: &Path, bytes: &[u8], executable: bool) -> io::Result<()> {
    let mode = if executable { 0o555 } else { 0o444 };
    let mut file = create_new(dest, mode)?;
    io::Write::write_all(&mut file, bytes)?;
    finish(&file, mode)
}

/// The cheap half of the reuse check (the bytes are `verify`'s job): the object is a regular
/// file, not a link, of the size its snapshot records. A damaged object is never laid out.
fn check_object(object: &Path, size: u64) -> Result<(), LinkError> {
    let damaged = |reason: String| LinkError::Damaged {
        path: object.to_owned(),
        reason,
    };
    match fs::symlink_metadata(object) {
        Ok(meta) if meta.is_file() && meta.len() == size => Ok(()),
        Ok(meta) if meta.is_file() => Err(damaged(format!(
            "{} bytes where its snapshot says {size}",
            meta.len()
        ))),
        Ok(meta) => Err(damaged(format!(
            "it is {}, not a regular file",
            envstore_fs::kind_name(&meta)
        ))),
        Err(e) => Err(damaged(e.to_string())),
    }
}

/// Hardlinks `from` to `dest` and checks that what was linked is a regular file of `size`
/// bytes: `link(2)` does not follow a symbolic link, it links the link itself, so an object
/// swapped for a link between the check and the link is caught here and the link removed.
fn hard_link_checked(from: &Path, dest: &Path, size: u64) -> io::Result<()> {
    fs::hard_link(from, dest)?;
    match fs::symlink_metadata(dest) {
        Ok(meta) if meta.is_file() && meta.len() == size => Ok(()),
        _ => {
            let _ = fs::remove_file(dest);
            Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} changed while it was linked", from.display()),
            ))
        }
    }
}

/// Opens an object for reading without following a link, and checks its size again on the
/// descriptor (it may have been replaced since [`check_object`]).
fn open_object(object: &Path, size: u64) -> io::Result<File> {
    let (file, meta) = envstore_fs::open_stored(object)?;
    if meta.len() != size {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is {} bytes, not {size}", object.display(), meta.len()),
        ));
    }
    Ok(file)
}

fn reflink(object: &Path, dest: &Path, mode: u32, size: u64) -> io::Result<()> {
    let src = open_object(object, size)?;
    let out = create_new(dest, mode)?;
    if let Err(e) = reflink_copy::reflink_file(&src, &out) {
        drop(out);
        let _ = fs::remove_file(dest);
        return Err(e);
    }
    // FICLONE copies no permissions (uv#18181): set them, and the mtime, through the handle
    // that created the file (no second open).
    finish(&out, mode)
}

fn copy(object: &Path, dest: &Path, mode: u32, size: u64) -> io::Result<()> {
    let src = open_object(object, size)?;
    let mut out = create_new(dest, mode)?;
    // copy_file_range per data range (the kernel may clone), holes kept.
    envstore_fs::copy_sparse(&src, &mut out)?;
    finish(&out, mode)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn object(dir: &Path, content: &[u8]) -> PathBuf {
        let path = dir.join("obj");
        fs::write(&path, content).unwrap();
        fs::set_permissions(&path, Permissions::from_mode(0o444)).unwrap();
        path
    }

    #[test]
    fn copy_sets_mode_and_fixed_mtime() {
        let dir = tempfile::tempdir().unwrap();
        let obj = object(dir.path(), b"data");
        let linker = Linker::new(LinkPolicy::Only(LinkMode::Copy));
        let dest = dir.path().join("out");
        assert_eq!(
            linker
                .link(&obj, &dest, true, 4, || unreachable!())
                .unwrap(),
            LinkMode::Copy
        );
        let meta = fs::metadata(&dest).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o555);
        assert_eq!(meta.mtime() as u64, envstore_tree::FIXED_MTIME_SECS);
        assert_eq!(fs::read(&dest).unwrap(), b"data");
        assert_ne!(meta.ino(), fs::metadata(&obj).unwrap().ino());
    }

    #[test]
    fn empty_files_are_never_hardlinked() {
        // (The hardlink source closure is never called for them.)
        let dir = tempfile::tempdir().unwrap();
        let obj = object(dir.path(), b"");
        let linker = Linker::new(LinkPolicy::Only(LinkMode::Hardlink));
        let dest = dir.path().join("out");
        linker
            .link(&obj, &dest, false, 0, || unreachable!())
            .unwrap();
        assert_ne!(
            fs::metadata(&dest).unwrap().ino(),
            fs::metadata(&obj).unwrap().ino()
        );
        assert_eq!(fs::metadata(&dest).unwrap().mode() & 0o777, 0o444);
    }

    #[test]
    fn hardlink_of_executable_uses_the_exec_twin() {
        let dir = tempfile::tempdir().unwrap();
        let obj = object(dir.path(), b"#!/bin/sh\n");
        let twin = dir.path().join("obj.x");
        fs::copy(&obj, &twin).unwrap();
        fs::set_permissions(&twin, Permissions::from_mode(0o555)).unwrap();
        let linker = Linker::new(LinkPolicy::Only(LinkMode::Hardlink));
        let dest = dir.path().join("out");
        let used = linker
            .link(&obj, &dest, true, 10, || Ok(twin.clone()))
            .unwrap();
        assert_eq!(used, LinkMode::Hardlink);
        assert_eq!(
            fs::metadata(&dest).unwrap().ino(),
            fs::metadata(&twin).unwrap().ino()
        );
    }

    #[test]
    fn auto_falls_back_once_and_says_why() {
        // The root file system here is ext4 (no reflinks); on a reflink file system the probe
        // succeeds instead, which is equally correct.
        let dir = tempfile::tempdir().unwrap();
        let obj = object(dir.path(), b"abc");
        let linker = Linker::new(LinkPolicy::Auto);
        let first = linker
            .link(&obj, &dir.path().join("a"), false, 3, || Ok(obj.clone()))
            .unwrap();
        let second = linker
            .link(&obj, &dir.path().join("b"), false, 3, || Ok(obj.clone()))
            .unwrap();
        assert_eq!(first, second);
        assert_eq!(linker.mode(), Some(first));
        assert_eq!(
            linker.fallback_reason().is_some(),
            first != LinkMode::Reflink
        );
    }

    #[test]
    fn policy_parses_the_cli_spellings() {
        assert_eq!("auto".parse::<LinkPolicy>().unwrap(), LinkPolicy::Auto);
        assert_eq!(
            "copy".parse::<LinkPolicy>().unwrap(),
            LinkPolicy::Only(LinkMode::Copy)
        );
        assert!("symlink".parse::<LinkPolicy>().is_err());
    }
}
