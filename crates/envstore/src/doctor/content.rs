//! What an environment holds, read from its trees: the Python distributions installed in it
//! (`NAME-VERSION.dist-info` in a `site-packages`) and its layout (a virtualenv, as uv's build
//! environments are, or a bare prefix, as pip's are). Only the top few levels are read, so
//! describing an environment costs a handful of tree reads whatever its size.

use std::collections::VecDeque;

use envstore_tree::{EntryKind, SnapshotId, TreeId};

use crate::Store;

/// How deep below the root trees are read: `lib/python3.X/site-packages` is at depth 3.
const DEPTH: usize = 3;
/// At most this many trees are read (a prefix has few directories above its site-packages).
const MAX_TREES: usize = 64;

/// The layout of a build environment, which tells which frontend made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// A virtualenv (`pyvenv.cfg` at its top): uv's build environments (and `python -m build`'s).
    Venv,
    /// A bare installation prefix (`lib/`, `bin/`, no `pyvenv.cfg`): pip's build environments
    /// (its `overlay` and `normal` prefixes).
    Prefix,
    /// Neither (an environment stored by hand).
    Other,
}

impl Layout {
    /// Which frontend makes environments of this layout, in words.
    pub fn frontend(self) -> &'static str {
        match self {
            Layout::Venv => "a virtualenv (uv, or python -m build)",
            Layout::Prefix => "pip's prefixes",
            Layout::Other => "another layout",
        }
    }
}

/// What an environment holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content {
    pub layout: Layout,
    /// Installed distributions, `(name, version)`, sorted by name.
    pub packages: Vec<(String, String)>,
}

/// The name and version of a `NAME-VERSION.dist-info` directory.
fn dist_info(name: &[u8]) -> Option<(String, String)> {
    let stem = std::str::from_utf8(name).ok()?.strip_suffix(".dist-info")?;
    let (name, version) = stem.split_once('-')?;
    Some((name.replace('_', "-").to_lowercase(), version.to_owned()))
}

/// What the environment `id` holds, or `None` when its root tree cannot be read.
pub(crate) fn describe(store: &Store, id: &SnapshotId) -> Option<Content> {
    let root = store.trees().get(&id.root()).ok()?;
    let layout = if root.get(b"pyvenv.cfg").is_some() {
        Layout::Venv
    } else if root.get(b"lib").is_some() {
        Layout::Prefix
    } else {
        Layout::Other
    };
    let mut packages = Vec::new();
    let mut queue: VecDeque<(TreeId, usize)> = VecDeque::from([(id.root(), 0)]);
    let mut read = 0;
    while let Some((tree, depth)) = queue.pop_front() {
        if read == MAX_TREES {
            break;
        }
        read += 1;
        let Ok(tree) = store.trees().get(&tree) else {
            continue;
        };
        for entry in tree.entries() {
            let EntryKind::Dir { tree } = &entry.kind else {
                continue;
            };
            if let Some(found) = dist_info(&entry.name) {
                packages.push(found);
            } else if depth < DEPTH {
                queue.push_back((*tree, depth + 1));
            }
        }
    }
    packages.sort();
    packages.dedup();
    Some(Content { layout, packages })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_names_and_versions_of_dist_info_directories() {
        assert_eq!(
            dist_info(b"scikit_build_core-0.11.6.dist-info"),
            Some(("scikit-build-core".into(), "0.11.6".into()))
        );
        assert_eq!(
            dist_info(b"pybind11-3.0.1.dist-info"),
            Some(("pybind11".into(), "3.0.1".into()))
        );
        assert_eq!(dist_info(b"pybind11"), None);
        assert_eq!(dist_info(b"nodash.dist-info"), None);
    }
}
