//! `remote prune` and `remote stats`: keeping a remote from growing without bound.
//!
//! Deletion goes top-down (records, then packs) and packs go in two steps: a prune *marks*
//! packs that no kept record needs and that are older than the grace period; a later prune
//! deletes a marked pack once the grace period has passed since marking, if still no record
//! needs it and it was not written again since. A push never relies on a marked pack (it
//! uploads those chunks again), and publishes its record right after checking that the packs
//! it relies on are there and unmarked. So a pack is only deleted when no push can still be
//! about to publish a record needing it, as long as a push publishes within the grace period of
//! that check (seconds, against a default of an hour). docs/remote.md has the full argument.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

use envstore_remote::format::{self, Marked, Ref};
use envstore_remote::record::{Record, RecordHead};
use envstore_remote::summary::Of;
use envstore_tree::{EntryKind, ObjectId, PackId, SnapshotId, Tree, TreeId};

use crate::remote::negotiate::BIG_OBJECT;

use crate::Result;
use crate::remote::open::Remote;

#[derive(Debug, Clone)]
pub struct RemotePruneOptions {
    /// Snapshots no ref names and pushed longer ago than this are removed.
    pub older_than: Duration,
    /// How long a pack stays after nothing needs it (and after it was marked).
    pub grace: Duration,
    pub dry_run: bool,
    /// With a budget, the least recently pushed snapshots no ref names are removed (beyond
    /// `older_than`) until what the others need fits in this many bytes of packs.
    pub max_size: Option<u64>,
}

/// What `remote prune` did (or, with `--dry-run`, would do).
#[derive(Debug, Default, Clone)]
pub struct RemotePruneReport {
    pub kept_snapshots: u64,
    pub refs: u64,
    pub removed_snapshots: Vec<SnapshotId>,
    /// Packs marked now; they go in a prune after the grace period.
    pub marked: Vec<PackId>,
    /// Marked packs something needs again, unmarked.
    pub unmarked: u64,
    pub removed_packs: Vec<PackId>,
    pub removed_bytes: u64,
    /// Files of interrupted pushes (a pack without its index, or the reverse), removed.
    pub removed_partial: Vec<String>,
    /// Key mappings (`keys/<key>`) whose snapshot is no longer on the remote, removed.
    pub removed_keys: u64,
    /// Summaries (`trees/<tree>`, `objects/<object>`) no kept snapshot needs, removed.
    pub removed_summaries: u64,
    pub kept_packs: u64,
    pub kept_bytes: u64,
}

/// What a remote holds, for `remote stats`.
#[derive(Debug, Default, Clone)]
pub struct RemoteStats {
    pub snapshots: u64,
    pub refs: Vec<(String, Ref)>,
    pub packs: u64,
    pub pack_bytes: u64,
    pub partial_files: u64,
    pub marked: u64,
    /// Tree and large-object summaries.
    pub summaries: u64,
    /// The budget the last `remote prune --max-size` was given.
    pub budget: Option<u64>,
}

/// Where `remote prune --max-size` records its budget (`envstore-budget 1`, `max-size <n>`).
const BUDGET_KEY: &str = "prune/budget";

fn read_budget(remote: &Remote) -> Result<Option<u64>> {
    let Some(bytes) = remote.storage().get(BUDGET_KEY, 4096)? else {
        return Ok(None);
    };
    Ok(std::str::from_utf8(&bytes).ok().and_then(|t| {
        t.lines()
            .find_map(|l| l.strip_prefix("max-size ")?.parse().ok())
    }))
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The refs of `remote` (each checked to parse; signatures are not checked here).
pub(crate) fn remote_refs(remote: &Remote) -> Result<Vec<(String, Ref)>> {
    let listed = remote.storage().list("refs")?;
    let keys: Vec<String> = listed.iter().map(|f| format::ref_key(&f.name)).collect();
    let got = remote.storage().get_many(&keys, format::MAX_REF)?;
    let mut refs = Vec::new();
    for (f, bytes) in listed.into_iter().zip(got) {
        let Some(bytes) = bytes else { continue };
        let r = Ref::decode(&bytes, &f.name).map_err(|e| remote.refused(e.to_string()))?;
        refs.push((f.name, r));
    }
    refs.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(refs)
}

/// The snapshots on `remote` with when they were (last) pushed, unix seconds.
pub(crate) fn remote_snapshots(remote: &Remote) -> Result<Vec<(SnapshotId, i64)>> {
    let mut out: Vec<(SnapshotId, i64)> = remote
        .storage()
        .list("snapshots")?
        .into_iter()
        .filter_map(|f| Some((f.name.parse().ok()?, f.modified)))
        .collect();
    out.sort_by_key(|(_, t)| std::cmp::Reverse(*t));
    Ok(out)
}

pub(crate) fn remote_stats(remote: &Remote) -> Result<RemoteStats> {
    let listing = remote.list_packs()?;
    Ok(RemoteStats {
        snapshots: remote_snapshots(remote)?.len() as u64,
        refs: remote_refs(remote)?,
        packs: listing.complete.len() as u64,
        pack_bytes: listing.complete.values().map(|(s, _)| s).sum(),
        partial_files: listing.partial.len() as u64,
        marked: remote.marked()?.packs.len() as u64,
        summaries: (remote.storage().list("trees")?.len() + remote.storage().list("objects")?.len())
            as u64,
        budget: read_budget(remote)?,
    })
}

pub(crate) fn remote_prune(
    remote: &Remote,
    options: &RemotePruneOptions,
) -> Result<RemotePruneReport> {
    remote.check_marker(false)?;
    let now = now();
    let older = now - options.older_than.as_secs().min(i64::MAX as u64) as i64;
    let grace = options.grace.as_secs().min(i64::MAX as u64) as i64;
    let mut report = RemotePruneReport::default();
    let refs = remote_refs(remote)?;
    report.refs = refs.len() as u64;
    let named: HashSet<SnapshotId> = refs.iter().map(|(_, r)| r.snapshot).collect();
    // When each snapshot was last pushed or pulled, newest first.
    let used: HashMap<SnapshotId, i64> = remote
        .storage()
        .list(format::USED_DIR)?
        .into_iter()
        .filter_map(|f| Some((f.name.parse().ok()?, f.modified)))
        .collect();
    let mut snapshots = remote_snapshots(remote)?;
    for (id, time) in &mut snapshots {
        *time = (*time).max(used.get(id).copied().unwrap_or(i64::MIN));
    }
    snapshots.sort_by_key(|(_, t)| std::cmp::Reverse(*t));
    let mut kept = Vec::new();
    for (id, modified) in snapshots {
        if named.contains(&id) || modified >= older {
            kept.push((id, modified));
        } else {
            report.removed_snapshots.push(id);
        }
    }
    // Within a budget: the least recently pushed snapshots no ref names go first, until what
    // the rest need fits.
    if let Some(max) = options.max_size {
        let listing = remote.list_packs()?;
        let removed = over_budget(remote, &named, &mut kept, &listing, max)?;
        report.removed_snapshots.extend(removed);
        if !options.dry_run && read_budget(remote)? != Some(max) {
            let text = format!("envstore-budget 1\nmax-size {max}\n");
            remote.storage().put(BUDGET_KEY, text.into_bytes())?;
        }
    }
    // What the kept snapshots need.
    let mut needed: HashSet<PackId> = HashSet::new();
    let mut kept_trees: HashSet<TreeId> = HashSet::new();
    let mut kept_objects: HashSet<ObjectId> = HashSet::new();
    remote.for_each_record(kept.iter().map(|(id, _)| id), |id, bytes| {
        // A tree at a time: a large snapshot's trees are many times its compressed record.
        let refused = |e: envstore_remote::format::FormatError| remote.refused(e.to_string());
        let mut rest = &bytes[..];
        let head = RecordHead::read(&mut rest, id).map_err(refused)?;
        needed.extend(head.packs.iter().copied());
        for tree in head.trees(rest, rest.len() as u64, id).map_err(refused)? {
            let (tree, bytes) = tree.map_err(refused)?;
            kept_trees.insert(tree);
            let Ok(tree) = Tree::decode(&bytes) else {
                continue;
            };
            for entry in tree.entries() {
                if let EntryKind::File { object, size, .. } = &entry.kind
                    && *size >= BIG_OBJECT
                {
                    kept_objects.insert(*object);
                }
            }
        }
        report.kept_snapshots += 1;
        Ok(())
    })?;
    if !options.dry_run {
        for id in &report.removed_snapshots {
            remote.storage().delete(&format::record_key(id))?;
        }
        // Pull times of snapshots that are gone (removed now, or by hand).
        let kept_ids: HashSet<&SnapshotId> = kept.iter().map(|(id, _)| id).collect();
        for id in used.keys().filter(|id| !kept_ids.contains(id)) {
            remote.storage().delete(&format::used_key(id))?;
        }
    }
    // Key mappings naming a snapshot that is gone (older than the grace period: a push
    // publishes its record before its keys, and this listing may predate both).
    let kept_set: HashSet<SnapshotId> = kept.iter().map(|(id, _)| *id).collect();
    let keys = remote.storage().list("keys")?;
    let names: Vec<String> = keys.iter().map(|f| format!("keys/{}", f.name)).collect();
    let mappings = remote.storage().get_many(&names, format::MAX_REF)?;
    for ((file, key), bytes) in keys.iter().zip(&names).zip(mappings) {
        let target = bytes
            .and_then(|b| Ref::decode(&b, &file.name).ok())
            .map(|r| r.snapshot);
        let dead = target.is_none_or(|id| !kept_set.contains(&id));
        if dead && now - file.modified >= grace {
            if !options.dry_run {
                remote.storage().delete(key)?;
            }
            report.removed_keys += 1;
        }
    }
    // Summaries of trees and large objects no kept snapshot has (a push writes them just
    // before its record, so only those older than the grace period). A kept one stays even
    // if it lists a pack deleted below: pushes check every pack a summary lists.
    for dir in ["trees", "objects"] {
        for file in remote.storage().list(dir)? {
            let of = match dir {
                "trees" => file.name.parse().ok().map(Of::Tree),
                _ => file.name.parse().ok().map(Of::Object),
            };
            let Some(of) = of else { continue };
            let kept = match of {
                Of::Tree(t) => kept_trees.contains(&t),
                Of::Object(o) => kept_objects.contains(&o),
            };
            if !kept && now - file.modified >= grace {
                if !options.dry_run {
                    remote.storage().delete(&of.key())?;
                }
                report.removed_summaries += 1;
            }
        }
    }
    // Packs: delete what was marked long enough ago, mark what nothing needs.
    let listing = remote.list_packs()?;
    let marked = remote.marked()?;
    let mut still = Marked::default();
    let mut was_marked = HashSet::new();
    for (pack, at) in marked.packs {
        was_marked.insert(pack);
        let Some(&(size, modified)) = listing.complete.get(&pack) else {
            continue;
        };
        if needed.contains(&pack) {
            report.unmarked += 1;
        } else if now - at >= grace && modified <= at {
            if !options.dry_run {
                remote.storage().delete(&format::index_key(&pack))?;
                remote.storage().delete(&format::pack_key(&pack))?;
            }
            report.removed_packs.push(pack);
            report.removed_bytes += size;
        } else {
            still.packs.push((pack, at));
        }
    }
    for (pack, &(size, modified)) in &listing.complete {
        if needed.contains(pack) {
            report.kept_packs += 1;
            report.kept_bytes += size;
        } else if !was_marked.contains(pack) && now - modified >= grace {
            still.packs.push((*pack, now));
            report.marked.push(*pack);
        }
    }
    for (key, size, modified) in listing.partial {
        if now - modified >= grace {
            if !options.dry_run {
                remote.storage().delete(&key)?;
            }
            report.removed_bytes += size;
            report.removed_partial.push(key);
        }
    }
    if !options.dry_run && (!report.marked.is_empty() || still.packs.len() != was_marked.len()) {
        still.packs.sort();
        remote.storage().put(format::MARKED_KEY, still.encode())?;
    }
    Ok(report)
}

/// Moves the least recently pushed or pulled of `kept` that no ref names to the returned list
/// until the packs the rest need fit in `max` bytes (reading each record's pack lines once).
fn over_budget(
    remote: &Remote,
    named: &HashSet<SnapshotId>,
    kept: &mut Vec<(SnapshotId, i64)>,
    listing: &crate::remote::open::PackListing,
    max: u64,
) -> Result<Vec<SnapshotId>> {
    let size = |p: &PackId| listing.complete.get(p).map_or(0, |(s, _)| *s);
    let mut uses: HashMap<PackId, u32> = HashMap::new();
    let mut packs_of: HashMap<SnapshotId, Vec<PackId>> = HashMap::new();
    remote.for_each_record(kept.iter().map(|(id, _)| id), |id, bytes| {
        let packs = Record::pack_lines(&bytes).map_err(|e| remote.refused(e.to_string()))?;
        for p in &packs {
            *uses.entry(*p).or_default() += 1;
        }
        packs_of.insert(*id, packs);
        Ok(())
    })?;
    let mut total: u64 = uses.keys().map(size).sum();
    // Least recently pushed or pulled first (`kept` is newest first).
    let mut removed = Vec::new();
    for (id, _) in kept.iter().rev() {
        if total <= max {
            break;
        }
        if named.contains(id) {
            continue;
        }
        for p in packs_of.get(id).into_iter().flatten() {
            let n = uses.get_mut(p).expect("counted above");
            *n -= 1;
            if *n == 0 {
                total -= size(p);
            }
        }
        removed.push(*id);
    }
    kept.retain(|(id, _)| !removed.contains(id));
    Ok(removed)
}
