//! Keyed environments: `ensure` builds an environment only when its inputs change.
//!
//! A key names the inputs (envstore-keys); `keys/<key>` records the snapshot built from them.
//! `ensure` looks the key up and materializes what it names (a hit: no build, no lock). On a
//! miss it takes `locks/<key>` (bounded wait; the holder writes who it is into the lock file so
//! a waiter that gives up can say), looks again (another process may have built it meanwhile),
//! runs the build into a new directory under `tmp/` (on the store's file system, so ingest can
//! clone), stores that directory, writes the record by atomic rename, and materializes. A
//! failed build records nothing and leaves nothing behind.
//!
//! Key records are housekeeping like snapshots: prune removes the records of the snapshots it
//! removes; a name keeps its newest record's snapshot alive like a pin.

use std::ffi::OsString;
use std::io::Read;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use envstore_keys::{Change, Inputs, KeyRecord};
use envstore_link::LinkPolicy;
use envstore_lock::{FileLock, LockError, LockKind};
use envstore_tree::{KeyId, SnapshotId};
use envstore_walk::Filter;

use crate::store::files::unix_secs;
use crate::{Error, Materialized, Result, Store, validate_pin_name};

/// What `ensure` keys on, and how it lays the result out.
#[derive(Debug, Clone, Default)]
pub struct EnsureSpec {
    /// Files whose paths (as given) and contents are part of the key.
    pub key_files: Vec<PathBuf>,
    /// Free texts that are part of the key.
    pub texts: Vec<String>,
    /// Names of environment variables whose values (or absence) are part of the key.
    pub env: Vec<String>,
    /// The build command: part of the key, and run on a miss.
    pub argv: Vec<OsString>,
    /// A name that keeps the newest build alive and gives `explain` its history.
    pub name: Option<String>,
    /// Store the output relocatably (also done, whatever this says, when it is a venv).
    pub relocate: bool,
    pub policy: LinkPolicy,
}

/// What `ensure` did.
#[derive(Debug)]
pub struct Ensured {
    pub key: KeyId,
    /// Whether this call ran the build (false on a hit, or when another process built it
    /// while this one waited for the lock).
    pub built: bool,
    pub materialized: Materialized,
}

/// The largest key file hashed: far above any requirements or lock file, and a bound on
/// what a mistaken path can cost.
const MAX_KEY_FILE: u64 = 1 << 30;

/// The inputs of `spec`, read now: key files hashed, variables looked up. Key files are what
/// a user named: opened without blocking and only as regular files, so a fifo or `/dev/zero`
/// is an error naming it, never a hang or an endless read.
pub(crate) fn key_inputs(spec: &EnsureSpec) -> Result<Inputs> {
    let mut inputs = Inputs::default();
    for path in &spec.key_files {
        let failed = |source| Error::KeyFile {
            path: path.clone(),
            source,
        };
        let (mut file, meta) = envstore_fs::open_input(path).map_err(failed)?;
        if meta.len() > MAX_KEY_FILE {
            return Err(failed(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "it holds {} bytes, more than the {MAX_KEY_FILE} a key file may",
                    meta.len()
                ),
            )));
        }
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0; 256 << 10];
        let read = envstore_walk::hash_reader(
            &mut (&mut file).take(MAX_KEY_FILE + 1),
            &mut buf,
            &mut hasher,
        )
        .map_err(failed)?;
        if read > MAX_KEY_FILE {
            return Err(failed(io::Error::new(
                io::ErrorKind::InvalidInput,
                "it grew past the size a key file may have while it was read".to_owned(),
            )));
        }
        let given = path.to_string_lossy().into_owned();
        inputs.files.push((given, *hasher.finalize().as_bytes()));
    }
    inputs.texts = spec.texts.clone();
    for name in &spec.env {
        let value = std::env::var_os(name).map(|v| v.as_bytes().to_vec());
        inputs.env.push((name.clone(), value));
    }
    inputs.argv = spec.argv.iter().map(|a| a.as_bytes().to_vec()).collect();
    Ok(inputs)
}

/// Materializes what the key of `spec` names, running `build` (with the output directory)
/// to make it first when the key is new. `build` returns an error (e.g.
/// [`Error::BuildFailed`]) when the command failed; then nothing is recorded.
pub(crate) fn ensure(
    store: &Store,
    spec: &EnsureSpec,
    build: &mut dyn FnMut(&Path) -> Result<()>,
) -> Result<Ensured> {
    if let Some(name) = &spec.name {
        validate_pin_name(name)?;
    }
    let inputs = key_inputs(spec)?;
    let key = inputs.key();
    if let Some(hit) = ensure_hit(store, &key, spec)? {
        return Ok(hit);
    }
    store.require_writable("build a new environment")?;
    let lock = build_lock(store, &key, spec)?;
    // Built by another process while this one waited?
    if let Some(hit) = ensure_hit(store, &key, spec)? {
        return Ok(hit);
    }
    // Built on another machine and pushed?
    #[cfg(feature = "remote")]
    if crate::remote::keys::ensure_from_remotes(store, &key, &inputs, spec.name.as_deref())?
        .is_some()
        && let Some(hit) = ensure_hit(store, &key, spec)?
    {
        return Ok(hit);
    }
    let tmp = store.root().join("tmp");
    let out = tempfile::Builder::new()
        .prefix(&format!("build-{key}-"))
        .tempdir_in(&tmp)
        .map_err(Error::io("create a build directory in", &tmp))?
        .keep();
    let result = build_and_store(store, &out, &inputs, spec, build);
    // The output was copied into the store (or the build failed): it goes either way.
    let _ = envstore_fs::remove_all(&out);
    let snapshot = result?;
    let materialized = crate::content::materialize::materialize(
        store,
        &crate::Source::Snapshot(snapshot),
        &Filter::default(),
        spec.policy,
    )?;
    drop(lock);
    Ok(Ensured {
        key,
        built: true,
        materialized,
    })
}

/// A hit: the key's record names a snapshot the store has (loose or packed).
fn ensure_hit(store: &Store, key: &KeyId, spec: &EnsureSpec) -> Result<Option<Ensured>> {
    let Some(record) = crate::store::records::key_record(store, key) else {
        return Ok(None);
    };
    if !store.has_snapshot(&record.snapshot) {
        return Ok(None); // pruned: build again
    }
    let source = crate::Source::Snapshot(record.snapshot);
    let materialized =
        crate::content::materialize::materialize(store, &source, &Filter::default(), spec.policy)?;
    Ok(Some(Ensured {
        key: *key,
        built: false,
        materialized,
    }))
}

/// Takes `locks/<key>` exclusively, waiting at most the lock time-out, and writes who holds
/// it into the file; a waiter that gives up names the holder.
fn build_lock(store: &Store, key: &KeyId, spec: &EnsureSpec) -> Result<FileLock> {
    let path = store.root().join("locks").join(key.to_hex());
    match FileLock::acquire(
        &path,
        LockKind::Exclusive,
        store.options().lock_timeout,
        "a build lock",
    ) {
        Ok(lock) => {
            let mut file = lock.file();
            let command = spec
                .argv
                .iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" ");
            let holder = format!(
                "process {} since {} running `{}`\n",
                std::process::id(),
                unix_secs(SystemTime::now()),
                command.escape_debug()
            );
            // Best effort: who holds it is for messages only.
            let _ = file
                .set_len(0)
                .and_then(|()| file.write_all(holder.as_bytes()));
            Ok(lock)
        }
        Err(LockError::TimedOut { waited, .. }) => {
            let holder = envstore_fs::read_bounded(&path, 4096)
                .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "another process".to_owned());
            Err(Error::BuildLockTimedOut {
                key: key.short_key(),
                path,
                holder,
                waited,
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// Runs the build into `out`, stores `out` and records the key. Holds the store lock
/// shared while storing only (a long build must not block prune; prune leaves a build
/// directory alone while its key's lock is held).
fn build_and_store(
    store: &Store,
    out: &Path,
    inputs: &Inputs,
    spec: &EnsureSpec,
    build: &mut dyn FnMut(&Path) -> Result<()>,
) -> Result<SnapshotId> {
    build(out)?;
    // The output is read for storing without following links, like every other path envstore
    // stores from: a build that put a link (or anything else) in its place would otherwise have
    // whatever it points at stored, and made world-readable.
    match envstore_fs::dir_state(out).map_err(Error::io("read", out))? {
        envstore_fs::DirState::Dir => {}
        envstore_fs::DirState::Missing => {
            return Err(Error::BuildOutput {
                path: out.to_owned(),
                what: "gone",
            });
        }
        envstore_fs::DirState::Other(what) => {
            return Err(Error::BuildOutput {
                path: out.to_owned(),
                what,
            });
        }
    }
    let relocate = spec.relocate || out.join("pyvenv.cfg").is_file();
    let filter = Filter::default().relocating(relocate);
    let _shared = store.lock_shared()?;
    let report = crate::content::ingest::store_dir(store, out, &filter, None)?;
    if report.stats.files == 0 && report.stats.symlinks == 0 {
        // Almost always a build that wrote somewhere else than $ENVSTORE_OUT.
        store.warn(format!(
            "the build of key {} left $ENVSTORE_OUT empty: an empty environment was stored \
             (a build writes its result into the directory $ENVSTORE_OUT names)",
            inputs.key().short_key()
        ));
    }
    let record = KeyRecord {
        key: inputs.key(),
        snapshot: report.id,
        created: unix_secs(SystemTime::now()),
        name: spec.name.clone(),
        inputs: inputs.recorded(&crate::store::records::record_secret(store)?),
    };
    store.write_file_atomic(&store.key_path(&record.key), record.to_text().as_bytes())?;
    Ok(report.id)
}

/// The builds recorded under `name`, newest first, each with what changed since the build
/// before it (empty for the oldest).
pub(crate) fn explain(store: &Store, name: &str) -> Result<Vec<(KeyRecord, Vec<Change>)>> {
    validate_pin_name(name)?;
    let records: Vec<KeyRecord> = crate::store::records::key_records(store)?
        .into_iter()
        .filter(|r| r.name.as_deref() == Some(name))
        .collect();
    if records.is_empty() {
        return Err(Error::UnknownKeyName {
            name: name.to_owned(),
        });
    }
    Ok(records
        .iter()
        .enumerate()
        .map(|(i, record)| {
            let changes = records
                .get(i + 1)
                .map(|older| envstore_keys::explain(&older.inputs, &record.inputs))
                .unwrap_or_default();
            (record.clone(), changes)
        })
        .collect())
}
