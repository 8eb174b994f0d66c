//! Remotes: sharing snapshots between machines through object storage (see docs/remote.md).
//!
//! The storage and the remote's formats live in `envstore-remote`; this module knows the local
//! store: which remotes it uses (`<store>/remotes`), the remote pack indexes it has seen
//! (`<store>/remote-cache/`), and how push, pull and remote prune move between the two.

pub(crate) mod blocks;
pub(crate) mod check;
pub(crate) mod config;
pub(crate) mod doctor;
pub(crate) mod fetch;
pub(crate) mod homes;
pub(crate) mod incoming;
pub(crate) mod keys;
pub(crate) mod negotiate;
pub(crate) mod open;
pub(crate) mod prune;
pub(crate) mod pull;
pub(crate) mod push;
pub(crate) mod upload;

#[cfg(test)]
mod tests;

pub use check::RemoteVerifyReport;
pub use config::{ConfigScope, read_secret_key, user_config_path};
pub use doctor::RemoteProbe;
pub use envstore_remote::FailKind as RemoteFailKind;
pub use open::Remote;
pub use prune::{RemotePruneOptions, RemotePruneReport, RemoteStats};
pub use pull::PullReport;
pub use push::PushReport;
