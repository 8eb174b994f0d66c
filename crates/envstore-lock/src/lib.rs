//! Advisory file locks (`flock`) with a deadline.
//!
//! Locks are taken on small files under the store and released when the [`FileLock`] drops or
//! the process dies (the kernel drops `flock` locks with the last descriptor, so a SIGKILLed
//! holder never wedges the store). Waiting is bounded: a caller that cannot get the lock in time
//! gets [`LockError::TimedOut`] naming the file, instead of hanging (uv#16112, uv#19317).

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Shared (many holders) or exclusive (one holder).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    Shared,
    Exclusive,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("failed to open the lock file {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    /// The lock file is missing and cannot be created: the store is read-only here.
    #[error("cannot create the lock file {path}: {source}")]
    ReadOnly { path: PathBuf, source: io::Error },
    #[error("failed to lock {path}: {source}")]
    Lock { path: PathBuf, source: io::Error },
    #[error(
        "timed out after {waited:?} waiting for {what} ({path}); another envstore process holds \
         it"
    )]
    TimedOut {
        what: &'static str,
        path: PathBuf,
        waited: Duration,
    },
}

/// A held lock; released on drop.
#[derive(Debug)]
pub struct FileLock {
    file: File,
    path: PathBuf,
}

impl FileLock {
    /// Takes the lock on `path` (created if missing), waiting at most `timeout`. `what` names the
    /// lock for the time-out message ("the store lock").
    pub fn acquire(
        path: &Path,
        kind: LockKind,
        timeout: Duration,
        what: &'static str,
    ) -> Result<FileLock, LockError> {
        let start = Instant::now();
        let mut pause = Duration::from_millis(2);
        loop {
            let file = open_lock_file(path)?;
            let attempt = match kind {
                LockKind::Shared => file.try_lock_shared(),
                LockKind::Exclusive => file.try_lock(),
            };
            match attempt {
                // The lock file may have been removed (prune removes the lease files of the
                // snapshots it deletes) between our open and our lock: then we hold a lock on
                // a file nobody else will ever open. Only a lock on the inode that the path
                // names now counts.
                Ok(()) if same_file(&file, path) => {
                    return Ok(FileLock {
                        file,
                        path: path.to_owned(),
                    });
                }
                Ok(()) => continue,
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Error(source)) => {
                    return Err(LockError::Lock {
                        path: path.to_owned(),
                        source,
                    });
                }
            }
            let waited = start.elapsed();
            if waited >= timeout {
                return Err(LockError::TimedOut {
                    what,
                    path: path.to_owned(),
                    waited,
                });
            }
            std::thread::sleep(pause.min(timeout - waited));
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// Removes the lock file while holding the lock (exclusively), so that waiters retry on a
    /// new file instead of locking the removed one.
    pub fn remove(self) -> Result<(), LockError> {
        std::fs::remove_file(&self.path).map_err(|source| LockError::Lock {
            path: self.path.clone(),
            source,
        })
    }

    /// Whether a lock of `kind` could be taken on `path` right now, without creating the file
    /// (a missing lock file is free) and without keeping the lock: for dry runs, which change
    /// nothing.
    pub fn probe(path: &Path, kind: LockKind) -> Result<bool, LockError> {
        let file = match open_nofollow(path, false) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(true),
            Err(source) => {
                return Err(LockError::Open {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        let attempt = match kind {
            LockKind::Shared => file.try_lock_shared(),
            LockKind::Exclusive => file.try_lock(),
        };
        match attempt {
            Ok(()) => Ok(true),
            Err(TryLockError::WouldBlock) => Ok(false),
            Err(TryLockError::Error(source)) => Err(LockError::Lock {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// Takes the lock only if it is free right now.
    pub fn try_acquire(path: &Path, kind: LockKind) -> Result<Option<FileLock>, LockError> {
        match Self::acquire(path, kind, Duration::ZERO, "a lock") {
            Ok(lock) => Ok(Some(lock)),
            Err(LockError::TimedOut { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Lets child processes inherit the locked descriptor, so the lock lives as long as the
    /// last of them (a `flock` belongs to the open file description, shared by inherited
    /// descriptors). `envstore run` uses this so that killing envstore does not end a lease
    /// while the command still runs.
    pub fn make_inheritable(&self) -> Result<(), LockError> {
        rustix::io::fcntl_setfd(&self.file, rustix::io::FdFlags::empty()).map_err(|e| {
            LockError::Lock {
                path: self.path.clone(),
                source: e.into(),
            }
        })
    }

    pub fn file(&self) -> &File {
        &self.file
    }
}

/// Opens (creating when `create`) a lock file without following a symbolic link or blocking on
/// a fifo that replaced it, and checks it is a regular file: a lock file swapped for a link must
/// not make envstore create or lock a file outside the store.
fn open_nofollow(path: &Path, create: bool) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(create)
        .create(create)
        .truncate(false)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    "it is a symbolic link; envstore does not follow links in its store",
                )
            } else {
                e
            }
        })?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "it is not a regular file",
        ));
    }
    Ok(file)
}

/// Opens the lock file for locking. On a store that cannot be written here (a read-only mount,
/// another user's store) an existing lock file is opened read-only, which `flock` accepts; a
/// missing one is [`LockError::ReadOnly`].
fn open_lock_file(path: &Path) -> Result<File, LockError> {
    match open_nofollow(path, true) {
        Ok(file) => Ok(file),
        Err(e) if envstore_fs::is_read_only_error(&e) => {
            open_nofollow(path, false).map_err(|source| {
                if source.kind() == io::ErrorKind::NotFound {
                    LockError::ReadOnly {
                        path: path.to_owned(),
                        source: e,
                    }
                } else {
                    LockError::Open {
                        path: path.to_owned(),
                        source,
                    }
                }
            })
        }
        Err(source) => Err(LockError::Open {
            path: path.to_owned(),
            source,
        }),
    }
}

fn same_file(file: &File, path: &Path) -> bool {
    match (file.metadata(), std::fs::symlink_metadata(path)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_locks_coexist_and_exclude_a_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l");
        let a = FileLock::acquire(&path, LockKind::Shared, Duration::ZERO, "x").unwrap();
        let _b = FileLock::acquire(&path, LockKind::Shared, Duration::ZERO, "x").unwrap();
        assert!(
            FileLock::try_acquire(&path, LockKind::Exclusive)
                .unwrap()
                .is_none()
        );
        drop(a);
        drop(_b);
        assert!(
            FileLock::try_acquire(&path, LockKind::Exclusive)
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn a_lock_on_a_removed_file_does_not_count() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l");
        let held = FileLock::acquire(&path, LockKind::Exclusive, Duration::ZERO, "x").unwrap();
        let waiter = {
            let path = path.clone();
            std::thread::spawn(move || {
                FileLock::acquire(&path, LockKind::Shared, Duration::from_secs(5), "x").unwrap()
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        held.remove().unwrap();
        let lease = waiter.join().unwrap();
        // The waiter holds the file that exists now, so an exclusive locker is kept out.
        assert!(path.exists());
        assert!(
            FileLock::try_acquire(&path, LockKind::Exclusive)
                .unwrap()
                .is_none()
        );
        drop(lease);
        assert!(
            FileLock::try_acquire(&path, LockKind::Exclusive)
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn waiting_is_bounded_and_names_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l");
        let _held = FileLock::acquire(&path, LockKind::Exclusive, Duration::ZERO, "x").unwrap();
        let err = FileLock::acquire(
            &path,
            LockKind::Shared,
            Duration::from_millis(50),
            "the store lock",
        )
        .unwrap_err();
        // The remedy (ENVSTORE_LOCK_TIMEOUT) is the front end's to word: the facade's
        // Error::hint maps TimedOut to Hint::WaitLonger, and the CLI tests check the words.
        assert!(matches!(err, LockError::TimedOut { .. }));
        let msg = err.to_string();
        assert!(
            msg.contains("the store lock") && msg.contains("another envstore process holds it"),
            "{msg}"
        );
    }
}
