//! `root add`, `roots`: build directories that keep environments.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use envstore::{Filter, Store};
use serde_json::json;

use crate::printer::Printer;

pub fn add(
    store: &Store,
    dir: &Path,
    sources: &[String],
    printer: &Printer,
) -> anyhow::Result<ExitCode> {
    let mut ids = Vec::new();
    for spec in sources {
        ids.push(store.resolve_stored(spec, &Filter::default())?);
    }
    let root = store.root_add(dir, &ids)?;
    printer.info(format_args!(
        "{} is a root of {} environment{}; prune keeps {} while it uses {}",
        root.dir.display(),
        root.snapshots.len(),
        if root.snapshots.len() == 1 { "" } else { "s" },
        if root.snapshots.len() == 1 {
            "it"
        } else {
            "them"
        },
        if root.snapshots.len() == 1 {
            "it"
        } else {
            "them"
        }
    ));
    Ok(ExitCode::SUCCESS)
}

pub fn roots(
    store: &Store,
    scan: &[PathBuf],
    add: bool,
    printer: &Printer,
) -> anyhow::Result<ExitCode> {
    if !scan.is_empty() {
        let found = store.roots_scan(scan, true)?;
        for (dir, ids) in &found {
            if add {
                store.root_add(dir, ids)?;
            }
        }
        if printer.json() {
            printer.json_value(&json!(
                found
                    .iter()
                    .map(|(dir, ids)| json!({
                        "dir": dir,
                        "snapshots": ids.iter().map(|i| i.to_hex()).collect::<Vec<_>>(),
                        "added": add,
                    }))
                    .collect::<Vec<_>>()
            ));
        } else {
            for (dir, ids) in &found {
                let short: Vec<String> = ids.iter().map(|i| i.short()).collect();
                printer.data(&format!("{}\t{}", dir.display(), short.join(",")));
            }
            printer.info(format_args!(
                "{} build directories use environments of this store{}",
                found.len(),
                if add {
                    "; registered as roots"
                } else if found.is_empty() {
                    ""
                } else {
                    "; `--add` registers them"
                }
            ));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let roots = store.roots()?;
    if printer.json() {
        printer.json_value(&json!(
            roots
                .iter()
                .map(|r| json!({
                    "dir": r.root.dir,
                    "created": r.root.created,
                    "snapshots": r.states.iter().map(|(id, state)| json!({
                        "id": id.to_hex(), "live": state.is_live(), "reason": state.reason(),
                    })).collect::<Vec<_>>(),
                }))
                .collect::<Vec<_>>()
        ));
        return Ok(ExitCode::SUCCESS);
    }
    if roots.is_empty() {
        printer.info("no roots; the build hook registers its build directories, `envstore root add DIR SOURCE` does it by hand");
    }
    for r in &roots {
        for (id, state) in &r.states {
            printer.data(&format!(
                "{}\t{}\t{}\t{}",
                r.root.dir.display(),
                id.short(),
                if state.is_live() { "live" } else { "dead" },
                state.reason()
            ));
        }
    }
    Ok(ExitCode::SUCCESS)
}
