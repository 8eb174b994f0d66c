//! push, pull, remote and key: sharing environments through remotes.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use envstore::{Filter, RemotePruneOptions, SecretKey, Store};
use serde_json::json;

use crate::cli::{KeyCommand, RemoteCommand};
use crate::printer::{Printer, human_bytes};

pub fn push(
    store: &Store,
    sources: &[String],
    to: Option<&str>,
    name: Option<&str>,
    sign: Option<&Path>,
    filter: &Filter,
    printer: &Printer,
) -> anyhow::Result<ExitCode> {
    if name.is_some() && sources.len() != 1 {
        bail!("--name names one snapshot; give one SOURCE with it");
    }
    let key = sign.map(envstore::read_secret_key).transpose()?;
    let remote = store.remote(to)?;
    let mut reports = Vec::new();
    for spec in sources {
        let id = store.resolve_stored(spec, filter)?;
        let report = store.push(&remote, &id, name, key.as_ref())?;
        printer.info(format_args!(
            "pushed {} to {}: {} new chunks ({}) in {} packs ({}); it had {} directories whole \
             and {} files more",
            short(&id),
            remote.label(),
            report.new_chunks,
            human_bytes(report.new_chunk_bytes),
            report.packs.len(),
            human_bytes(report.pack_bytes),
            report.present_trees,
            report.reused_objects
        ));
        if report.keys > 0 {
            printer.detail(format_args!("published {} keys naming it", report.keys));
        }
        if let Some(r) = &report.ref_name {
            match &report.signed_by {
                Some(k) => printer.info(format_args!("ref {r} -> {} (signed by {k})", short(&id))),
                None => printer.info(format_args!("ref {r} -> {}", short(&id))),
            }
        }
        if !printer.json() {
            printer.data(&id.to_hex());
        }
        reports.push(report);
    }
    let counters = remote.counters();
    printer.detail(format_args!("{}: {counters}", remote.label()));
    if printer.json() {
        printer.json_value(&json!({
            "remote": remote.label(),
            "snapshots": reports.iter().map(|r| json!({
                "id": r.id.to_hex(),
                "packs": r.packs.iter().map(|p| p.to_hex()).collect::<Vec<_>>(),
                "pack_bytes": r.pack_bytes,
                "new_chunks": r.new_chunks,
                "new_chunk_bytes": r.new_chunk_bytes,
                "reused_objects": r.reused_objects,
                "present_trees": r.present_trees,
                "asked_trees": r.asked_trees,
                "present_objects": r.present_objects,
                "keys": r.keys,
                "ref": r.ref_name,
                "signed_by": r.signed_by,
            })).collect::<Vec<_>>(),
            "requests": counters.requests,
            "bytes_up": counters.bytes_up,
            "bytes_down": counters.bytes_down,
        }));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn pull(
    store: &Store,
    sources: &[String],
    from: Option<&str>,
    pin: bool,
    printer: &Printer,
) -> anyhow::Result<ExitCode> {
    if pin
        && let Some(id) = sources
            .iter()
            .find(|s| s.len() == 64 && s.parse::<envstore::SnapshotId>().is_ok())
    {
        bail!(
            "--pin pins a ref under its name, and {id} is a snapshot id: pull it, then \
             `envstore pin NAME {id}`"
        );
    }
    let remotes = store.remotes(from)?;
    if remotes.is_empty() {
        return Err(envstore::Error::NoRemotes.into());
    }
    let mut pulled = Vec::new();
    for spec in sources {
        let mut found = None;
        for remote in &remotes {
            let id = match spec.parse::<envstore::SnapshotId>() {
                Ok(id) if spec.len() == 64 => id,
                _ => match store.remote_ref(remote, spec) {
                    Ok(r) => r.snapshot,
                    Err(envstore::Error::RemoteMissing { .. }) if remotes.len() > 1 => continue,
                    Err(e) => return Err(e.into()),
                },
            };
            match store.pull(remote, &id) {
                Ok(report) => {
                    found = Some((remote, report));
                    break;
                }
                Err(envstore::Error::RemoteMissing { .. }) if remotes.len() > 1 => continue,
                Err(e) => return Err(e.into()),
            }
        }
        let Some((remote, report)) = found else {
            bail!(
                "no remote has `{spec}` ({}); give a full 64-digit snapshot id or a ref name",
                remotes
                    .iter()
                    .map(|r| r.label())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        };
        if report.already {
            printer.info(format_args!(
                "{} is in the store already",
                short(&report.id)
            ));
        } else {
            printer.info(format_args!(
                "pulled {} from {}: {} objects ({}) from {} fetched blocks ({}), {} chunks from local packs",
                short(&report.id),
                remote.label(),
                report.objects,
                human_bytes(report.object_bytes),
                report.blocks,
                human_bytes(report.fetched_bytes),
                report.local_chunks
            ));
        }
        printer.detail(format_args!("{}: {}", remote.label(), remote.counters()));
        if pin {
            match store.pin(spec, &report.id)? {
                Some(old) if old != report.id => printer.info(format_args!(
                    "pinned {spec} -> {} (was {})",
                    short(&report.id),
                    short(&old)
                )),
                _ => printer.info(format_args!("pinned {spec} -> {}", short(&report.id))),
            }
        }
        if !printer.json() {
            printer.data(&report.id.to_hex());
        }
        pulled.push((remote.label(), report, remote.counters()));
    }
    if printer.json() {
        printer.json_value(&json!(
            pulled
                .iter()
                .map(|(label, r, c)| json!({
                    "id": r.id.to_hex(),
                    "remote": label,
                    "already": r.already,
                    "objects": r.objects,
                    "object_bytes": r.object_bytes,
                    "blocks": r.blocks,
                    "fetched_bytes": r.fetched_bytes,
                    "local_chunks": r.local_chunks,
                    "requests": c.requests,
                    "bytes_down": c.bytes_down,
                }))
                .collect::<Vec<_>>()
        ));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn remote(
    store: &Store,
    command: RemoteCommand,
    printer: &Printer,
) -> anyhow::Result<ExitCode> {
    match command {
        RemoteCommand::Add { name, url, user } => {
            let entry = store.remote_add(scope(user), &name, &url)?;
            printer.info(format_args!(
                "added remote {} at {} (create-if-absent: {})",
                entry.name,
                entry.url,
                if entry.create_if_absent {
                    "yes"
                } else {
                    "no, not needed for correctness"
                }
            ));
        }
        RemoteCommand::Rm { name, user } => {
            store.remote_rm(scope(user), &name)?;
            printer.info(format_args!(
                "removed remote {name} (its content was not touched)"
            ));
        }
        RemoteCommand::Trust { key, user } => {
            store.trust_key(scope(user), &key, true)?;
            printer
                .info("trusted; refs pulled into this store must now be signed by a trusted key");
        }
        RemoteCommand::Untrust { key, user } => {
            store.trust_key(scope(user), &key, false)?;
            printer.info(format_args!("no longer trusting {key}"));
        }
        RemoteCommand::Ls { remote: None } => {
            let config = store.remote_config()?;
            if printer.json() {
                printer.json_value(&json!({
                    "remotes": config.remotes.iter().map(|r| json!({
                        "name": r.name, "url": r.url.to_string(), "create_if_absent": r.create_if_absent,
                    })).collect::<Vec<_>>(),
                    "trusted_keys": config.trusted_keys.iter().map(|k| k.to_string()).collect::<Vec<_>>(),
                }));
            } else {
                if config.remotes.is_empty() {
                    printer.info("no remotes; add one with `envstore remote add NAME URL`");
                }
                for r in &config.remotes {
                    printer.data(&format!("{}\t{}", r.name, r.url));
                }
                for k in &config.trusted_keys {
                    printer.data(&format!("trusted-key\t{k}"));
                }
            }
        }
        RemoteCommand::Ls { remote: Some(spec) } => {
            let remote = store.remote(Some(&spec))?;
            let refs = store.remote_refs(&remote)?;
            let snapshots = store.remote_snapshots(&remote)?;
            if printer.json() {
                printer.json_value(&json!({
                    "refs": refs.iter().map(|(n, r)| json!({
                        "name": n, "snapshot": r.snapshot.to_hex(), "seq": r.seq,
                        "signed_by": r.signature.as_ref().map(|s| s.0.clone()),
                    })).collect::<Vec<_>>(),
                    "snapshots": snapshots.iter().map(|(id, t)| json!({"id": id.to_hex(), "pushed": t})).collect::<Vec<_>>(),
                }));
            } else {
                for (n, r) in &refs {
                    let signed = r.signature.as_ref().map(|s| format!("\tsigned by {}", s.0));
                    printer.data(&format!(
                        "ref\t{n}\t{}{}",
                        r.snapshot,
                        signed.unwrap_or_default()
                    ));
                }
                for (id, _) in &snapshots {
                    printer.data(&format!("snapshot\t{id}"));
                }
            }
        }
        RemoteCommand::Doctor { remote } => {
            let remote = store.remote(remote.as_deref())?;
            let probes = store.remote_doctor(&remote);
            let failed = probes.iter().any(|p| p.outcome.is_err());
            if printer.json() {
                printer.json_value(&json!({
                    "remote": remote.label(),
                    "ok": !failed,
                    "steps": probes.iter().map(|p| json!({
                        "step": p.step,
                        "ok": p.outcome.is_ok(),
                        "millis": p.took.as_millis() as u64,
                        "said": match &p.outcome { Ok(s) => s.clone(), Err(e) => e.to_string() },
                    })).collect::<Vec<_>>(),
                }));
            } else {
                let mut text = format!("{}\n", remote.label());
                for p in &probes {
                    let (word, said) = match &p.outcome {
                        Ok(s) => ("ok", s.clone()),
                        Err(e) => ("FAILED", e.to_string()),
                    };
                    text.push_str(&format!(
                        "  {:<17} {:<6} {:>6} ms  {said}\n",
                        p.step,
                        word,
                        p.took.as_millis()
                    ));
                }
                printer.raw(&text);
            }
            if let Some(e) = probes.iter().find_map(|p| p.outcome.as_ref().err()) {
                if let Some(hint) = e.hint() {
                    printer.hint(&hint);
                }
                return Ok(ExitCode::from(1));
            }
        }
        RemoteCommand::Verify { remote } => {
            let remote = store.remote(remote.as_deref())?;
            let report = store.remote_verify(&remote)?;
            if printer.json() {
                printer.json_value(&json!({
                    "remote": remote.label(),
                    "snapshots": report.snapshots,
                    "packs": report.packs,
                    "damaged": report.damaged.iter().map(|(id, packs)| json!({
                        "id": id.to_hex(),
                        "missing_packs": packs.iter().map(|p| p.to_hex()).collect::<Vec<_>>(),
                    })).collect::<Vec<_>>(),
                    "unreadable": report.unreadable.iter().map(|i| i.to_hex()).collect::<Vec<_>>(),
                    "dangling_refs": report.dangling_refs,
                }));
            }
            for (id, packs) in &report.damaged {
                printer.warn(format_args!(
                    "snapshot {} lacks {} of its packs on {} (first: {}); push it again from a \
                     store that has it",
                    short(id),
                    packs.len(),
                    remote.label(),
                    packs[0]
                ));
            }
            for id in &report.unreadable {
                printer.warn(format_args!(
                    "the record of snapshot {} does not parse",
                    short(id)
                ));
            }
            for name in &report.dangling_refs {
                printer.warn(format_args!(
                    "ref {name} names a snapshot the remote does not have"
                ));
            }
            printer.info(format_args!(
                "{}: {} snapshots, {} packs; {}",
                remote.label(),
                report.snapshots,
                report.packs,
                if report.is_clean() {
                    "everything is there"
                } else {
                    "damaged (above)"
                }
            ));
            if !report.is_clean() {
                return Ok(ExitCode::from(1));
            }
        }
        RemoteCommand::Stats { remote } => {
            let remote = store.remote(remote.as_deref())?;
            let stats = store.remote_stats(&remote)?;
            if printer.json() {
                printer.json_value(&json!({
                    "remote": remote.label(),
                    "snapshots": stats.snapshots,
                    "refs": stats.refs.len(),
                    "packs": stats.packs,
                    "pack_bytes": stats.pack_bytes,
                    "partial_files": stats.partial_files,
                    "marked_packs": stats.marked,
                    "max_size": stats.budget,
                    "summaries": stats.summaries,
                }));
            } else {
                let budget = stats.budget.map_or(String::new(), |b| {
                    format!(
                        " of a budget of {} ({:.0}%)",
                        human_bytes(b),
                        stats.pack_bytes as f64 * 100.0 / b.max(1) as f64
                    )
                });
                printer.raw(&format!(
                    "remote          {}\nsnapshots       {}\nrefs            {}\npacks           {} ({}{budget})\nsummaries       {} (directories and large files a push can skip)\nmarked packs    {} (deleted by a prune after the grace period)\npartial files   {} (interrupted pushes)\n",
                    remote.label(),
                    stats.snapshots,
                    stats.refs.len(),
                    stats.packs,
                    human_bytes(stats.pack_bytes),
                    stats.summaries,
                    stats.marked,
                    stats.partial_files
                ));
            }
        }
        RemoteCommand::Prune {
            remote,
            older_than,
            grace,
            max_size,
            dry_run,
        } => {
            let remote = store.remote(remote.as_deref())?;
            let report = store.remote_prune(
                &remote,
                &RemotePruneOptions {
                    older_than,
                    grace,
                    dry_run,
                    max_size,
                },
            )?;
            let verb = if dry_run { "would remove" } else { "removed" };
            printer.info(format_args!(
                "{}: kept {} snapshots ({} refs) and {} packs ({}); {verb} {} snapshots, {} packs and {} partial files ({}); marked {} packs, unmarked {}",
                remote.label(),
                report.kept_snapshots,
                report.refs,
                report.kept_packs,
                human_bytes(report.kept_bytes),
                report.removed_snapshots.len(),
                report.removed_packs.len(),
                report.removed_partial.len(),
                human_bytes(report.removed_bytes),
                report.marked.len(),
                report.unmarked
            ));
            if let Some(max) = max_size {
                printer.info(format_args!(
                    "{}: what the kept snapshots need is {} of a budget of {}{}",
                    remote.label(),
                    human_bytes(report.kept_bytes),
                    human_bytes(max),
                    if report.kept_bytes > max {
                        " (over: what is left is named by refs)"
                    } else {
                        ""
                    }
                ));
            }
            if printer.json() {
                printer.json_value(&json!({
                    "dry_run": dry_run,
                    "max_size": max_size,
                    "kept_snapshots": report.kept_snapshots,
                    "removed_snapshots": report.removed_snapshots.iter().map(|i| i.to_hex()).collect::<Vec<_>>(),
                    "removed_packs": report.removed_packs.iter().map(|i| i.to_hex()).collect::<Vec<_>>(),
                    "removed_partial": report.removed_partial,
                    "removed_keys": report.removed_keys,
                    "removed_summaries": report.removed_summaries,
                    "removed_bytes": report.removed_bytes,
                    "marked": report.marked.iter().map(|i| i.to_hex()).collect::<Vec<_>>(),
                    "unmarked": report.unmarked,
                    "kept_packs": report.kept_packs,
                    "kept_bytes": report.kept_bytes,
                }));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn scope(user: bool) -> envstore::ConfigScope {
    if user {
        envstore::ConfigScope::User
    } else {
        envstore::ConfigScope::Store
    }
}

pub fn key(command: KeyCommand, printer: &Printer) -> anyhow::Result<ExitCode> {
    match command {
        KeyCommand::Generate { name, out } => {
            let key = SecretKey::generate(&name).map_err(|e| anyhow::anyhow!("{e}"))?;
            write_secret(&out, key.to_text().as_bytes())?;
            printer.info(format_args!(
                "wrote the secret key to {}; keep it private. Trust the public key on readers with `envstore remote trust {}`",
                out.display(),
                key.public()
            ));
            printer.data(&key.public().to_string());
        }
        KeyCommand::Public { file } => {
            printer.data(&envstore::read_secret_key(&file)?.public().to_string());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Creates `path` with mode 0600; refuses to replace an existing file.
fn write_secret(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {} (it must not exist yet)", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

fn short(id: &envstore::SnapshotId) -> String {
    id.short()
}
