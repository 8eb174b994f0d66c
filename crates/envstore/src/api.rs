//! The public face of [`Store`]: every public method is a delegation to the folder that does
//! the work, so this file is the one list of what the library offers. Nothing here has logic.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use envstore_archive::Format;
use envstore_keys::Inputs;
#[cfg(feature = "remote")]
use envstore_remote::{config::Config, format::Ref};

use crate::*;

impl Store {
    /// Opens the store at `root`, creating it if the directory is missing or empty.
    pub fn open(root: &Path, options: StoreOptions) -> Result<Store> {
        crate::store::open::open(root, options)
    }

    /// Moves snapshots into the cold tier: every object they need is cut into chunks, new chunks
    /// are compressed into packs, the snapshots are marked packed, and loose objects that no
    /// materialized or unpacked snapshot needs are freed. With no ids, packs every snapshot that
    /// is not materialized.
    pub fn pack(&self, only: &[SnapshotId]) -> Result<PackReport> {
        crate::cold::pack::pack(self, only)
    }

    /// Writes snapshot `id` to `out` as a deterministic archive; returns `out`.
    pub fn export<W: Write>(&self, id: &SnapshotId, out: W, format: Format) -> Result<W> {
        crate::content::archive::export(self, id, out, format)
    }
    /// Stores the snapshot in an archive read from `input` (tar or tar.zst) and returns its id.
    /// Nothing becomes visible unless the whole archive is valid: objects are written as the
    /// archive streams by, the trees and the snapshot record only at the end (objects of a
    /// refused archive are unreferenced, and prune removes them). `limit` bounds the bytes
    /// after decompression. `label` says where it came from (recorded as the source).
    pub fn import(&self, input: impl Read, limit: u64, label: &str) -> Result<SnapshotId> {
        crate::content::archive::import(self, input, limit, label)
    }

    /// Stores the directory tree at `dir` and returns its snapshot id. Storing a snapshot the
    /// store has already checks what it holds of it (one `lstat` per object and tree) and
    /// replaces what is damaged from `dir`: ingesting the source again heals the store.
    pub fn ingest(&self, dir: &Path, filter: &Filter) -> Result<IngestReport> {
        crate::content::ingest::ingest(self, dir, filter)
    }

    /// Makes `source` available at its stable path and returns it. A directory is hashed (and
    /// stored if new); a materialization that exists is returned without touching anything but
    /// its last-use time.
    pub fn materialize(
        &self,
        source: &Source,
        filter: &Filter,
        policy: LinkPolicy,
    ) -> Result<Materialized> {
        crate::content::materialize::materialize(self, source, filter, policy)
    }
    /// Like [`crate::Store::materialize`], holding a lease on the snapshot (taken before it is laid
    /// out, so prune cannot remove it in between) for as long as the [`Lease`] lives.
    pub fn materialize_leased(
        &self,
        source: &Source,
        filter: &Filter,
        policy: LinkPolicy,
    ) -> Result<(Materialized, Lease)> {
        crate::content::materialize::materialize_leased(self, source, filter, policy)
    }

    /// The differences from `old` to `new`. Directories are hashed, not stored; subtrees with
    /// equal ids are skipped unread.
    pub fn diff(&self, old: &Source, new: &Source, filter: &Filter) -> Result<Vec<Change>> {
        crate::catalog::diff::diff(self, old, new, filter)
    }

    /// The snapshot a pin names, if the pin exists; a damaged pin is an error saying how to
    /// replace or remove it.
    pub fn pin_target(&self, name: &str) -> Result<Option<SnapshotId>> {
        crate::catalog::pins::pin_target(self, name)
    }
    /// Points pin `name` at SOURCE (a directory is stored first); returns the new and the
    /// previous target. Holds the store lock shared throughout, so a prune cannot remove the
    /// snapshot between storing and pinning.
    pub fn pin_source(
        &self,
        name: &str,
        spec: &str,
        filter: &envstore_walk::Filter,
    ) -> Result<(SnapshotId, Option<SnapshotId>)> {
        crate::catalog::resolve::pin_source(self, name, spec, filter)
    }
    /// Points pin `name` at `id` (replacing what it pointed at, a damaged pin included);
    /// returns the previous target.
    pub fn pin(&self, name: &str, id: &SnapshotId) -> Result<Option<SnapshotId>> {
        crate::catalog::pins::pin(self, name, id)
    }
    /// Removes pin `name`; returns what it held (a damaged pin is removed all the same: never
    /// through a link).
    pub fn unpin(&self, name: &str) -> Result<PinState> {
        crate::catalog::pins::unpin(self, name)
    }
    /// Every readable pin, by name. A damaged pin is left out with a warning (see
    /// [`crate::Store::take_warnings`]): one bad pin must not stop `ls` or `prune` for the store.
    pub fn pins(&self) -> Result<Vec<(String, SnapshotId)>> {
        crate::catalog::pins::pins(self)
    }
    /// Records that snapshot `id` was used now: the mtime of its record `snapshots/<id>`.
    /// Cheap (one `open` and one `futimens`, no index); failures (a read-only store) are
    /// ignored. Prune keeps what was used within its window.
    pub fn touch(&self, id: &SnapshotId) {
        crate::store::records::touch(self, id)
    }
    /// When snapshot `id` was last used (unix seconds): its record's mtime, which starts at its
    /// creation and moves with every use.
    pub fn last_used(&self, id: &SnapshotId, meta: &SnapshotMeta) -> u64 {
        crate::store::records::last_used(self, id, meta)
    }
    /// Every snapshot, newest first, from the index (reconciled with `snapshots/` first).
    pub fn list(&self) -> Result<Vec<SnapshotInfo>> {
        crate::catalog::list::list(self)
    }
    /// Everything `show` prints about one snapshot.
    pub fn show(&self, id: &SnapshotId) -> Result<SnapshotDetail> {
        crate::catalog::list::show(self, id)
    }
    /// Counts and sizes of everything in the store.
    pub fn stats(&self) -> Result<StoreStats> {
        crate::catalog::list::stats(self)
    }

    /// Interprets a command-line SOURCE: a directory (anything containing `/`, `.`, `..`, or an
    /// existing directory), else a pin name, else a snapshot id or unique id prefix of at least
    /// 8 hex digits.
    pub fn resolve(&self, spec: &str) -> Result<Source> {
        crate::catalog::resolve::resolve(self, spec)
    }
    /// Resolves SOURCE to a snapshot that is in the store, storing a directory first.
    pub fn resolve_stored(&self, spec: &str, filter: &Filter) -> Result<SnapshotId> {
        crate::catalog::resolve::resolve_stored(self, spec, filter)
    }
    /// The snapshot id of SOURCE without storing anything (a directory is only hashed).
    pub fn identify(&self, source: &Source, filter: &Filter) -> Result<SnapshotId> {
        crate::catalog::resolve::identify(self, source, filter)
    }
    /// The one snapshot whose id starts with `prefix` (case-insensitive).
    pub fn resolve_prefix(&self, prefix: &str) -> Result<SnapshotId> {
        crate::catalog::resolve::resolve_prefix(self, prefix)
    }

    /// The plan prune would carry out, changing nothing (`--dry-run`).
    pub fn prune_plan(&self, options: &PruneOptions) -> Result<PrunePlan> {
        crate::gc::prune::prune_plan(self, options)
    }
    /// Plans and carries out a prune. Holds the store lock exclusively, waiting at most the
    /// store's lock timeout for running ingests to finish.
    pub fn prune(&self, options: &PruneOptions) -> Result<PrunePlan> {
        crate::gc::prune::prune(self, options)
    }

    /// Removes the snapshots `ids` now (see `gc/rm.rs`): pinned, rooted and key-named ones
    /// only with `force`, leased ones never.
    pub fn rm(&self, ids: &[SnapshotId], force: bool, dry_run: bool) -> Result<RmReport> {
        crate::gc::rm::rm(self, ids, force, dry_run)
    }

    /// Empties the store but what a process uses: every snapshot, its pins and roots.
    pub fn prune_all(&self, dry_run: bool) -> Result<RmReport> {
        crate::gc::rm::prune_all(self, dry_run)
    }

    /// Records that build directory `dir` uses the snapshots `ids` (added to what it used).
    pub fn root_add(&self, dir: &Path, ids: &[SnapshotId]) -> Result<Root> {
        crate::gc::roots::root_add(self, dir, ids)
    }
    /// Every root, with whether each of its environments is still held and why.
    pub fn roots(&self) -> Result<Vec<RootStatus>> {
        crate::gc::roots::roots(self)
    }
    /// Build directories under `dirs` (at most [`SCAN_DEPTH`] levels down, never through a
    /// link, skipping hidden directories) whose build files name environments of this store
    /// (with `stored_only`, environments the store still has).
    pub fn roots_scan(
        &self,
        dirs: &[PathBuf],
        stored_only: bool,
    ) -> Result<Vec<(PathBuf, Vec<SnapshotId>)>> {
        crate::gc::roots::roots_scan(self, dirs, stored_only)
    }

    /// Checks the whole store, or one snapshot, and with `repair` mends what it can.
    pub fn verify(&self, only: Option<&SnapshotId>, repair: bool) -> Result<VerifyReport> {
        crate::verify::pass::verify(self, only, repair)
    }
}

/// Remotes (the `remote` feature).
#[cfg(feature = "remote")]
impl Store {
    /// The store's remotes and trusted keys (empty when it has none).
    pub fn remote_config(&self) -> Result<Config> {
        crate::remote::config::remote_config(self)
    }
    /// Adds remote `name` at `url`, after checking it answers, that it is an envstore remote
    /// or empty, and whether it honours create-if-absent.
    pub fn remote_add(
        &self,
        scope: crate::ConfigScope,
        name: &str,
        url: &str,
    ) -> Result<RemoteEntry> {
        crate::remote::config::remote_add(self, scope, name, url)
    }
    /// Removes remote `name` from the configuration (the remote itself is not touched).
    pub fn remote_rm(&self, scope: crate::ConfigScope, name: &str) -> Result<()> {
        crate::remote::config::remote_rm(self, scope, name)
    }
    /// Trusts (or, with `trust == false`, stops trusting) a public key for signed refs.
    pub fn trust_key(&self, scope: crate::ConfigScope, key: &str, trust: bool) -> Result<()> {
        crate::remote::config::trust_key(self, scope, key, trust)
    }
    /// The remotes `spec` names: a configured name or a URL; `None` means every configured
    /// remote, in order.
    pub fn remotes(&self, spec: Option<&str>) -> Result<Vec<Remote>> {
        crate::remote::config::remotes(self, spec)
    }
    /// The one remote `spec` names, or the only configured one when `spec` is `None`.
    pub fn remote(&self, spec: Option<&str>) -> Result<Remote> {
        crate::remote::config::remote(self, spec)
    }
    /// Finds `spec` (a full snapshot id or a ref name) on `remotes`, in order, and pulls it.
    /// A remote that does not answer or lacks it is skipped with a warning; `Ok(None)` when
    /// none had it. A remote that sends something refused ends the search with that error
    /// unless a later remote supplies the snapshot.
    pub fn fetch(&self, spec: &str, remotes: &[Remote]) -> Result<Option<SnapshotId>> {
        crate::remote::fetch::fetch(self, spec, remotes)
    }
    /// [`crate::Store::resolve`], falling through to the configured remotes when the store does not
    /// have a snapshot id or name: they are searched in order and the snapshot pulled.
    pub fn resolve_or_fetch(&self, spec: &str) -> Result<crate::Source> {
        crate::remote::fetch::resolve_or_fetch(self, spec)
    }

    /// The refs of `remote` (each checked to parse; signatures are not checked here).
    pub fn remote_refs(&self, remote: &Remote) -> Result<Vec<(String, Ref)>> {
        crate::remote::prune::remote_refs(remote)
    }
    /// The snapshots on `remote` with when they were (last) pushed, unix seconds.
    pub fn remote_snapshots(&self, remote: &Remote) -> Result<Vec<(SnapshotId, i64)>> {
        crate::remote::prune::remote_snapshots(remote)
    }
    /// Tries each thing a remote must do (read, list, write, read back, create-if-absent,
    /// delete), timing each; a step that fails says why.
    pub fn remote_doctor(&self, remote: &Remote) -> Vec<crate::RemoteProbe> {
        crate::remote::doctor::remote_doctor(remote)
    }
    /// Checks that every snapshot on `remote` still has the packs its record lists.
    pub fn remote_verify(&self, remote: &Remote) -> Result<crate::RemoteVerifyReport> {
        crate::remote::check::remote_verify(remote)
    }
    pub fn remote_stats(&self, remote: &Remote) -> Result<RemoteStats> {
        crate::remote::prune::remote_stats(remote)
    }
    pub fn remote_prune(
        &self,
        remote: &Remote,
        options: &RemotePruneOptions,
    ) -> Result<RemotePruneReport> {
        crate::remote::prune::remote_prune(remote, options)
    }

    /// The ref `name` on `remote`, checked against the trusted keys when the store has any,
    /// and against the newest signed ref of that name this store has seen (no replays).
    pub fn remote_ref(&self, remote: &Remote, name: &str) -> Result<Ref> {
        crate::remote::pull::remote_ref(self, remote, name)
    }
    /// Pulls snapshot `id` from `remote`.
    pub fn pull(&self, remote: &Remote, id: &SnapshotId) -> Result<PullReport> {
        crate::remote::pull::pull(self, remote, id)
    }

    /// Uploads snapshot `id` to `remote` and publishes it; with `name`, also the ref `name`
    /// (signed with `key` when given).
    pub fn push(
        &self,
        remote: &Remote,
        id: &SnapshotId,
        name: Option<&str>,
        key: Option<&SecretKey>,
    ) -> Result<PushReport> {
        crate::remote::push::push(self, remote, id, name, key)
    }
}

/// Keyed environments, and the doctor.
impl Store {
    /// What `doctor` finds in the project directory `dir`: the hook, the build directories and
    /// the environments they use, and build files that name temporary environments.
    pub fn doctor(&self, dir: &Path) -> Result<DoctorReport> {
        crate::doctor::doctor(self, dir)
    }

    /// The inputs of `spec`, read now: key files hashed, variables looked up.
    pub fn key_inputs(&self, spec: &EnsureSpec) -> Result<Inputs> {
        crate::keys::ensure::key_inputs(spec)
    }
    /// Materializes what the key of `spec` names, running `build` (with the output directory)
    /// to make it first when the key is new. `build` returns an error (e.g.
    /// [`Error::BuildFailed`]) when the command failed; then nothing is recorded.
    pub fn ensure(
        &self,
        spec: &EnsureSpec,
        build: &mut dyn FnMut(&Path) -> Result<()>,
    ) -> Result<Ensured> {
        crate::keys::ensure::ensure(self, spec, build)
    }
    /// Every readable key record, newest first. A damaged one is skipped with a warning.
    pub fn keys(&self) -> Result<Vec<KeyRecord>> {
        crate::store::records::key_records(self)
    }
    /// The builds recorded under `name`, newest first, each with what changed since the build
    /// before it (empty for the oldest).
    pub fn explain(&self, name: &str) -> Result<Vec<(KeyRecord, Vec<KeyChange>)>> {
        crate::keys::ensure::explain(self, name)
    }

    /// Stores `dir` like [`crate::Store::ingest`], but first tries the RECORD key (see the module
    /// docs): returns the report and whether the fast path served it (no file was hashed).
    /// `extra` joins the key (the hook passes the interpreter's identity).
    pub fn ingest_by_records(
        &self,
        dir: &Path,
        filter: &Filter,
        extra: &[String],
    ) -> Result<(IngestReport, bool)> {
        crate::keys::records::ingest_by_records(self, dir, filter, extra)
    }
}
