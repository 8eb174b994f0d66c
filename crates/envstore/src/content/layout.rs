//! Laying a snapshot out as a real directory under `envs/`.

use std::borrow::Cow;
use std::ffi::OsStr;
use std::fs::{self, Permissions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use envstore_link::{LinkError, LinkMode, LinkPolicy, Linker, write_new};
use envstore_tree::{EntryKind, SnapshotId, Tree, TreeId, substitute_placeholder};
use rayon::prelude::*;

use envstore_fs::DirState;

use crate::store::files::remove_tree;
use crate::{Error, Progress, Result, Store};

/// Every directory of a materialization: readable and searchable by all, writable by nobody.
const READ_ONLY_DIR: u32 = 0o555;

/// How a materialization's files were laid out.
#[derive(Debug, Clone)]
pub struct LinkReport {
    /// The mode used for the non-empty files (`auto` resolves to the first mode that worked).
    pub mode: LinkMode,
    /// Files laid out with each mode; empty files and EMLINK fallbacks count as copies.
    pub counts: [(LinkMode, u64); 3],
    /// Why `auto` did not get reflinks, when it fell back.
    pub fallback: Option<String>,
}

type TreeLookup<'a> = dyn Fn(&TreeId) -> Result<Cow<'a, Tree>> + Sync + 'a;

struct Ctx<'s, 'a> {
    store: &'s Store,
    /// Where the tree will be after the rename: what relocated content must name.
    final_path: Vec<u8>,
    linker: Linker,
    trees: &'s TreeLookup<'a>,
}

/// Builds the tree of `id` in a fresh temporary directory under `envs/`, then renames it to
/// `envs/<id>`: nobody ever sees half a tree. If another process renamed its copy first, ours is
/// discarded and theirs is used. Returns whether this call created the materialization.
pub(crate) fn lay_out<'a>(
    store: &Store,
    id: &SnapshotId,
    trees: &TreeLookup<'a>,
    policy: LinkPolicy,
) -> Result<(bool, LinkReport)> {
    let envs = store.envs_dir();
    let hex = id.to_hex();
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".tmp-{}-", &hex[..16]))
        .tempdir_in(&envs)
        .map_err(Error::io("create a temporary directory in", &envs))?;
    let final_path = store.env_path(id).into_os_string().into_encoded_bytes();
    let ctx = Ctx {
        store,
        final_path,
        linker: Linker::new(policy),
        trees,
    };
    let root = trees(&id.root())?;
    store.report(Progress::LayingOut { files: 0 });
    // From here on the temporary tree is removed by remove_tree (it copes with read-only
    // directories), never by TempDir's drop.
    let tmp = tmp.keep();
    let filled = fill(&ctx, &tmp, &root).and_then(|()| seal_dir(&tmp));
    if let Err(e) = filled {
        let _ = remove_tree(&tmp, &envs);
        return Err(e);
    }

    let dest = store.env_path(id);
    let created = match fs::rename(&tmp, &dest) {
        Ok(()) => true,
        // Lost the race: an identical tree is already in place; ours goes.
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::DirectoryNotEmpty | io::ErrorKind::AlreadyExists
            ) =>
        {
            remove_tree(&tmp, &envs)?;
            false
        }
        Err(e) => {
            let _ = remove_tree(&tmp, &envs);
            // Something that is not a materialization (a link someone put there) holds the
            // name: say what, and how to mend it, instead of a bare rename error.
            if let Ok(DirState::Other(what)) = envstore_fs::dir_state(&dest) {
                return Err(Error::DamagedLayout { path: dest, what });
            }
            return Err(Error::io("rename into place", &dest)(e));
        }
    };
    let linker = ctx.linker;
    let report = LinkReport {
        mode: linker.mode().unwrap_or(match policy {
            LinkPolicy::Only(mode) => mode,
            LinkPolicy::Auto => LinkMode::Copy,
        }),
        counts: linker.counts(),
        fallback: linker.fallback_reason(),
    };
    Ok((created, report))
}

/// Once a directory's content is in place (post-order): read-only (nobody installs into a
/// content-named path) and the fixed mtime, so that a later write into it shows
/// (`content::drift`).
fn seal_dir(dir: &Path) -> Result<()> {
    fs::set_permissions(dir, Permissions::from_mode(READ_ONLY_DIR))
        .map_err(Error::io("chmod", dir))?;
    let t = envstore_tree::fixed_mtime();
    fs::File::open(dir)
        .and_then(|d| d.set_times(fs::FileTimes::new().set_modified(t).set_accessed(t)))
        .map_err(Error::io("set the time of", dir))
}

fn fill(ctx: &Ctx<'_, '_>, dir: &Path, tree: &Tree) -> Result<()> {
    tree.entries().par_iter().try_for_each(|entry| {
        // Names are valid single components (checked by the decoder and true of anything read
        // from a directory), so `dest` is always inside `dir`.
        let dest = dir.join(OsStr::from_bytes(&entry.name));
        match &entry.kind {
            EntryKind::File {
                object,
                size,
                executable,
                relocated,
            } => {
                let objects = ctx.store.objects();
                let path = objects.require(object, *executable)?;
                objects.check_shard(&path)?;
                if *relocated {
                    // Written, not linked: its bytes name the materialization's final path.
                    let stored = objects.read_verified(object, *executable)?;
                    let bytes = substitute_placeholder(&stored, &ctx.final_path);
                    return write_new(&dest, &bytes, *executable)
                        .map_err(Error::io("write", &dest));
                }
                let exact = || {
                    objects
                        .ensure_variant(object, *executable)
                        .map_err(|e| LinkError::Source {
                            path: objects.path(object, *executable),
                            source: Box::new(e),
                        })
                };
                ctx.linker.link(&path, &dest, *executable, *size, exact)?;
                ctx.store.report(Progress::Linked);
                Ok(())
            }
            EntryKind::Dir { tree } => {
                fs::create_dir(&dest).map_err(Error::io("create", &dest))?;
                let sub = (ctx.trees)(tree)?;
                fill(ctx, &dest, &sub)?;
                seal_dir(&dest)
            }
            EntryKind::Symlink { target, relocated } => {
                let target = if *relocated {
                    Cow::Owned(substitute_placeholder(target, &ctx.final_path))
                } else {
                    Cow::Borrowed(target.as_slice())
                };
                symlink(OsStr::from_bytes(&target), &dest)
                    .map_err(Error::io("create the symlink", &dest))
            }
        }
    })
}
