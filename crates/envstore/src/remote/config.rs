//! Which remotes a store uses (`<store>/remotes`), the keys it trusts, and opening them by
//! name or URL.

use envstore_remote::RemoteUrl;
use envstore_remote::config::{Config, RemoteEntry, valid_name};
use envstore_remote::sign::{PublicKey, SecretKey};

use crate::remote::open::Remote;
use crate::{Error, Result, Store};

/// Which remotes file a change goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigScope {
    /// `<store>/remotes`: this store only.
    Store,
    /// The user's file (`$XDG_CONFIG_HOME/envstore/remotes`, else
    /// `~/.config/envstore/remotes`): every store this user opens reads it.
    User,
}

/// The user's remotes file, when a config directory is known.
pub fn user_config_path() -> Option<std::path::PathBuf> {
    let base = match std::env::var_os("XDG_CONFIG_HOME") {
        Some(dir) if !dir.is_empty() => std::path::PathBuf::from(dir),
        _ => std::path::PathBuf::from(std::env::var_os("HOME").filter(|h| !h.is_empty())?)
            .join(".config"),
    };
    Some(base.join("envstore").join("remotes"))
}

fn read_config(path: &std::path::Path) -> Result<Config> {
    match envstore_fs::read_input(path, 1 << 20) {
        Ok(bytes) => {
            let text = String::from_utf8(bytes).map_err(|_| Error::RemoteConfig {
                path: path.to_owned(),
                reason: "it is not UTF-8".into(),
            })?;
            Config::parse(&text).map_err(|e| Error::RemoteConfig {
                path: path.to_owned(),
                reason: e.to_string(),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
        Err(e) => Err(Error::io("read", path)(e)),
    }
}

fn scoped_config(store: &Store, scope: ConfigScope) -> Result<(std::path::PathBuf, Config)> {
    let path = match scope {
        ConfigScope::Store => store.config_path(),
        ConfigScope::User => user_config_path().ok_or_else(|| Error::RemoteConfig {
            path: "~/.config/envstore/remotes".into(),
            reason: "neither XDG_CONFIG_HOME nor HOME is set".into(),
        })?,
    };
    let config = read_config(&path)?;
    Ok((path, config))
}

/// The remotes and trusted keys a store uses: its own (`<store>/remotes`), then the user's
/// (remotes of a name the store does not use, keys of a name it does not trust), in order.
pub(crate) fn remote_config(store: &Store) -> Result<Config> {
    let mut config = read_config(&store.config_path())?;
    if let Some(path) = user_config_path() {
        let user = read_config(&path)?;
        for r in user.remotes {
            if config.remote(&r.name).is_none() {
                config.remotes.push(r);
            }
        }
        for k in user.trusted_keys {
            if !config.trusted_keys.iter().any(|t| t.name == k.name) {
                config.trusted_keys.push(k);
            }
        }
    }
    Ok(config)
}

/// Writes a remotes file, owner-only (an http remote's URL may carry a password).
fn save_remote_config(
    store: &Store,
    scope: ConfigScope,
    path: &std::path::Path,
    config: &Config,
) -> Result<()> {
    match scope {
        ConfigScope::Store => {
            store.require_writable("change its remotes")?;
            store.write_file_atomic_mode(path, config.to_text().as_bytes(), 0o600)
        }
        ConfigScope::User => {
            let dir = path.parent().expect("a file in a directory");
            std::fs::create_dir_all(dir).map_err(Error::io("create", dir))?;
            crate::store::handle::write_atomic(path, config.to_text().as_bytes(), 0o600)
        }
    }
}

/// Adds remote `name` at `url`, after checking it answers, that it is an envstore remote
/// or empty, and whether it honours create-if-absent.
pub(crate) fn remote_add(
    store: &Store,
    scope: ConfigScope,
    name: &str,
    url: &str,
) -> Result<RemoteEntry> {
    if !valid_name(name) {
        return Err(Error::BadRemoteName { name: name.into() });
    }
    let url: RemoteUrl = url.parse()?;
    let (path, mut config) = scoped_config(store, scope)?;
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
    save_remote_config(store, scope, &path, &config)?;
    Ok(entry)
}

/// Removes remote `name` from the configuration (the remote itself is not touched).
pub(crate) fn remote_rm(store: &Store, scope: ConfigScope, name: &str) -> Result<()> {
    let (path, mut config) = scoped_config(store, scope)?;
    let before = config.remotes.len();
    config.remotes.retain(|r| r.name != name);
    if config.remotes.len() == before {
        return Err(unknown_remote(name, &config));
    }
    save_remote_config(store, scope, &path, &config)
}

fn unknown_remote(name: &str, config: &Config) -> Error {
    Error::UnknownRemote {
        name: name.to_owned(),
        known: config.remotes.iter().map(|r| r.name.clone()).collect(),
    }
}

/// Trusts (or, with `trust == false`, stops trusting) a public key for signed refs.
pub(crate) fn trust_key(store: &Store, scope: ConfigScope, key: &str, trust: bool) -> Result<()> {
    let (path, mut config) = scoped_config(store, scope)?;
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
    save_remote_config(store, scope, &path, &config)
}

/// The remotes `spec` names: a configured name or a URL; `None` means every configured
/// remote, in order.
pub(crate) fn remotes(store: &Store, spec: Option<&str>) -> Result<Vec<Remote>> {
    let config = remote_config(store)?;
    match spec {
        None => config
            .remotes
            .iter()
            .map(|r| Remote::open(&r.url, Some(&r.name)))
            .collect(),
        Some(spec) if spec.contains("://") => Ok(vec![Remote::open(&spec.parse()?, None)?]),
        Some(name) => match config.remote(name) {
            Some(r) => Ok(vec![Remote::open(&r.url, Some(&r.name))?]),
            None => Err(unknown_remote(name, &config)),
        },
    }
}

/// The one remote `spec` names, or the only configured one when `spec` is `None`.
pub(crate) fn remote(store: &Store, spec: Option<&str>) -> Result<Remote> {
    let mut remotes = remotes(store, spec)?;
    match remotes.len() {
        1 => Ok(remotes.remove(0)),
        0 => Err(Error::NoRemotes),
        _ => Err(Error::WhichRemote {
            names: remotes.iter().map(Remote::label).collect(),
        }),
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
