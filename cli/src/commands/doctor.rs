//! `envstore doctor [DIR]`: words the library's report (is the build hook active, which
//! environments do the build directories use, do they still exist, why might the last build
//! have recompiled everything).

use std::path::Path;
use std::process::ExitCode;

use envstore::{EnvState, ProjectFile, Store};
use serde_json::json;

use crate::printer::Printer;

pub fn doctor(store: &Store, dir: Option<&Path>, printer: &Printer) -> anyhow::Result<ExitCode> {
    let dir = match dir {
        Some(d) => d.to_owned(),
        None => std::env::current_dir()?,
    };
    let report = store.doctor(&dir)?;
    let dir = &report.dir;
    let mut findings: Vec<String> = Vec::new();
    match &report.project {
        ProjectFile::Missing => findings.push(format!("{} has no pyproject.toml: not a Python project (build directories below are still checked)", dir.display())),
        ProjectFile::Unreadable(why) => findings.push(format!("{}/pyproject.toml cannot be read ({why}); build directories below are still checked", dir.display())),
        ProjectFile::Read(p) if p.hook => findings.push(format!("the hook is active: build-backend = \"envstore.build\", wrapping {}", p.backend)),
        ProjectFile::Read(_) => findings.push("the hook is not active: pyproject.toml's build-backend is not \"envstore.build\" (docs/integration.md)".into()),
    }
    if let Some(p) = report.project.project()
        && p.hook
        && p.build_dir.is_none()
        && p.backend.starts_with("scikit_build_core")
    {
        findings.push("no [tool.scikit-build] build-dir: every build starts in a fresh directory and compiles everything, hook or not".into());
    }
    let mut dirs_json = Vec::new();
    for build in &report.build_dirs {
        let mut envs = Vec::new();
        for used in &build.envs {
            let state = match used.state {
                EnvState::Materialized => "materialized",
                EnvState::Stored => {
                    "stored, not materialized: the next build lays it out again at the same path"
                }
                EnvState::Gone => {
                    "gone from the store (pruned or removed): the next build stores it again at the same path if the same content comes back"
                }
            };
            envs.push(json!({"id": used.id.to_hex(), "state": state, "root": used.root}));
            findings.push(format!(
                "{} uses {} ({state}{})",
                build.dir.display(),
                used.id.short(),
                match used.root {
                    Some(true) => ", kept by a live root",
                    Some(false) => ", its root is dead",
                    None => ", no root: prune may remove it (`envstore root add` or build again with the hook)",
                }
            ));
        }
        for id in &build.dropped {
            findings.push(format!(
                "{} used {} before and no longer does: the build environment changed (new \
                 requirements resolved), so the last configure saw new paths",
                build.dir.display(),
                id.short()
            ));
        }
        if let Some(home) = &build.moved_from {
            findings.push(format!(
                "{}: CMakeCache.txt says it was made in {}: the build directory moved, so CMake \
                 reconfigures and recompiles",
                build.dir.display(),
                home.display()
            ));
        }
        dirs_json.push(json!({"dir": build.dir, "environments": envs}));
    }
    for (d, found) in &report.temporary {
        findings.push(format!(
            "{} refers to a temporary build environment ({found}): it was configured \
             without the hook, and the next build with it reconfigures once",
            d.display()
        ));
    }
    if report.build_dirs.is_empty() {
        findings.push("no build directory here uses an environment of this store (yet)".into());
    }
    let project = report.project.project();
    if printer.json() {
        printer.json_value(&json!({
            "dir": dir,
            "hook": project.is_some_and(|p| p.hook),
            "backend": project.map(|p| p.backend.clone()),
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
