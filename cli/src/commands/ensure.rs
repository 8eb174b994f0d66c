//! `ensure`, `keys`, `explain`: environments keyed on their inputs.

use std::os::fd::AsFd;
use std::process::{Command, ExitCode, Stdio};

use envstore::{EnsureSpec, Store};
use serde_json::{Value, json};

use crate::printer::{Printer, ago, table, utc_time};

pub fn ensure(store: &Store, spec: &EnsureSpec, printer: &Printer) -> anyhow::Result<ExitCode> {
    let command = spec
        .argv
        .iter()
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");
    let mut build = |out: &std::path::Path| -> envstore::Result<()> {
        printer.info(format_args!("building: {command}"));
        // stdout carries only the path: the build's output goes to stderr.
        let stderr = std::io::stderr().as_fd().try_clone_to_owned();
        let mut cmd = Command::new(&spec.argv[0]);
        cmd.args(&spec.argv[1..]).env("ENVSTORE_OUT", out);
        if let Ok(fd) = stderr {
            cmd.stdout(Stdio::from(fd));
        }
        let failed = |status: String, code| envstore::Error::BuildFailed {
            command: command.clone(),
            status,
            code,
        };
        match cmd.status() {
            Ok(status) if status.success() => Ok(()),
            Ok(status) => Err(failed(status.to_string(), status.code())),
            Err(e) => Err(failed(format!("it cannot be started: {e}"), None)),
        }
    };
    let ensured = match store.ensure(spec, &mut build) {
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
            &id.to_hex()[..12],
            &key[..16]
        ));
    } else {
        printer.detail(format_args!(
            "key {}: {} already built",
            &key[..16],
            &id.to_hex()[..12]
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
            r.key.to_hex()[..16].to_owned(),
            r.name.clone().unwrap_or_else(|| "-".to_owned()),
            r.snapshot.to_hex()[..12].to_owned(),
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
            &record.key.to_hex()[..16],
            &record.snapshot.to_hex()[..12],
        ));
    }
    Ok(ExitCode::SUCCESS)
}
