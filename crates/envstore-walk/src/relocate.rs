//! Relocation: storing an environment that contains its own absolute path (a venv: activate
//! scripts, console-script shebangs, RECORD lines) so that the same environment made at two
//! temporary paths gets the same id.
//!
//! In a relocatable walk, a regular file under [`MAX_SCAN`] bytes that contains the root's path
//! is stored with [`PLACEHOLDER`] in its place if it is text (no NUL byte); a binary file that
//! contains it is stored as it is and reported (rewriting binaries would break them). A symlink
//! whose target starts with the root's path is stored with the placeholder. Then, in every
//! `*.dist-info/RECORD`, the hash and size of lines naming a relocated file are emptied: they
//! hash bytes that differ per location, and nothing at build or run time checks them.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use envstore_tree::{Entry, EntryKind, NAME_PLACEHOLDER, ObjectId, PLACEHOLDER, Tree, TreeId};
use memchr::memmem;

use crate::Walked;

/// Files at least this large are never scanned or rewritten (text files that mention a prefix
/// are scripts and metadata, far smaller).
pub const MAX_SCAN: u64 = 1 << 20;

/// The byte strings that stand for the root: its path as given (made absolute) and its
/// canonical path, longest first so a longer match wins.
#[derive(Debug, Clone)]
pub(crate) struct Relocator {
    prefixes: Vec<Vec<u8>>,
    /// The root's name, which venv tools put in the activate scripts' prompt.
    name: Vec<u8>,
}

/// What a scan of one file found.
pub(crate) enum Scan {
    Untouched,
    /// Text that mentioned the root: its bytes with the placeholder.
    Relocated(Vec<u8>),
    /// Binary content that mentions the root: kept as it is.
    Binary,
}

impl Relocator {
    pub(crate) fn new(root: &Path) -> Relocator {
        let mut prefixes = Vec::new();
        for path in [std::path::absolute(root).ok(), root.canonicalize().ok()]
            .into_iter()
            .flatten()
        {
            let bytes = path.as_os_str().as_bytes().to_vec();
            if bytes.len() > 1 && !prefixes.contains(&bytes) {
                prefixes.push(bytes);
            }
        }
        prefixes.sort_by_key(|p| std::cmp::Reverse(p.len()));
        let name = std::path::absolute(root)
            .ok()
            .and_then(|p| p.file_name().map(|n| n.as_bytes().to_vec()))
            .unwrap_or_default();
        Relocator { prefixes, name }
    }

    fn replace(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        let mut out = bytes.to_vec();
        let mut changed = false;
        for prefix in &self.prefixes {
            if memmem::find(&out, prefix).is_some() {
                out = replace_all(&out, prefix, PLACEHOLDER);
                changed = true;
            }
        }
        changed.then_some(out)
    }

    /// Scans one file. `activate` says it is a venv activate script (`bin/activate*` directly
    /// under the root), where the root's name in the prompt is relocated too.
    pub(crate) fn scan(&self, content: &[u8], activate: bool) -> Scan {
        let has_name =
            activate && !self.name.is_empty() && prompt_names(content, &self.name).next().is_some();
        if !has_name
            && !self
                .prefixes
                .iter()
                .any(|p| memmem::find(content, p).is_some())
        {
            return Scan::Untouched;
        }
        if content.contains(&0) {
            return Scan::Binary;
        }
        let mut out = self.replace(content).unwrap_or_else(|| content.to_vec());
        if has_name {
            out = replace_prompt_names(&out, &self.name);
        }
        Scan::Relocated(out)
    }

    /// The symlink target with the placeholder, if it points into the root.
    pub(crate) fn symlink(&self, target: &[u8]) -> Option<Vec<u8>> {
        self.prefixes
            .iter()
            .find(|p| target.starts_with(p) && matches!(target.get(p.len()), None | Some(b'/')))
            .map(|p| {
                let mut out = PLACEHOLDER.to_vec();
                out.extend_from_slice(&target[p.len()..]);
                out
            })
    }
}

/// Where an activate script uses the environment's directory name as its prompt, and only
/// there: `(NAME)` (every shell's prompt, `PS1="(env) ..."`, `set prompt = "(env) ..."`),
/// `VIRTUAL_ENV_PROMPT=NAME` with or without quotes (newer venv and virtualenv), and
/// virtualenv's `"xNAME"` test. A name is not replaced inside other words: a venv called `env`
/// must not turn csh's `setenv` into something else, nor one called `python` its `pydoc` alias.
fn prompt_names<'a>(content: &'a [u8], name: &'a [u8]) -> impl Iterator<Item = usize> + 'a {
    memmem::find_iter(content, name).filter(move |&at| {
        let before = &content[..at];
        let after = &content[at + name.len()..];
        let next = after.first().copied();
        let closes = |q: Option<u8>| match q {
            Some(q) => next == Some(q),
            None => matches!(next, None | Some(b'\n' | b' ' | b'\t' | b';')),
        };
        if before.ends_with(b"(") && next == Some(b')') {
            return true;
        }
        if before.ends_with(b"\"x") && next == Some(b'"') {
            return true;
        }
        let (quote, rest) = match before.last() {
            Some(&q @ (b'"' | b'\'')) => (Some(q), &before[..before.len() - 1]),
            _ => (None, before),
        };
        let assigned =
            rest.ends_with(b"VIRTUAL_ENV_PROMPT=") || rest.ends_with(b"VIRTUAL_ENV_PROMPT ");
        assigned && closes(quote)
    })
}

/// `content` with the name placeholder wherever [`prompt_names`] finds the name.
fn replace_prompt_names(content: &[u8], name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len());
    let mut from = 0;
    for at in prompt_names(content, name).collect::<Vec<_>>() {
        out.extend_from_slice(&content[from..at]);
        out.extend_from_slice(NAME_PLACEHOLDER);
        from = at + name.len();
    }
    out.extend_from_slice(&content[from..]);
    out
}

fn replace_all(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut rest = bytes;
    while let Some(i) = memmem::find(rest, from) {
        out.extend_from_slice(&rest[..i]);
        out.extend_from_slice(to);
        rest = &rest[i + from.len()..];
    }
    out.extend_from_slice(rest);
    out
}

/// Lexically normalizes `path` (RECORD paths are like `../../../bin/tool`).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Empties the hash and size of the RECORD lines that name a file whose recorded bytes depend
/// on where the environment is (`depends`). RECORD paths are relative to the directory holding
/// the `.dist-info` directory.
fn rewrite_record(content: &[u8], site: &Path, depends: &dyn Fn(&Path) -> bool) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(content.len());
    let mut changed = false;
    for line in content.split_inclusive(|&b| b == b'\n') {
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        // path,hash,size; the path may itself contain commas (then it is quoted: left alone).
        let mut fields = body.rsplitn(3, |&b| b == b',');
        let (size, hash, path) = (fields.next(), fields.next(), fields.next());
        if let (Some(_), Some(hash), Some(path)) = (size, hash, path)
            && !hash.is_empty()
            && !path.starts_with(b"\"")
            && depends(&normalize(&site.join(OsStr::from_bytes(path))))
        {
            out.extend_from_slice(path);
            out.extend_from_slice(b",,");
            out.extend_from_slice(&line[body.len()..]);
            changed = true;
            continue;
        }
        out.extend_from_slice(line);
    }
    changed.then_some(out)
}

/// After a relocatable walk: rewrites the RECORD files that list files whose bytes depend on
/// the environment's location (relocated files, binaries that contain its path, and files the
/// filter leaves out, such as bytecode, which embeds its source path), updating their tree
/// entries and every tree above them.
pub(crate) fn fix_records(
    walked: &mut Walked,
    root: &Path,
    filter: &crate::Filter,
) -> Result<(), crate::WalkError> {
    let varying: HashSet<PathBuf> = walked
        .relocated
        .iter()
        .chain(&walked.binary_with_prefix)
        .map(|p| normalize(p))
        .collect();
    let abs_root =
        normalize(&std::path::absolute(root).map_err(crate::WalkError::io("resolve", root))?);
    let depends = |path: &Path| -> bool {
        varying.contains(path)
            || path.strip_prefix(&abs_root).is_ok_and(|rel| {
                let mut parent = PathBuf::new();
                rel.iter().any(|name| {
                    let excluded = filter.excludes(&parent, name, false);
                    parent.push(name);
                    excluded
                })
            })
    };
    let records: Vec<usize> = walked
        .files
        .iter()
        .enumerate()
        .filter(|(_, f)| {
            f.path.file_name() == Some(OsStr::new("RECORD"))
                && f.path
                    .parent()
                    .and_then(Path::file_name)
                    .is_some_and(|d| d.as_bytes().ends_with(b".dist-info"))
        })
        .map(|(i, _)| i)
        .collect();
    for i in records {
        let file = &walked.files[i];
        let content = match &file.content {
            Some(c) => c.clone(),
            None => std::fs::read(&file.path).map_err(crate::WalkError::io("read", &file.path))?,
        };
        let site = file
            .path
            .parent()
            .and_then(Path::parent)
            .expect("RECORD is inside .dist-info");
        let Some(new) = rewrite_record(&content, &normalize(site), &depends) else {
            continue;
        };
        let object = ObjectId::from(blake3::hash(&new));
        let size = new.len() as u64;
        let rel = file
            .path
            .strip_prefix(root)
            .expect("walked files are below the root")
            .to_owned();
        let comps: Vec<&OsStr> = rel.iter().collect();
        walked.root = replace_file(&mut walked.trees, walked.root, &comps, object, size)?;
        let file = &mut walked.files[i];
        file.object = object;
        file.size = size;
        file.content = Some(new);
        file.stamp = None;
    }
    // Keep only the trees the (new) root reaches.
    let mut reachable = HashSet::new();
    let mut stack = vec![walked.root];
    while let Some(id) = stack.pop() {
        if reachable.insert(id) {
            stack.extend(
                walked.trees[&id]
                    .entries()
                    .iter()
                    .filter_map(|e| match e.kind {
                        EntryKind::Dir { tree } => Some(tree),
                        _ => None,
                    }),
            );
        }
    }
    walked.trees.retain(|id, _| reachable.contains(id));
    Ok(())
}

/// Replaces the content of the file at `comps` below `tree`; returns the new id of `tree`.
fn replace_file(
    trees: &mut HashMap<TreeId, Tree>,
    tree: TreeId,
    comps: &[&OsStr],
    object: ObjectId,
    size: u64,
) -> Result<TreeId, crate::WalkError> {
    let (first, rest) = comps.split_first().expect("a file path has components");
    let mut entries: Vec<Entry> = trees[&tree].entries().to_vec();
    let entry = entries
        .iter_mut()
        .find(|e| e.name == first.as_bytes())
        .expect("the walked file is in its tree");
    entry.kind = match (&entry.kind, rest.is_empty()) {
        (
            EntryKind::File {
                executable,
                relocated,
                ..
            },
            true,
        ) => EntryKind::File {
            object,
            size,
            executable: *executable,
            relocated: *relocated,
        },
        (EntryKind::Dir { tree }, false) => EntryKind::Dir {
            tree: replace_file(trees, *tree, rest, object, size)?,
        },
        _ => unreachable!("the walk built these trees from the same paths"),
    };
    let new = Tree::new(entries);
    let id = new.id();
    trees.insert(id, new);
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_lines_of_relocated_files_lose_hash_and_size() {
        let record = b"../../../bin/tool,sha256=abc,120\npkg/__init__.py,sha256=def,10\npkg-1.dist-info/RECORD,,\n";
        let site = Path::new("/env/lib/python3.11/site-packages");
        let depends = |p: &Path| p == Path::new("/env/bin/tool");
        let out = rewrite_record(record, site, &depends).unwrap();
        assert_eq!(
            out,
            b"../../../bin/tool,,\npkg/__init__.py,sha256=def,10\npkg-1.dist-info/RECORD,,\n"
        );
        assert!(rewrite_record(b"pkg/x.py,sha256=a,1\n", site, &depends).is_none());
    }

    #[test]
    fn text_is_relocated_binary_is_reported() {
        let r = Relocator {
            prefixes: vec![b"/tmp/.tmpAB12".to_vec()],
            name: b".tmpAB12".to_vec(),
        };
        match r.scan(b"#!/tmp/.tmpAB12/bin/python\nx = '/tmp/.tmpAB12'\n", false) {
            Scan::Relocated(out) => {
                assert_eq!(
                    out,
                    b"#!@@ENVSTORE_PREFIX@@/bin/python\nx = '@@ENVSTORE_PREFIX@@'\n"
                )
            }
            _ => panic!("text with the prefix is relocated"),
        }
        assert!(matches!(
            r.scan(b"\x7fELF\0/tmp/.tmpAB12/lib", false),
            Scan::Binary
        ));
        assert!(matches!(r.scan(b"nothing here", false), Scan::Untouched));
        assert_eq!(
            r.symlink(b"/tmp/.tmpAB12/lib").unwrap(),
            b"@@ENVSTORE_PREFIX@@/lib"
        );
        assert!(
            r.symlink(b"/tmp/.tmpAB12x/lib").is_none(),
            "a longer name is another directory"
        );
        assert!(r.symlink(b"/usr/bin/python3").is_none());
    }

    #[test]
    fn the_name_is_relocated_only_where_it_is_the_prompt() {
        // Names that are also words in the scripts (issue 12, item 9).
        for name in ["env", "bin", "venv", "python", "set", "x"] {
            let r = Relocator {
                prefixes: vec![format!("/t/{name}").into_bytes()],
                name: name.as_bytes().to_vec(),
            };
            let script = format!(
                "# reset old environment variables\nsetenv PATH \"$VIRTUAL_ENV/bin:$PATH\"\n\
                 alias pydoc python -m pydoc\nPS1=\"({name}) ${{PS1:-}}\"\n\
                 VIRTUAL_ENV_PROMPT={name}\nsetenv VIRTUAL_ENV_PROMPT \"({name}) \"\n\
                 if [ \"x{name}\" != x ] ; then\nVIRTUAL_ENV=/t/{name}\n"
            );
            let Scan::Relocated(out) = r.scan(script.as_bytes(), true) else {
                panic!("{name}: an activate script is relocated");
            };
            let expected = "# reset old environment variables\nsetenv PATH \"$VIRTUAL_ENV/bin:$PATH\"\n\
                 alias pydoc python -m pydoc\nPS1=\"(@@ENVSTORE_NAME@@) ${PS1:-}\"\n\
                 VIRTUAL_ENV_PROMPT=@@ENVSTORE_NAME@@\nsetenv VIRTUAL_ENV_PROMPT \"(@@ENVSTORE_NAME@@) \"\n\
                 if [ \"x@@ENVSTORE_NAME@@\" != x ] ; then\nVIRTUAL_ENV=@@ENVSTORE_PREFIX@@\n";
            assert_eq!(String::from_utf8(out).unwrap(), expected, "{name}");
        }
    }

    #[test]
    fn the_name_is_relocated_in_activate_scripts_only() {
        let r = Relocator {
            prefixes: vec![b"/tmp/.tmpAB12".to_vec()],
            name: b".tmpAB12".to_vec(),
        };
        match r.scan(b"PS1=\"(.tmpAB12) \"\nVIRTUAL_ENV=/tmp/.tmpAB12\n", true) {
            Scan::Relocated(out) => {
                assert_eq!(
                    out,
                    b"PS1=\"(@@ENVSTORE_NAME@@) \"\nVIRTUAL_ENV=@@ENVSTORE_PREFIX@@\n"
                )
            }
            _ => panic!("an activate script is relocated"),
        }
        assert!(matches!(
            r.scan(b"mentions .tmpAB12 only", false),
            Scan::Untouched
        ));
        assert_eq!(
            envstore_tree::substitute_placeholder(
                b"(@@ENVSTORE_NAME@@) @@ENVSTORE_PREFIX@@/bin",
                b"/s/envs/abc"
            ),
            b"(abc) /s/envs/abc/bin"
        );
    }
}
