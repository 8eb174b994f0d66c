//! envstore: a content-addressed store that gives every environment a stable, content-named path.
//!
//! [`Store`] is the facade the `envstore` binary and other tools use: [`Store::ingest`] stores a
//! directory tree by content, [`Store::materialize`] lays a snapshot out at
//! `<store>/envs/<id>` (a path that depends only on the content) and returns that path. The
//! layers below do the work: `envstore-walk` hashes, `envstore-tree` defines identity,
//! `envstore-objects` keeps files and trees, `envstore-link` clones or links them out,
//! `envstore-index` keeps the redb catalogue. Nothing here prints.
//!
//! # Concurrency
//! Every write goes to a temporary name and is published by rename; a process that loses a race
//! uses the winner's identical result. Storing new content holds the store lock shared, so a
//! future `prune` (exclusive) never deletes what an ingest is about to reference; the hot path
//! (materializing a known environment) takes no lock at all and never opens the index.

mod archive;
mod catalog;
mod cold;
mod cold_check;
mod cold_sweep;
mod diff;
mod error;
mod files;
mod gc;
mod ingest;
mod keys;
mod layout;
mod mark;
mod materialize;
mod open;
mod problems;
mod reach;
mod record_key;
mod rehydrate;
mod remote;
mod repair;
mod rm;
mod roots;
mod store;
mod verify;
mod verify_cold;
mod verify_env;

pub use catalog::{SnapshotDetail, SnapshotInfo, StoreStats, validate_pin_name};
pub use cold::PackReport;
pub use cold_sweep::PackSweep;
pub use envstore_archive::Format as ArchiveFormat;
pub use envstore_index::SnapshotMeta;
pub use envstore_keys::{Change as KeyChange, KeyRecord};
pub use envstore_link::{LinkMode, LinkPolicy};
pub use envstore_remote::config::{Config as RemoteConfig, RemoteEntry};
pub use envstore_remote::{Counters as RemoteCounters, sign::SecretKey};
pub use envstore_tree::diff::{Change, Kind};
pub use envstore_tree::{KeyId, ObjectId, SnapshotId, TreeId};
pub use envstore_walk::{DEFAULT_EXCLUDES, Filter, WalkStats};
pub use error::{Error, Result};
pub use gc::{PruneOptions, PrunePlan, Reason, Removal};
pub use keys::{EnsureSpec, Ensured};
pub use layout::LinkReport;
pub use open::FORMAT_VERSION;
pub use remote::{
    PullReport, PushReport, Remote, RemoteFailKind, RemotePruneOptions, RemotePruneReport,
    RemoteStats, read_secret_key,
};
pub use rm::RmReport;
pub use roots::{Liveness, Root, RootStatus};
pub use store::{
    IngestReport, Lease, Materialized, Progress, ProgressFn, Source, Store, StoreOptions,
    default_store_path,
};
pub use verify::{Problem, VerifyReport};
