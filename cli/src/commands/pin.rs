use std::process::ExitCode;

use envstore::PinState;
use envstore::{Filter, Store, validate_pin_name};
use serde_json::json;

use crate::printer::Printer;

pub fn pin(
    store: &Store,
    name: &str,
    spec: &str,
    filter: &Filter,
    printer: &Printer,
) -> anyhow::Result<ExitCode> {
    // Check the name before doing any work (storing a directory can take a while).
    validate_pin_name(name)?;
    let (id, previous) = store.pin_source(name, spec, filter)?;
    match previous {
        Some(old) if old != id => printer.info(format_args!(
            "moved pin {name} from {} to {}",
            old.short(),
            id.short()
        )),
        Some(_) => printer.detail(format_args!("pin {name} already points at {id}")),
        None => printer.info(format_args!("pinned {} as {name}", id.short())),
    }
    if printer.json() {
        printer.json_value(
            &json!({"name": name, "id": id.to_hex(), "previous": previous.map(|p| p.to_hex())}),
        );
    } else {
        printer.data(&id.to_hex());
    }
    Ok(ExitCode::SUCCESS)
}

pub fn unpin(store: &Store, name: &str, printer: &Printer) -> anyhow::Result<ExitCode> {
    let target = store.unpin(name)?;
    match &target {
        PinState::Target(id) => {
            printer.info(format_args!("removed pin {name} (was {})", id.short()))
        }
        PinState::Damaged(reason) => {
            printer.info(format_args!("removed the damaged pin {name} ({reason})"))
        }
    }
    if printer.json() {
        let id = target.target().map(|id| id.to_hex());
        printer.json_value(&json!({"name": name, "id": id}));
    }
    Ok(ExitCode::SUCCESS)
}
