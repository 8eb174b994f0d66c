//! `doctor`: is the build hook active for a project, which environments do its build
//! directories use and do they still exist, and what would make the next build recompile.
//! A report of facts; the front end words them. On top of gc/ (it reads roots).

pub(crate) mod content;
pub(crate) mod project;
pub(crate) mod scan;

use std::path::{Path, PathBuf};

use envstore_tree::SnapshotId;

pub use content::{Content, Layout};
pub use project::{Project, ProjectFile};

use crate::{Result, Store};

/// What `doctor` found in a project directory.
#[derive(Debug, Clone)]
pub struct DoctorReport {
    /// The directory looked at (absolute, links resolved).
    pub dir: PathBuf,
    /// What its pyproject.toml says, if it has a readable one.
    pub project: ProjectFile,
    /// Build directories below it that use environments of this store.
    pub build_dirs: Vec<BuildDir>,
    /// Build files that name a temporary build environment (configured without the hook):
    /// the directory, and `FILE: the path found`.
    pub temporary: Vec<(PathBuf, String)>,
}

/// A build directory and the environments it uses.
#[derive(Debug, Clone)]
pub struct BuildDir {
    pub dir: PathBuf,
    pub envs: Vec<EnvUse>,
    /// Environments its root recorded before that it no longer uses (the build environment
    /// changed, so the last configure saw new paths).
    pub dropped: Vec<SnapshotId>,
    /// Where CMakeCache.txt says it was made, when that is elsewhere (the directory moved).
    pub moved_from: Option<PathBuf>,
    /// The layouts before and now, when every dropped environment has one layout and every
    /// used one another: the frontend changed (pip's prefixes and uv's virtualenv differ, so
    /// switching recompiles everything).
    pub switched: Option<(Layout, Layout)>,
}

/// One environment a build directory uses.
#[derive(Debug, Clone)]
pub struct EnvUse {
    pub id: SnapshotId,
    pub state: EnvState,
    /// Whether a root keeps it: `Some(true)` live, `Some(false)` dead, `None` no root.
    pub root: Option<bool>,
    /// What it holds, when it is still in the store.
    pub content: Option<Content>,
}

/// Where an environment a build directory names stands in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvState {
    Materialized,
    /// Stored, not laid out: the next build lays it out again at the same path.
    Stored,
    /// Gone from the store (pruned or removed).
    Gone,
}

/// The layout all these environments share, if they are all described and share one.
fn one_layout(contents: impl Iterator<Item = Option<Content>>) -> Option<Layout> {
    let mut found = None;
    for content in contents {
        let layout = content?.layout;
        if found.is_some_and(|f| f != layout) {
            return None;
        }
        found = Some(layout);
    }
    found
}

/// How deep below the project directory build files are looked for.
const SCAN_DEPTH: usize = 4;

/// The doctor's report on `dir`.
pub(crate) fn doctor(store: &Store, dir: &Path) -> Result<DoctorReport> {
    let dir = dir.canonicalize().map_err(crate::Error::io("read", dir))?;
    let project = project::read(&dir);
    let found = crate::gc::roots::roots_scan(store, std::slice::from_ref(&dir), false)?;
    let roots = crate::gc::roots::roots(store)?;
    let mut build_dirs = Vec::new();
    for (build, ids) in found {
        let root = roots.iter().find(|r| r.root.dir == build);
        let envs = ids
            .iter()
            .map(|id| EnvUse {
                id: *id,
                state: if store.is_materialized(id) {
                    EnvState::Materialized
                } else if store.has_snapshot(id) {
                    EnvState::Stored
                } else {
                    EnvState::Gone
                },
                root: root.and_then(|r| {
                    r.states
                        .iter()
                        .find(|(s, _)| s == id)
                        .map(|(_, l)| l.is_live())
                }),
                content: content::describe(store, id),
            })
            .collect::<Vec<_>>();
        let dropped: Vec<SnapshotId> = root
            .map(|r| {
                r.states
                    .iter()
                    .map(|(id, _)| *id)
                    .filter(|id| !ids.contains(id))
                    .collect()
            })
            .unwrap_or_default();
        let moved_from = scan::cmake_home(&build).filter(|home| *home != build);
        let before = one_layout(dropped.iter().map(|id| content::describe(store, id)));
        let now = one_layout(envs.iter().map(|e| e.content.clone()));
        let switched = before.zip(now).filter(|(b, n)| b != n);
        build_dirs.push(BuildDir {
            dir: build,
            envs,
            dropped,
            moved_from,
            switched,
        });
    }
    let temporary = scan::temporary_envs(&dir, SCAN_DEPTH);
    Ok(DoctorReport {
        dir,
        project,
        build_dirs,
        temporary,
    })
}
