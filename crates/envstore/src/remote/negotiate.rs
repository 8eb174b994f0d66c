//! What a remote already has of a snapshot, found top-down through its trees (git's have/want,
//! on plain object storage): a push asks for the summary of the root tree, and where the remote
//! lacks one, for the summaries of the big trees below it, level by level. A tree whose summary
//! is there, with every pack it lists present and unmarked, is skipped whole. The questions are
//! sized by the snapshot and by how much of it is new, never by what else the remote holds.

use std::collections::{HashMap, HashSet};

use envstore_remote::format;
use envstore_remote::record::RecordWriter;
use envstore_remote::summary::{MAX_SUMMARY, Of, Summary};
use envstore_tree::{EntryKind, ObjectId, PackId, SnapshotId, Tree, TreeId};

use crate::remote::open::Remote;
use crate::store::reach::{Counts, count_trees};
use crate::{Error, Result, Store};

/// A tree is *big*, and gets a summary, when its subtree holds at least this many files or
/// bytes (or it is a root): a package, a `.dist-info`, an `include/` directory. Smaller trees
/// are looked up object by object, as part of the nearest big tree above them (a request per
/// directory of one or two small files would cost more than it saves). Bigness only grows
/// towards the root, so a small tree has no big tree below it.
const BIG_FILES: u64 = 4;
const BIG_BYTES: u64 = 256 << 10;
/// Objects this large get a summary of their own: a large file in a directory that changed
/// (a shared library beside a new one) is found without reading any pack index.
pub(super) const BIG_OBJECT: u64 = 256 << 10;

/// A snapshot's distinct trees, with what each subtree holds. The trees themselves stay in
/// the store and are read when needed: held all at once they grow with the files.
pub(super) struct Shape<'s> {
    store: &'s Store,
    pub(super) root: TreeId,
    /// Each distinct tree's counts (every occurrence counted).
    sizes: HashMap<TreeId, Counts>,
}

impl<'s> Shape<'s> {
    pub(super) fn load(store: &'s Store, id: &SnapshotId) -> Result<Shape<'s>> {
        let root = id.root();
        let sizes = count_trees(root, |t| Ok(store.trees().get(t)?), |_, _, _| Ok(()))?;
        Ok(Shape { store, root, sizes })
    }

    fn tree(&self, tid: &TreeId) -> Result<Tree> {
        Ok(self.store.trees().get(tid)?)
    }

    /// Whether `tree` gets a summary of its own.
    pub(super) fn big(&self, tree: &TreeId) -> bool {
        *tree == self.root
            || self
                .sizes
                .get(tree)
                .is_some_and(|c| c[0] >= BIG_FILES || c[3] >= BIG_BYTES)
    }

    /// The distinct big trees directly below `tree` (small ones have none below them).
    fn big_children(&self, tree: &TreeId) -> Result<Vec<TreeId>> {
        Ok(dirs(&self.tree(tree)?).filter(|c| self.big(c)).collect())
    }

    /// The big trees the push must summarize (those not in `present`), children before
    /// parents.
    pub(super) fn post_order(&self, present: &HashMap<TreeId, Vec<PackId>>) -> Result<Vec<TreeId>> {
        let mut order = Vec::new();
        let mut seen = HashSet::new();
        let mut stack = vec![(self.root, false)];
        while let Some((tid, expanded)) = stack.pop() {
            if expanded {
                order.push(tid);
                continue;
            }
            if present.contains_key(&tid) || !seen.insert(tid) {
                continue;
            }
            stack.push((tid, true));
            stack.extend(self.big_children(&tid)?.into_iter().map(|c| (c, false)));
        }
        Ok(order)
    }

    /// The files of big tree `big` and of the small trees below it (the objects a push looks
    /// up one by one when the remote lacks `big`), with the big trees directly below.
    pub(super) fn region(
        &self,
        big: &TreeId,
        mut visit: impl FnMut(Part) -> Result<()>,
    ) -> Result<()> {
        let mut stack = vec![*big];
        while let Some(tid) = stack.pop() {
            for entry in self.tree(&tid)?.entries() {
                match &entry.kind {
                    EntryKind::File {
                        object,
                        size,
                        executable,
                        ..
                    } => visit(Part::File(*object, *executable, *size))?,
                    EntryKind::Dir { tree } if !self.big(tree) => stack.push(*tree),
                    EntryKind::Dir { tree } => visit(Part::Big(*tree))?,
                    EntryKind::Symlink { .. } => {}
                }
            }
        }
        Ok(())
    }

    /// Every distinct tree, in order of id, into a record.
    pub(super) fn write_trees<W: std::io::Write>(&self, out: &mut RecordWriter<W>) -> Result<()> {
        let mut ids: Vec<TreeId> = self.sizes.keys().copied().collect();
        ids.sort_unstable();
        for tid in ids {
            out.add(&tid, &self.tree(&tid)?.encode())
                .map_err(Error::io("compress the trees of", self.store.root()))?;
        }
        Ok(())
    }
}

/// What [`Shape::region`] visits.
pub(super) enum Part {
    File(ObjectId, bool, u64),
    Big(TreeId),
}

fn dirs(tree: &Tree) -> impl Iterator<Item = TreeId> + '_ {
    tree.entries().iter().filter_map(|e| match &e.kind {
        EntryKind::Dir { tree } => Some(*tree),
        _ => None,
    })
}

/// What the remote has of a snapshot.
#[derive(Default)]
pub(super) struct Found {
    /// Big trees the remote has whole, with the packs their summaries list.
    pub(super) present: HashMap<TreeId, Vec<PackId>>,
    /// Large objects below the other trees the remote has, with the packs that hold them.
    pub(super) objects: HashMap<ObjectId, Vec<PackId>>,
    /// The candidates (the base's packs) checked present, pack and index, and usable: where
    /// a push looks for the objects of trees the remote does not have whole.
    pub(super) base: HashSet<PackId>,
    /// Summaries asked for.
    pub(super) asked: u64,
}

/// Checks which of `packs` are present (both files) and usable (unmarked, or uploaded by
/// this push), asking only about those not in `checked` yet. Read `prune/marked` before
/// calling: a pack unmarked then and present after cannot be deleted for a grace period.
pub(super) fn check_packs(
    remote: &Remote,
    packs: impl IntoIterator<Item = PackId>,
    marked: &HashSet<PackId>,
    uploaded: &HashSet<PackId>,
    checked: &mut HashMap<PackId, bool>,
) -> Result<()> {
    let mut ask: Vec<PackId> = packs
        .into_iter()
        .filter(|p| !checked.contains_key(p))
        .collect();
    ask.sort_unstable();
    ask.dedup();
    let keys: Vec<String> = ask
        .iter()
        .flat_map(|p| [format::pack_key(p), format::index_key(p)])
        .collect();
    let heads = remote.storage().head_many(&keys)?;
    for (pack, files) in ask.iter().zip(heads.chunks(2)) {
        let whole = files.iter().all(Option::is_some);
        let usable = !marked.contains(pack) || uploaded.contains(pack);
        checked.insert(*pack, whole && usable);
    }
    Ok(())
}

/// Asks for the summaries of `asked` at once, and for the packs they list: for each, the
/// packs when the summary is there and every pack it lists present and usable. A summary that
/// does not parse counts as missing (the push rewrites it).
fn ask(
    remote: &Remote,
    asked: &[Of],
    marked: &HashSet<PackId>,
    uploaded: &HashSet<PackId>,
    checked: &mut HashMap<PackId, bool>,
) -> Result<Vec<Option<Vec<PackId>>>> {
    if asked.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<String> = asked.iter().map(Of::key).collect();
    let summaries: Vec<Option<Summary>> = remote
        .storage()
        .get_many(&keys, MAX_SUMMARY)?
        .into_iter()
        .zip(asked)
        .map(|(bytes, of)| Summary::decode(&bytes?, of).ok())
        .collect();
    check_packs(
        remote,
        summaries
            .iter()
            .flatten()
            .flat_map(|s| s.packs.iter().copied()),
        marked,
        uploaded,
        checked,
    )?;
    Ok(summaries
        .into_iter()
        .map(|s| {
            s.filter(|s| s.packs.iter().all(|p| checked[p]))
                .map(|s| s.packs)
        })
        .collect())
}

/// Finds, top-down, the big trees of `shape` the remote has whole, and which of
/// `candidates` (packs a push may look for single objects in: the base snapshot's) are usable.
pub(super) fn negotiate(
    remote: &Remote,
    shape: &Shape,
    candidates: &[PackId],
    marked: &HashSet<PackId>,
    uploaded: &HashSet<PackId>,
    checked: &mut HashMap<PackId, bool>,
) -> Result<Found> {
    let mut found = Found::default();
    check_packs(
        remote,
        candidates.iter().copied(),
        marked,
        uploaded,
        checked,
    )?;
    found
        .base
        .extend(candidates.iter().filter(|p| checked[p]).copied());
    let mut visited = HashSet::from([shape.root]);
    let mut level = vec![shape.root];
    while !level.is_empty() {
        let asked: Vec<Of> = level.iter().map(|t| Of::Tree(*t)).collect();
        let answers = ask(remote, &asked, marked, uploaded, checked)?;
        found.asked += asked.len() as u64;
        let mut next = Vec::new();
        for (tree, packs) in level.iter().zip(answers) {
            match packs {
                Some(packs) => {
                    found.present.insert(*tree, packs);
                }
                None => next.extend(
                    shape
                        .big_children(tree)?
                        .into_iter()
                        .filter(|c| visited.insert(*c)),
                ),
            }
        }
        level = next;
    }
    // Then the large objects of the trees it lacks, in one round.
    let mut large = Vec::new();
    let mut seen = HashSet::new();
    for big in shape.post_order(&found.present)? {
        shape.region(&big, |part| {
            if let Part::File(object, _, size) = part
                && size >= BIG_OBJECT
                && seen.insert(object)
            {
                large.push(Of::Object(object));
            }
            Ok(())
        })?;
    }
    let answers = ask(remote, &large, marked, uploaded, checked)?;
    found.asked += large.len() as u64;
    for (of, packs) in large.iter().zip(answers) {
        if let (Of::Object(object), Some(packs)) = (of, packs) {
            found.objects.insert(*object, packs);
        }
    }
    Ok(found)
}
