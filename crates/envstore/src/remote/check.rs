//! `remote verify`: does every snapshot on a remote still have the packs its record lists?
//! Storage can lose objects behind envstore's back (a bucket lifecycle rule, a hand-run
//! delete, a failed disk without replicas); this finds which snapshots that broke. A push of
//! such a snapshot afterwards uploads what is gone (its summaries' packs are checked one by
//! one), so the answer to a finding is to push it again from a store that has it.

use envstore_remote::record::Record;
use envstore_tree::{PackId, SnapshotId};

use crate::Result;
use crate::remote::open::Remote;

/// What `remote verify` found.
#[derive(Debug, Default, Clone)]
pub struct RemoteVerifyReport {
    pub snapshots: u64,
    pub packs: u64,
    /// Snapshots whose record lists packs that are gone or incomplete, with those packs.
    pub damaged: Vec<(SnapshotId, Vec<PackId>)>,
    /// Records that do not parse.
    pub unreadable: Vec<SnapshotId>,
    /// Refs naming a snapshot the remote does not have.
    pub dangling_refs: Vec<String>,
}

impl RemoteVerifyReport {
    pub fn is_clean(&self) -> bool {
        self.damaged.is_empty() && self.unreadable.is_empty() && self.dangling_refs.is_empty()
    }
}

pub(crate) fn remote_verify(remote: &Remote) -> Result<RemoteVerifyReport> {
    remote.check_marker(false)?;
    let listing = remote.list_packs()?;
    let snapshots = crate::remote::prune::remote_snapshots(remote)?;
    let mut report = RemoteVerifyReport {
        snapshots: snapshots.len() as u64,
        packs: listing.complete.len() as u64,
        ..RemoteVerifyReport::default()
    };
    remote.for_each_record(snapshots.iter().map(|(id, _)| id), |id, bytes| {
        match Record::pack_lines(&bytes) {
            Ok(packs) => {
                let missing: Vec<PackId> = packs
                    .into_iter()
                    .filter(|p| !listing.complete.contains_key(p))
                    .collect();
                if !missing.is_empty() {
                    report.damaged.push((*id, missing));
                }
            }
            Err(_) => report.unreadable.push(*id),
        }
        Ok(())
    })?;
    let have: std::collections::HashSet<SnapshotId> = snapshots.iter().map(|(id, _)| *id).collect();
    for (name, r) in crate::remote::prune::remote_refs(remote)? {
        if !have.contains(&r.snapshot) {
            report.dangling_refs.push(name);
        }
    }
    Ok(report)
}
