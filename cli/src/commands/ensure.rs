//! `ensure`, `keys`, `explain`: environments keyed on their inputs.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use envstore::{EnsureSpec, Store};
use serde_json::{Value, json};

use crate::printer::{Printer, ago, table, utc_time};

pub fn ensure(store: &Store, spec: &EnsureSpec, printer: &Printer) -> anyhow::Result<ExitCode> {
    let mut build = |out: &Path| -> envstore::Result<()> {
        printer.info(format_args!("building: {}", display(&spec.argv)));
        envstore::run_build_command(&spec.argv, out)
    };
    run_ensure(store, spec, &mut build, printer)
}

fn display(argv: &[OsString]) -> String {
    argv.iter()
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `ensure` with a given build, printing the path (or JSON); a failed build's exit code is the
/// command's.
fn run_ensure(
    store: &Store,
    spec: &EnsureSpec,
    build: &mut dyn FnMut(&Path) -> envstore::Result<()>,
    printer: &Printer,
) -> anyhow::Result<ExitCode> {
    let ensured = match store.ensure(spec, build) {
        Ok(ensured) => ensured,
        // A failing build: its exit code is ensure's.
        Err(
            e @ envstore::Error::BuildFailed {
                code: Some(code), ..
            },
        ) => {
            printer.error(&anyhow::Error::new(e));
            return Ok(ExitCode::from(u8::try_from(code).unwrap_or(1).max(1)));
        }
        Err(e) => return Err(e.into()),
    };
    let id = ensured.materialized.id;
    let key = ensured.key.to_hex();
    if ensured.built {
        printer.info(format_args!(
            "built {} for key {}",
            id.short(),
            ensured.key.short_key()
        ));
    } else {
        printer.detail(format_args!(
            "key {}: {} already built",
            ensured.key.short_key(),
            id.short()
        ));
    }
    let path = ensured.materialized.path.to_string_lossy().into_owned();
    if printer.json() {
        printer.json_value(&json!({
            "path": path, "id": id.to_hex(), "key": key, "built": ensured.built,
        }));
    } else {
        printer.data(&path);
    }
    Ok(ExitCode::SUCCESS)
}

/// `envstore venv`: `ensure` with the library's venv recipe (keyed on the requirement files,
/// the interpreter and the installer).
pub fn venv(
    store: &Store,
    requirements: &[PathBuf],
    python: Option<PathBuf>,
    name: Option<String>,
    policy: envstore::LinkPolicy,
    printer: &Printer,
) -> anyhow::Result<ExitCode> {
    if requirements.is_empty() {
        printer.warn("no requirements given (-r FILE): this is a bare venv with only what the installer puts in one");
    }
    let recipe = envstore::venv_recipe(requirements, python.as_deref(), name, policy)?;
    let mut build = |out: &Path| -> envstore::Result<()> {
        printer.info(format_args!("building a venv with {}", recipe.installer));
        recipe.build(out)
    };
    run_ensure(store, &recipe.spec, &mut build, printer)
}

fn record_json(record: &envstore::KeyRecord) -> Value {
    json!({
        "key": record.key.to_hex(),
        "snapshot": record.snapshot.to_hex(),
        "created": record.created,
        "name": record.name,
        "files": record.inputs.files.iter().map(|(p, _)| p).collect::<Vec<_>>(),
        "env": record.inputs.env.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        "command": record.inputs.command,
    })
}

pub fn keys(store: &Store, printer: &Printer) -> anyhow::Result<ExitCode> {
    let records = store.keys()?;
    if printer.json() {
        printer.json_value(&Value::Array(records.iter().map(record_json).collect()));
        return Ok(ExitCode::SUCCESS);
    }
    if records.is_empty() {
        printer.info("no key records; `envstore ensure` makes them");
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = vec![
        ["KEY", "NAME", "SNAPSHOT", "CREATED", "COMMAND"]
            .map(String::from)
            .to_vec(),
    ];
    for r in &records {
        rows.push(vec![
            r.key.short_key(),
            r.name.clone().unwrap_or_else(|| "-".to_owned()),
            r.snapshot.short(),
            utc_time(r.created),
            r.inputs.command.escape_debug().to_string(),
        ]);
    }
    printer.raw(&table(&rows));
    Ok(ExitCode::SUCCESS)
}

pub fn explain(store: &Store, name: &str, printer: &Printer) -> anyhow::Result<ExitCode> {
    let history = store.explain(name)?;
    if printer.json() {
        let list: Vec<Value> = history
            .iter()
            .map(|(record, changes)| {
                let mut value = record_json(record);
                value["changes"] = changes.iter().map(ToString::to_string).collect();
                value
            })
            .collect();
        printer.json_value(&Value::Array(list));
        return Ok(ExitCode::SUCCESS);
    }
    for (record, changes) in &history {
        let why = if changes.is_empty() {
            "the first build of this name".to_owned()
        } else {
            changes
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        printer.data(&format!(
            "{} ({}) key {} -> {}: {why}",
            utc_time(record.created),
            ago(record.created),
            record.key.short_key(),
            record.snapshot.short(),
        ));
    }
    Ok(ExitCode::SUCCESS)
}
