//! Remotes end to end, on real engines: a 3-node SeaweedFS cluster (S3), nginx WebDAV
//! (`http://`) and a directory (`file://`). `.ci/remotes.sh start DIR` starts the servers and
//! prints the variables these tests read; in CI a missing server fails the tests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{
    Env, in_ci, is_bytecode, json, pseudo_random, rng, sample_env, snapshot_of, write,
};

/// A remote for one test: its URL and what keeps a `file://` directory alive.
pub struct TestRemote {
    pub kind: &'static str,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

fn unique(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{test}-{}-{nanos}", std::process::id())
}

fn server(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ if in_ci() => panic!(
            "{var} is not set: CI must start the remote servers (`.ci/remotes.sh start DIR`)"
        ),
        _ => {
            eprintln!(
                "SKIPPED the {var} part: set it with `source <(bash .ci/remotes.sh start DIR)`"
            );
            None
        }
    }
}

pub fn s3(test: &str) -> Option<TestRemote> {
    server("ENVSTORE_TEST_S3").map(|base| TestRemote {
        kind: "s3",
        url: format!("{base}/{}", unique(test)),
        _dir: None,
    })
}

pub fn webdav(test: &str) -> Option<TestRemote> {
    server("ENVSTORE_TEST_WEBDAV").map(|base| TestRemote {
        kind: "webdav",
        url: format!("{base}/{}", unique(test)),
        _dir: None,
    })
}

pub fn file(_test: &str) -> TestRemote {
    let dir = tempfile::tempdir().unwrap();
    TestRemote {
        kind: "file",
        url: format!("file://{}/remote", dir.path().display()),
        _dir: Some(dir),
    }
}

/// Every backend: the directory always, the servers when they run (always in CI).
fn backends(test: &str) -> Vec<TestRemote> {
    let mut all = vec![file(test)];
    all.extend(s3(test));
    all.extend(webdav(test));
    all
}

fn open(url: &str) -> Box<dyn envstore_remote::Storage> {
    envstore_remote::open(&url.parse().unwrap()).unwrap()
}

fn tree(dir: &Path) -> BTreeMap<PathBuf, crate::common::Node> {
    snapshot_of(dir, &is_bytecode)
}

/// Ingests `dir` into `env`'s store and pushes it; returns the id and push's JSON.
fn push(env: &Env, dir: &Path, url: &str, extra: &[&str]) -> (String, serde_json::Value) {
    let mut args = vec!["push", dir.to_str().unwrap(), "--to", url];
    args.extend_from_slice(extra);
    let out = json(env, &args);
    let id = out["snapshots"][0]["id"].as_str().unwrap().to_owned();
    (id, out)
}

fn pull(env: &Env, spec: &str, url: &str) -> serde_json::Value {
    json(env, &["pull", spec, "--from", url])[0].clone()
}

/// A second environment sharing most of `sample_env`: one file changed, one added.
fn related_env(root: &Path) {
    sample_env(root);
    write(
        &root.join("lib/python3.11/site-packages/pkg/core.py"),
        b"def f():\n    return 3\n",
    );
    write(&root.join("lib/extra.bin"), &pseudo_random(200 << 10, 99));
}

#[test]
fn push_then_pull_into_an_empty_store_is_byte_identical_and_moves_only_new_chunks() {
    for remote in backends("roundtrip") {
        let a = Env::new();
        let src = a.path("src");
        sample_env(&src);
        let (id, pushed) = push(&a, &src, &remote.url, &["--name", "main"]);
        assert!(pushed["snapshots"][0]["new_chunks"].as_u64().unwrap() > 0);

        let b = Env::new();
        let got = pull(&b, "main", &remote.url);
        assert_eq!(got["id"], id.as_str(), "{}", remote.kind);
        // Offline from here: the snapshot is complete in B.
        let path = b.materialize(Path::new(&id));
        assert_eq!(tree(&path), tree(&src), "{}: byte-identical", remote.kind);
        b.ok(&["verify"]);

        // A related environment: only its new chunks go up, and come down.
        let src2 = a.path("src2");
        related_env(&src2);
        let (id2, pushed2) = push(&a, &src2, &remote.url, &[]);
        let up = pushed2["snapshots"][0]["new_chunk_bytes"].as_u64().unwrap();
        assert!(
            up < 300 << 10,
            "{}: pushed {up} bytes of new chunks for a 200 KiB change",
            remote.kind
        );
        let got2 = pull(&b, &id2, &remote.url);
        let down = got2["fetched_bytes"].as_u64().unwrap();
        assert!(
            down < 400 << 10,
            "{}: pulled {down} bytes for a 200 KiB change",
            remote.kind
        );
        assert!(got2["local_chunks"].as_u64().unwrap() == 0 || down > 0);
        let path2 = b.materialize(Path::new(&id2));
        assert_eq!(tree(&path2), tree(&src2), "{}", remote.kind);

        // Pulling what the store has moves nothing.
        assert_eq!(pull(&b, &id2, &remote.url)["already"], true);
    }
}

#[test]
fn a_pull_of_more_objects_than_one_batch_fetches_each_block_once() {
    // A pull plans and writes 8,192 objects at a time; 20,000 files span three batches. One
    // content is both a plain file early in the walk and an executable late in it.
    use std::os::unix::fs::PermissionsExt as _;
    let a = Env::new();
    let src = a.path("src");
    for i in 0..20_000 {
        write(
            &src.join(format!("d{}/f{i}.py", i / 500)),
            format!("x = {i}\n").as_bytes(),
        );
    }
    write(&src.join("d0/same"), b"#!/bin/sh\necho same\n");
    let late = src.join("d39/same");
    write(&late, b"#!/bin/sh\necho same\n");
    std::fs::set_permissions(&late, std::fs::Permissions::from_mode(0o755)).unwrap();
    let remote = file("batches");
    let (id, _) = push(&a, &src, &remote.url, &["--name", "main"]);

    let b = Env::new();
    let got = pull(&b, "main", &remote.url);
    assert_eq!(got["objects"], 20_001, "{got}");
    // Every block at most once, though later batches need chunks of blocks fetched earlier.
    let packs = remote.url.strip_prefix("file://").unwrap().to_owned() + "/packs";
    let on_remote: u64 = std::fs::read_dir(&packs)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".pack"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    let fetched = got["fetched_bytes"].as_u64().unwrap();
    assert!(
        fetched > 0 && fetched <= on_remote,
        "fetched {fetched} of {on_remote} bytes"
    );
    let path = b.materialize(Path::new(&id));
    assert_eq!(tree(&path), tree(&src), "byte-identical, modes included");
    b.ok(&["verify"]);
}

#[test]
fn push_and_pull_with_their_tables_on_disk_round_trip() {
    // What a push and a pull know of chunks (the base's, those a push wrote, where the remote
    // keeps each) grows with the files, so it lives in tables on disk beyond a small buffer.
    // With a buffer of 16 entries every one of them spills and merges many times.
    let small = |env: &Env, args: &[&str]| -> serde_json::Value {
        let out = env
            .cmd()
            .env("ENVSTORE_SORT_BUFFER", "16")
            .arg("--json")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "envstore {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let make = |src: &Path| {
        for i in 0..600 {
            write(
                &src.join(format!("d{}/f{i}.py", i / 50)),
                format!("x = {}\n", i % 550).as_bytes(),
            );
        }
        write(&src.join("big.bin"), &pseudo_random(3 << 20, 5));
    };
    let a = Env::new();
    let src = a.path("src");
    make(&src);
    let remote = file("tables");
    let s = src.to_str().unwrap();
    let first = small(&a, &["push", s, "--to", &remote.url, "--name", "main"]);
    let id = first["snapshots"][0]["id"].as_str().unwrap().to_owned();
    // 550 distinct small contents and the big file's chunks, each uploaded once: as many
    // as a push that keeps everything in memory uploads.
    let new_chunks = first["snapshots"][0]["new_chunks"].as_u64().unwrap();
    let plain = json(&a, &["push", s, "--to", &file("tables-plain").url]);
    assert_eq!(plain["snapshots"][0]["new_chunks"], new_chunks, "{first}");
    assert!(new_chunks > 550, "{first}");
    // An edit: the base's chunks come from its packs' indexes (a table on disk too).
    let edited = a.path("edited");
    make(&edited);
    write(&edited.join("d3/f170.py"), b"x = 'edited'\n");
    write(&edited.join("d11/new.py"), b"x = 'new'\n");
    let e = edited.to_str().unwrap();
    let second = small(&a, &["push", e, "--to", &remote.url, "--name", "main"]);
    let id2 = second["snapshots"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(second["snapshots"][0]["new_chunks"], 2, "{second}");

    let b = Env::new();
    for (spec, dir) in [(&id, &src), (&id2, &edited)] {
        let got = small(&b, &["pull", spec, "--from", &remote.url]);
        assert_eq!(got[0]["id"], spec.as_str(), "{got}");
        let path = b.materialize(Path::new(spec));
        assert_eq!(tree(&path), tree(dir), "byte-identical");
    }
    b.ok(&["verify"]);
}

#[test]
fn a_large_file_goes_up_in_parts_or_streamed_and_comes_back_whole() {
    // A snapshot record of a million files is tens of megabytes: S3 and directories take it in
    // 5 MiB parts, WebDAV as one PUT streamed from the file, so no backend holds it whole.
    // 20 MiB is over the 16 MiB from which they do.
    for remote in backends("putfile") {
        let storage = open(&remote.url);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        let data = pseudo_random(20 << 20, 11);
        std::fs::write(&path, &data).unwrap();
        // A directory the remote has not seen yet: WebDAV servers may want it made first.
        let key = format!("fresh-{}/big", remote.kind);
        let before = storage.counters();
        storage.put_file(&key, &path).unwrap();
        assert_eq!(
            storage.counters().bytes_up - before.bytes_up,
            data.len() as u64,
            "{}",
            remote.kind
        );
        let back = storage.get(&key, 64 << 20).unwrap().unwrap();
        assert!(back == data, "{}: what came back differs", remote.kind);
        let got = tempfile::tempfile().unwrap();
        let len = storage.get_into(&key, &got, 64 << 20).unwrap().unwrap();
        assert_eq!(len, data.len() as u64, "{}", remote.kind);
        assert!(
            storage.get_into(&key, &got, 1 << 20).is_err(),
            "{}: over the limit",
            remote.kind
        );
        assert_eq!(storage.get_into("fresh/none", &got, 1 << 20).unwrap(), None);
        storage.delete(&key).unwrap();
    }
}

#[test]
fn two_pushes_of_one_snapshot_at_once_both_succeed() {
    for remote in backends("concurrent") {
        let envs: Vec<Env> = (0..3).map(|_| Env::new()).collect();
        let mut children = Vec::new();
        for env in &envs {
            let src = env.path("src");
            sample_env(&src);
            env.ingest(&src);
            children.push(
                env.cmd()
                    .args([
                        "push",
                        src.to_str().unwrap(),
                        "--to",
                        &remote.url,
                        "--name",
                        "same",
                    ])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap(),
            );
        }
        let ids: Vec<String> = children
            .into_iter()
            .map(|c| {
                let out = c.wait_with_output().unwrap();
                assert!(out.status.success(), "{}: {out:?}", remote.kind);
                String::from_utf8(out.stdout).unwrap().trim().to_owned()
            })
            .collect();
        assert!(ids.iter().all(|i| *i == ids[0]));
        let b = Env::new();
        assert_eq!(pull(&b, "same", &remote.url)["id"], ids[0].as_str());
        assert_eq!(
            tree(&b.materialize(Path::new(&ids[0]))),
            tree(&envs[0].path("src"))
        );
    }
}

/// Replaces the object at `key` with `f` applied to it.
fn tamper(url: &str, key: &str, f: impl FnOnce(&mut Vec<u8>)) {
    let storage = open(url);
    let mut bytes = storage.get(key, u64::MAX).unwrap().unwrap();
    f(&mut bytes);
    storage.put(key, bytes).unwrap();
}

fn first_pack(url: &str) -> String {
    let listed = open(url).list("packs").unwrap();
    let pack = listed.iter().find(|f| f.name.ends_with(".pack")).unwrap();
    format!("packs/{}", pack.name)
}

/// Regular files below `dir` (none when it does not exist).
fn files_under(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .map(|e| {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                files_under(&e.path())
            } else {
                1
            }
        })
        .sum()
}

#[test]
fn a_damaged_or_tampered_remote_is_refused_and_nothing_is_kept() {
    for remote in backends("tamper") {
        let a = Env::new();
        let src = a.path("src");
        sample_env(&src);
        let (id, _) = push(&a, &src, &remote.url, &["--name", "main"]);
        let pack = first_pack(&remote.url);
        let original = open(&remote.url).get(&pack, u64::MAX).unwrap().unwrap();
        type Damage = Box<dyn Fn(&mut Vec<u8>)>;
        let cases: Vec<(&str, Damage)> = vec![
            (
                "a flipped byte in a chunk's compressed frame",
                Box::new(|b: &mut Vec<u8>| {
                    let at = b.len() - 100;
                    b[at] ^= 0x20;
                }),
            ),
            (
                "a truncated pack",
                Box::new(|b: &mut Vec<u8>| b.truncate(b.len() / 2)),
            ),
        ];
        for (what, damage) in cases {
            tamper(&remote.url, &pack, |b| {
                *b = original.clone();
                damage(b);
            });
            let b = Env::new();
            let err = b.fails(&["pull", "main", "--from", &remote.url]);
            assert!(
                err.contains("refusing") || err.contains("cannot read"),
                "{} {what}: {err}",
                remote.kind
            );
            assert_eq!(
                b.ok(&["ls"])
                    .lines()
                    .filter(|l| l.contains(&id[..12]))
                    .count(),
                0
            );
            // Nothing of it was kept: no tree, nothing left in tmp/, no pack of fetched blocks.
            for dir in ["trees", "tmp", "packs"] {
                assert_eq!(
                    files_under(&b.store.join(dir)),
                    0,
                    "{} {what}: {dir}/ is not empty",
                    remote.kind
                );
            }
            b.ok(&["verify"]);
        }
        tamper(&remote.url, &pack, |b| *b = original.clone());

        // A record whose trees are not the snapshot's.
        let key = format!("snapshots/{id}");
        let record = open(&remote.url).get(&key, u64::MAX).unwrap().unwrap();
        let src2 = a.path("src2");
        related_env(&src2);
        let (id2, _) = push(&a, &src2, &remote.url, &[]);
        let other = open(&remote.url)
            .get(&format!("snapshots/{id2}"), u64::MAX)
            .unwrap()
            .unwrap();
        tamper(&remote.url, &key, |b| *b = other.clone());
        let b = Env::new();
        let err = b.fails(&["pull", &id, "--from", &remote.url]);
        assert!(
            err.contains("refusing") && err.contains("lacks tree"),
            "{}: {err}",
            remote.kind
        );
        tamper(&remote.url, &key, |b| *b = record.clone());
        // Intact again: the same pull works.
        pull(&b, &id, &remote.url);
    }
}

#[test]
fn signed_refs_from_untrusted_keys_and_replays_are_refused() {
    for remote in backends("signed") {
        let a = Env::new();
        let src = a.path("src");
        sample_env(&src);
        let good = a.path("good.key");
        let bad = a.path("bad.key");
        let public = a.ok(&["key", "generate", "ci", "--out", good.to_str().unwrap()]);
        a.ok(&["key", "generate", "ci", "--out", bad.to_str().unwrap()]);
        assert_eq!(a.ok(&["key", "public", good.to_str().unwrap()]), public);

        let b = Env::new();
        b.ok(&["remote", "trust", public.trim()]);
        // Signed by a key with the trusted name but not the trusted key.
        push(
            &a,
            &src,
            &remote.url,
            &["--name", "rel", "--sign", bad.to_str().unwrap()],
        );
        let err = b.fails(&["pull", "rel", "--from", &remote.url]);
        assert!(
            err.contains("refusing ref") && err.contains("does not verify"),
            "{err}"
        );
        // Unsigned.
        push(&a, &src, &remote.url, &["--name", "rel"]);
        let err = b.fails(&["pull", "rel", "--from", &remote.url]);
        assert!(err.contains("not signed"), "{err}");
        // Signed by the trusted key.
        let (id, _) = push(
            &a,
            &src,
            &remote.url,
            &["--name", "rel", "--sign", good.to_str().unwrap()],
        );
        let old_ref = open(&remote.url).get("refs/rel", 4096).unwrap().unwrap();
        assert_eq!(pull(&b, "rel", &remote.url)["id"], id.as_str());
        // A newer signed ref, seen; then the old one put back: a replay.
        std::thread::sleep(Duration::from_millis(5));
        let src2 = a.path("src2");
        related_env(&src2);
        let (id2, _) = push(
            &a,
            &src2,
            &remote.url,
            &["--name", "rel", "--sign", good.to_str().unwrap()],
        );
        assert_eq!(pull(&b, "rel", &remote.url)["id"], id2.as_str());
        open(&remote.url).put("refs/rel", old_ref).unwrap();
        let err = b.fails(&["pull", "rel", "--from", &remote.url]);
        assert!(err.contains("replayed"), "{err}");
        // Ids verify themselves: pulling by id needs no signature.
        let c = Env::new();
        c.ok(&["remote", "trust", public.trim()]);
        assert_eq!(pull(&c, &id, &remote.url)["id"], id.as_str());
    }
}

/// An environment large enough that a push takes a while (several blocks and two packs).
fn large_env(root: &Path, seed: u64) {
    for i in 0..40u64 {
        write(
            &root.join(format!("lib/part{i}.bin")),
            &pseudo_random(1 << 20, seed * 1000 + i),
        );
    }
    for i in 0..300u64 {
        write(
            &root.join(format!("py/mod{}/f{i}.py", i % 10)),
            format!("x = {i} * {seed}\n").as_bytes(),
        );
    }
}

#[test]
fn a_push_killed_at_random_points_never_leaves_a_visible_incomplete_snapshot() {
    let mut remotes = vec![file("killed")];
    remotes.extend(s3("killed"));
    remotes.extend(webdav("killed"));
    for remote in remotes {
        let a = Env::new();
        let src = a.path("src");
        large_env(&src, 1);
        let id = a.ingest(&src);
        let start = Instant::now();
        let probe = a.path("probe-remote");
        a.ok(&["push", &id, "--to", &format!("file://{}", probe.display())]);
        let full = start.elapsed().as_millis() as u64 + 1;
        let mut next = rng(7);
        let mut killed_running = 0;
        for round in 0..12 {
            let mut child = a
                .cmd()
                .args(["push", &id, "--to", &remote.url])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            // Mostly early: most rounds should catch the push running, whatever the load.
            std::thread::sleep(Duration::from_millis(next(full / 2 + 1)));
            if child.try_wait().unwrap().is_none() {
                killed_running += 1;
            }
            let _ = child.kill();
            let _ = child.wait();
            // Whatever is visible is complete: if the record is there, a pull succeeds.
            let record = format!("snapshots/{id}");
            if open(&remote.url).get(&record, u64::MAX).unwrap().is_some() {
                let b = Env::new();
                pull(&b, &id, &remote.url);
                assert_eq!(
                    tree(&b.materialize(Path::new(&id))),
                    tree(&src),
                    "round {round}"
                );
                // Invisible again, so the next rounds test interrupted pushes too.
                open(&remote.url).delete(&record).unwrap();
            }
        }
        assert!(
            killed_running > 0,
            "{}: no push was killed while running",
            remote.kind
        );
        // A later push completes it.
        a.ok(&["push", &id, "--to", &remote.url]);
        let b = Env::new();
        pull(&b, &id, &remote.url);
        assert_eq!(tree(&b.materialize(Path::new(&id))), tree(&src));
    }
}

fn prune(env: &Env, url: &str, grace: &str) -> serde_json::Value {
    json(
        env,
        &[
            "remote",
            "prune",
            url,
            "--older-than",
            "0s",
            "--grace",
            grace,
        ],
    )
}

#[test]
fn remote_prune_beside_running_pushes_breaks_nothing() {
    let mut remotes = vec![file("prune")];
    remotes.extend(s3("prune"));
    remotes.extend(webdav("prune"));
    for remote in remotes {
        let a = Env::new();
        // Something prune may remove: a snapshot nothing names, sharing nothing.
        let lone = a.path("lone");
        large_env(&lone, 9);
        push(&a, &lone, &remote.url, &[]);
        let sources: Vec<PathBuf> = (0..5)
            .map(|i| {
                let dir = a.path(&format!("src{i}"));
                sample_env(&dir);
                write(&dir.join("lib/changing.bin"), &pseudo_random(300 << 10, i));
                dir
            })
            .collect();
        let stop = std::sync::atomic::AtomicBool::new(false);
        let (ids, removed) = std::thread::scope(|scope| {
            let pruner = scope.spawn(|| {
                let p = Env::new();
                let mut removed = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let out = prune(&p, &remote.url, "2s");
                    removed += out["removed_packs"].as_array().unwrap().len();
                    std::thread::sleep(Duration::from_millis(300));
                }
                removed
            });
            let mut ids = Vec::new();
            for (i, dir) in sources.iter().enumerate() {
                let name = format!("keep{i}");
                ids.push((
                    name.clone(),
                    push(&a, dir, &remote.url, &["--name", &name]).0,
                ));
                std::thread::sleep(Duration::from_millis(700));
            }
            std::thread::sleep(Duration::from_secs(3));
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            (ids, pruner.join().unwrap())
        });
        // Past the grace period once more: the lone snapshot's packs go.
        let p = Env::new();
        let mut removed = removed;
        for _ in 0..2 {
            std::thread::sleep(Duration::from_secs(3));
            removed += prune(&p, &remote.url, "2s")["removed_packs"]
                .as_array()
                .unwrap()
                .len();
        }
        assert!(
            removed > 0,
            "{}: prune removed nothing (the test would prove nothing)",
            remote.kind
        );
        for ((name, id), dir) in ids.iter().zip(&sources) {
            let b = Env::new();
            assert_eq!(pull(&b, name, &remote.url)["id"], id.as_str());
            assert_eq!(
                tree(&b.materialize(Path::new(id))),
                tree(dir),
                "{}: {name}",
                remote.kind
            );
        }
    }
}

#[test]
fn materialize_falls_through_to_remotes_and_goes_on_without_a_dead_one() {
    let remote = file("fallthrough");
    let a = Env::new();
    let src = a.path("src");
    sample_env(&src);
    let (id, _) = push(&a, &src, &remote.url, &["--name", "tools"]);

    let b = Env::new();
    b.ok(&["remote", "add", "live", &remote.url]);
    // A dead remote first, as a laptop off the network sees its team's cache.
    let config = b.store.join("remotes");
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text.replacen(
        "envstore-remotes 1\n",
        "envstore-remotes 1\nremote dead http://127.0.0.1:9/envs create-if-absent=no\n",
        1,
    );
    std::fs::write(&config, text).unwrap();
    let out = b.run(&["materialize", &id]);
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("dead") && stderr.contains("did not answer"),
        "{stderr}"
    );
    let path = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    assert_eq!(tree(&path), tree(&src));
    // By ref name too.
    let c = Env::new();
    c.ok(&["remote", "add", "live", &remote.url]);
    let path = PathBuf::from(c.ok(&["materialize", "tools"]).trim());
    assert_eq!(tree(&path), tree(&src));
    // A materialization names its snapshot: push "$(envstore materialize ...)" works.
    let again = file("fallthrough-again");
    let pushed = c.ok(&["push", path.to_str().unwrap(), "--to", &again.url]);
    assert_eq!(pushed.trim(), id);
    // Nothing anywhere: the usual error, exit 2.
    let err = c.fails(&["materialize", "no-such-env"]);
    assert!(err.contains("no-such-env"), "{err}");
}

#[test]
fn remote_failures_are_clear_errors() {
    let a = Env::new();
    let src = a.path("src");
    sample_env(&src);
    let id = a.ingest(&src);
    let err = a.fails(&["push", &id, "--to", "http://127.0.0.1:9/envs"]);
    assert!(err.contains("did not answer"), "{err}");
    let err = a.fails(&["push", &id, "--to", "ftp://x/y"]);
    assert!(err.contains("unknown scheme"), "{err}");
    let err = a.fails(&["push", &id, "--to", "nope"]);
    assert!(err.contains("no remote named `nope`"), "{err}");
    let err = a.fails(&["pull", "main"]);
    assert!(err.contains("no remote is configured"), "{err}");
    let err = a.fails(&["remote", "add", "../x", "file:///tmp/x"]);
    assert!(err.contains("invalid remote name"), "{err}");
    let remote = file("failures");
    let err = a.fails(&["pull", &"ab".repeat(32), "--from", &remote.url]);
    assert!(err.contains("has no snapshot"), "{err}");
    if let Some(s3) = s3("failures") {
        let err = a
            .cmd()
            .env("AWS_SECRET_ACCESS_KEY", "wrong")
            .args(["push", &id, "--to", &s3.url])
            .output()
            .unwrap();
        assert_eq!(err.status.code(), Some(2));
        let err = String::from_utf8_lossy(&err.stderr);
        assert!(
            err.contains("refused the credentials") || err.contains("SignatureDoesNotMatch"),
            "{err}"
        );
    }
    // A directory that is not a remote of ours.
    let other = tempfile::tempdir().unwrap();
    write(&other.path().join("envstore-remote"), b"something else\n");
    let err = a.fails(&[
        "push",
        &id,
        "--to",
        &format!("file://{}", other.path().display()),
    ]);
    assert!(err.contains("not an envstore remote"), "{err}");
}

/// `curl -s URL` (the SeaweedFS filer's and master's HTTP APIs) as JSON.
fn curl_json(url: &str) -> serde_json::Value {
    let out = Command::new("curl")
        .args(["-s", "-f", url])
        .output()
        .unwrap();
    assert!(out.status.success(), "curl {url}: {out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The volume servers (`127.0.0.1:PORT`) that hold the first chunk of the object at `key`
/// (a key below the test bucket), from the filer's metadata and a master's lookup.
fn volume_servers_of(key: &str) -> Vec<String> {
    let meta = curl_json(&format!(
        "http://127.0.0.1:8888/buckets/envstore-test/{key}?metadata=true"
    ));
    let file_id = meta["chunks"][0]["file_id"].as_str().unwrap().to_owned();
    let volume = file_id.split(',').next().unwrap();
    let found = curl_json(&format!(
        "http://127.0.0.1:9331/dir/lookup?volumeId={volume}"
    ));
    found["locations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["url"].as_str().unwrap().to_owned())
        .collect()
}

/// Runs on its own (tests/run.sh runs it after the others): it kills a SeaweedFS volume
/// server, which would disturb the other tests' writes. The server killed is one that holds
/// the pack being pulled (its other replica is on another server), killed while the pull is
/// fetching it: the pull must fail over and bring everything back intact.
#[test]
fn seaweed_volume_killed_during_a_pull() {
    let remote = s3("volume").expect("the S3 test cluster (.ci/remotes.sh start DIR)");
    let dir =
        PathBuf::from(std::env::var("ENVSTORE_TEST_SEAWEED_DIR").expect("set by .ci/remotes.sh"));
    let a = Env::new();
    let src = a.path("src");
    large_env(&src, 3);
    // Large enough that the fetch is still running when the server goes.
    let mut big = std::fs::File::create(src.join("lib/weights.bin")).unwrap();
    for i in 0..192u64 {
        std::io::Write::write_all(&mut big, &pseudo_random(1 << 20, 1000 + i)).unwrap();
    }
    drop(big);
    let (id, pushed) = push(&a, &src, &remote.url, &[]);
    let packs = pushed["snapshots"][0]["packs"].as_array().unwrap().clone();
    let prefix = remote.url.strip_prefix("s3://envstore-test/").unwrap();
    let first = format!("{prefix}/packs/{}.pack", packs[0].as_str().unwrap());
    let holders = volume_servers_of(&first);
    assert!(
        holders.len() >= 2,
        "replication 001 keeps two copies: {holders:?}"
    );
    let port = holders[0].rsplit(':').next().unwrap();
    let n = &port[port.len() - 1..];
    let pid_file = dir.join(format!("volume{n}.pid"));
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let cmdline: Vec<String> = std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap()
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    assert!(
        cmdline.iter().any(|a| a == &format!("-port={port}")),
        "volume{n}.pid is not the server on {port}: {cmdline:?}"
    );
    let b = Env::new();
    let mut child = b
        .cmd()
        .args(["pull", &id, "--from", &remote.url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kill once the fetch has begun: the temporary pack it streams into exists.
    let started = Instant::now();
    let incoming = loop {
        let found = std::fs::read_dir(b.store.join("tmp")).ok().and_then(|d| {
            d.flatten()
                .map(|e| e.path().join("incoming.pack"))
                .find(|p| p.exists())
        });
        if let Some(p) = found {
            break p;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the pull ended before fetching"
        );
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the pull never fetched"
        );
        std::thread::sleep(Duration::from_millis(2));
    };
    let fetched_at_kill = std::fs::metadata(&incoming).map_or(0, |m| m.len());
    let still_running = child.try_wait().unwrap().is_none();
    Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    // Bring it back for whatever runs next (it outlives this test; remotes.sh stops it).
    let log = std::fs::File::create(dir.join(format!("volume{n}.log"))).unwrap();
    let restarted = Command::new(&cmdline[0])
        .args(&cmdline[1..])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    std::fs::write(&pid_file, restarted.id().to_string()).unwrap();
    std::mem::forget(restarted);
    assert!(
        out.status.success(),
        "the pull failed with a volume server down: {out:?}"
    );
    // In flight at the kill: running, and with less fetched than it went on to fetch.
    assert!(still_running, "the pull had finished before the kill");
    assert!(
        fetched_at_kill < 192 << 20,
        "the fetch was complete before the kill ({fetched_at_kill} bytes)"
    );
    assert_eq!(tree(&b.materialize(Path::new(&id))), tree(&src));
}

#[test]
fn ensure_pulls_what_another_machine_built_and_pushed() {
    for remote in backends("ensure") {
        let build = [
            "--key",
            "tools-v1",
            "--",
            "sh",
            "-c",
            "mkdir -p \"$ENVSTORE_OUT/bin\" && echo built > \"$ENVSTORE_OUT/bin/tool\"",
        ];
        let a = Env::new();
        let mut args = vec!["ensure"];
        args.extend_from_slice(&build);
        let built = json(&a, &args);
        assert_eq!(built["built"], true);
        let path = built["path"].as_str().unwrap();
        let pushed = json(&a, &["push", path, "--to", &remote.url]);
        assert_eq!(pushed["snapshots"][0]["keys"], 1, "{}", remote.kind);

        // Another machine, the same inputs: pulled, not built (the command would not even
        // run there: its output directory would be a different one).
        let b = Env::new();
        b.ok(&["remote", "add", "fleet", &remote.url]);
        let got = json(&b, &args);
        assert_eq!(got["built"], false, "{}: {got}", remote.kind);
        assert_eq!(got["id"], built["id"]);
        let tool = Path::new(got["path"].as_str().unwrap()).join("bin/tool");
        assert_eq!(std::fs::read(tool).unwrap(), b"built\n");
        // And recorded: `keys` lists it, offline from now on.
        assert!(
            b.ok(&["keys"])
                .contains(&built["id"].as_str().unwrap()[..12])
        );
    }
}
