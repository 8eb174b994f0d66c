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

mod api;
mod catalog;
mod cold;
mod content;
mod doctor;
mod error;
mod gc;
mod hint;
mod keys;
#[cfg(feature = "remote")]
mod remote;
mod store;
#[cfg(test)]
mod testutil;
mod verify;

pub use catalog::list::{SnapshotDetail, SnapshotInfo, StoreStats};
pub use catalog::pins::{PinState, validate_pin_name};
pub use cold::pack::PackReport;
pub use cold::sweep::PackSweep;
pub use content::layout::LinkReport;
pub use content::{IngestReport, Materialized};
pub use doctor::{BuildDir, Content, DoctorReport, EnvState, EnvUse, Layout, Project, ProjectFile};
pub use envstore_archive::Format as ArchiveFormat;
pub use envstore_index::SnapshotMeta;
pub use envstore_keys::{Change as KeyChange, KeyRecord};
pub use envstore_link::{LinkMode, LinkPolicy};
#[cfg(feature = "remote")]
pub use envstore_remote::config::{Config as RemoteConfig, RemoteEntry};
#[cfg(feature = "remote")]
pub use envstore_remote::{Counters as RemoteCounters, sign::SecretKey};
pub use envstore_tree::diff::{Change, Kind};
pub use envstore_tree::{KeyId, ObjectId, SnapshotId, TreeId};
pub use envstore_walk::{DEFAULT_EXCLUDES, Filter, WalkStats};
pub use error::{Error, Result};
pub use gc::plan::{Kept, PruneOptions, PrunePlan, Reason, Removal};
pub use gc::rm::RmReport;
pub use gc::roots::{Liveness, Root, RootStatus};
pub use hint::Hint;
pub use keys::build::run_build_command;
pub use keys::ensure::{EnsureSpec, Ensured};
pub use keys::venv::{VenvRecipe, venv_recipe};
#[cfg(feature = "remote")]
pub use remote::{
    ConfigScope, PullReport, PushReport, Remote, RemoteFailKind, RemoteProbe, RemotePruneOptions,
    RemotePruneReport, RemoteStats, RemoteVerifyReport, read_secret_key, user_config_path,
};
pub use store::handle::{
    Lease, Progress, ProgressFn, Source, Store, StoreOptions, Warning, default_store_path,
};
pub use store::open::FORMAT_VERSION;
pub use verify::report::{Problem, VerifyReport};
