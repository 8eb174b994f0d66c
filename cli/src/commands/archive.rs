//! `export` and `import`.

use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use envstore::{ArchiveFormat, Filter, Store};
use serde_json::json;

use crate::cli::FormatArg;
use crate::printer::Printer;

pub fn export(
    store: &Store,
    spec: &str,
    output: &Path,
    format: Option<FormatArg>,
    filter: &Filter,
    printer: &Printer,
) -> anyhow::Result<ExitCode> {
    let id = store.resolve_stored(spec, filter)?;
    let format = match format {
        Some(FormatArg::Tar) => ArchiveFormat::Tar,
        Some(FormatArg::TarZst) => ArchiveFormat::TarZst,
        None => ArchiveFormat::from_path(output),
    };
    let named = |e: envstore::Error| {
        anyhow::Error::new(e).context(format!("failed to export to {}", output.display()))
    };
    if output == Path::new("-") {
        let stdout = std::io::stdout().lock();
        store
            .export(&id, BufWriter::new(stdout), format)
            .map_err(named)?
            .flush()
            .map_err(|source| named(envstore::Error::Output { source }))?;
        return Ok(ExitCode::SUCCESS);
    }
    match Target::of(output) {
        // A device, a fifo, /dev/fd/N (or a link to one): written into. Replacing it by a
        // rename would destroy it (`-o /dev/null` as root once made /dev/null a regular file).
        Target::Special(path) => {
            let file = OpenOptions::new()
                .write(true)
                .open(&path)
                .with_context(|| format!("cannot open {} for writing", output.display()))?;
            let mut out = store
                .export(&id, BufWriter::new(file), format)
                .map_err(named)?;
            out.flush()
                .map_err(|source| named(envstore::Error::Output { source }))?;
        }
        // A regular file (new, or the target of a link): written beside it and renamed into
        // place, so there is never a half-written file under its name.
        Target::Regular(path) => {
            let dir = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
                _ => PathBuf::from("."),
            };
            let tmp = tempfile::Builder::new()
                .prefix(".envstore-export-")
                .tempfile_in(&dir)
                .with_context(|| format!("cannot write in {}", dir.display()))?;
            let file = store
                .export(&id, BufWriter::new(tmp.reopen()?), format)
                .map_err(named)?;
            let output_err = |source| named(envstore::Error::Output { source });
            let file = file.into_inner().map_err(|e| output_err(e.into_error()))?;
            // A temporary file is private (0600); an export is an ordinary file.
            file.set_permissions(std::fs::Permissions::from_mode(0o644))
                .map_err(output_err)?;
            file.sync_all().map_err(output_err)?;
            tmp.persist(&path)
                .with_context(|| format!("failed to write {}", output.display()))?;
        }
    }
    printer.info(format_args!(
        "exported {} to {}",
        id.short(),
        output.display()
    ));
    if printer.json() {
        printer.json_value(&json!({"id": id.to_hex(), "path": output}));
    }
    Ok(ExitCode::SUCCESS)
}

/// Where an export goes.
enum Target {
    /// A regular file (or none yet) at this path: written by temp file and rename.
    Regular(PathBuf),
    /// Something that is not a regular file: written into.
    Special(PathBuf),
}

impl Target {
    fn of(output: &Path) -> Target {
        // A link is resolved, so that its target is what gets written (or renamed over),
        // never the link replaced by a file.
        let resolved = match std::fs::symlink_metadata(output) {
            Ok(meta) if meta.file_type().is_symlink() => match output.canonicalize() {
                Ok(real) => real,
                // Dangling, or a magic link (/proc/self/fd/1): write through it.
                Err(_) => return Target::Special(output.to_owned()),
            },
            _ => output.to_owned(),
        };
        match std::fs::metadata(&resolved) {
            Ok(meta) if !meta.is_file() => Target::Special(resolved),
            _ => Target::Regular(resolved),
        }
    }
}

pub fn import(
    store: &Store,
    file: &Path,
    name: Option<&str>,
    limit: u64,
    printer: &Printer,
) -> anyhow::Result<ExitCode> {
    if let Some(name) = name {
        envstore::validate_pin_name(name)?;
    }
    let id = if file == Path::new("-") {
        store.import(std::io::stdin().lock(), limit, "import from stdin")?
    } else {
        let input = envstore_fs::open_stream(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let label = format!(
            "import of {}",
            std::path::absolute(file)
                .unwrap_or_else(|_| file.to_owned())
                .display()
        );
        store.import(std::io::BufReader::new(input), limit, &label)?
    };
    if let Some(name) = name {
        store.pin(name, &id)?;
        printer.info(format_args!(
            "imported {} and pinned it as {name}",
            id.short()
        ));
    }
    if printer.json() {
        printer.json_value(&json!({"id": id.to_hex(), "pin": name}));
    } else {
        printer.data(&id.to_hex());
    }
    Ok(ExitCode::SUCCESS)
}
