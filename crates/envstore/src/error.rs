use std::io;
use std::path::PathBuf;

use envstore_index::IndexError;
use envstore_link::LinkError;
use envstore_lock::LockError;
use envstore_objects::ObjectError;
use envstore_walk::WalkError;

/// Everything the facade can fail with. Messages name the path or input and say what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Walk(#[from] WalkError),
    #[error(transparent)]
    Object(#[from] ObjectError),
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("{reason}")]
    DamagedPack { reason: String },
    #[error("refusing the archive: {0}")]
    Archive(envstore_archive::ArchiveError),
    #[error("failed to {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error(
        "{path} is {what}, not the directory envstore made; envstore never follows links in its \
         store. Run `envstore verify --repair` to replace it (the link itself is removed, never \
         what it points at)"
    )]
    DamagedLayout { path: PathBuf, what: &'static str },
    #[error(
        "the store at {path} is read-only here (a read-only mount, or another user's store), so \
         envstore cannot {what}; commands that only read (ls, show, diff, path, stats, verify, \
         export, materialize of what is materialized) work. Use a writable --store for this"
    )]
    ReadOnlyStore { path: PathBuf, what: &'static str },
    #[error(
        "{path} is inside the store at {store}; envstore does not store its own internals. \
         Give the environment's own directory"
    )]
    SourceInStore { path: PathBuf, store: PathBuf },
    #[error(
        "pin `{name}` is damaged ({reason}); `envstore pin {name} SOURCE` replaces it, `envstore unpin {name}` removes it"
    )]
    DamagedPin { name: String, reason: String },
    #[error("cannot read the key file {path}: {source}")]
    KeyFile { path: PathBuf, source: io::Error },
    #[error(
        "timed out after {waited:?} waiting for the build of key {key} ({path}), which {holder} \
         is building; retry, or wait longer with ENVSTORE_LOCK_TIMEOUT=<seconds>"
    )]
    BuildLockTimedOut {
        key: String,
        path: PathBuf,
        holder: String,
        waited: std::time::Duration,
    },
    #[error("the build command `{command}` failed ({status}); nothing was recorded")]
    BuildFailed {
        command: String,
        status: String,
        /// The command's exit code, which `ensure` exits with.
        code: Option<i32>,
    },
    #[error("no key record is named `{name}`; `envstore keys` lists them")]
    UnknownKeyName { name: String },
    /// Writing the output (an export's file or stdout) failed.
    #[error("failed to write the output: {source}")]
    Output { source: io::Error },
    #[error("{path} is not a directory, so it cannot hold a store; choose another --store")]
    StoreNotADirectory { path: PathBuf },
    #[error(
        "{path} is not empty and is not an envstore store (it has no FORMAT file); \
         give --store a new or empty directory"
    )]
    NotAStore { path: PathBuf },
    #[error(
        "the store at {path} has format `{found}`, which this envstore (format {supported}) \
         cannot use; use a matching envstore or another --store"
    )]
    UnsupportedFormat {
        path: PathBuf,
        found: String,
        supported: u32,
    },
    #[error(
        "`{spec}` is not a directory, a snapshot id or id prefix (8+ hex digits), or a pin{}",
        did_you_mean(near)
    )]
    UnknownSource { spec: String, near: Vec<String> },
    #[error(
        "invalid pin name `{name}`: use letters, digits, `.`, `_`, `-` and `+`, not starting with `.`"
    )]
    BadPinName { name: String },
    #[error("no pin named `{name}`{}", did_you_mean(near))]
    UnknownPin { name: String, near: Vec<String> },
    #[error("the pin file {path} does not hold a snapshot id; remove it or pin it again")]
    BadPinFile { path: PathBuf },
    #[error("`{spec}` is too short for an id prefix; give at least 8 hex digits")]
    PrefixTooShort { spec: String },
    #[error(
        "no snapshot in the store has an id starting with `{prefix}`; `envstore ls` lists them"
    )]
    UnknownSnapshot { prefix: String },
    #[error("the id prefix `{prefix}` is ambiguous; it matches:\n{}", candidates.join("\n"))]
    AmbiguousPrefix {
        prefix: String,
        candidates: Vec<String>,
    },
}

fn did_you_mean(near: &[String]) -> String {
    if near.is_empty() {
        String::new()
    } else {
        format!(
            "; did you mean {}?",
            near.iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

impl Error {
    pub(crate) fn io<'p>(
        op: &'static str,
        path: &'p std::path::Path,
    ) -> impl FnOnce(io::Error) -> Error + 'p {
        move |source| Error::Io {
            op,
            path: path.to_owned(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
