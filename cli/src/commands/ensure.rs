//! `ensure`, `keys`, `explain`: environments keyed on their inputs.

use std::ffi::OsString;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use anyhow::Context;

use envstore::{EnsureSpec, Store};
use serde_json::{Value, json};

use crate::printer::{Printer, ago, table, utc_time};

/// Runs one build step with `ENVSTORE_OUT` set; its stdout goes to stderr (stdout carries
/// only the path). A failure is [`envstore::Error::BuildFailed`] with the step's exit code.
fn run_step(argv: &[OsString], out: &Path) -> envstore::Result<()> {
    let command = display(argv);
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]).env("ENVSTORE_OUT", out);
    if let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() {
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
}

pub fn ensure(store: &Store, spec: &EnsureSpec, printer: &Printer) -> anyhow::Result<ExitCode> {
    let mut build = |out: &Path| -> envstore::Result<()> {
        printer.info(format_args!("building: {}", display(&spec.argv)));
        run_step(&spec.argv, out)
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

/// `envstore venv`: `ensure` with a venv build, keyed on the requirement files, the
/// interpreter and the installer.
pub fn venv(
    store: &Store,
    requirements: &[PathBuf],
    python: Option<PathBuf>,
    name: Option<String>,
    policy: envstore::LinkPolicy,
    printer: &Printer,
) -> anyhow::Result<ExitCode> {
    let python = python.unwrap_or_else(|| PathBuf::from("python3"));
    // The interpreter's identity: where it really is and which version it is (-I -S: no
    // site import, which is most of its start-up).
    let probe = Command::new(&python)
        .args([
            "-I",
            "-S",
            "-c",
            "import sys; print(sys.executable); print(sys.version)",
        ])
        .output()
        .with_context(|| format!("cannot run the interpreter `{}`", python.display()))?;
    anyhow::ensure!(
        probe.status.success(),
        "the interpreter `{}` failed: {}",
        python.display(),
        String::from_utf8_lossy(&probe.stderr).trim()
    );
    let identity = String::from_utf8_lossy(&probe.stdout).trim().to_owned();
    let executable = PathBuf::from(identity.lines().next().unwrap_or_default());
    let uv = which("uv");
    let installer = match &uv {
        Some(uv) => {
            let version = Command::new(uv).arg("--version").output();
            // `uv 0.13.9 (...)`: the version is part of the key.
            version.map_or_else(
                |_| "uv".to_owned(),
                |o| String::from_utf8_lossy(&o.stdout).trim().to_owned(),
            )
        }
        None => "venv+pip".to_owned(),
    };
    let spec = EnsureSpec {
        key_files: requirements.to_vec(),
        texts: vec!["envstore-venv-1".to_owned(), identity, installer.clone()],
        argv: vec!["envstore".into(), "venv".into()],
        name,
        relocate: true,
        policy,
        ..EnsureSpec::default()
    };
    let mut build = |out: &Path| -> envstore::Result<()> {
        printer.info(format_args!("building a venv with {installer}"));
        let out_os = out.as_os_str().to_owned();
        let reqs = requirements
            .iter()
            .flat_map(|r| ["-r".into(), r.as_os_str().to_owned()]);
        match &uv {
            Some(uv) => {
                let create = [
                    uv.as_os_str().into(),
                    "venv".into(),
                    "--quiet".into(),
                    "--python".into(),
                    executable.as_os_str().into(),
                    out_os.clone(),
                ];
                run_step(&create, out)?;
                if !requirements.is_empty() {
                    let py = out.join("bin/python");
                    let mut install: Vec<OsString> = vec![
                        uv.as_os_str().into(),
                        "pip".into(),
                        "install".into(),
                        "--quiet".into(),
                        "--python".into(),
                        py.into(),
                    ];
                    install.extend(reqs);
                    run_step(&install, out)?;
                }
            }
            None => {
                run_step(
                    &[
                        executable.as_os_str().into(),
                        "-m".into(),
                        "venv".into(),
                        out_os.clone(),
                    ],
                    out,
                )?;
                if !requirements.is_empty() {
                    let mut install: Vec<OsString> = vec![
                        out.join("bin/python").into(),
                        "-m".into(),
                        "pip".into(),
                        "install".into(),
                        "--quiet".into(),
                    ];
                    install.extend(reqs);
                    run_step(&install, out)?;
                }
            }
        }
        Ok(())
    };
    run_ensure(store, &spec, &mut build, printer)
}

/// A program on PATH.
fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.is_file())
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
