//! The facade's one rule of direction, checked on its sources (issue 24): each folder of
//! `src/` uses only the folders below it, so the tree shows what may call what.
//!
//! ```text
//! store < cold < content < catalog < gc, verify, remote < keys, doctor
//! ```
//!
//! gc, verify and remote are peers and never name each other; keys sits on top because `ensure`
//! falls through to remotes, and doctor (a report on a project's build directories) because
//! it reads roots. `Store` is a thin handle: `impl Store` appears only in
//! `store/handle.rs`, `store/paths.rs` (accessors, paths, locks, the index) and `api.rs` (the
//! public methods, each a delegation). Inside the folders, work is called by its path
//! (`crate::cold::pack::pack(store, ..)`), never through a public method of `Store`, so every
//! use of another folder is written out and this test sees it. Also: no file over 500 lines
//! and no cycle between files.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The folders and their level: a folder may name only folders of a lower level.
const LAYERS: &[(&str, u32)] = &[
    ("store", 0),
    ("cold", 1),
    ("content", 2),
    ("catalog", 3),
    ("gc", 4),
    ("verify", 4),
    ("remote", 4),
    ("keys", 5),
    ("doctor", 5),
];
/// The handle's own files: the only places with `impl Store`.
const HANDLE_FILES: &[&str] = &["store/handle.rs", "store/paths.rs", "api.rs"];
const MAX_LINES: usize = 500;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `src/`, by its path relative to it.
fn sources() -> BTreeMap<String, String> {
    sources_in(&src())
}

/// Every `.rs` file under `root`, by its path relative to it.
fn sources_in(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, fs::read_to_string(&path).unwrap());
            }
        }
    }
    out
}

fn level(folder: &str) -> Option<u32> {
    LAYERS.iter().find(|(f, _)| *f == folder).map(|(_, l)| *l)
}

fn folder_of(file: &str) -> Option<&str> {
    file.split_once('/')
        .map(|(f, _)| f)
        .filter(|f| level(f).is_some())
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Code without comments (line comments and doc comments), so prose can name anything.
fn code(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The paths `crate::a::b...` a file names, as their segments, including names brought in by
/// `use crate::{..}` groups (one level of braces).
fn crate_paths(code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    let mut at = 0;
    while let Some(i) = code[at..].find("crate::") {
        let start = at + i;
        at = start + "crate::".len();
        if start > 0 && is_ident(bytes[start - 1]) {
            continue;
        }
        let mut segments = Vec::new();
        let mut j = at;
        loop {
            if code[j..].starts_with('{') {
                let end = j + code[j..].find('}').unwrap();
                for name in code[j + 1..end].split(',') {
                    let name: String = name
                        .trim()
                        .chars()
                        .take_while(|c| *c == '_' || c.is_alphanumeric())
                        .collect();
                    if !name.is_empty() {
                        let mut path = segments.clone();
                        path.push(name);
                        out.push(path);
                    }
                }
                segments.clear();
                break;
            }
            let s = j;
            while j < bytes.len() && is_ident(bytes[j]) {
                j += 1;
            }
            if j == s {
                break;
            }
            segments.push(code[s..j].to_owned());
            if code[j..].starts_with("::") {
                j += 2;
                continue;
            }
            break;
        }
        if !segments.is_empty() {
            out.push(segments);
        }
    }
    out
}

/// The folder that defines each name `lib.rs` re-exports from a folder (`pub use gc::rm::RmReport`).
fn reexports(lib: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let code = code(lib);
    for stmt in code.split(';') {
        let Some(rest) = stmt.trim().strip_prefix("pub use ") else {
            continue;
        };
        let folder: String = rest
            .chars()
            .take_while(|c| *c == '_' || c.is_alphanumeric())
            .collect();
        if level(&folder).is_none() {
            continue;
        }
        let names = match rest.find('{') {
            Some(i) => rest[i + 1..rest.rfind('}').unwrap()].to_owned(),
            None => rest.rsplit("::").next().unwrap().to_owned(),
        };
        for name in names.split(',') {
            let name = name.trim().split(" as ").last().unwrap().trim();
            if !name.is_empty() {
                out.insert(name.to_owned(), folder.clone());
            }
        }
    }
    out
}

/// The folder a crate path lands in: its first segment, or for a root re-export the folder
/// that defines it.
fn target_folder(path: &[String], names: &BTreeMap<String, String>) -> Option<String> {
    let first = path.first()?;
    if level(first).is_some() {
        return Some(first.clone());
    }
    names.get(first).cloned()
}

/// The file a crate path lands in (`crate::cold::pack::pack` -> `cold/pack.rs`), if any.
fn target_file(path: &[String], files: &BTreeMap<String, String>) -> Option<String> {
    for n in (1..=path.len()).rev() {
        let joined = path[..n].join("/");
        for candidate in [format!("{joined}.rs"), format!("{joined}/mod.rs")] {
            if files.contains_key(&candidate) {
                return Some(candidate);
            }
        }
    }
    None
}

/// `pub fn NAME` (or `pub(crate) fn`) names inside `impl Store` blocks of a file.
fn methods(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let t = line.trim_start();
        for prefix in ["pub fn ", "pub(crate) fn "] {
            if let Some(rest) = t.strip_prefix(prefix) {
                out.insert(
                    rest.chars()
                        .take_while(|c| *c == '_' || c.is_alphanumeric())
                        .collect(),
                );
            }
        }
    }
    out
}

#[test]
fn lower_folders_never_name_higher_ones() {
    let files = sources();
    let names = reexports(&files["lib.rs"]);
    let mut wrong = Vec::new();
    for (file, text) in &files {
        let Some(folder) = folder_of(file) else {
            continue;
        };
        let mine = level(folder).unwrap();
        for path in crate_paths(&code(text)) {
            let Some(target) = target_folder(&path, &names) else {
                continue;
            };
            let theirs = level(&target).unwrap();
            if target != folder && theirs >= mine {
                wrong.push(format!(
                    "{file} names crate::{} ({target} is not below {folder})",
                    path.join("::")
                ));
            }
        }
    }
    wrong.sort();
    wrong.dedup();
    assert!(
        wrong.is_empty(),
        "upward or sideways references:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn store_is_a_thin_handle() {
    let files = sources();
    let outside: Vec<&String> = files
        .iter()
        .filter(|(f, text)| {
            !HANDLE_FILES.contains(&f.as_str()) && code(text).contains("impl Store {")
        })
        .map(|(f, _)| f)
        .collect();
    assert!(
        outside.is_empty(),
        "impl Store outside the handle's files: {outside:?}"
    );

    // Inside the folders, a public delegation is never the way in: call the folder's function,
    // so the use of another folder is written out (and checked above).
    let handle: BTreeSet<String> = ["store/handle.rs", "store/paths.rs"]
        .iter()
        .flat_map(|f| methods(&files[*f]))
        .collect();
    let delegations: BTreeSet<String> = methods(&files["api.rs"])
        .difference(&handle)
        .cloned()
        .collect();
    let mut wrong = Vec::new();
    // A folder's tests.rs drives the library as a user does, through the public API.
    let library_code = |f: &String| folder_of(f).is_some() && !f.ends_with("/tests.rs");
    for (file, text) in files.iter().filter(|(f, _)| library_code(f)) {
        let code = code(text);
        for name in &delegations {
            for receiver in ["store.", "self.store."] {
                let call = format!("{receiver}{name}(");
                if let Some(at) = code.find(&call)
                    && (at == 0 || !is_ident(code.as_bytes()[at - 1]))
                {
                    wrong.push(format!("{file} calls {call}..) through the public handle"));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn no_file_grows_past_the_limit() {
    let long: Vec<String> = sources()
        .iter()
        .filter(|(_, text)| text.lines().count() > MAX_LINES)
        .map(|(f, text)| format!("{f}: {} lines", text.lines().count()))
        .collect();
    assert!(
        long.is_empty(),
        "files over {MAX_LINES} lines (split them by concern): {long:?}"
    );
}

#[test]
fn no_cycle_between_files() {
    // The facade, and every leaf crate of the workspace.
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut roots: Vec<PathBuf> = fs::read_dir(crates)
        .unwrap()
        .map(|e| e.unwrap().path().join("src"))
        .filter(|p| p.is_dir())
        .collect();
    roots.sort();
    assert!(roots.len() > 5, "found the workspace's crates: {roots:?}");
    for root in roots {
        if let Some(cycle) = cycle_in(&sources_in(&root)) {
            panic!(
                "files of {} depend on each other in a circle: {}",
                root.display(),
                cycle.join(" -> ")
            );
        }
    }
}

/// A circle of `use` between the files of one crate, if there is one.
fn cycle_in(files: &BTreeMap<String, String>) -> Option<Vec<String>> {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (file, text) in files {
        // lib.rs declares and re-exports (and the facade's api.rs delegates to every folder):
        // the roots, not part of any circle.
        if file == "lib.rs" || file == "api.rs" {
            continue;
        }
        let code = code(text);
        let mut paths = crate_paths(&code);
        // `super::x` from a file in a folder is `crate::<folder>::x`.
        let folder = file
            .rsplit_once('/')
            .map(|(d, _)| d.to_owned())
            .unwrap_or_default();
        for (i, _) in code.match_indices("super::") {
            let rest = &code[i + "super::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| *c == '_' || c.is_alphanumeric())
                .collect();
            let mut path: Vec<String> = folder.split('/').map(str::to_owned).collect();
            path.push(name);
            paths.push(path);
        }
        for path in paths {
            if let Some(target) = target_file(&path, files)
                && target != *file
                && target != "lib.rs"
            {
                edges.entry(file.clone()).or_default().insert(target);
            }
        }
    }
    // Depth-first search for a back edge.
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_owned(), 1);
        stack.push(node.to_owned());
        for next in edges.get(node).into_iter().flatten() {
            match state.get(next) {
                Some(1) => {
                    let at = stack.iter().position(|n| n == next).unwrap();
                    let mut cycle = stack[at..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(next, edges, state, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        state.insert(node.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in edges.keys() {
        if !state.contains_key(node)
            && let Some(cycle) = visit(node, &edges, &mut state, &mut Vec::new())
        {
            return Some(cycle);
        }
    }
    None
}

#[test]
fn the_check_sees_a_violation() {
    // The scanner itself: an upward path, a grouped use and a re-exported name are all found.
    let code = "use crate::{Error, Ensured};\nlet x = crate::keys::ensure::ensure(store);\n";
    let paths = crate_paths(code);
    assert!(paths.contains(&vec!["Ensured".to_owned()]));
    assert!(paths.contains(&vec![
        "keys".to_owned(),
        "ensure".to_owned(),
        "ensure".to_owned()
    ]));
    let names = reexports(
        "pub use keys::ensure::{EnsureSpec, Ensured};\npub use envstore_tree::SnapshotId;",
    );
    assert_eq!(
        target_folder(&["Ensured".to_owned()], &names).as_deref(),
        Some("keys")
    );
    assert_eq!(target_folder(&["SnapshotId".to_owned()], &names), None);
    // And a circle between two files of a crate.
    let mut files = BTreeMap::new();
    files.insert("a.rs".to_owned(), "use crate::b::B;".to_owned());
    files.insert("b.rs".to_owned(), "fn f() { crate::a::g() }".to_owned());
    assert!(cycle_in(&files).is_some());
    files.insert("b.rs".to_owned(), "fn f() {}".to_owned());
    assert!(cycle_in(&files).is_none());
}
