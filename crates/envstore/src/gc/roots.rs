//! Roots: build directories that use an environment (docs/maintenance.md, "Roots").
//!
//! A persistent build directory (scikit-build-core's `build-dir`, a meson build directory, a
//! CMake tree configured by hand) refers to materialized environments by path. A root records
//! that, so prune keeps the environment while the directory exists and still refers to it:
//!
//! ```text
//! roots/<blake3 of the directory's absolute path>:
//! envstore-root 1
//! dir <absolute path, %XX-escaped>
//! snapshot <hex>            (one line per environment it uses)
//! created <unix seconds>
//! ```
//!
//! A root is *live* for a snapshot while its directory exists and either has no build files
//! envstore can read (then it cannot tell, and keeps it) or one of them (`CMakeCache.txt`,
//! `build.ninja`, `compile_commands.json`, `meson-info/intro-*.json`) names the snapshot's
//! materialized path. Otherwise it is *dead* and prune drops it.

use std::fmt::Write as _;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use envstore_tree::SnapshotId;

use crate::store::files::{remove_file, unix_secs};
use crate::{Error, Hint, Result, Store};

const HEADER: &str = "envstore-root 1";
/// The files that say which environments a build directory uses.
const BUILD_FILES: &[&str] = &["CMakeCache.txt", "build.ninja", "compile_commands.json"];
/// How far `roots --scan` descends below each directory it is given.
const SCAN_DEPTH: usize = 6;
/// How much of one build file is searched (a huge build.ninja is read this far).
const MAX_READ: u64 = 1 << 30;

/// A build directory and the environments it uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    pub dir: PathBuf,
    pub snapshots: Vec<SnapshotId>,
    pub created: u64,
}

/// Whether a root still holds its environment, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Liveness {
    Live(String),
    Dead(String),
}

impl Liveness {
    pub fn is_live(&self) -> bool {
        matches!(self, Liveness::Live(_))
    }

    pub fn reason(&self) -> &str {
        match self {
            Liveness::Live(r) | Liveness::Dead(r) => r,
        }
    }
}

/// A root with each of its environments' state.
#[derive(Debug, Clone)]
pub struct RootStatus {
    pub root: Root,
    pub states: Vec<(SnapshotId, Liveness)>,
}

fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b == b'%' || b <= b' ' || b >= 0x7f {
            let _ = write!(out, "%{b:02X}");
        } else {
            out.push(b as char);
        }
    }
    out
}

fn unescape(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

impl Root {
    fn to_text(&self) -> String {
        let mut text = format!(
            "{HEADER}\ndir {}\n",
            escape(self.dir.as_os_str().as_bytes())
        );
        for id in &self.snapshots {
            let _ = writeln!(text, "snapshot {id}");
        }
        let _ = writeln!(text, "created {}", self.created);
        text
    }

    fn from_text(text: &str) -> Option<Root> {
        let mut lines = text.lines();
        if lines.next()? != HEADER {
            return None;
        }
        let mut root = Root {
            dir: PathBuf::new(),
            snapshots: Vec::new(),
            created: 0,
        };
        for line in lines {
            match line.split_once(' ') {
                Some(("dir", v)) => {
                    root.dir = PathBuf::from(std::ffi::OsString::from_vec(unescape(v)?))
                }
                Some(("snapshot", v)) => root.snapshots.push(v.parse().ok()?),
                Some(("created", v)) => root.created = v.parse().ok()?,
                _ => {}
            }
        }
        root.dir.is_absolute().then_some(root)
    }
}

/// The snapshot ids `bytes` names as materialized paths (`.../envs/<64 hex>`).
/// The ways this store's materializations are spelled in build files: `<root>/envs/` as the
/// store was opened, and with links resolved. Paths into another store are not this store's
/// environments, and never become its roots.
fn env_prefixes(store: &Store) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut add = |envs: &Path| {
        let mut bytes = envs.as_os_str().as_bytes().to_vec();
        bytes.push(b'/');
        if !out.contains(&bytes) {
            out.push(bytes);
        }
    };
    add(&store.envs_dir());
    if let Ok(real) = store.envs_dir().canonicalize() {
        add(&real);
    }
    out
}

/// Every snapshot named in `bytes` by a path below one of `prefixes` (`<store>/envs/<id>`).
fn env_ids(bytes: &[u8], prefixes: &[Vec<u8>], found: &mut Vec<SnapshotId>) {
    for prefix in prefixes {
        for at in memchr::memmem::find_iter(bytes, prefix) {
            let start = at + prefix.len();
            let Some(hex) = bytes.get(start..start + 64) else {
                continue;
            };
            if let Some(id) = std::str::from_utf8(hex).ok().and_then(|h| h.parse().ok())
                && !found.contains(&id)
            {
                found.push(id);
            }
        }
    }
}

/// Every snapshot a build file names (read without following links, bounded).
fn ids_in_file(path: &Path, prefixes: &[Vec<u8>], found: &mut Vec<SnapshotId>) -> bool {
    let Ok((file, meta)) = envstore_fs::open_regular(path) else {
        return false;
    };
    let _ = meta;
    let mut reader = file.take(MAX_READ);
    let mut buf = vec![0u8; 4 << 20];
    let mut carry = 0;
    loop {
        let n = match reader.read(&mut buf[carry..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let end = carry + n;
        env_ids(&buf[..end], prefixes, found);
        // Keep the tail: a path may straddle two reads.
        let longest = prefixes.iter().map(Vec::len).max().unwrap_or(0);
        let keep = end.min(longest + 63);
        buf.copy_within(end - keep..end, 0);
        carry = keep;
    }
    true
}

/// The build files of `dir` envstore can read, and every snapshot they name.
fn build_dir_ids(dir: &Path, prefixes: &[Vec<u8>]) -> (usize, Vec<SnapshotId>) {
    let mut found = Vec::new();
    let mut files = 0;
    for name in BUILD_FILES {
        files += usize::from(ids_in_file(&dir.join(name), prefixes, &mut found));
    }
    if let Ok(entries) = fs::read_dir(dir.join("meson-info")) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            if name.as_bytes().starts_with(b"intro-") && name.as_bytes().ends_with(b".json") {
                files += usize::from(ids_in_file(&entry.path(), prefixes, &mut found));
            }
        }
    }
    (files, found)
}

fn read_root(path: &Path) -> Option<Root> {
    let bytes = envstore_fs::read_bounded(path, 1 << 20).ok()?;
    Root::from_text(std::str::from_utf8(&bytes).ok()?)
}

fn write_root(store: &Store, root: &Root) -> Result<()> {
    let path = store.root_file(&root.dir);
    if root.snapshots.is_empty() {
        return remove_file(&path);
    }
    store.write_file_atomic(&path, root.to_text().as_bytes())
}

/// Records that build directory `dir` uses the snapshots `ids` (added to what it used).
pub(crate) fn root_add(store: &Store, dir: &Path, ids: &[SnapshotId]) -> Result<Root> {
    store.require_writable("record a root")?;
    let dir = dir
        .canonicalize()
        .map_err(Error::io("find the directory", dir))?;
    if !dir.is_dir() {
        return Err(Error::io("use as a build directory", &dir)(
            std::io::Error::other("not a directory"),
        ));
    }
    let mut root = read_root(&store.root_file(&dir)).unwrap_or(Root {
        dir: dir.clone(),
        snapshots: Vec::new(),
        created: unix_secs(SystemTime::now()),
    });
    for id in ids {
        if !root.snapshots.contains(id) {
            root.snapshots.push(*id);
        }
    }
    write_root(store, &root)?;
    Ok(root)
}

/// Every root, with whether each of its environments is still held and why.
pub(crate) fn roots(store: &Store) -> Result<Vec<RootStatus>> {
    let dir = store.roots_dir();
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("read", &dir)(e)),
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        if entry.file_name().as_bytes().starts_with(b".tmp") {
            continue;
        }
        let Some(root) = read_root(&entry.path()) else {
            store.warn_with(
                format!("the root file {} cannot be read", entry.path().display()),
                Hint::Prune,
            );
            continue;
        };
        let states = liveness(store, &root);
        out.push(RootStatus { root, states });
    }
    out.sort_by(|a, b| a.root.dir.cmp(&b.root.dir));
    Ok(out)
}

fn liveness(store: &Store, root: &Root) -> Vec<(SnapshotId, Liveness)> {
    let gone = match fs::symlink_metadata(&root.dir) {
        Ok(meta) if meta.is_dir() => None,
        Ok(_) => Some("the directory is no longer a directory"),
        Err(_) => Some("the directory is gone"),
    };
    let (files, named) = match gone {
        None => build_dir_ids(&root.dir, &env_prefixes(store)),
        Some(_) => (0, Vec::new()),
    };
    root.snapshots
        .iter()
        .map(|id| {
            let state = if let Some(why) = gone {
                Liveness::Dead(why.into())
            } else if !store.has_snapshot(id) {
                Liveness::Dead("the snapshot is gone".into())
            } else if files == 0 {
                Liveness::Live("the directory exists (no build files to check)".into())
            } else if named.contains(id) {
                Liveness::Live("its build files use it".into())
            } else {
                Liveness::Dead("its build files no longer use it".into())
            };
            (*id, state)
        })
        .collect()
}

/// Drops `ids` from every root (or, with `None`, whatever is dead); removes unreadable
/// root files and roots left empty. Returns the (dir, snapshot) pairs dropped.
pub(super) fn drop_roots(
    store: &Store,
    ids: Option<&[SnapshotId]>,
) -> Result<Vec<(PathBuf, SnapshotId)>> {
    let mut dropped = Vec::new();
    let dir = store.roots_dir();
    let Ok(entries) = fs::read_dir(&dir) else {
        return Ok(dropped);
    };
    for entry in entries.flatten() {
        if entry.file_name().as_bytes().starts_with(b".tmp") {
            continue;
        }
        let Some(mut root) = read_root(&entry.path()) else {
            remove_file(&entry.path())?;
            continue;
        };
        let states = liveness(store, &root);
        let before = root.snapshots.len();
        root.snapshots.retain(|id| {
            let drop = match ids {
                Some(ids) => ids.contains(id),
                None => states.iter().any(|(s, l)| s == id && !l.is_live()),
            };
            if drop {
                dropped.push((root.dir.clone(), *id));
            }
            !drop
        });
        if root.snapshots.len() != before {
            write_root(store, &root)?;
        }
    }
    Ok(dropped)
}

/// Build directories under `dirs` (at most [`SCAN_DEPTH`] levels down, never through a
/// link, skipping hidden directories) whose build files name environments of this store
/// (with `stored_only`, environments the store still has).
pub(crate) fn roots_scan(
    store: &Store,
    dirs: &[PathBuf],
    stored_only: bool,
) -> Result<Vec<(PathBuf, Vec<SnapshotId>)>> {
    let mut found = Vec::new();
    let mut stack: Vec<(PathBuf, usize)> = Vec::new();
    for dir in dirs {
        let dir = dir.canonicalize().map_err(Error::io("scan", dir))?;
        stack.push((dir, 0));
    }
    let envs = store.envs_dir().canonicalize().ok();
    let prefixes = env_prefixes(store);
    while let Some((dir, depth)) = stack.pop() {
        if envs.as_deref() == Some(dir.as_path()) {
            continue;
        }
        let (files, ids) = build_dir_ids(&dir, &prefixes);
        let ids: Vec<SnapshotId> = ids
            .into_iter()
            .filter(|id| !stored_only || store.has_snapshot(id))
            .collect();
        if files > 0 && !ids.is_empty() {
            found.push((dir.clone(), ids));
        }
        if depth == SCAN_DEPTH {
            continue;
        }
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let hidden = entry.file_name().as_bytes().starts_with(b".");
            if !hidden && entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push((entry.path(), depth + 1));
            }
        }
    }
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_text_round_trips_any_path() {
        let root = Root {
            dir: PathBuf::from(std::ffi::OsString::from_vec(
                b"/tmp/a b/%/caf\xe9\n".to_vec(),
            )),
            snapshots: vec![
                SnapshotId::from_bytes([1; 32]),
                SnapshotId::from_bytes([2; 32]),
            ],
            created: 5,
        };
        assert_eq!(Root::from_text(&root.to_text()), Some(root));
        assert_eq!(Root::from_text("envstore-root 1\ndir relative\n"), None);
    }

    #[test]
    fn finds_environment_paths_in_build_files() {
        let id = SnapshotId::from_bytes([0xab; 32]);
        let other = SnapshotId::from_bytes([0xcd; 32]);
        let text = format!(
            "CMAKE_PREFIX_PATH:PATH=/home/u/.cache/envstore/envs/{id};/usr\nX=/envs/short\n\
             Y=/tmp/another-store/envs/{other}\n"
        );
        let mut found = Vec::new();
        let prefixes = vec![b"/home/u/.cache/envstore/envs/".to_vec()];
        env_ids(text.as_bytes(), &prefixes, &mut found);
        // Only this store's environments: a path into another store is not one.
        assert_eq!(found, vec![id]);
    }
}
