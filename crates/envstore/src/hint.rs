//! What a user can do about an error, as data: the library names the remedy, the front end
//! words it (the CLI in its own terms: a command, a flag, an environment variable), as uv's
//! `Hint`s do. A library error never tells the user which flag to type.

/// A remedy for an [`crate::Error`] (see [`crate::Error::hint`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Hint {
    /// The store is damaged where repair can mend it (an object, a tree, a record, a pack, a
    /// store directory replaced by a link, the index).
    Repair,
    /// A lock was held longer than the wait allowed: retry, or wait longer.
    WaitLonger,
    /// This store cannot be used for this: choose another.
    OtherStore,
    /// A pin file is damaged: point it again, or remove it.
    ReplacePin { name: String },
    /// A remote sent content that does not match its ids: push it again from a good store
    /// (remote prune does not fix content).
    PushAgain,
    /// The remote did not answer: check its address and the network.
    RemoteUnreachable,
    /// The remote refused the credentials.
    RemoteDenied,
    /// A remote of this name exists: remove it first to change it.
    RemoveRemote { name: String },
    /// No remote is configured: add one, or give a URL.
    AddRemote,
    /// Several remotes are configured: name one.
    ChooseRemote,
    /// A ref is unsigned or signed by an unknown key: pull by id, or trust the signer.
    TrustKey,
    /// Refused because it is pinned or rooted: force removes it anyway.
    Force,
    /// No such key name: list the key records.
    ListKeys,
    /// No such snapshot: list the snapshots.
    ListSnapshots,
    /// Prune removes it.
    Prune,
}
