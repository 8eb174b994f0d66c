//! envstore remotes: where environments are shared between machines.
//!
//! A remote is a prefix in an S3 bucket, an HTTP/WebDAV root or a directory, reached through
//! [`Storage`], a small synchronous trait (get, get ranges, put, put-if-absent, list, delete).
//! [`open`] gives one for a [`RemoteUrl`], backed by the `object_store` crate. The remote's
//! layout (pack indexes, snapshot records, refs) is in [`format`]; signatures of refs in
//! [`sign`]; the per-store list of remotes and trusted keys in [`config`]. What push and pull do
//! with these lives in the facade, which knows the local store.

use std::{fmt, ops::Range};

#[cfg(feature = "backends")]
mod backend;
pub mod config;
pub mod format;
pub mod record;
pub mod sign;
pub mod summary;
mod url;
#[cfg(feature = "backends")]
mod webdav;

#[cfg(feature = "backends")]
pub use backend::open;
pub use url::{RemoteUrl, UrlError, redact};

/// Why a remote operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailKind {
    /// The key does not exist.
    NotFound,
    /// The remote did not answer (connection refused, time-out, name not resolved).
    Unreachable,
    /// The remote refused the credentials or the operation.
    Denied,
    /// The object is larger than the caller allows.
    TooLarge,
    /// Anything else the remote or the client reported.
    Other,
}

/// A failed remote operation: which remote, what was tried on which key, and why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{remote}: cannot {op} {key}: {message}")]
pub struct RemoteError {
    pub remote: String,
    pub op: &'static str,
    pub key: String,
    pub kind: FailKind,
    pub message: String,
}

impl RemoteError {
    pub fn is_not_found(&self) -> bool {
        self.kind == FailKind::NotFound
    }
}

pub type Result<T, E = RemoteError> = std::result::Result<T, E>;

/// An object listed on a remote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The name below the listed directory (no slashes).
    pub name: String,
    pub size: u64,
    /// Last modification, unix seconds.
    pub modified: i64,
}

/// What a [`Storage`] has done so far: requests made and bytes moved (for benchmarks and for
/// `--verbose` output).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub requests: u64,
    pub bytes_down: u64,
    pub bytes_up: u64,
}

impl fmt::Display for Counters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} requests, {} bytes down, {} bytes up",
            self.requests, self.bytes_down, self.bytes_up
        )
    }
}

/// The storage a remote needs. Keys are `/`-separated paths below the remote's prefix.
/// Every write is atomic: a reader sees the old object, the new one, or none, never a part.
pub trait Storage: Send + Sync + fmt::Debug {
    /// The remote's URL without credentials, for messages.
    fn describe(&self) -> &str;
    /// The object at `key`, or `None` when there is none. Objects larger than `limit` bytes are
    /// refused ([`FailKind::TooLarge`]) without reading them.
    fn get(&self, key: &str, limit: u64) -> Result<Option<Vec<u8>>>;
    /// Several whole objects, fetched concurrently, in the order asked (`None` for a missing
    /// one), each bounded by `limit` like [`Storage::get`].
    fn get_many(&self, keys: &[String], limit: u64) -> Result<Vec<Option<Vec<u8>>>>;
    /// Byte ranges of objects, fetched concurrently and streamed into `file` back to back from
    /// byte `at` in the order asked (each range at the sum of the lengths before it), so memory
    /// does not grow with the ranges. A range that comes back shorter or longer fails the call.
    fn get_ranges_into(
        &self,
        requests: &[(String, Range<u64>)],
        file: &std::fs::File,
        at: u64,
    ) -> Result<()>;
    /// The object at `key` streamed into `file` from its start (which must be empty), so
    /// memory does not grow with it; its length, or `None` when there is none. Bounded by
    /// `limit` like [`Storage::get`]. The default goes through memory.
    fn get_into(&self, key: &str, file: &std::fs::File, limit: u64) -> Result<Option<u64>> {
        use std::os::unix::fs::FileExt as _;
        let Some(bytes) = self.get(key, limit)? else {
            return Ok(None);
        };
        file.write_all_at(&bytes, 0).map_err(|e| RemoteError {
            remote: self.describe().to_owned(),
            op: "read",
            key: key.to_owned(),
            kind: FailKind::Other,
            message: format!("cannot write what it sent to a local file: {e}"),
        })?;
        Ok(Some(bytes.len() as u64))
    }
    /// Size and modification time of the objects at `keys`, asked concurrently, in the order
    /// asked (`None` for a missing one): one HEAD each.
    fn head_many(&self, keys: &[String]) -> Result<Vec<Option<Listed>>>;
    /// Writes `data` at `key`, replacing what was there.
    fn put(&self, key: &str, data: Vec<u8>) -> Result<()>;
    /// Writes the file at `path` to `key`, replacing what was there. The backends stream a
    /// large file (in parts on S3 and directories, as one streamed PUT on WebDAV), so memory
    /// does not grow with it; the default reads it into memory.
    fn put_file(&self, key: &str, path: &std::path::Path) -> Result<()> {
        let data = std::fs::read(path).map_err(|e| RemoteError {
            remote: self.describe().to_owned(),
            op: "write",
            key: key.to_owned(),
            kind: FailKind::Other,
            message: format!("cannot read {}: {e}", path.display()),
        })?;
        self.put(key, data)
    }
    /// Writes `data` at `key` only when nothing is there: `Ok(true)` when written, `Ok(false)`
    /// when something was. Backends that cannot do this atomically ignore the condition on some
    /// servers (Garage, nginx PUT); callers must stay correct either way (see
    /// [`probe_create_if_absent`]).
    fn put_if_absent(&self, key: &str, data: Vec<u8>) -> Result<bool>;
    /// The objects directly in `dir` (not below its subdirectories).
    fn list(&self, dir: &str) -> Result<Vec<Listed>>;
    /// Deletes `key`; deleting what is not there succeeds.
    fn delete(&self, key: &str) -> Result<()>;
    /// Requests and bytes so far.
    fn counters(&self) -> Counters;
}

/// Whether `storage` honours create-if-absent: writes a probe object twice under one fresh
/// name and checks that the second write is refused. Deletes the probe.
pub fn probe_create_if_absent(storage: &dyn Storage) -> Result<bool> {
    let mut nonce = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce).map_err(|_| {
        RemoteError {
            remote: storage.describe().to_owned(),
            op: "probe",
            key: "probe/".into(),
            kind: FailKind::Other,
            message: "no random numbers from the operating system".into(),
        }
    })?;
    let key = format!("probe/{}", hex(&nonce));
    let first = storage.put_if_absent(&key, b"1".to_vec())?;
    let second = storage.put_if_absent(&key, b"2".to_vec())?;
    let _ = storage.delete(&key);
    Ok(first && !second)
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// Bytes from lower-case or upper-case hex, `None` when it is not hex of even length.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Whether `name` can name a remote or a key: 1-64 of `A-Z a-z 0-9 . _ -`, not starting with
/// `.` or `-`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['.', '-'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}
