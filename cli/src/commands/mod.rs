mod ingest;
mod materialize;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use envstore::{Filter, Store, StoreOptions};

use crate::cli::{Cli, Command, FilterArgs};
use crate::printer::Printer;

pub fn run(cli: Cli, printer: &Printer) -> anyhow::Result<ExitCode> {
    let store = open_store(&cli)?;
    match cli.command {
        Command::Ingest { dir, filter } => ingest::run(&store, &dir, &filter.build()?, printer),
        Command::Materialize {
            source,
            link_mode,
            filter,
        } => materialize::run(&store, &source, &filter.build()?, link_mode.into(), printer),
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
    let mut options = StoreOptions::default();
    if let Some(value) = std::env::var_os("ENVSTORE_LOCK_TIMEOUT") {
        let value = value.to_string_lossy();
        let secs: f64 = value
            .parse()
            .ok()
            .filter(|s: &f64| s.is_finite() && *s >= 0.0)
            .with_context(|| {
                format!("ENVSTORE_LOCK_TIMEOUT=`{value}` is not a number of seconds")
            })?;
        options.lock_timeout = Duration::from_secs_f64(secs);
    }
    Ok(Store::open(&root, options)?)
}

impl FilterArgs {
    pub fn build(&self) -> anyhow::Result<Filter> {
        Ok(Filter::new(!self.no_default_excludes, &self.exclude)?)
    }
}
