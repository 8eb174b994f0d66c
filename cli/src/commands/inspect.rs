//! `ls`, `show`, `diff`, `path`, `stats`: reading the store, never changing it (beyond
//! recording a use, and healing the index).

use std::process::ExitCode;

use envstore::{Change, Filter, SnapshotInfo, Store};
use serde_json::{Value, json};

use crate::printer::{Printer, ago, human_bytes, quote, table, utc_time};

fn info_json(info: &SnapshotInfo) -> Value {
    json!({
        "id": info.id.to_hex(),
        "pins": info.pins,
        "files": info.meta.files,
        "dirs": info.meta.dirs,
        "symlinks": info.meta.symlinks,
        "bytes": info.meta.bytes,
        "created": info.meta.created,
        "last_used": info.last_used,
        "materialized": info.materialized,
        "packed": info.meta.packed > 0,
        "source": info.meta.source,
    })
}

pub fn ls(store: &Store, printer: &Printer) -> anyhow::Result<ExitCode> {
    let list = store.list()?;
    if printer.json() {
        printer.json_value(&Value::Array(list.iter().map(info_json).collect()));
        return Ok(ExitCode::SUCCESS);
    }
    if list.is_empty() {
        printer.info("the store is empty; `envstore ingest DIR` adds a snapshot");
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = vec![
        [
            "ID",
            "PINS",
            "FILES",
            "SIZE",
            "CREATED",
            "LAST USED",
            "STATE",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for info in &list {
        rows.push(vec![
            info.id.short(),
            if info.pins.is_empty() {
                "-".to_owned()
            } else {
                info.pins.join(",")
            },
            info.meta.files.to_string(),
            human_bytes(info.meta.bytes),
            utc_time(info.meta.created),
            ago(info.last_used),
            match (info.materialized, info.meta.packed > 0) {
                (true, _) => "materialized",
                (false, true) => "packed",
                (false, false) => "stored",
            }
            .to_owned(),
        ]);
    }
    printer.raw(&table(&rows));
    Ok(ExitCode::SUCCESS)
}

pub fn show(
    store: &Store,
    spec: &str,
    filter: &Filter,
    printer: &Printer,
) -> anyhow::Result<ExitCode> {
    let source = store.resolve(spec)?;
    let id = store.identify(&source, filter)?;
    if !store.has_snapshot(&id) {
        anyhow::bail!(
            "{spec} hashes to {id}, which is not in the store; `envstore ingest {spec}` stores it"
        );
    }
    let detail = store.show(&id)?;
    let info = &detail.info;
    if printer.json() {
        let mut value = info_json(info);
        value["unique_bytes"] = json!(detail.unique_bytes);
        value["path"] = json!(info.materialized.then_some(&detail.path));
        value["link_mode"] = json!(detail.link_mode);
        printer.json_value(&value);
        return Ok(ExitCode::SUCCESS);
    }
    let materialized = if info.materialized {
        format!(
            "{} ({})",
            detail.path.display(),
            detail.link_mode.as_deref().unwrap_or("link mode unknown")
        )
    } else {
        "no".to_owned()
    };
    let rows = [
        ["id", &info.id.to_hex()],
        [
            "pins",
            &if info.pins.is_empty() {
                "-".to_owned()
            } else {
                info.pins.join(", ")
            },
        ],
        [
            "files",
            &format!(
                "{} ({} directories, {} symlinks)",
                info.meta.files, info.meta.dirs, info.meta.symlinks
            ),
        ],
        ["size", &human_bytes(info.meta.bytes)],
        [
            "unique",
            &format!(
                "{} (stored for this snapshot only)",
                human_bytes(detail.unique_bytes)
            ),
        ],
        [
            "created",
            &format!(
                "{} UTC ({})",
                utc_time(info.meta.created),
                ago(info.meta.created)
            ),
        ],
        ["last used", &ago(info.last_used)],
        ["materialized", &materialized],
        [
            "packed",
            &if info.meta.packed > 0 {
                format!(
                    "{} UTC (in the cold tier; materializing rehydrates it)",
                    utc_time(info.meta.packed)
                )
            } else {
                "no".to_owned()
            },
        ],
        ["ingested from", &info.meta.source],
    ]
    .map(|r| r.map(str::to_owned).to_vec());
    printer.raw(&table(&rows));
    Ok(ExitCode::SUCCESS)
}

/// A file's size, or what kind of entry it is.
fn size_or_kind(kind: envstore::Kind, size: u64) -> String {
    if kind == envstore::Kind::File {
        human_bytes(size)
    } else {
        kind.as_str().to_owned()
    }
}

fn lossy(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

pub fn diff(
    store: &Store,
    old: &str,
    new: &str,
    filter: &Filter,
    printer: &Printer,
) -> anyhow::Result<ExitCode> {
    let changes = store.diff(&store.resolve(old)?, &store.resolve(new)?, filter)?;
    if printer.json() {
        let list: Vec<Value> = changes
            .iter()
            .map(|c| match c {
                Change::Added { path, kind, size } => json!({"change": "added", "path": lossy(path), "kind": kind.as_str(), "size": size}),
                Change::Removed { path, kind, size } => json!({"change": "removed", "path": lossy(path), "kind": kind.as_str(), "size": size}),
                Change::Modified { path, old_size, new_size } => json!({"change": "modified", "path": lossy(path), "old_size": old_size, "new_size": new_size}),
                Change::Mode { path, executable } => json!({"change": "mode", "path": lossy(path), "executable": executable}),
                Change::Symlink { path, old_target, new_target } => json!({"change": "symlink", "path": lossy(path), "old_target": lossy(old_target), "new_target": lossy(new_target)}),
                Change::Kind { path, old, new } => json!({"change": "kind", "path": lossy(path), "old": old.as_str(), "new": new.as_str()}),
            })
            .collect();
        printer.json_value(&Value::Array(list));
        return Ok(ExitCode::SUCCESS);
    }
    let (mut added, mut removed, mut modified) = (0, 0, 0);
    for change in &changes {
        let line = match change {
            Change::Added { path, kind, size } => {
                added += 1;
                format!("+ {} ({})", quote(path), size_or_kind(*kind, *size))
            }
            Change::Removed { path, kind, size } => {
                removed += 1;
                format!("- {} ({})", quote(path), size_or_kind(*kind, *size))
            }
            Change::Modified {
                path,
                old_size,
                new_size,
            } => {
                modified += 1;
                format!(
                    "M {} ({} -> {})",
                    quote(path),
                    human_bytes(*old_size),
                    human_bytes(*new_size)
                )
            }
            Change::Mode { path, executable } => {
                modified += 1;
                format!(
                    "X {} ({})",
                    quote(path),
                    if *executable {
                        "now executable"
                    } else {
                        "no longer executable"
                    }
                )
            }
            Change::Symlink {
                path,
                old_target,
                new_target,
            } => {
                modified += 1;
                format!(
                    "L {} ({} -> {})",
                    quote(path),
                    quote(old_target),
                    quote(new_target)
                )
            }
            Change::Kind { path, old, new } => {
                modified += 1;
                format!("T {} ({} -> {})", quote(path), old.as_str(), new.as_str())
            }
        };
        printer.data(&line);
    }
    printer.info(format_args!(
        "{added} added, {removed} removed, {modified} changed"
    ));
    Ok(ExitCode::SUCCESS)
}

pub fn path(
    store: &Store,
    spec: &str,
    filter: &Filter,
    printer: &Printer,
) -> anyhow::Result<ExitCode> {
    let id = store.identify(&store.resolve(spec)?, filter)?;
    if !store.is_materialized(&id) {
        printer.info(format_args!(
            "{spec} is not materialized; `envstore materialize {spec}` lays it out"
        ));
        return Ok(ExitCode::from(1));
    }
    store.touch(&id);
    if printer.json() {
        printer.json_value(&json!({"id": id.to_hex(), "path": store.env_path(&id)}));
    } else {
        printer.data(&store.env_path(&id).to_string_lossy());
    }
    Ok(ExitCode::SUCCESS)
}

pub fn stats(store: &Store, printer: &Printer) -> anyhow::Result<ExitCode> {
    let s = store.stats()?;
    if printer.json() {
        let links: serde_json::Map<String, Value> = s
            .link_support
            .iter()
            .map(|(m, r)| {
                (
                    m.as_str().to_owned(),
                    json!({"supported": r.is_ok(), "error": r.as_ref().err()}),
                )
            })
            .collect();
        printer.json_value(&json!({
            "store": store.root(),
            "snapshots": s.snapshots, "materialized": s.materialized, "pins": s.pins,
            "packed_snapshots": s.packed_snapshots,
            "objects": s.objects, "trees": s.trees,
            "logical_bytes": s.logical_bytes,
            "loose_bytes": s.object_bytes, "object_bytes": s.object_bytes,
            "packs": s.packs, "packed_bytes": s.pack_bytes,
            "chunks": s.chunks, "chunk_bytes": s.chunk_bytes,
            "disk_bytes": s.disk_bytes,
            "remote_cache_files": s.remote_cache_files,
            "remote_cache_bytes": s.remote_cache_bytes,
            "dedup_ratio": s.dedup_ratio(), "compression_ratio": s.compression_ratio(),
            "total_ratio": s.total_ratio(),
            "link_modes": links,
        }));
        return Ok(ExitCode::SUCCESS);
    }
    let links = s
        .link_support
        .iter()
        .map(|(m, r)| match r {
            Ok(()) => format!("{m}: yes"),
            Err(e) => format!("{m}: no ({e})"),
        })
        .collect::<Vec<_>>()
        .join(", ");
    let rows = [
        ["store", &store.root().display().to_string()],
        [
            "snapshots",
            &format!(
                "{} ({} materialized, {} packed, {} pins)",
                s.snapshots, s.materialized, s.packed_snapshots, s.pins
            ),
        ],
        [
            "logical size",
            &format!(
                "{} (all snapshots as plain copies)",
                human_bytes(s.logical_bytes)
            ),
        ],
        [
            "loose",
            &format!(
                "{} in {} objects, {} trees",
                human_bytes(s.object_bytes),
                s.objects,
                s.trees
            ),
        ],
        [
            "packed",
            &format!(
                "{} in {} packs ({} chunks, {} uncompressed)",
                human_bytes(s.pack_bytes),
                s.packs,
                s.chunks,
                human_bytes(s.chunk_bytes)
            ),
        ],
        ["on disk", &human_bytes(s.disk_bytes)],
        [
            "remote cache",
            &format!(
                "{} in {} pack indexes (prune keeps it under 256 MiB)",
                human_bytes(s.remote_cache_bytes),
                s.remote_cache_files
            ),
        ],
        [
            "ratios",
            &format!(
                "dedup {:.2}x, compression {:.2}x, overall {:.2}x",
                s.dedup_ratio(),
                s.compression_ratio(),
                s.total_ratio()
            ),
        ],
        ["link modes", &links],
        [
            "to empty it",
            "`envstore prune --all` (keeps what is in use), or `rm -rf` the store directory",
        ],
    ]
    .map(|r| r.map(str::to_owned).to_vec());
    printer.raw(&table(&rows));
    Ok(ExitCode::SUCCESS)
}
