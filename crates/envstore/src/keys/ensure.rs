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

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
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

/// A key record is a few dozen short lines.
const MAX_KEY_RECORD: u64 = 1 << 20;

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

impl Store {
    fn key_path(&self, key: &KeyId) -> PathBuf {
        self.root().join("keys").join(key.to_hex())
    }

    /// The inputs of `spec`, read now: key files hashed, variables looked up.
    pub fn key_inputs(&self, spec: &EnsureSpec) -> Result<Inputs> {
        let mut inputs = Inputs::default();
        for path in &spec.key_files {
            let mut file = fs::File::open(path).map_err(|e| Error::KeyFile {
                path: path.clone(),
                source: e,
            })?;
            let mut hasher = blake3::Hasher::new();
            io::copy(&mut file, &mut hasher).map_err(|e| Error::KeyFile {
                path: path.clone(),
                source: e,
            })?;
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

    /// The record of `key`, if there is a readable one.
    fn key_record(&self, key: &KeyId) -> Option<KeyRecord> {
        let bytes = envstore_fs::read_bounded(&self.key_path(key), MAX_KEY_RECORD).ok()?;
        KeyRecord::from_text(&String::from_utf8_lossy(&bytes))
            .ok()
            .filter(|r| r.key == *key)
    }

    /// Materializes what the key of `spec` names, running `build` (with the output directory)
    /// to make it first when the key is new. `build` returns an error (e.g.
    /// [`Error::BuildFailed`]) when the command failed; then nothing is recorded.
    pub fn ensure(
        &self,
        spec: &EnsureSpec,
        build: &mut dyn FnMut(&Path) -> Result<()>,
    ) -> Result<Ensured> {
        if let Some(name) = &spec.name {
            validate_pin_name(name)?;
        }
        let inputs = self.key_inputs(spec)?;
        let key = inputs.key();
        if let Some(hit) = self.ensure_hit(&key, spec)? {
            return Ok(hit);
        }
        self.require_writable("build a new environment")?;
        let lock = self.build_lock(&key, spec)?;
        // Built by another process while this one waited?
        if let Some(hit) = self.ensure_hit(&key, spec)? {
            return Ok(hit);
        }
        // Built on another machine and pushed?
        if self
            .ensure_from_remotes(&key, &inputs, spec.name.as_deref())?
            .is_some()
            && let Some(hit) = self.ensure_hit(&key, spec)?
        {
            return Ok(hit);
        }
        let tmp = self.root().join("tmp");
        let out = tempfile::Builder::new()
            .prefix(&format!("build-{key}-"))
            .tempdir_in(&tmp)
            .map_err(Error::io("create a build directory in", &tmp))?
            .keep();
        let result = self.build_and_store(&out, &inputs, spec, build);
        // The output was copied into the store (or the build failed): it goes either way.
        let _ = envstore_fs::remove_all(&out);
        let snapshot = result?;
        let materialized = self.materialize(
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
    fn ensure_hit(&self, key: &KeyId, spec: &EnsureSpec) -> Result<Option<Ensured>> {
        let Some(record) = self.key_record(key) else {
            return Ok(None);
        };
        if !self.has_snapshot(&record.snapshot) {
            return Ok(None); // pruned: build again
        }
        let source = crate::Source::Snapshot(record.snapshot);
        let materialized = self.materialize(&source, &Filter::default(), spec.policy)?;
        Ok(Some(Ensured {
            key: *key,
            built: false,
            materialized,
        }))
    }

    /// Takes `locks/<key>` exclusively, waiting at most the lock time-out, and writes who holds
    /// it into the file; a waiter that gives up names the holder.
    fn build_lock(&self, key: &KeyId, spec: &EnsureSpec) -> Result<FileLock> {
        let path = self.root().join("locks").join(key.to_hex());
        match FileLock::acquire(
            &path,
            LockKind::Exclusive,
            self.options().lock_timeout,
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
                    key: key.to_hex()[..16].to_owned(),
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
        &self,
        out: &Path,
        inputs: &Inputs,
        spec: &EnsureSpec,
        build: &mut dyn FnMut(&Path) -> Result<()>,
    ) -> Result<SnapshotId> {
        build(out)?;
        let relocate = spec.relocate || out.join("pyvenv.cfg").is_file();
        let filter = Filter::default().relocating(relocate);
        let _shared = self.lock_shared()?;
        let report = self.store_dir(out, &filter, None)?;
        let record = KeyRecord {
            key: inputs.key(),
            snapshot: report.id,
            created: unix_secs(SystemTime::now()),
            name: spec.name.clone(),
            inputs: inputs.recorded(),
        };
        self.write_file_atomic(&self.key_path(&record.key), record.to_text().as_bytes())?;
        Ok(report.id)
    }

    /// Every readable key record, newest first. A damaged one is skipped with a warning.
    pub fn keys(&self) -> Result<Vec<KeyRecord>> {
        let dir = self.root().join("keys");
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(Error::io("read", &dir))? {
            let entry = entry.map_err(Error::io("read", &dir))?;
            let Some(key) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<KeyId>().ok())
            else {
                continue; // a temp file of a record being written
            };
            match self.key_record(&key) {
                // Builds within one second are ordered by when their record was written.
                Some(record) => {
                    let written = entry.metadata().and_then(|m| m.modified()).ok();
                    out.push((record, written));
                }
                None => self.warn(format!(
                    "the key record {} cannot be read; it is rebuilt on the next `ensure` with \
                     those inputs",
                    entry.path().display()
                )),
            }
        }
        out.sort_by(|(a, at), (b, bt)| b.created.cmp(&a.created).then(bt.cmp(at)));
        Ok(out.into_iter().map(|(record, _)| record).collect())
    }

    /// The builds recorded under `name`, newest first, each with what changed since the build
    /// before it (empty for the oldest).
    pub fn explain(&self, name: &str) -> Result<Vec<(KeyRecord, Vec<Change>)>> {
        validate_pin_name(name)?;
        let records: Vec<KeyRecord> = self
            .keys()?
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

    /// For prune: the snapshot of the newest record of each name (kept like a pin).
    pub(crate) fn named_key_snapshots(&self) -> Result<Vec<(String, SnapshotId)>> {
        let mut newest: BTreeMap<String, KeyRecord> = BTreeMap::new();
        for record in self.keys()? {
            if !self.has_snapshot(&record.snapshot) {
                continue;
            }
            let Some(name) = record.name.clone() else {
                continue;
            };
            let newer = newest.get(&name).is_none_or(|n| record.created > n.created);
            if newer {
                newest.insert(name, record);
            }
        }
        Ok(newest
            .into_iter()
            .map(|(name, record)| (name, record.snapshot))
            .collect())
    }

    /// For prune: removes the key records whose snapshot is gone, with their build locks when
    /// nobody holds them (one held is a build running again); returns how many records.
    pub(crate) fn remove_dead_key_records(&self) -> Result<usize> {
        let mut removed = 0;
        for record in self.keys()? {
            if !self.has_snapshot(&record.snapshot) {
                crate::store::files::remove_file(&self.key_path(&record.key))?;
                let lock = self.root().join("locks").join(record.key.to_hex());
                if let Ok(Some(held)) = FileLock::try_acquire(&lock, LockKind::Exclusive) {
                    held.remove()?;
                }
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Whether `tmp/<name>` is the output directory of a build that is still running (its
    /// key's lock is held): prune must leave it alone.
    pub(crate) fn is_running_build(&self, name: &str) -> bool {
        let Some(key) = name
            .strip_prefix("build-")
            .and_then(|rest| rest.get(..64))
            .and_then(|hex| hex.parse::<KeyId>().ok())
        else {
            return false;
        };
        let lock = self.root().join("locks").join(key.to_hex());
        !FileLock::probe(&lock, LockKind::Exclusive).unwrap_or(true)
    }
}
