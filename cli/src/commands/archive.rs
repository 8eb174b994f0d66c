//! `export` and `import`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
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
    if output == Path::new("-") {
        let stdout = std::io::stdout().lock();
        store.export(&id, BufWriter::new(stdout), format)?.flush()?;
        return Ok(ExitCode::SUCCESS);
    }
    // Written beside the destination and renamed into place: never a half-written file.
    let dir = match output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".envstore-export-")
        .tempfile_in(dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    let file = store.export(&id, BufWriter::new(tmp.reopen()?), format)?;
    let file = file.into_inner().map_err(|e| e.into_error())?;
    // A temporary file is private (0600); an export is an ordinary file.
    file.set_permissions(std::fs::Permissions::from_mode(0o644))?;
    file.sync_all()?;
    tmp.persist(output)
        .with_context(|| format!("failed to write {}", output.display()))?;
    printer.info(format_args!(
        "exported {} to {}",
        &id.to_hex()[..12],
        output.display()
    ));
    if printer.json() {
        printer.json_value(&json!({"id": id.to_hex(), "path": output}));
    }
    Ok(ExitCode::SUCCESS)
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
        let input = File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
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
            &id.to_hex()[..12]
        ));
    }
    if printer.json() {
        printer.json_value(&json!({"id": id.to_hex(), "pin": name}));
    } else {
        printer.data(&id.to_hex());
    }
    Ok(ExitCode::SUCCESS)
}
