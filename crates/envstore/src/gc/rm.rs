//! `envstore rm`: remove named snapshots now (a bad environment, a cache entry to invalidate).
//!
//! Pinned, rooted (a live build directory uses it) and key-named snapshots are refused
//! without `force`; a leased one (a process is using it) is never removed, and the report
//! names the lease and, where the system says, the process holding it. Objects other
//! snapshots share stay: removal goes through prune's plan, restricted to these snapshots.

use std::path::PathBuf;

use envstore_tree::SnapshotId;

use crate::{Error, PruneOptions, PrunePlan, Result, Store};

/// What `rm` did (or, with `dry_run`, would do).
#[derive(Debug)]
pub struct RmReport {
    pub plan: PrunePlan,
    /// Pins removed (with `force`).
    pub unpinned: Vec<String>,
    /// Roots that no longer hold the removed snapshots (with `force`).
    pub unrooted: Vec<PathBuf>,
    /// Snapshots left because a process holds their lease: the lease file and its holders.
    pub in_use: Vec<(SnapshotId, PathBuf, Vec<String>)>,
}

pub(crate) fn rm(
    store: &Store,
    ids: &[SnapshotId],
    force: bool,
    dry_run: bool,
) -> Result<RmReport> {
    let pins = crate::catalog::pins::pins(store)?;
    let names = crate::gc::keep::named_key_snapshots(store)?;
    let roots = crate::gc::roots::roots(store)?;
    let mut unpinned = Vec::new();
    let mut unrooted = Vec::new();
    for id in ids {
        let mut why = Vec::new();
        for (name, pinned) in &pins {
            if pinned == id {
                why.push(format!("pinned as `{name}`"));
                unpinned.push(name.clone());
            }
        }
        for (name, newest) in &names {
            if newest == id {
                why.push(format!("the newest build of the key name `{name}`"));
            }
        }
        for status in &roots {
            if status.states.iter().any(|(s, l)| s == id && l.is_live()) {
                why.push(format!(
                    "used by the build directory {} (a live root)",
                    status.root.dir.display()
                ));
                unrooted.push(status.root.dir.clone());
            }
        }
        if !why.is_empty() && !force {
            return Err(Error::RmRefused {
                id: id.short(),
                why: why.join("; "),
            });
        }
    }
    let options = PruneOptions {
        only: Some(ids.to_vec()),
        ..PruneOptions::default()
    };
    let plan = if dry_run {
        crate::gc::prune::prune_plan(store, &options)?
    } else {
        crate::gc::prune::prune(store, &options)?
    };
    // Pins and roots go only with what was removed (not with a snapshot left in use).
    let removed: Vec<SnapshotId> = plan.remove.iter().map(|r| r.id).collect();
    unpinned.retain(|name| pins.iter().any(|(n, id)| n == name && removed.contains(id)));
    unrooted.retain(|dir| {
        roots
            .iter()
            .any(|s| s.root.dir == *dir && s.root.snapshots.iter().any(|id| removed.contains(id)))
    });
    if !dry_run {
        for name in &unpinned {
            crate::catalog::pins::unpin(store, name)?;
        }
        crate::gc::roots::drop_roots(store, Some(&removed))?;
    }
    let in_use = plan
        .leased
        .iter()
        .map(|id| {
            let lease = store.lease_path(id);
            let holders = lease_holders(&lease);
            (*id, lease, holders)
        })
        .collect();
    Ok(RmReport {
        plan,
        unpinned,
        unrooted,
        in_use,
    })
}

/// The processes that have `path` open (a lease is held through an open descriptor, which a
/// command started by `envstore run` inherits), from `/proc` (Linux; empty elsewhere or when
/// other users' processes cannot be read).
fn lease_holders(path: &std::path::Path) -> Vec<String> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for proc in procs.flatten() {
        let name = proc.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(proc.path().join("fd")) else {
            continue;
        };
        let holds = fds
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target == path));
        if !holds {
            continue;
        }
        let command = std::fs::read(proc.path().join("cmdline"))
            .map(|c| {
                c.split(|b| *b == 0)
                    .filter(|a| !a.is_empty())
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        out.push(format!("process {pid}: {command}"));
    }
    out
}

/// `prune --all`: every snapshot goes (pins and roots with them), but what a process uses.
pub(crate) fn prune_all(store: &Store, dry_run: bool) -> Result<RmReport> {
    rm(store, &store.snapshot_ids()?, true, dry_run)
}
