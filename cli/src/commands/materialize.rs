use std::process::ExitCode;

use envstore::{Filter, LinkPolicy, Source, Store};
use serde_json::json;

use crate::printer::Printer;

pub fn run(
    store: &Store,
    spec: &str,
    filter: &Filter,
    policy: LinkPolicy,
    printer: &Printer,
) -> anyhow::Result<ExitCode> {
    let source = store.resolve_or_fetch(spec)?;
    if let Source::Dir(dir) = &source {
        printer.detail(format_args!("hashing {}", dir.display()));
    }
    let done = store.materialize(&source, filter, policy)?;
    if let Some(ingest) = &done.ingest {
        super::ingest::describe(ingest, printer);
    }
    if let Some(link) = &done.link {
        let how = match &link.fallback {
            Some(reason) => format!("{} ({reason})", link.mode),
            None => link.mode.to_string(),
        };
        if done.created {
            printer.info(format_args!(
                "materialized {} with {how}",
                done.path.display()
            ));
        } else {
            printer.detail("another process materialized it first; using theirs");
        }
    } else {
        printer.detail(format_args!(
            "already materialized: {}",
            done.path.display()
        ));
    }
    if printer.json() {
        let link = done.link.as_ref();
        printer.json_value(&json!({
            "id": done.id.to_hex(),
            "store": store.root(),
            "path": done.path,
            "created": done.created,
            "link_mode": link.map(|l| l.mode.as_str()),
            "link_counts": link.map(|l| {
                l.counts.iter().map(|(m, n)| (m.as_str().to_owned(), json!(n))).collect::<serde_json::Map<_, _>>()
            }),
            "link_fallback": link.and_then(|l| l.fallback.clone()),
        }));
    } else {
        printer.data(&done.path.to_string_lossy());
    }
    Ok(ExitCode::SUCCESS)
}
