//! Remotes for a fleet (issue 25), on the real engines: a fresh runner's push costs what it
//! moves, not what the remote holds; push and pull of a tree holding a 1.5 GB file stay
//! within 64 MiB; a pack the remote lost behind envstore's back is found and pushed again.

use std::fs;
use std::io::Write as _;
use std::path::Path;

use crate::common::{Env, json, pseudo_random, write};
use crate::memory::peak_rss_kib;
use crate::remote::{TestRemote, file, s3, webdav};

/// A small environment of `packages` drawn from a pool, shaped like a site-packages: each
/// package a directory of modules plus its `.dist-info`, a few loose files beside them.
fn fleet_env(root: &Path, seed: u64, packages: &[u64]) {
    let sp = root.join("lib/python3.11/site-packages");
    for p in packages {
        for m in 0..8 {
            let body = format!("# package {p} module {m}\n{}\n", "x = 1\n".repeat(m * 20));
            write(&sp.join(format!("pkg{p}/mod{m}.py")), body.as_bytes());
        }
        for f in ["METADATA", "RECORD", "WHEEL", "INSTALLER"] {
            write(
                &sp.join(format!("pkg{p}-1.0.dist-info/{f}")),
                format!("pkg{p} {f}\n").as_bytes(),
            );
        }
    }
    write(&root.join("pyvenv.cfg"), format!("env {seed}\n").as_bytes());
}

/// `count` related environments (8 packages each, from a pool of 60), pushed from one store
/// in one command.
fn grow(remote: &TestRemote, from: usize, count: usize) {
    let env = Env::new();
    let mut dirs = Vec::new();
    for i in from..from + count {
        let dir = env.path(&format!("env{i}"));
        let packages: Vec<u64> = (0..8).map(|k| (i as u64 * 7 + k * 13) % 60).collect();
        fleet_env(&dir, i as u64, &packages);
        dirs.push(dir.to_str().unwrap().to_owned());
    }
    let mut args = vec!["-q", "push"];
    args.extend(dirs.iter().map(String::as_str));
    args.extend(["--to", remote.url.as_str()]);
    env.ok(&args);
}

/// A fresh store pushes a new environment sharing 7 packages with what is there, plus one
/// new package: (requests, bytes down, directories the remote had whole).
fn fresh_push(remote: &TestRemote, seed: u64) -> (u64, u64, u64) {
    let env = Env::new();
    let dir = env.path("new");
    fleet_env(&dir, 1000 + seed, &[1, 8, 15, 22, 29, 36, 43, 100 + seed]);
    let out = json(&env, &["push", dir.to_str().unwrap(), "--to", &remote.url]);
    let s = &out["snapshots"][0];
    (
        out["requests"].as_u64().unwrap(),
        out["bytes_down"].as_u64().unwrap(),
        s["present_trees"].as_u64().unwrap(),
    )
}

#[test]
fn a_fresh_push_costs_the_same_against_20_and_200_snapshots() {
    let mut backends = vec![file("fleet")];
    backends.extend(s3("fleet"));
    for remote in backends {
        grow(&remote, 0, 20);
        let (req20, down20, present20) = fresh_push(&remote, 1);
        grow(&remote, 20, 180);
        let (req200, down200, present200) = fresh_push(&remote, 2);
        eprintln!(
            "{}: fresh push against 20 snapshots: {req20} requests, {down20} bytes down; \
             against 200: {req200} requests, {down200} bytes down",
            remote.kind
        );
        // The seven shared packages and their .dist-info are found whole both times.
        assert!(
            present20 >= 14 && present200 >= 14,
            "{present20} {present200}"
        );
        assert!(
            req200 <= 2 * req20 + 10,
            "{}: {req200} requests against 200 snapshots, {req20} against 20",
            remote.kind
        );
        assert!(
            down200 <= 2 * down20 + (256 << 10),
            "{}: {down200} bytes down against 200 snapshots, {down20} against 20",
            remote.kind
        );
    }
}

/// Writes `len` pseudo-random bytes to `path` a MiB at a time.
fn write_large(path: &Path, len: u64, seed: u64) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut f = std::io::BufWriter::new(fs::File::create(path).unwrap());
    let mut written = 0;
    let mut i = 0;
    while written < len {
        let n = (len - written).min(1 << 20);
        f.write_all(&pseudo_random(n as usize, seed ^ (i << 20)))
            .unwrap();
        written += n;
        i += 1;
    }
    f.flush().unwrap();
}

/// Push and pull of a tree holding one large file, each a child process whose peak RSS is
/// read: whatever the file's size, within 64 MiB (before issue 25: 1,536 MiB for push and
/// 3,055 MiB for pull of a 1.5 GB file).
fn large_file_round_trip(remote: &TestRemote, len: u64) {
    const LIMIT_KIB: i64 = 64 * 1024;
    let a = Env::new();
    let src = a.path("ml-env");
    write_large(&src.join("lib/libtorch_cuda.so"), len, 11);
    write(&src.join("lib/__init__.py"), b"");
    let id = a.ok(&["-q", "ingest", src.to_str().unwrap()]);
    let id = id.trim();
    let push = peak_rss_kib(&a, &["push", id, "--to", &remote.url]);
    fs::remove_dir_all(&src).unwrap();
    let b = Env::new();
    let pull = peak_rss_kib(&b, &["pull", id, "--from", &remote.url]);
    eprintln!(
        "{}: {} MiB file: push peak RSS {push} KiB, pull {pull} KiB",
        remote.kind,
        len >> 20
    );
    b.ok(&["verify"]);
    assert!(
        push < LIMIT_KIB && pull < LIMIT_KIB,
        "{}: push {push} KiB, pull {pull} KiB (limit {LIMIT_KIB})",
        remote.kind
    );
}

#[test]
fn push_and_pull_of_a_1_5_gb_file_stay_within_64_mib() {
    large_file_round_trip(&file("large"), 1536 << 20);
    // The HTTP clients buffer differently: the same bound over S3 and WebDAV, with a file
    // large enough that holding it would break it (and small enough for the test servers).
    for remote in s3("large").into_iter().chain(webdav("large")) {
        large_file_round_trip(&remote, 256 << 20);
    }
}

#[test]
fn a_pack_the_remote_lost_is_found_and_a_push_uploads_it_again() {
    let mut backends = vec![file("lost")];
    backends.extend(s3("lost"));
    for remote in backends {
        let a = Env::new();
        let src = a.path("env");
        fleet_env(&src, 1, &[1, 2, 3]);
        write(&src.join("lib/big.bin"), &pseudo_random(2 << 20, 5));
        let out = json(&a, &["push", src.to_str().unwrap(), "--to", &remote.url]);
        let id = out["snapshots"][0]["id"].as_str().unwrap().to_owned();
        let pack = out["snapshots"][0]["packs"][0].as_str().unwrap().to_owned();
        let clean = json(&a, &["remote", "verify", &remote.url]);
        assert_eq!(clean["damaged"].as_array().unwrap().len(), 0, "{clean}");

        // Behind envstore's back: the pack goes (its index stays).
        let storage = envstore_remote::open(&remote.url.parse().unwrap()).unwrap();
        storage.delete(&format!("packs/{pack}.pack")).unwrap();
        let found = a.run(&["--json", "remote", "verify", &remote.url]);
        assert_eq!(found.status.code(), Some(1), "{}", remote.kind);
        let report: serde_json::Value = serde_json::from_slice(&found.stdout).unwrap();
        assert_eq!(report["damaged"][0]["id"], id.as_str(), "{report}");
        assert!(
            report["damaged"][0]["missing_packs"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p == pack.as_str()),
            "{report}"
        );

        // A push of the snapshot sees the summaries' pack gone and uploads it again.
        let again = json(&a, &["push", &id, "--to", &remote.url]);
        assert!(
            again["snapshots"][0]["new_chunks"].as_u64().unwrap() > 0,
            "{}: {again}",
            remote.kind
        );
        let ok = json(&a, &["remote", "verify", &remote.url]);
        assert_eq!(ok["damaged"].as_array().unwrap().len(), 0, "{ok}");
        let b = Env::new();
        b.ok(&["-q", "pull", &id, "--from", &remote.url]);
        b.ok(&["verify"]);
    }
}

#[test]
fn remote_prune_max_size_removes_the_least_recently_pushed_or_pulled_unnamed_snapshots_until_it_fits()
 {
    let mut backends = vec![file("budget")];
    backends.extend(s3("budget"));
    for remote in backends {
        let a = Env::new();
        let mut ids = Vec::new();
        for i in 0..4u64 {
            let src = a.path(&format!("env{i}"));
            write(&src.join("lib/data.bin"), &pseudo_random(1 << 20, 100 + i));
            let mut args = vec!["push", src.to_str().unwrap(), "--to", &remote.url];
            if i == 0 {
                args.extend(["--name", "keep"]);
            }
            let out = json(&a, &args);
            ids.push(out["snapshots"][0]["id"].as_str().unwrap().to_owned());
            // Push times are compared in whole seconds.
            std::thread::sleep(std::time::Duration::from_millis(1100));
        }
        // Another machine pulls the oldest unnamed one: it is now the most recently used.
        let b = Env::new();
        json(&b, &["pull", &ids[1], "--from", &remote.url]);
        let stats = || json(&a, &["remote", "stats", &remote.url]);
        let before = stats();
        let prune = |extra: &[&str]| {
            let mut args = vec![
                "remote",
                "prune",
                &remote.url,
                "--older-than",
                "365d",
                "--grace",
                "0s",
                "--max-size",
                "2600K",
            ];
            args.extend_from_slice(extra);
            json(&a, &args)
        };
        // The dry run names the two least recently used unnamed snapshots (the pulled one
        // stays, though pushed before them) and changes nothing.
        let dry = prune(&["--dry-run"]);
        let removed: Vec<&str> = dry["removed_snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(removed, [&ids[2], &ids[3]], "{}: {dry}", remote.kind);
        assert_eq!(
            stats(),
            before,
            "{}: a dry run changed the remote",
            remote.kind
        );

        prune(&[]);
        let after = stats();
        assert_eq!(after["snapshots"], 2, "{}: {after}", remote.kind);
        assert_eq!(after["max_size"], 2600 << 10, "{}: {after}", remote.kind);
        // The packs went in two steps (marked, then deleted): the remote now fits.
        prune(&[]);
        let fits = stats();
        assert!(
            fits["pack_bytes"].as_u64().unwrap() <= 2600 << 10,
            "{}: {fits}",
            remote.kind
        );
        // What is left still pulls.
        let b = Env::new();
        for id in [&ids[0], &ids[1]] {
            b.ok(&["-q", "pull", id, "--from", &remote.url]);
        }
        b.ok(&["verify"]);
    }
}

/// `remote doctor URL --json` with extra environment variables: (exit code, steps as
/// (step, ok, said)).
fn doctor(env: &Env, url: &str, vars: &[(&str, &str)]) -> (i32, Vec<(String, bool, String)>) {
    let mut cmd = env.cmd();
    cmd.args(["--json", "remote", "doctor", url]);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let steps = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["step"].as_str().unwrap().to_owned(),
                s["ok"].as_bool().unwrap(),
                s["said"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    (out.status.code().unwrap(), steps)
}

#[test]
fn remote_doctor_says_what_works_and_names_what_does_not() {
    let env = Env::new();
    let mut backends = vec![file("doctor")];
    backends.extend(s3("doctor"));
    backends.extend(webdav("doctor"));
    for remote in &backends {
        let (code, steps) = doctor(&env, &remote.url, &[]);
        let names: Vec<&str> = steps.iter().map(|s| s.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "read",
                "list",
                "write",
                "read back",
                "create-if-absent",
                "delete"
            ],
            "{}",
            remote.kind
        );
        assert!(steps.iter().all(|s| s.1), "{}: {steps:?}", remote.kind);
        assert_eq!(code, 0);
    }
    // A dead remote: named as not answering, at the first step, without waiting for each.
    let (code, steps) = doctor(
        &env,
        "http://127.0.0.1:9/envs",
        &[("ENVSTORE_REMOTE_TIMEOUT", "2")],
    );
    assert_eq!(code, 1);
    assert_eq!(steps.len(), 1, "{steps:?}");
    assert!(!steps[0].1);
    let Some(s3) = s3("doctor") else { return };
    // Wrong credentials, a missing bucket, and a user that may read but not write: each is
    // named as what it is, never a silent miss.
    let (code, steps) = doctor(&env, &s3.url, &[("AWS_SECRET_ACCESS_KEY", "wrong")]);
    assert_eq!(code, 1);
    assert!(
        steps[0].2.contains("403") && steps[0].2.contains("SignatureDoesNotMatch"),
        "{steps:?}"
    );
    let (code, steps) = doctor(&env, "s3://no-bucket-by-this-name/x", &[]);
    assert_eq!(code, 1);
    assert!(
        steps[0].2.contains("the bucket does not exist"),
        "{steps:?}"
    );
    let (code, steps) = doctor(
        &env,
        &s3.url,
        &[
            ("AWS_ACCESS_KEY_ID", "envstore-reader"),
            ("AWS_SECRET_ACCESS_KEY", "envstore-reader-secret"),
        ],
    );
    assert_eq!(code, 1);
    let by_step = |name: &str| steps.iter().find(|s| s.0 == name).cloned();
    assert!(
        by_step("read").unwrap().1 && by_step("list").unwrap().1,
        "{steps:?}"
    );
    let wrote = by_step("write").unwrap();
    assert!(!wrote.1 && wrote.2.contains("403"), "{steps:?}");
    // A push with those credentials fails naming the refusal, exit 2.
    let src = env.path("src");
    write(&src.join("a.txt"), b"a\n");
    let out = env
        .cmd()
        .args(["push", src.to_str().unwrap(), "--to", &s3.url])
        .env("AWS_ACCESS_KEY_ID", "envstore-reader")
        .env("AWS_SECRET_ACCESS_KEY", "envstore-reader-secret")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("403") && stderr.contains("hint"),
        "{stderr}"
    );
    // A pull with them works (telling the remote it was pulled is refused, quietly).
    let id = env.ingest(&src);
    env.ok(&["-q", "push", &id, "--to", &s3.url]);
    let fresh = Env::new();
    let out = fresh
        .cmd()
        .args(["pull", &id, "--from", &s3.url])
        .env("AWS_ACCESS_KEY_ID", "envstore-reader")
        .env("AWS_SECRET_ACCESS_KEY", "envstore-reader-secret")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("403"),
        "{out:?}"
    );
}

#[test]
fn the_remote_cache_is_shown_by_stats_and_pruned_with_the_store() {
    let remote = file("cache");
    let a = Env::new();
    let src = a.path("env");
    fleet_env(&src, 3, &[1, 2]);
    a.ok(&["-q", "push", src.to_str().unwrap(), "--to", &remote.url]);
    let stats = json(&a, &["stats"]);
    assert_eq!(stats["remote_cache_files"], 1, "{stats}");
    assert!(stats["remote_cache_bytes"].as_u64().unwrap() > 0);
    // A month unused: prune drops it (a dry run only says so).
    let cache = a.store.join("remote-cache");
    for entry in fs::read_dir(&cache).unwrap() {
        let f = fs::File::options()
            .append(true)
            .open(entry.unwrap().path())
            .unwrap();
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(40 * 86400);
        f.set_modified(old).unwrap();
    }
    let dry = json(&a, &["prune", "--dry-run"]);
    assert_eq!(dry["remote_cache_removed"], 1, "{dry}");
    assert_eq!(json(&a, &["stats"])["remote_cache_files"], 1);
    json(&a, &["prune"]);
    assert_eq!(json(&a, &["stats"])["remote_cache_files"], 0);
}

/// Every file below `dir` with its bytes.
fn contents(dir: &Path) -> std::collections::BTreeMap<std::path::PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.insert(e.path(), fs::read(e.path()).unwrap());
            }
        }
    }
    out
}

#[test]
fn remote_prune_dry_run_changes_nothing_and_a_damaged_local_object_is_never_pushed() {
    let remote = file("dry");
    let root = std::path::PathBuf::from(remote.url.strip_prefix("file://").unwrap());
    let a = Env::new();
    for i in 0..3 {
        let src = a.path(&format!("env{i}"));
        fleet_env(&src, i, &[i, i + 1]);
        a.ok(&["-q", "push", src.to_str().unwrap(), "--to", &remote.url]);
    }
    // Push times are whole seconds: let them be older than "0s ago".
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let before = contents(&root);
    let args = |extra: &'static [&'static str]| {
        let mut v = vec!["remote", "prune", remote.url.as_str()];
        v.extend(["--older-than", "0s", "--grace", "0s"]);
        v.extend_from_slice(extra);
        v
    };
    let dry = json(&a, &args(&["--dry-run"]));
    assert_eq!(
        dry["removed_snapshots"].as_array().unwrap().len(),
        3,
        "{dry}"
    );
    assert!(contents(&root) == before, "a dry run changed the remote");
    json(&a, &args(&[]));
    assert!(contents(&root) != before, "the real prune changed nothing");

    // A local object damaged after ingest: the push refuses it and publishes nothing.
    let src = a.path("damaged");
    write(&src.join("lib/data.bin"), &pseudo_random(300 << 10, 77));
    let id = a.ok(&["-q", "ingest", src.to_str().unwrap()]);
    let id = id.trim();
    let objects = a.store.join("objects");
    let victim = contents(&objects)
        .into_iter()
        .find(|(_, bytes)| bytes.len() == 300 << 10)
        .unwrap()
        .0;
    crate::common::chmod(&victim, 0o644);
    let mut bytes = fs::read(&victim).unwrap();
    bytes[1000] ^= 1;
    fs::write(&victim, bytes).unwrap();
    let err = a.fails(&["push", id, "--to", &remote.url]);
    assert!(err.contains("damaged"), "{err}");
    assert!(!root.join("snapshots").join(id).exists());
}

#[test]
fn pull_ref_pin_keeps_the_name_here() {
    let remote = file("pin");
    let a = Env::new();
    let src = a.path("env");
    fleet_env(&src, 5, &[1]);
    let out = json(
        &a,
        &[
            "push",
            src.to_str().unwrap(),
            "--to",
            &remote.url,
            "--name",
            "tools",
        ],
    );
    let id = out["snapshots"][0]["id"].as_str().unwrap().to_owned();
    let b = Env::new();
    let err = b.fails(&["pull", &id, "--from", &remote.url, "--pin"]);
    assert!(err.contains("--pin pins a ref"), "{err}");
    b.ok(&["-q", "pull", "tools", "--from", &remote.url, "--pin"]);
    // Offline now (no remote configured): the name is a pin of this store.
    let path = b.ok(&["materialize", "tools"]);
    assert!(Path::new(path.trim()).join("pyvenv.cfg").exists());
    let listed = b.ok(&["ls"]);
    assert!(listed.contains("tools"), "{listed}");
    // And prune keeps it.
    b.ok(&["-q", "prune", "--older-than", "0s"]);
    b.ok(&["materialize", "tools"]);
}

#[test]
fn concurrent_pushes_of_overlapping_environments_all_land_whole() {
    let mut backends = vec![file("overlap")];
    backends.extend(s3("overlap"));
    backends.extend(webdav("overlap"));
    for remote in backends {
        // Six runners at once, each with its own store, environments sharing most packages
        // (and so the same summaries and, often, the same packs).
        let pushed: Vec<(String, std::path::PathBuf, Env)> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..6u64)
                .map(|i| {
                    let url = remote.url.clone();
                    scope.spawn(move || {
                        let env = Env::new();
                        let src = env.path("env");
                        fleet_env(&src, i, &[1, 2, 3, 4, 10 + i % 3]);
                        write(&src.join("lib/own.bin"), &pseudo_random(300 << 10, 50 + i));
                        let out = json(&env, &["push", src.to_str().unwrap(), "--to", &url]);
                        let id = out["snapshots"][0]["id"].as_str().unwrap().to_owned();
                        (id, src, env)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let check = json(&pushed[0].2, &["remote", "verify", &remote.url]);
        assert_eq!(check["snapshots"], 6, "{}: {check}", remote.kind);
        assert_eq!(check["damaged"].as_array().unwrap().len(), 0, "{check}");
        for (id, src, _) in &pushed {
            let b = Env::new();
            b.ok(&["-q", "pull", id, "--from", &remote.url]);
            let path = b.materialize(Path::new(id));
            assert_eq!(
                crate::common::snapshot_of(&path, &crate::common::is_bytecode),
                crate::common::snapshot_of(src, &crate::common::is_bytecode),
                "{}",
                remote.kind
            );
        }
    }
}

#[test]
fn a_remote_in_the_users_file_serves_every_store() {
    use std::os::unix::fs::PermissionsExt as _;
    let remote = file("user");
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("config");
    let run = |env: &Env, args: &[&str]| {
        let out = env
            .cmd()
            .args(args)
            .env("XDG_CONFIG_HOME", &config)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let a = Env::new();
    let (code, _, err) = run(&a, &["remote", "add", "--user", "fleet", &remote.url]);
    assert_eq!(code, Some(0), "{err}");
    let file = config.join("envstore/remotes");
    assert_eq!(
        fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let src = a.path("env");
    fleet_env(&src, 9, &[2]);
    // Store A pushes through the user's remote by name.
    let (code, _, err) = run(
        &a,
        &[
            "-q",
            "push",
            src.to_str().unwrap(),
            "--to",
            "fleet",
            "--name",
            "tools",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    // Another store of the same user knows it without `remote add`, and falls through to it.
    let b = Env::new();
    let (_, listed, _) = run(&b, &["remote", "ls"]);
    assert!(listed.contains("fleet"), "{listed}");
    let (code, path, err) = run(&b, &["materialize", "tools"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(Path::new(path.trim()).join("pyvenv.cfg").exists());
    // It is not the store's to remove; --user removes it.
    let (code, _, err) = run(&b, &["remote", "rm", "fleet"]);
    assert_eq!(code, Some(2), "{err}");
    let (code, _, err) = run(&b, &["remote", "rm", "--user", "fleet"]);
    assert_eq!(code, Some(0), "{err}");
    let (_, listed, _) = run(&a, &["remote", "ls"]);
    assert!(!listed.contains("fleet"), "{listed}");
}
