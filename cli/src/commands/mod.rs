mod archive;
mod doctor;
mod ensure;
mod gc;
mod ingest;
mod inspect;
mod materialize;
mod pin;
mod remote;
mod roots;
mod run;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use envstore::{Filter, Store, StoreOptions};

use crate::cli::{Cli, Command, FilterArgs};
use crate::printer::Printer;

pub fn run(cli: Cli, printer: &Printer) -> anyhow::Result<ExitCode> {
    if let Command::Completions { shell } = cli.command {
        let mut cmd = <Cli as clap::CommandFactory>::command();
        // Into a buffer, then out through the printer: a closed pipe (`| head -1`) ends
        // quietly instead of panicking inside clap_complete's writes.
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut cmd, "envstore", &mut script);
        printer.raw(&String::from_utf8_lossy(&script));
        return Ok(ExitCode::SUCCESS);
    }
    let mut store = open_store(&cli)?;
    if let Some(progress) = printer.progress() {
        store.set_progress(progress);
    }
    let store = store;
    let result = run_command(&store, cli.command, printer);
    // Damage found and worked around (a damaged pin, a rebuilt index) is said, not hidden.
    for warning in store.take_warnings() {
        printer.warn(&warning);
        if let Some(hint) = &warning.hint {
            printer.hint(hint);
        }
    }
    result
}

fn run_command(store: &Store, command: Command, printer: &Printer) -> anyhow::Result<ExitCode> {
    match command {
        Command::Ingest {
            dir,
            by_records,
            keys,
            filter,
        } => {
            let records = by_records.then_some(keys.as_slice());
            ingest::run(store, &dir, &filter.build()?, records, printer)
        }
        Command::Materialize {
            source,
            link_mode,
            filter,
        } => materialize::run(store, &source, &filter.build()?, link_mode.into(), printer),
        Command::Pin {
            name,
            source,
            filter,
        } => pin::pin(store, &name, &source, &filter.build()?, printer),
        Command::Unpin { name } => pin::unpin(store, &name, printer),
        Command::Ls => inspect::ls(store, printer),
        Command::Show { source, filter } => {
            inspect::show(store, &source, &filter.build()?, printer)
        }
        Command::Diff { old, new, filter } => {
            inspect::diff(store, &old, &new, &filter.build()?, printer)
        }
        Command::Path { source, filter } => {
            inspect::path(store, &source, &filter.build()?, printer)
        }
        Command::Stats => inspect::stats(store, printer),
        Command::Run {
            source,
            root,
            command,
            link_mode,
            filter,
        } => run::run(
            store,
            &source,
            root.as_deref(),
            &command,
            &filter.build()?,
            link_mode.into(),
            printer,
        ),
        Command::Ensure {
            key_files,
            keys,
            key_env,
            name,
            relocate,
            link_mode,
            command,
        } => ensure::ensure(
            store,
            &envstore::EnsureSpec {
                key_files,
                texts: keys,
                env: key_env,
                argv: command,
                name,
                relocate,
                policy: link_mode.into(),
            },
            printer,
        ),
        Command::Venv {
            requirements,
            python,
            name,
            link_mode,
        } => ensure::venv(
            store,
            &requirements,
            python,
            name,
            link_mode.into(),
            printer,
        ),
        Command::Keys => ensure::keys(store, printer),
        Command::Explain { name } => ensure::explain(store, &name, printer),
        Command::Pack { sources } => gc::pack(store, &sources, printer),
        Command::Prune {
            all: true, dry_run, ..
        } => gc::prune_all(store, dry_run, printer),
        Command::Prune {
            older_than,
            max_size,
            pack_older_than,
            dry_run,
            ..
        } => gc::prune(
            store,
            &envstore::PruneOptions {
                older_than,
                max_size,
                pack_older_than,
                only: None,
            },
            dry_run,
            printer,
        ),
        Command::Verify { source, repair } => gc::verify(store, source.as_deref(), repair, printer),
        Command::Export {
            source,
            output,
            format,
            filter,
        } => archive::export(store, &source, &output, format, &filter.build()?, printer),
        Command::Import {
            file,
            name,
            max_size,
        } => archive::import(store, &file, name.as_deref(), max_size, printer),
        Command::Doctor { dir } => doctor::doctor(store, dir.as_deref(), printer),
        Command::Rm {
            sources,
            force,
            dry_run,
        } => gc::rm(store, &sources, force, dry_run, printer),
        Command::Root(crate::cli::RootCommand::Add { dir, sources }) => {
            roots::add(store, &dir, &sources, printer)
        }
        Command::Roots { scan, add } => roots::roots(store, &scan, add, printer),
        Command::Push {
            sources,
            to,
            name,
            sign,
            filter,
        } => remote::push(
            store,
            &sources,
            to.as_deref(),
            name.as_deref(),
            sign.as_deref(),
            &filter.build()?,
            printer,
        ),
        Command::Pull { sources, from, pin } => {
            remote::pull(store, &sources, from.as_deref(), pin, printer)
        }
        Command::Remote(command) => remote::remote(store, command, printer),
        Command::Key(command) => remote::key(command, printer),
        Command::Completions { .. } => unreachable!("handled before opening the store"),
    }
}

fn open_store(cli: &Cli) -> anyhow::Result<Store> {
    let root = match &cli.store {
        Some(dir) if dir.as_os_str().is_empty() => {
            bail!("--store (or ENVSTORE_DIR) is empty; give a directory")
        }
        Some(dir) => dir.clone(),
        None => envstore::default_store_path().context(
            "cannot find a store directory: set --store, ENVSTORE_DIR, XDG_CACHE_HOME or HOME",
        )?,
    };
    let mut options = StoreOptions {
        // verify reports store directories replaced by links, and --repair replaces them;
        // every other command refuses such a store.
        allow_damage: matches!(cli.command, Command::Verify { .. }),
        ..StoreOptions::default()
    };
    if let Some(value) = std::env::var_os("ENVSTORE_LOCK_TIMEOUT") {
        let value = value.to_string_lossy();
        options.lock_timeout = value
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
            .with_context(|| {
                format!(
                    "ENVSTORE_LOCK_TIMEOUT=`{}` is not a number of seconds (like 60 or 2.5)",
                    value.escape_debug()
                )
            })?;
    }
    Ok(Store::open(&root, options)?)
}

impl FilterArgs {
    pub fn build(&self) -> anyhow::Result<Filter> {
        Ok(Filter::new(!self.no_default_excludes, &self.exclude)?.relocating(self.relocate))
    }
}
