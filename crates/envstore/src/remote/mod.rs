//! Remotes: sharing snapshots between machines through object storage (see docs/remote.md).
//!
//! The storage and the remote's formats live in `envstore-remote`; this module knows the local
//! store: which remotes it uses (`<store>/remotes`), the remote pack indexes it has seen
//! (`<store>/remote-cache/`), and how push, pull and remote prune move between the two.

mod keys;
mod prune;
mod pull;
mod push;

use std::collections::HashMap;
use std::path::PathBuf;

use envstore_remote::config::{Config, RemoteEntry, valid_name};
use envstore_remote::format::{self, Marked, PackIndex};
use envstore_remote::sign::{PublicKey, SecretKey};
use envstore_remote::{Counters, RemoteError, RemoteUrl, Storage};
use envstore_tree::{PackId, SnapshotId};

pub use envstore_remote::FailKind as RemoteFailKind;
pub use prune::{RemotePruneOptions, RemotePruneReport, RemoteStats};
pub use pull::PullReport;
pub use push::PushReport;

use crate::{Error, Result, Store};

/// The remotes file in a store.
pub(crate) const CONFIG_FILE: &str = "remotes";
/// Remote pack indexes seen before, by pack id (an index is a function of its pack).
pub(crate) const CACHE_DIR: &str = "remote-cache";

/// An open remote.
#[derive(Debug)]
pub struct Remote {
    /// The configured name, or `None` for a URL given on the command line.
    pub name: Option<String>,
    pub url: RemoteUrl,
    storage: Box<dyn Storage>,
}

impl Remote {
    /// Opens `url` (nothing is contacted until it is used).
    pub fn open(url: &RemoteUrl, name: Option<&str>) -> Result<Remote> {
        Ok(Remote {
            name: name.map(str::to_owned),
            url: url.clone(),
            storage: envstore_remote::open(url)?,
        })
    }

    /// The name, or the URL (without password) when it has none.
    pub fn label(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.url.to_string())
    }

    /// Requests made and bytes moved so far.
    pub fn counters(&self) -> Counters {
        self.storage.counters()
    }

    pub(crate) fn storage(&self) -> &dyn Storage {
        &*self.storage
    }

    /// Refuses a remote that holds something else than envstore's layout, version 1.
    fn check_marker(&self, create: bool) -> Result<()> {
        match self.storage.get(format::MARKER_KEY, 4096)? {
            Some(m) if m == format::MARKER => Ok(()),
            Some(m) => Err(Error::RemoteRefused {
                remote: self.label(),
                reason: format!(
                    "its {} file says {:?}, not {:?}: another envstore version, or not an \
                     envstore remote",
                    format::MARKER_KEY,
                    String::from_utf8_lossy(&m).trim(),
                    String::from_utf8_lossy(format::MARKER).trim()
                ),
            }),
            None if create => {
                self.storage
                    .put(format::MARKER_KEY, format::MARKER.to_vec())?;
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// The packs remote prune has marked for deletion.
    fn marked(&self) -> Result<Marked> {
        match self.storage.get(format::MARKED_KEY, format::MAX_MARKED)? {
            None => Ok(Marked::default()),
            Some(bytes) => Marked::decode(&bytes).map_err(|e| self.refused(e.to_string())),
        }
    }

    fn refused(&self, reason: String) -> Error {
        Error::RemoteRefused {
            remote: self.label(),
            reason,
        }
    }
}

/// What `packs/` of a remote holds: complete packs (a pack and its index) and the rest.
#[derive(Debug, Default)]
pub(crate) struct PackListing {
    /// Packs with both files, with the pack's size and modification time.
    pub(crate) complete: HashMap<PackId, (u64, i64)>,
    /// Files of incomplete packs (a pack without its index or the reverse): key, size, time.
    pub(crate) partial: Vec<(String, u64, i64)>,
}

impl Remote {
    pub(crate) fn list_packs(&self) -> Result<PackListing> {
        // Each pack's .pack and .idx files: (size, time).
        type Files = (Option<(u64, i64)>, Option<(u64, i64)>);
        let mut packs: HashMap<PackId, Files> = HashMap::new();
        let mut listing = PackListing::default();
        for f in self.storage.list("packs")? {
            let parsed = f
                .name
                .strip_suffix(".pack")
                .map(|h| (h, true))
                .or_else(|| f.name.strip_suffix(".idx").map(|h| (h, false)));
            match parsed.and_then(|(h, is_pack)| Some((h.parse::<PackId>().ok()?, is_pack))) {
                Some((id, true)) => packs.entry(id).or_default().0 = Some((f.size, f.modified)),
                Some((id, false)) => packs.entry(id).or_default().1 = Some((f.size, f.modified)),
                None => listing
                    .partial
                    .push((format!("packs/{}", f.name), f.size, f.modified)),
            }
        }
        for (id, files) in packs {
            match files {
                (Some(pack), Some(_)) => {
                    listing.complete.insert(id, pack);
                }
                (Some((size, time)), None) => {
                    listing.partial.push((format::pack_key(&id), size, time))
                }
                (None, Some((size, time))) => {
                    listing.partial.push((format::index_key(&id), size, time))
                }
                (None, None) => {}
            }
        }
        Ok(listing)
    }
}

impl Store {
    fn config_path(&self) -> PathBuf {
        self.root().join(CONFIG_FILE)
    }

    /// The store's remotes and trusted keys (empty when it has none).
    pub fn remote_config(&self) -> Result<Config> {
        let path = self.config_path();
        match envstore_fs::read_bounded(&path, 1 << 20) {
            Ok(bytes) => {
                let text = String::from_utf8(bytes).map_err(|_| Error::RemoteConfig {
                    path: path.clone(),
                    reason: "it is not UTF-8".into(),
                })?;
                Config::parse(&text).map_err(|e| Error::RemoteConfig {
                    path,
                    reason: e.to_string(),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(e) => Err(Error::io("read", &path)(e)),
        }
    }

    fn save_remote_config(&self, config: &Config) -> Result<()> {
        self.require_writable("change its remotes")?;
        self.write_file_atomic(&self.config_path(), config.to_text().as_bytes())
    }

    /// Adds remote `name` at `url`, after checking it answers, that it is an envstore remote
    /// or empty, and whether it honours create-if-absent.
    pub fn remote_add(&self, name: &str, url: &str) -> Result<RemoteEntry> {
        if !valid_name(name) {
            return Err(Error::BadRemoteName { name: name.into() });
        }
        let url: RemoteUrl = url.parse()?;
        let mut config = self.remote_config()?;
        if config.remote(name).is_some() {
            return Err(Error::RemoteExists { name: name.into() });
        }
        let remote = Remote::open(&url, Some(name))?;
        remote.check_marker(false)?;
        let create_if_absent = envstore_remote::probe_create_if_absent(remote.storage())?;
        let entry = RemoteEntry {
            name: name.to_owned(),
            url,
            create_if_absent,
        };
        config.remotes.push(entry.clone());
        self.save_remote_config(&config)?;
        Ok(entry)
    }

    /// Removes remote `name` from the configuration (the remote itself is not touched).
    pub fn remote_rm(&self, name: &str) -> Result<()> {
        let mut config = self.remote_config()?;
        let before = config.remotes.len();
        config.remotes.retain(|r| r.name != name);
        if config.remotes.len() == before {
            return Err(self.unknown_remote(name, &config));
        }
        self.save_remote_config(&config)
    }

    fn unknown_remote(&self, name: &str, config: &Config) -> Error {
        Error::UnknownRemote {
            name: name.to_owned(),
            known: config.remotes.iter().map(|r| r.name.clone()).collect(),
        }
    }

    /// Trusts (or, with `trust == false`, stops trusting) a public key for signed refs.
    pub fn trust_key(&self, key: &str, trust: bool) -> Result<()> {
        let mut config = self.remote_config()?;
        if trust {
            let key: PublicKey =
                key.parse()
                    .map_err(|e: envstore_remote::sign::KeyError| Error::BadKey {
                        what: "the public key".into(),
                        reason: e.to_string(),
                    })?;
            config.trusted_keys.retain(|k| k.name != key.name);
            config.trusted_keys.push(key);
        } else {
            let before = config.trusted_keys.len();
            config
                .trusted_keys
                .retain(|k| k.name != key && k.to_string() != key);
            if before == config.trusted_keys.len() {
                return Err(Error::BadKey {
                    what: format!("key {key:?}"),
                    reason: "it is not trusted; `envstore remote ls` lists the trusted keys".into(),
                });
            }
        }
        self.save_remote_config(&config)
    }

    /// The remotes `spec` names: a configured name or a URL; `None` means every configured
    /// remote, in order.
    pub fn remotes(&self, spec: Option<&str>) -> Result<Vec<Remote>> {
        let config = self.remote_config()?;
        match spec {
            None => config
                .remotes
                .iter()
                .map(|r| Remote::open(&r.url, Some(&r.name)))
                .collect(),
            Some(spec) if spec.contains("://") => Ok(vec![Remote::open(&spec.parse()?, None)?]),
            Some(name) => match config.remote(name) {
                Some(r) => Ok(vec![Remote::open(&r.url, Some(&r.name))?]),
                None => Err(self.unknown_remote(name, &config)),
            },
        }
    }

    /// The one remote `spec` names, or the only configured one when `spec` is `None`.
    pub fn remote(&self, spec: Option<&str>) -> Result<Remote> {
        let mut remotes = self.remotes(spec)?;
        match remotes.len() {
            1 => Ok(remotes.remove(0)),
            0 => Err(Error::NoRemotes),
            _ => Err(Error::WhichRemote {
                names: remotes.iter().map(Remote::label).collect(),
            }),
        }
    }

    /// The indexes of `packs` on `remote`: from the cache, else fetched, checked and cached.
    pub(crate) fn pack_indexes(
        &self,
        remote: &Remote,
        packs: &[PackId],
    ) -> Result<HashMap<PackId, PackIndex>> {
        let dir = self.root().join(CACHE_DIR);
        let mut out = HashMap::new();
        let mut fetch = Vec::new();
        for id in packs {
            let path = dir.join(format!("{id}.idx"));
            match envstore_fs::read_bounded(&path, format::MAX_INDEX)
                .ok()
                .and_then(|b| PackIndex::decode(&b, id).ok())
            {
                Some(idx) => {
                    out.insert(*id, idx);
                }
                None => fetch.push(*id),
            }
        }
        let keys: Vec<String> = fetch.iter().map(format::index_key).collect();
        let fetched = remote.storage.get_many(&keys, format::MAX_INDEX)?;
        for (id, bytes) in fetch.into_iter().zip(fetched) {
            let Some(bytes) = bytes else {
                return Err(Error::RemoteMissing {
                    remote: remote.label(),
                    what: format!("the index of pack {id} (removed meanwhile? retry)"),
                });
            };
            let idx = PackIndex::decode(&bytes, &id).map_err(|e| remote.refused(e.to_string()))?;
            if self.is_writable() {
                let _ = self.write_file_atomic(&dir.join(format!("{id}.idx")), &bytes);
            }
            out.insert(id, idx);
        }
        Ok(out)
    }
}

/// Reads a secret key file for `push --sign`.
pub fn read_secret_key(path: &std::path::Path) -> Result<SecretKey> {
    let bytes = envstore_fs::read_bounded(path, 64 << 10).map_err(|e| Error::BadKey {
        what: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let text = String::from_utf8(bytes).map_err(|_| Error::BadKey {
        what: path.display().to_string(),
        reason: "not UTF-8".into(),
    })?;
    SecretKey::parse(&text).map_err(|e| Error::BadKey {
        what: path.display().to_string(),
        reason: e.to_string(),
    })
}

impl From<RemoteError> for Error {
    fn from(e: RemoteError) -> Error {
        Error::Remote(e)
    }
}

impl From<envstore_remote::UrlError> for Error {
    fn from(e: envstore_remote::UrlError) -> Error {
        Error::BadRemoteUrl(e)
    }
}

impl Store {
    /// Finds `spec` (a full snapshot id or a ref name) on `remotes`, in order, and pulls it.
    /// A remote that does not answer or lacks it is skipped with a warning; `Ok(None)` when
    /// none had it. A remote that sends something refused ends the search with that error
    /// unless a later remote supplies the snapshot.
    pub fn fetch(&self, spec: &str, remotes: &[Remote]) -> Result<Option<SnapshotId>> {
        let id: Option<SnapshotId> = (spec.len() == 64).then(|| spec.parse().ok()).flatten();
        let mut refused = None;
        for remote in remotes {
            let attempt = match id {
                Some(id) => self.pull(remote, &id).map(|_| id),
                None if valid_name(spec) => self
                    .remote_ref(remote, spec)
                    .and_then(|r| self.pull(remote, &r.snapshot).map(|_| r.snapshot)),
                None => return Ok(None),
            };
            match attempt {
                Ok(id) => return Ok(Some(id)),
                Err(Error::RemoteMissing { .. }) => {}
                Err(Error::Remote(e)) if e.is_not_found() => {}
                Err(Error::Remote(e)) if e.kind == RemoteFailKind::Unreachable => {
                    self.warn(format!(
                        "remote {} did not answer ({}); going on without it",
                        remote.label(),
                        e.message
                    ));
                }
                Err(e) => {
                    self.warn(format!("remote {}: {e}", remote.label()));
                    refused.get_or_insert(e);
                }
            }
        }
        refused.map_or(Ok(None), Err)
    }

    /// [`Store::resolve`], falling through to the configured remotes when the store does not
    /// have a snapshot id or name: they are searched in order and the snapshot pulled.
    pub fn resolve_or_fetch(&self, spec: &str) -> Result<crate::Source> {
        match self.resolve(spec) {
            Err(
                e @ (Error::UnknownSource { .. }
                | Error::UnknownSnapshot { .. }
                | Error::UnknownPin { .. }),
            ) => {
                let config = self.remote_config()?;
                if config.remotes.is_empty() || !self.is_writable() {
                    return Err(e);
                }
                match self.fetch(spec, &self.remotes(None)?)? {
                    Some(id) => Ok(crate::Source::Snapshot(id)),
                    None => Err(e),
                }
            }
            other => other,
        }
    }
}
