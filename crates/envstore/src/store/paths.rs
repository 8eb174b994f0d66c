//! Every path inside a store, in one place. Nothing else joins names onto the store's root.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use envstore_tree::{KeyId, SnapshotId};

use crate::Store;

impl Store {
    /// The store's own secret, for key records (see `store/records.rs`).
    pub(crate) fn secret_path(&self) -> PathBuf {
        self.root().join("secret")
    }

    /// Where snapshot `id` is (or would be) materialized.
    pub fn env_path(&self, id: &SnapshotId) -> PathBuf {
        self.root.join("envs").join(id.to_hex())
    }

    pub(crate) fn envs_dir(&self) -> PathBuf {
        self.root.join("envs")
    }

    pub(crate) fn snapshot_file(&self, id: &SnapshotId) -> PathBuf {
        self.root.join("snapshots").join(id.to_hex())
    }

    pub(crate) fn lease_path(&self, id: &SnapshotId) -> PathBuf {
        self.root.join("leases").join(id.to_hex())
    }

    /// Where sorted runs go: the store's `tmp/` (anonymous files, nothing named is left), or
    /// the system's temporary directory for a store this process cannot write.
    pub(crate) fn scratch_dir(&self) -> PathBuf {
        if self.is_writable() {
            self.root().join("tmp")
        } else {
            std::env::temp_dir()
        }
    }

    pub(crate) fn packs_dir(&self) -> PathBuf {
        self.root().join("packs")
    }

    pub(crate) fn pin_path(&self, name: &str) -> PathBuf {
        self.root().join("pins").join(name)
    }

    pub(crate) fn key_path(&self, key: &KeyId) -> PathBuf {
        self.root().join("keys").join(key.to_hex())
    }

    pub(crate) fn roots_dir(&self) -> PathBuf {
        self.root().join("roots")
    }

    pub(crate) fn root_file(&self, dir: &Path) -> PathBuf {
        self.roots_dir()
            .join(blake3::hash(dir.as_os_str().as_bytes()).to_hex().as_str())
    }

    #[cfg(feature = "remote")]
    pub(crate) fn config_path(&self) -> PathBuf {
        self.root().join("remotes")
    }
}
