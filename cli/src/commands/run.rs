use std::ffi::OsString;
use std::process::{Command, ExitCode};

use anyhow::Context;
use envstore::{Filter, LinkPolicy, Store};

use crate::printer::Printer;

/// `envstore run SOURCE -- CMD...`: materialize under a lease, run, pass the exit code on.
pub fn run(
    store: &Store,
    spec: &str,
    root: Option<&std::path::Path>,
    command: &[OsString],
    filter: &Filter,
    policy: LinkPolicy,
    printer: &Printer,
) -> anyhow::Result<ExitCode> {
    let source = store.resolve_or_fetch(spec)?;
    let (done, lease) = store.materialize_leased(&source, filter, policy)?;
    if let Some(dir) = root {
        store.root_add(dir, &[done.id])?;
        printer.detail(format_args!(
            "{} is a root of {}",
            dir.display(),
            done.id.short()
        ));
    }
    if done.created {
        printer.info(format_args!("materialized {}", done.path.display()));
    }
    // The command inherits the lease: it stays held while the command runs, even if envstore
    // itself is killed.
    lease.make_inheritable()?;
    let (program, args) = command.split_first().expect("clap requires a command");
    let status = Command::new(program)
        .args(args)
        .env("ENVSTORE_PATH", &done.path)
        .env("ENVSTORE_ID", done.id.to_hex())
        .status()
        .with_context(|| format!("failed to run `{}`", program.to_string_lossy()))?;
    drop(lease);
    Ok(match status.code() {
        Some(code) => ExitCode::from(code as u8),
        None => {
            use std::os::unix::process::ExitStatusExt;
            // Killed by a signal: the shell convention.
            ExitCode::from(128 + status.signal().unwrap_or(0) as u8)
        }
    })
}
