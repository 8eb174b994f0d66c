//! `envstore doctor [DIR]`: words the library's report (is the build hook active, which
//! environments do the build directories use, do they still exist, why might the last build
//! have recompiled everything).

use std::path::Path;
use std::process::ExitCode;

use envstore::{Content, EnvState, ProjectFile, Store};
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
        findings.push("no [tool.scikit-build] build-dir: every build starts in a fresh directory and compiles everything, hook or not. Add to pyproject.toml:\n    [tool.scikit-build]\n    build-dir = \"build/{wheel_tag}\"".into());
    }
    if let Some(p) = report.project.project()
        && p.hook
        && p.backend.starts_with("mesonpy")
    {
        findings.push("meson-python builds wheels in a fresh directory unless given one, so every `pip install .` compiles everything, hook or not: pass `-Cbuild-dir=build` (editable installs use build/cp3XX already)".into());
    }
    if let Some(p) = report.project.project()
        && !p.pinned()
    {
        let requirement = p.requirement.as_deref().unwrap_or("envstore");
        findings.push(format!(
            "[build-system] requires \"{requirement}\" without an exact version{}: envstore is \
             not published on the public index yet, and pip and uv still ask that index and \
             take its highest version, so whoever registers the name there runs code in this \
             build. Pin it: \"envstore=={}\" (docs/integration.md, \"Opting in safely\")",
            if p.uv_source {
                " (uv takes it from [tool.uv.sources]; pip does not read that table)"
            } else {
                ""
            },
            env!("CARGO_PKG_VERSION")
        ));
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
            let holds = used.content.as_ref().map(holds);
            envs.push(json!({
                "id": used.id.to_hex(),
                "state": state,
                "root": used.root,
                "layout": used.content.as_ref().map(|c| c.layout.frontend()),
                "packages": used.content.as_ref().map(|c| &c.packages),
            }));
            findings.push(format!(
                "{} uses {} ({}{state}{})",
                build.dir.display(),
                used.id.short(),
                holds.map(|h| format!("{h}; ")).unwrap_or_default(),
                match used.root {
                    Some(true) => ", kept by a live root".to_owned(),
                    Some(false) => format!(
                        ", its root is dead: `envstore roots --add --scan {}` records it again, \
                         or the next build with the hook does",
                        build.dir.display()
                    ),
                    None => ", no root: prune may remove it (`envstore roots --add --scan DIR` or build again with the hook)".to_owned(),
                }
            ));
        }
        if let Some((before, now)) = build.switched {
            findings.push(format!(
                "{}: the frontend changed: it was built in {} and now in {}. Their build \
                 environments differ in layout, so they are different environments and the \
                 switch recompiled everything; keep one frontend per build directory (or one \
                 build directory per frontend: build-dir = \"build/{{wheel_tag}}-pip\")",
                build.dir.display(),
                before.frontend(),
                now.frontend()
            ));
        } else {
            for id in &build.dropped {
                findings.push(format!(
                    "{} used {} before and no longer does: the build environment changed (new \
                     requirements resolved), so the last configure saw new paths",
                    build.dir.display(),
                    id.short()
                ));
            }
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

/// An environment in words: its layout and what it holds, the build tools and the packages
/// whose headers builds include first (`pip's prefixes: cmake 4.1.2, ninja 1.13.0`).
fn holds(content: &Content) -> String {
    const TOOLS: &[&str] = &[
        "cmake",
        "ninja",
        "meson",
        "meson-python",
        "scikit-build-core",
        "pybind11",
        "nanobind",
        "numpy",
        "cython",
    ];
    const SHOWN: usize = 6;
    let mut packages: Vec<&(String, String)> = content.packages.iter().collect();
    packages.sort_by_key(|(name, _)| {
        let rank = TOOLS.iter().position(|t| t == name).unwrap_or(TOOLS.len());
        (rank, name.clone())
    });
    let mut words: Vec<String> = packages
        .iter()
        .take(SHOWN)
        .map(|(name, version)| format!("{name} {version}"))
        .collect();
    if packages.len() > SHOWN {
        words.push(format!("{} more", packages.len() - SHOWN));
    }
    if words.is_empty() {
        words.push("no Python packages".to_owned());
    }
    format!("{}: {}", content.layout.frontend(), words.join(", "))
}
