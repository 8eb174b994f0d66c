//! `<store>/remote-cache/`: the remote pack indexes this store has read (named by pack id: an
//! index is a function of its pack, so one cache serves every remote) and, per remote and
//! ref, the newest signed `seq` seen. Deleting it is always safe, but it must not grow without
//! bound on a long-lived machine: `prune` drops the indexes not used for a month, then the
//! least recently used until the rest fit in 256 MiB, and with them the `used-*` memos (when
//! this store last told a remote it pulled a snapshot: empty files, one per snapshot pulled, so
//! they go by age like the indexes). The `ref-*` files stay (a few bytes each; they are what
//! refuses a replayed ref).

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::store::Mode;
use crate::{Error, Result, Store};

pub(crate) const CACHE_DIR: &str = "remote-cache";
const UNUSED_FOR: Duration = Duration::from_secs(30 * 24 * 3600);
const BUDGET: u64 = 256 << 20;

/// The cached indexes and `used-*` memos: path, bytes, last use (modification time, set on
/// every use).
fn indexes(store: &Store) -> Result<Vec<(PathBuf, u64, SystemTime)>> {
    let dir = store.root().join(CACHE_DIR);
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("list", &dir)(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(Error::io("list", &dir))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.ends_with(".idx") || name.starts_with("used-")) {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_file() {
            let used = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            out.push((entry.path(), meta.len(), used));
        }
    }
    Ok(out)
}

/// Files and bytes of the cached indexes and memos (for `stats`).
pub(crate) fn size(store: &Store) -> Result<(u64, u64)> {
    let all = indexes(store)?;
    Ok((all.len() as u64, all.iter().map(|(_, len, _)| len).sum()))
}

/// Marks a cached index used now, so trimming keeps it longest.
#[cfg(feature = "remote")]
pub(crate) fn touch(path: &std::path::Path) {
    if let Ok(f) = fs::File::options().append(true).open(path) {
        let _ = f.set_modified(SystemTime::now());
    }
}

/// Drops indexes unused for a month, then the least recently used beyond the budget;
/// returns how many and their bytes (what would go, in a dry run).
pub(crate) fn trim(store: &Store, mode: Mode) -> Result<(u64, u64)> {
    let mut all = indexes(store)?;
    all.sort_by_key(|(_, _, used)| std::cmp::Reverse(*used));
    let now = SystemTime::now();
    let (mut kept_bytes, mut count, mut bytes) = (0u64, 0u64, 0u64);
    for (path, len, used) in all {
        let stale = now.duration_since(used).is_ok_and(|age| age > UNUSED_FOR);
        if stale || kept_bytes + len > BUDGET {
            if mode == Mode::Execute {
                crate::store::files::remove_file(&path)?;
            }
            count += 1;
            bytes += len;
        } else {
            kept_bytes += len;
        }
    }
    Ok((count, bytes))
}
