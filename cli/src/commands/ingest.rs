use std::path::Path;
use std::process::ExitCode;

use envstore::{Filter, IngestReport, Store};
use serde_json::json;

use crate::printer::{Printer, human_bytes};

pub fn run(
    store: &Store,
    dir: &Path,
    filter: &Filter,
    by_records: Option<&[String]>,
    printer: &Printer,
) -> anyhow::Result<ExitCode> {
    let (report, fast) = match by_records {
        Some(keys) => store.ingest_by_records(dir, filter, keys)?,
        None => (store.ingest(dir, filter)?, false),
    };
    if fast {
        printer.detail("confirmed by its RECORD files and metadata: nothing hashed");
    }
    describe(&report, printer);
    if printer.json() {
        printer.json_value(&json!({
            "id": report.id.to_hex(),
            "store": store.root(),
            "created": report.created,
            "files": report.stats.files,
            "dirs": report.stats.dirs,
            "symlinks": report.stats.symlinks,
            "bytes": report.stats.bytes,
            "excluded": report.stats.excluded,
            "new_objects": report.new_objects,
            "new_bytes": report.new_bytes,
            "relocated": report.relocated,
            "binary_with_prefix": report.binary_with_prefix,
            "by_records": fast,
        }));
    } else {
        printer.data(&report.id.to_hex());
    }
    Ok(ExitCode::SUCCESS)
}

/// The stderr summary of an ingest, shared with `materialize`.
pub fn describe(report: &IngestReport, printer: &Printer) {
    let s = &report.stats;
    if report.created {
        printer.info(format_args!(
            "stored {} files, {} ({} new objects, {} new)",
            s.files,
            human_bytes(s.bytes),
            report.new_objects,
            human_bytes(report.new_bytes)
        ));
    } else {
        printer.detail(format_args!(
            "the store already has this tree ({} files)",
            s.files
        ));
    }
    if !report.relocated.is_empty() {
        printer.detail(format_args!(
            "relocated {} files and symlinks",
            report.relocated.len()
        ));
    }
    if !report.binary_with_prefix.is_empty() {
        let first: Vec<String> = report
            .binary_with_prefix
            .iter()
            .take(3)
            .map(|p| p.display().to_string())
            .collect();
        printer.warn(format_args!(
            "{} binary files contain the directory's own path and were stored as they are, so this tree \
             gets another id at another path: {}{}",
            report.binary_with_prefix.len(),
            first.join(", "),
            if report.binary_with_prefix.len() > 3 { ", ..." } else { "" }
        ));
    }
    if let Some(warning) = &report.index_warning {
        printer.warn(format_args!(
            "the index was not updated ({warning}); it will be rebuilt"
        ));
    }
}
