//! The build hook's fast path: an installed prefix keyed on its `*.dist-info/RECORD` files.
//!
//! Hashing a build environment costs about a second per GB on every build (a torch
//! environment is several). But an environment pip or uv installed is described by its
//! distributions' RECORD files (every file they installed, with its hash and size), so the
//! RECORD files plus the interpreter are a key for it. On a hit the snapshot the key names is
//! confirmed with metadata only, without reading a file's content: every path, kind, exec bit,
//! size and symlink target of the directory must equal the snapshot's, and nothing may be
//! extra or missing. Any doubt (no RECORD files, relocation, a mismatch) falls back to hashing,
//! and a miss records the key for the next build.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use envstore_keys::{Inputs, KeyRecord};
use envstore_tree::{EntryKind, SnapshotId, TreeId};
use envstore_walk::{Filter, WalkStats};

use crate::store::files::unix_secs;
use crate::{Error, IngestReport, Result, Store};

/// One entry of a directory as `lstat` sees it.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    File { size: u64, executable: bool },
    Dir,
    Symlink(Vec<u8>),
    Other,
}

/// Every entry below a directory (filtered as the walk filters), by relative path, and the
/// relative paths of its RECORD files.
struct Listing {
    entries: BTreeMap<Vec<u8>, Seen>,
    records: Vec<PathBuf>,
}

fn list(root: &Path, filter: &Filter) -> Result<Listing> {
    let mut listing = Listing {
        entries: BTreeMap::new(),
        records: Vec::new(),
    };
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        for entry in fs::read_dir(&dir).map_err(Error::io("read", &dir))? {
            let entry = entry.map_err(Error::io("read", &dir))?;
            let name = entry.file_name();
            let meta = entry.metadata().map_err(Error::io("stat", &entry.path()))?;
            if filter.excludes(&rel, &name, meta.is_dir()) {
                continue;
            }
            let path = rel.join(&name);
            let seen = if meta.is_file() {
                let in_dist_info = rel
                    .file_name()
                    .is_some_and(|d| d.as_bytes().ends_with(b".dist-info"));
                if in_dist_info && name == "RECORD" {
                    listing.records.push(path.clone());
                }
                Seen::File {
                    size: meta.len(),
                    executable: meta.mode() & 0o100 != 0,
                }
            } else if meta.is_dir() {
                stack.push(path.clone());
                Seen::Dir
            } else if meta.file_type().is_symlink() {
                let target =
                    fs::read_link(entry.path()).map_err(Error::io("read", &entry.path()))?;
                Seen::Symlink(target.as_os_str().as_bytes().to_vec())
            } else {
                Seen::Other
            };
            listing
                .entries
                .insert(path.as_os_str().as_bytes().to_vec(), seen);
        }
    }
    listing.records.sort();
    Ok(listing)
}

/// Stores `dir` like [`crate::Store::ingest`], but first tries the RECORD key (see the module
/// docs): returns the report and whether the fast path served it (no file was hashed).
/// `extra` joins the key (the hook passes the interpreter's identity).
pub(crate) fn ingest_by_records(
    store: &Store,
    dir: &Path,
    filter: &Filter,
    extra: &[String],
) -> Result<(IngestReport, bool)> {
    if filter.relocates() {
        // Relocated files differ from their source in size: no metadata check possible.
        return Ok((crate::content::ingest::ingest(store, dir, filter)?, false));
    }
    let listing = list(dir, filter)?;
    if listing.records.is_empty() {
        return Ok((crate::content::ingest::ingest(store, dir, filter)?, false));
    }
    let mut inputs = Inputs {
        texts: vec!["envstore-records-1".to_owned()],
        ..Inputs::default()
    };
    inputs.texts.extend(filter.patterns().iter().cloned());
    inputs.texts.extend(extra.iter().cloned());
    for rel in &listing.records {
        // A RECORD that cannot be read as listed (replaced meanwhile, too large): doubt.
        let Ok(bytes) = envstore_fs::read_bounded(&dir.join(rel), 64 << 20) else {
            return Ok((crate::content::ingest::ingest(store, dir, filter)?, false));
        };
        let digest = *blake3::hash(&bytes).as_bytes();
        inputs
            .files
            .push((rel.to_string_lossy().into_owned(), digest));
    }
    let key = inputs.key();
    let path = store.root().join("keys").join(key.to_hex());
    let hit = envstore_fs::read_bounded(&path, 1 << 20)
        .ok()
        .and_then(|b| KeyRecord::from_text(&String::from_utf8_lossy(&b)).ok())
        .filter(|r| r.key == key && store.has_snapshot(&r.snapshot));
    if let Some(record) = hit
        && matches(store, &record.snapshot, &listing)?
    {
        crate::store::records::touch(store, &record.snapshot);
        return Ok((reused_report(store, &record.snapshot)?, true));
    }
    let report = crate::content::ingest::ingest(store, dir, filter)?;
    // A read-only store records nothing (and has no secret to make).
    if store.is_writable() {
        let record = KeyRecord {
            key,
            snapshot: report.id,
            created: unix_secs(SystemTime::now()),
            name: None,
            inputs: inputs.recorded(&crate::store::records::record_secret(store)?),
        };
        store.write_file_atomic(&path, record.to_text().as_bytes())?;
    }
    Ok((report, false))
}

/// Whether the directory listed in `listing` has exactly the snapshot's entries, with the
/// same kinds, exec bits, sizes and link targets (no content is read).
fn matches(store: &Store, id: &SnapshotId, listing: &Listing) -> Result<bool> {
    let mut matched = 0usize;
    let mut stack: Vec<(TreeId, Vec<u8>)> = vec![(id.root(), Vec::new())];
    while let Some((tree, prefix)) = stack.pop() {
        let tree = store.trees().get(&tree)?;
        for entry in tree.entries() {
            let mut path = prefix.clone();
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(&entry.name);
            let Some(seen) = listing.entries.get(&path) else {
                return Ok(false);
            };
            let same = match (&entry.kind, seen) {
                (
                    EntryKind::File {
                        size,
                        executable,
                        relocated: false,
                        ..
                    },
                    Seen::File {
                        size: s,
                        executable: x,
                    },
                ) => size == s && executable == x,
                (EntryKind::Dir { tree }, Seen::Dir) => {
                    stack.push((*tree, path.clone()));
                    true
                }
                (
                    EntryKind::Symlink {
                        target,
                        relocated: false,
                    },
                    Seen::Symlink(t),
                ) => target == t,
                _ => false,
            };
            if !same {
                return Ok(false);
            }
            matched += 1;
        }
    }
    Ok(matched == listing.entries.len())
}

/// The report of an ingest that found the snapshot already stored.
fn reused_report(store: &Store, id: &SnapshotId) -> Result<IngestReport> {
    let meta = store.snapshot_meta(id)?;
    Ok(IngestReport {
        id: *id,
        stats: WalkStats {
            files: meta.files,
            dirs: meta.dirs,
            symlinks: meta.symlinks,
            bytes: meta.bytes,
            excluded: 0,
        },
        created: false,
        new_objects: 0,
        new_bytes: 0,
        index_warning: None,
        relocated: Vec::new(),
        binary_with_prefix: Vec::new(),
    })
}
