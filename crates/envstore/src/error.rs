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
    #[error(
        "the object {path} does not match its name (damaged in the store); run `envstore verify \
         --repair`, then retry"
    )]
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
    #[error("{}{}", .0, remote_hint(.0))]
    Remote(envstore_remote::RemoteError),
    #[error(
        "refusing what {remote} sent: {reason}. Nothing from it was kept; the remote is damaged \
         or was tampered with (`envstore remote prune` does not fix content: push again from a \
         good store)"
    )]
    RemoteRefused { remote: String, reason: String },
    #[error("{remote} has no {what}")]
    RemoteMissing { remote: String, what: String },
    #[error("{0}")]
    BadRemoteUrl(envstore_remote::UrlError),
    #[error("the remotes file {path} is damaged ({reason}); fix or remove it")]
    RemoteConfig { path: PathBuf, reason: String },
    #[error(
        "invalid remote name `{name}`: use 1-64 of A-Z a-z 0-9 . _ -, not starting with . or -"
    )]
    BadRemoteName { name: String },
    #[error("a remote named `{name}` exists; `envstore remote rm {name}` first to change it")]
    RemoteExists { name: String },
    #[error("no remote named `{name}`{}", if known.is_empty() { "; add one with `envstore remote add NAME URL`".to_owned() } else { format!("; the remotes are: {}", known.join(", ")) })]
    UnknownRemote { name: String, known: Vec<String> },
    #[error(
        "no remote is configured; add one with `envstore remote add NAME URL` or give --remote URL"
    )]
    NoRemotes,
    #[error("several remotes are configured ({}); say which with --to/--from NAME", names.join(", "))]
    WhichRemote { names: Vec<String> },
    #[error("{what}: {reason}")]
    BadKey { what: String, reason: String },
    #[error(
        "refusing ref `{name}` from {remote}: {reason}; this store trusts only signed refs from \
         its trusted keys (`envstore remote ls`). Pull by id, or trust the signer's public key \
         with `envstore remote trust NAME:HEX`"
    )]
    UntrustedRef {
        remote: String,
        name: String,
        reason: String,
    },
    #[error(
        "not removing {id}: it is {why}. `envstore rm --force` removes it anyway (and the pin or \
         root that keeps it)"
    )]
    RmRefused { id: String, why: String },
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

fn remote_hint(e: &envstore_remote::RemoteError) -> &'static str {
    match e.kind {
        envstore_remote::FailKind::Unreachable => {
            "; the remote did not answer: check the URL, the network, and AWS_ENDPOINT_URL for S3"
        }
        envstore_remote::FailKind::Denied => {
            "; the remote refused the credentials: check AWS_ACCESS_KEY_ID and \
             AWS_SECRET_ACCESS_KEY (or ~/.aws/credentials), or the user in an http URL"
        }
        _ => "",
    }
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
