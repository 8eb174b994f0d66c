//! `pack`, `prune` and `verify`.

use std::process::ExitCode;

use envstore::{Filter, PackReport, PruneOptions, Reason, Source, Store};
use serde_json::json;

use crate::printer::{Printer, ago, human_bytes};

pub fn pack(store: &Store, sources: &[String], printer: &Printer) -> anyhow::Result<ExitCode> {
    let mut ids = Vec::new();
    for spec in sources {
        match store.resolve(spec)? {
            Source::Snapshot(id) => ids.push(id),
            Source::Dir(dir) => anyhow::bail!(
                "{} is a directory; pack takes snapshots (ids, prefixes or pins): \
                 `envstore ingest {}` stores it first",
                dir.display(),
                dir.display()
            ),
        }
    }
    let report = store.pack(&ids)?;
    if printer.json() {
        printer.json_value(&pack_json(&report));
        return Ok(ExitCode::SUCCESS);
    }
    for id in &report.kept_materialized {
        printer.info(format_args!(
            "{} is materialized: packed, but its files stay loose while {} exists",
            id.short(),
            store.env_path(id).display()
        ));
    }
    print_pack(&report, printer);
    Ok(ExitCode::SUCCESS)
}

fn pack_json(r: &PackReport) -> serde_json::Value {
    json!({
        "snapshots": r.snapshots.iter().map(|id| id.to_hex()).collect::<Vec<_>>(),
        "objects": r.objects, "object_bytes": r.object_bytes,
        "new_chunks": r.new_chunks, "new_chunk_bytes": r.new_chunk_bytes,
        "packs": r.packs.iter().map(|id| id.to_hex()).collect::<Vec<_>>(),
        "pack_bytes": r.pack_bytes,
        "freed_objects": r.freed_objects, "freed_bytes": r.freed_bytes,
        "kept_materialized": r.kept_materialized.iter().map(|id| id.to_hex()).collect::<Vec<_>>(),
        "recovered_packs": r.recovered_packs,
    })
}

fn print_pack(r: &PackReport, printer: &Printer) {
    if r.recovered_packs > 0 {
        printer.info(format_args!(
            "indexed {} packs left by an interrupted pack",
            r.recovered_packs
        ));
    }
    printer.info(format_args!(
        "packed {} snapshots: {} new objects ({}) -> {} new chunks ({}) in {} packs ({}); freed {} loose objects ({})",
        r.snapshots.len(),
        r.objects,
        human_bytes(r.object_bytes),
        r.new_chunks,
        human_bytes(r.new_chunk_bytes),
        r.packs.len(),
        human_bytes(r.pack_bytes),
        r.freed_objects,
        human_bytes(r.freed_bytes),
    ));
}

pub fn prune(
    store: &Store,
    options: &PruneOptions,
    dry_run: bool,
    printer: &Printer,
) -> anyhow::Result<ExitCode> {
    let plan = if dry_run {
        store.prune_plan(options)?
    } else {
        store.prune(options)?
    };
    let verb = if dry_run { "would remove" } else { "removed" };
    if printer.json() {
        printer.json_value(&json!({
            "dry_run": dry_run,
            "removed": plan.remove.iter().map(|r| json!({
                "id": r.id.to_hex(), "last_used": r.last_used, "bytes": r.bytes,
                "materialized": r.materialized,
                "reason": match r.reason { Reason::Unused => "unused", Reason::Size => "size" },
            })).collect::<Vec<_>>(),
            "leased": plan.leased.iter().map(|id| id.to_hex()).collect::<Vec<_>>(),
            "kept": plan.kept,
            "kept_because": plan.kept_because.iter().map(|(id, why)| json!({
                "id": id.to_hex(), "reason": kept_reason(why),
            })).collect::<Vec<_>>(),
            "unreferenced_files": plan.unreferenced,
            "leftovers": plan.leftovers,
            "size_before": plan.size_before,
            "size_after": plan.size_after,
            "freed_bytes": plan.freed_bytes(),
            "size_unmet": plan.size_unmet,
            "packs_removed": plan.packs.removed.iter().map(|id| id.to_hex()).collect::<Vec<_>>(),
            "packs_rewritten": plan.packs.rewritten.iter().map(|id| id.to_hex()).collect::<Vec<_>>(),
            "pack_bytes_before": plan.packs.bytes_before,
            "pack_bytes_after": plan.packs.bytes_after,
            "remote_cache_removed": plan.remote_cache_removed.0,
            "remote_cache_removed_bytes": plan.remote_cache_removed.1,
            "to_pack": plan.to_pack.iter().map(|id| id.to_hex()).collect::<Vec<_>>(),
            "packed": plan.packed.as_ref().map(pack_json),
            "rooted": plan.rooted.iter().map(|(id, dir)| json!({"id": id.to_hex(), "dir": dir})).collect::<Vec<_>>(),
            "dead_roots": plan.dead_roots.iter().map(|(dir, id, why)| json!({"dir": dir, "id": id.to_hex(), "reason": why})).collect::<Vec<_>>(),
        }));
    } else {
        for r in &plan.remove {
            let why = match r.reason {
                Reason::Unused => format!("last used {}", ago(r.last_used)),
                Reason::Size => format!("last used {}, to meet --max-size", ago(r.last_used)),
            };
            printer.data(&format!(
                "{verb} {} ({}, {why}{})",
                r.id.short(),
                human_bytes(r.bytes),
                if r.materialized { ", materialized" } else { "" }
            ));
        }
        for id in &plan.leased {
            printer.info(format_args!("kept {}: in use (leased)", id.short()));
        }
        // Why the rest stays: said on a dry run (the question it answers), with -v otherwise.
        for (id, why) in &plan.kept_because {
            let line = format!("kept {}: {}", id.short(), kept_reason(why));
            if dry_run {
                printer.info(line);
            } else {
                printer.detail(line);
            }
        }
        let dropped = if dry_run { "would drop" } else { "dropped" };
        for (dir, id, why) in &plan.dead_roots {
            printer.info(format_args!(
                "{dropped} the root {} for {}: {why}",
                dir.display(),
                id.short()
            ));
        }
        printer.info(format_args!(
            "{verb} {} snapshots, {} unreferenced objects and trees, {} leftovers; {} freed ({} -> {}); {} snapshots kept",
            plan.remove.len(),
            plan.unreferenced,
            plan.leftovers.len(),
            human_bytes(plan.freed_bytes()),
            human_bytes(plan.size_before),
            human_bytes(plan.size_after),
            plan.kept
        ));
        if !plan.packs.removed.is_empty() || !plan.packs.rewritten.is_empty() {
            printer.info(format_args!(
                "{verb} {} packs and rewrote {} (packs: {} -> {})",
                plan.packs.removed.len(),
                plan.packs.rewritten.len(),
                human_bytes(plan.packs.bytes_before),
                human_bytes(plan.packs.bytes_after),
            ));
        }
        if plan.remote_cache_removed.0 > 0 {
            printer.info(format_args!(
                "{verb} {} cached remote pack indexes ({})",
                plan.remote_cache_removed.0,
                human_bytes(plan.remote_cache_removed.1)
            ));
        }
        match &plan.packed {
            Some(report) => print_pack(report, printer),
            None if !plan.to_pack.is_empty() => printer.info(format_args!(
                "would pack {} snapshots unused for --pack-older-than",
                plan.to_pack.len()
            )),
            None => {}
        }
    }
    if plan.size_unmet {
        printer.warn(format_args!(
            "the store is still larger than --max-size: what is left is pinned, in use, or used by \
             a live build directory ({} roots keep {}; `envstore roots` lists them)",
            plan.rooted.len(),
            plan.rooted
                .iter()
                .map(|(id, _)| id.short())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn verify(
    store: &Store,
    source: Option<&str>,
    repair: bool,
    printer: &Printer,
) -> anyhow::Result<ExitCode> {
    let only = match source {
        Some(spec) => Some(store.identify(&store.resolve(spec)?, &Filter::default())?),
        None => None,
    };
    if only.as_ref().is_some_and(|id| !store.has_snapshot(id)) {
        anyhow::bail!(
            "{} is not in the store; `envstore ls` lists what is",
            source.unwrap_or_default()
        );
    }
    let report = store.verify(only.as_ref(), repair)?;
    if printer.json() {
        printer.json_value(&json!({
            "ok": report.ok(repair),
            "problems": report.problems.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
            "leftovers": report.leftovers,
            "repaired": report.repaired,
            "unrepaired": report.unrepaired.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
            "lost": report.lost,
            "snapshots": report.snapshots, "objects": report.objects, "materializations": report.materializations,
            "packs": report.packs, "packed_objects": report.packed_objects,
        }));
    } else {
        for problem in &report.problems {
            printer.data(&format!("damaged: {problem}"));
        }
        for line in &report.repaired {
            printer.info(format_args!("repaired: {line}"));
        }
        for line in &report.lost {
            printer.warn(format_args!("lost: {line}"));
        }
        for problem in &report.unrepaired {
            printer.info(format_args!(
                "cannot repair: {problem}; re-ingest it from its source, or unpin and prune it"
            ));
        }
        if !report.leftovers.is_empty() && !repair {
            printer.info(format_args!(
                "{} leftovers of interrupted work (harmless; `envstore prune` or `verify --repair` removes them)",
                report.leftovers.len()
            ));
        }
        printer.info(format_args!(
            "checked {} snapshots, {} objects, {} materializations, {} packs ({} objects only in packs): {}",
            report.snapshots,
            report.objects,
            report.materializations,
            report.packs,
            report.packed_objects,
            if report.ok(repair) {
                "ok"
            } else {
                "problems found"
            }
        ));
    }
    Ok(if report.ok(repair) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn kept_reason(why: &envstore::Kept) -> String {
    match why {
        envstore::Kept::Pinned(name) => format!("pinned as {name}"),
        envstore::Kept::KeyName(name) => format!("the newest build of the key name {name}"),
        envstore::Kept::Rooted(dir) => {
            format!(
                "the build directory {} uses it (a live root)",
                dir.display()
            )
        }
        envstore::Kept::Recent { last_used } => format!("used {}", ago(*last_used)),
        envstore::Kept::DamagedPin(name) => {
            format!("the damaged pin {name} could name it")
        }
    }
}

/// `envstore rm SOURCE... [--dry-run] [--force]`.
pub fn rm(
    store: &Store,
    sources: &[String],
    force: bool,
    dry_run: bool,
    printer: &Printer,
) -> anyhow::Result<ExitCode> {
    let mut ids = Vec::new();
    for spec in sources {
        match store.resolve(spec)? {
            Source::Snapshot(id) => ids.push(id),
            Source::Dir(dir) => {
                let id = store.identify(&Source::Dir(dir.clone()), &Filter::default())?;
                if !store.has_snapshot(&id) {
                    anyhow::bail!("{} is not in the store (as {})", dir.display(), id.short());
                }
                ids.push(id);
            }
        }
    }
    let report = store.rm(&ids, force, dry_run)?;
    let plan = &report.plan;
    let verb = if dry_run { "would remove" } else { "removed" };
    if printer.json() {
        printer.json_value(&json!({
            "dry_run": dry_run,
            "removed": plan.remove.iter().map(|r| r.id.to_hex()).collect::<Vec<_>>(),
            "in_use": report.in_use.iter().map(|(id, lease, holders)| json!({
                "id": id.to_hex(), "lease": lease, "holders": holders,
            })).collect::<Vec<_>>(),
            "unpinned": report.unpinned,
            "unrooted": report.unrooted,
            "unreferenced_files": plan.unreferenced,
            "freed_bytes": plan.freed_bytes(),
        }));
    } else {
        for r in &plan.remove {
            printer.data(&format!("{verb} {}", r.id.short()));
        }
        for name in &report.unpinned {
            printer.info(format_args!(
                "{} the pin {name}",
                if dry_run { "would remove" } else { "removed" }
            ));
        }
        printer.info(format_args!(
            "{verb} {} snapshots and {} objects and trees only they used; {} of store space \
             freed (what other snapshots share stays)",
            plan.remove.len(),
            plan.unreferenced,
            human_bytes(plan.freed_bytes())
        ));
    }
    if report.in_use.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    let mut message = String::from("not removed, in use:");
    for (id, lease, holders) in &report.in_use {
        message.push_str(&format!(
            "\n  {}: a process holds its lease {}{}",
            id.short(),
            lease.display(),
            if holders.is_empty() {
                String::new()
            } else {
                format!(" ({})", holders.join(", "))
            }
        ));
    }
    message.push_str("\nretry when it ends (envstore never removes an environment in use)");
    anyhow::bail!(message)
}

/// `envstore prune --all`: everything not in use goes.
pub fn prune_all(store: &Store, dry_run: bool, printer: &Printer) -> anyhow::Result<ExitCode> {
    let report = store.prune_all(dry_run)?;
    let verb = if dry_run { "would remove" } else { "removed" };
    if printer.json() {
        printer.json_value(&json!({
            "dry_run": dry_run,
            "removed": report.plan.remove.iter().map(|r| r.id.to_hex()).collect::<Vec<_>>(),
            "in_use": report.in_use.iter().map(|(id, _, _)| id.to_hex()).collect::<Vec<_>>(),
            "freed_bytes": report.plan.freed_bytes(),
        }));
    } else {
        printer.info(format_args!(
            "{verb} {} snapshots ({} pins, {} roots); {} freed; {} in use kept",
            report.plan.remove.len(),
            report.unpinned.len(),
            report.unrooted.len(),
            human_bytes(report.plan.freed_bytes()),
            report.in_use.len()
        ));
        printer.info(format_args!(
            "the store itself is {}; `rm -rf` of that directory (it has a CACHEDIR.TAG) removes it entirely",
            store.root().display()
        ));
    }
    Ok(ExitCode::SUCCESS)
}
