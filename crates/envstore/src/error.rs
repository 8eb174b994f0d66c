use std::io;
use std::path::PathBuf;

use envstore_index::IndexError;
use envstore_link::LinkError;
use envstore_lock::LockError;
use envstore_objects::ObjectError;
use envstore_walk::WalkError;

use crate::Hint;

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
    #[error("the object {path} does not match its name (damaged in the store)")]
    DamagedObject { path: PathBuf },
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
         store"
    )]
    DamagedLayout { path: PathBuf, what: &'static str },
    #[error(
        "the store at {path} is read-only here (a read-only mount, or another user's store), so \
         envstore cannot {what}; commands that only read (ls, show, diff, path, stats, verify, \
         export, materialize of what is materialized) work"
    )]
    ReadOnlyStore { path: PathBuf, what: &'static str },
    #[error(
        "{path} is inside the store at {store}; envstore does not store its own internals. \
         Give the environment's own directory"
    )]
    SourceInStore { path: PathBuf, store: PathBuf },
    #[error("pin `{name}` is damaged ({reason})")]
    DamagedPin { name: String, reason: String },
    #[error("cannot use {path} as a key file: {source}")]
    KeyFile { path: PathBuf, source: io::Error },
    #[error(
        "timed out after {waited:?} waiting for the build of key {key} ({path}), which {holder} \
         is building"
    )]
    BuildLockTimedOut {
        key: String,
        path: PathBuf,
        holder: String,
        waited: std::time::Duration,
    },
    #[error(
        "the build replaced its output directory $ENVSTORE_OUT ({path}): it is {what} now; \
         envstore stores only the directory it made, never what a link there points at"
    )]
    BuildOutput { path: PathBuf, what: &'static str },
    #[error("the interpreter `{}` cannot be used: {reason}", python.display())]
    Interpreter { python: PathBuf, reason: String },
    #[error("the build command `{command}` failed ({status}); nothing was recorded")]
    BuildFailed {
        command: String,
        status: String,
        /// The command's exit code, which `ensure` exits with.
        code: Option<i32>,
    },
    #[cfg(feature = "remote")]
    #[error("{0}")]
    Remote(envstore_remote::RemoteError),
    #[error(
        "refusing what {remote} sent: {reason}. Nothing from it was kept; the remote is damaged \
         or was tampered with"
    )]
    RemoteRefused { remote: String, reason: String },
    #[error("{remote} has no {what}")]
    RemoteMissing { remote: String, what: String },
    #[cfg(feature = "remote")]
    #[error("{0}")]
    BadRemoteUrl(envstore_remote::UrlError),
    #[error("the remotes file {path} is damaged ({reason}); fix or remove it")]
    RemoteConfig { path: PathBuf, reason: String },
    #[error(
        "invalid remote name `{name}`: use 1-64 of A-Z a-z 0-9 . _ -, not starting with . or -"
    )]
    BadRemoteName { name: String },
    #[error("a remote named `{name}` exists")]
    RemoteExists { name: String },
    #[error("no remote named `{name}`{}", if known.is_empty() { String::new() } else { format!("; the remotes are: {}", known.join(", ")) })]
    UnknownRemote { name: String, known: Vec<String> },
    #[error("no remote is configured")]
    NoRemotes,
    #[error("several remotes are configured ({})", names.join(", "))]
    WhichRemote { names: Vec<String> },
    #[error("{what}: {reason}")]
    BadKey { what: String, reason: String },
    #[error(
        "refusing ref `{name}` from {remote}: {reason}; this store trusts only signed refs from \
         its trusted keys"
    )]
    UntrustedRef {
        remote: String,
        name: String,
        reason: String,
    },
    #[error("not removing {id}: it is {why}")]
    RmRefused { id: String, why: String },
    #[error("no key record is named `{name}`")]
    UnknownKeyName { name: String },
    /// Writing the output (an export's file or stdout) failed.
    #[error("failed to write the output: {source}")]
    Output { source: io::Error },
    #[error("{path} is not a directory, so it cannot hold a store")]
    StoreNotADirectory { path: PathBuf },
    #[error("{path} is not empty and is not an envstore store (it has no FORMAT file)")]
    NotAStore { path: PathBuf },
    #[error(
        "the store at {path} has format `{found}`, which this envstore (format {supported}) \
         cannot use"
    )]
    UnsupportedFormat {
        path: PathBuf,
        found: String,
        supported: u32,
    },
    #[error(
        "`{spec}` is not a directory, a snapshot id or id prefix (8+ hex digits), a pin or a \
         key name{}",
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
    #[error("no snapshot in the store has an id starting with `{prefix}`")]
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

impl Error {
    /// What the user can do about it, for the front end to word (the library never says which
    /// command or flag to type).
    pub fn hint(&self) -> Option<Hint> {
        use envstore_objects::ObjectError as O;
        Some(match self {
            Error::DamagedObject { .. }
            | Error::DamagedLayout { .. }
            | Error::DamagedPack { .. }
            | Error::Index(IndexError::Database { .. } | IndexError::Damaged { .. })
            | Error::Index(IndexError::BadRecord { .. })
            | Error::Link(LinkError::Damaged { .. })
            | Error::Object(
                O::Missing { .. }
                | O::Corrupt { .. }
                | O::BadTree { .. }
                | O::NotAStoreDir { .. }
                | O::Damaged { .. },
            ) => Hint::Repair,
            Error::Lock(LockError::TimedOut { .. })
            | Error::Index(IndexError::Lock(LockError::TimedOut { .. }))
            | Error::BuildLockTimedOut { .. } => Hint::WaitLonger,
            Error::ReadOnlyStore { .. }
            | Error::StoreNotADirectory { .. }
            | Error::NotAStore { .. }
            | Error::UnsupportedFormat { .. } => Hint::OtherStore,
            Error::DamagedPin { name, .. } => Hint::ReplacePin { name: name.clone() },
            Error::RemoteRefused { .. } => Hint::PushAgain,
            #[cfg(feature = "remote")]
            Error::Remote(e) => match e.kind {
                envstore_remote::FailKind::Unreachable => Hint::RemoteUnreachable,
                envstore_remote::FailKind::Denied => Hint::RemoteDenied,
                _ => return None,
            },
            Error::RemoteExists { name } => Hint::RemoveRemote { name: name.clone() },
            Error::UnknownRemote { known, .. } if known.is_empty() => Hint::AddRemote,
            Error::NoRemotes => Hint::AddRemote,
            Error::WhichRemote { .. } => Hint::ChooseRemote,
            Error::UntrustedRef { .. } => Hint::TrustKey,
            Error::RmRefused { .. } => Hint::Force,
            Error::UnknownKeyName { .. } => Hint::ListKeys,
            Error::UnknownSnapshot { .. } => Hint::ListSnapshots,
            _ => return None,
        })
    }
}
