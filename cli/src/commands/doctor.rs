//! `envstore doctor [DIR]`: is the build hook active for this project, which environments do
//! its build directories use, do they still exist, and why might the last build have
//! recompiled everything.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use envstore::{SnapshotId, Store};
use serde_json::json;

use crate::printer::Printer;

/// What pyproject.toml says, read line by line (enough for the two keys that matter).
struct Project {
    hook: bool,
    backend: String,
    build_dir: Option<String>,
}

fn value_of(line: &str, key: &str) -> Option<String> {
    let (k, v) = line.split_once('=')?;
    (k.trim() == key).then(|| v.trim().trim_matches(|c| c == '"' || c == '\'').to_owned())
}

fn read_project(dir: &Path) -> Option<Project> {
    let text = std::fs::read_to_string(dir.join("pyproject.toml")).ok()?;
    let mut section = String::new();
    let mut project = Project {
        hook: false,
        backend: "scikit_build_core.build".into(),
        build_dir: None,
    };
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            section = line
                .trim_matches(|c| c == '[' || c == ']')
                .trim()
                .to_owned();
            continue;
        }
        match section.as_str() {
            "build-system"
                if value_of(line, "build-backend").as_deref() == Some("envstore.build") =>
            {
                project.hook = true;
            }
            "tool.envstore" => {
                if let Some(v) = value_of(line, "backend") {
                    project.backend = v;
                }
            }
            "tool.scikit-build" => {
                if let Some(v) = value_of(line, "build-dir") {
                    project.build_dir = Some(v);
                }
            }
            _ => {}
        }
    }
    Some(project)
}

/// Paths of temporary build environments in a file: a configure that ran without the hook.
fn temporary_env(dir: &Path) -> Option<String> {
    for name in ["CMakeCache.txt", "build.ninja"] {
        let Ok(text) = std::fs::read(dir.join(name)) else {
            continue;
        };
        let text = String::from_utf8_lossy(&text);
        for marker in ["/pip-build-env-", "/builds-v0/.tmp", "/build-env-"] {
            if let Some(at) = text.find(marker) {
                let start = text[..at]
                    .rfind(|c: char| c.is_whitespace() || c == '=' || c == ';')
                    .map_or(0, |i| i + 1);
                let end = text[at..]
                    .find(|c: char| c.is_whitespace() || c == ';')
                    .map_or(text.len(), |i| at + i);
                return Some(format!("{name}: {}", &text[start..end]));
            }
        }
    }
    None
}

/// Where CMake believes its build directory is (it moved if this is elsewhere).
fn cmake_home(dir: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(dir.join("CMakeCache.txt")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("CMAKE_CACHEFILE_DIR:INTERNAL="))
        .map(PathBuf::from)
}

pub fn doctor(store: &Store, dir: Option<&Path>, printer: &Printer) -> anyhow::Result<ExitCode> {
    let dir = match dir {
        Some(d) => d.to_owned(),
        None => std::env::current_dir()?,
    };
    let dir = dir
        .canonicalize()
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", dir.display()))?;
    let project = read_project(&dir);
    let mut findings: Vec<String> = Vec::new();
    match &project {
        None => findings.push(format!("{} has no pyproject.toml: not a Python project (build directories below are still checked)", dir.display())),
        Some(p) if p.hook => findings.push(format!("the hook is active: build-backend = \"envstore.build\", wrapping {}", p.backend)),
        Some(_) => findings.push("the hook is not active: pyproject.toml's build-backend is not \"envstore.build\" (docs/integration.md)".into()),
    }
    if let Some(p) = &project
        && p.hook
        && p.build_dir.is_none()
        && p.backend.starts_with("scikit_build_core")
    {
        findings.push("no [tool.scikit-build] build-dir: every build starts in a fresh directory and compiles everything, hook or not".into());
    }
    let build_dirs = store.roots_scan(std::slice::from_ref(&dir), false)?;
    let roots = store.roots()?;
    let mut dirs_json = Vec::new();
    for (build, ids) in &build_dirs {
        let mut envs = Vec::new();
        for id in ids {
            let state = env_state(store, id);
            let root = roots.iter().find(|r| &r.root.dir == build).and_then(|r| {
                r.states
                    .iter()
                    .find(|(s, _)| s == id)
                    .map(|(_, l)| l.is_live())
            });
            envs.push(json!({"id": id.to_hex(), "state": state, "root": root}));
            findings.push(format!(
                "{} uses {} ({state}{})",
                build.display(),
                id.short(),
                match root {
                    Some(true) => ", kept by a live root",
                    Some(false) => ", its root is dead",
                    None => ", no root: prune may remove it (`envstore root add` or build again with the hook)",
                }
            ));
        }
        if let Some(root) = roots.iter().find(|r| &r.root.dir == build) {
            for (id, _) in &root.states {
                if !ids.contains(id) {
                    findings.push(format!(
                        "{} used {} before and no longer does: the build environment changed (new \
                         requirements resolved), so the last configure saw new paths",
                        build.display(),
                        id.short()
                    ));
                }
            }
        }
        if let Some(home) = cmake_home(build)
            && home != *build
        {
            findings.push(format!(
                "{}: CMakeCache.txt says it was made in {}: the build directory moved, so CMake \
                 reconfigures and recompiles",
                build.display(),
                home.display()
            ));
        }
        dirs_json.push(json!({"dir": build, "environments": envs}));
    }
    // Build directories that point at a temporary environment: configured without the hook.
    let mut stack = vec![(dir.clone(), 0)];
    while let Some((d, depth)) = stack.pop() {
        if let Some(found) = temporary_env(&d) {
            findings.push(format!(
                "{} refers to a temporary build environment ({found}): it was configured \
                 without the hook, and the next build with it reconfigures once",
                d.display()
            ));
        }
        if depth < 4
            && let Ok(entries) = std::fs::read_dir(&d)
        {
            for e in entries.flatten() {
                if !e.file_name().to_string_lossy().starts_with('.')
                    && e.file_type().is_ok_and(|t| t.is_dir())
                {
                    stack.push((e.path(), depth + 1));
                }
            }
        }
    }
    if build_dirs.is_empty() {
        findings.push("no build directory here uses an environment of this store (yet)".into());
    }
    if printer.json() {
        printer.json_value(&json!({
            "dir": dir,
            "hook": project.as_ref().is_some_and(|p| p.hook),
            "backend": project.as_ref().map(|p| p.backend.clone()),
            "build_dirs": dirs_json,
            "findings": findings,
        }));
    } else {
        for f in &findings {
            printer.data(&format!("- {f}"));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn env_state(store: &Store, id: &SnapshotId) -> &'static str {
    if store.is_materialized(id) {
        "materialized"
    } else if store.has_snapshot(id) {
        "stored, not materialized: the next build lays it out again at the same path"
    } else {
        "gone from the store (pruned or removed): the next build stores it again at the same path if the same content comes back"
    }
}
