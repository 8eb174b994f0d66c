//! Advisory file locks (`flock`) with a deadline.
//!
//! Locks are taken on small files under the store and released when the [`FileLock`] drops or
//! the process dies (the kernel drops `flock` locks with the last descriptor, so a SIGKILLed
//! holder never wedges the store). Waiting is bounded: a caller that cannot get the lock in time
//! gets [`LockError::TimedOut`] naming the file, instead of hanging (uv#16112, uv#19317).

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
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
    #[error("failed to lock {path}: {source}")]
    Lock { path: PathBuf, source: io::Error },
    #[error(
        "timed out after {waited:?} waiting for {what} ({path}); another envstore process holds \
         it. Retry, or wait longer with ENVSTORE_LOCK_TIMEOUT=<seconds>"
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
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|source| LockError::Open {
                path: path.to_owned(),
                source,
            })?;
        let start = Instant::now();
        let mut pause = Duration::from_millis(2);
        loop {
            let attempt = match kind {
                LockKind::Shared => file.try_lock_shared(),
                LockKind::Exclusive => file.try_lock(),
            };
            match attempt {
                Ok(()) => {
                    return Ok(FileLock {
                        file,
                        path: path.to_owned(),
                    });
                }
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

    pub fn file(&self) -> &File {
        &self.file
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
        let msg = err.to_string();
        assert!(
            msg.contains("the store lock") && msg.contains("ENVSTORE_LOCK_TIMEOUT"),
            "{msg}"
        );
    }
}
