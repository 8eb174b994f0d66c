//! run, leases, prune and verify.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use crate::common::*;

/// Makes snapshot `id` look last used `days` ago.
fn age(env: &Env, id: &str, days: u64) {
    let record = fs::File::open(env.store.join("snapshots").join(id)).unwrap();
    record
        .set_modified(SystemTime::now() - Duration::from_secs(days * 86_400))
        .unwrap();
}

fn ids(env: &Env) -> Vec<String> {
    let mut ids: Vec<String> = json(env, &["ls"])
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

fn object_count(env: &Env) -> usize {
    fs::read_dir(env.store.join("objects"))
        .unwrap()
        .map(|s| fs::read_dir(s.unwrap().path()).unwrap().count())
        .sum()
}

#[test]
fn run_passes_the_path_and_the_exit_code() {
    let env = Env::new();
    let src = env.path("src");
    sample_env(&src);
    let out = env
        .cmd()
        .args([
            "run",
            src.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            "test -x \"$ENVSTORE_PATH/bin/tool\" && echo \"$ENVSTORE_ID\" && exit 7",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        env.ingest(&src)
    );
    let err = env.fails(&["run", src.to_str().unwrap(), "--", "/no/such/program"]);
    assert!(err.contains("failed to run `/no/such/program`"), "{err}");
}

#[test]
fn prune_removes_what_is_unpinned_and_unused_and_its_objects() {
    let env = Env::new();
    let (a, b, c) = (env.path("a"), env.path("b"), env.path("c"));
    sample_env(&a);
    sample_env(&b);
    write(&b.join("only-in-b"), &pseudo_random(5000, 1));
    write(&c.join("only-in-c"), b"c");
    let a_id = env
        .ok(&["pin", "keep", a.to_str().unwrap()])
        .trim()
        .to_owned();
    let a_path = env.materialize(&a);
    env.materialize(&b);
    env.ingest(&c);
    let before = object_count(&env);

    // Within the default 30-day window nothing goes.
    let plan = json(&env, &["prune"]);
    assert_eq!(plan["removed"], serde_json::json!([]));
    for id in ids(&env) {
        age(&env, &id, 40);
    }
    let dry = json(&env, &["prune", "--dry-run"]);
    assert_eq!(dry["removed"].as_array().unwrap().len(), 2);
    assert_eq!(ids(&env).len(), 3, "--dry-run changes nothing");
    assert_eq!(object_count(&env), before);

    let done = json(&env, &["prune"]);
    let mut removed: Vec<_> = done["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].clone())
        .collect();
    let mut planned: Vec<_> = dry["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].clone())
        .collect();
    removed.sort_by_key(|v| v.to_string());
    planned.sort_by_key(|v| v.to_string());
    assert_eq!(
        removed, planned,
        "the dry run printed the plan the real run carried out"
    );
    assert!(done["freed_bytes"].as_u64().unwrap() >= 5000);
    assert_eq!(ids(&env), vec![a_id.clone()]);
    assert_eq!(
        object_count(&env),
        before - 2,
        "only-in-b and only-in-c are gone"
    );
    // The pinned snapshot stays materialized and intact.
    assert_eq!(
        snapshot_of(&a_path, &|_| false),
        snapshot_of(&a, &is_bytecode)
    );
    assert_eq!(fs::read_dir(env.store.join("envs")).unwrap().count(), 1);
    env.ok(&["verify"]);
}

#[test]
fn max_size_removes_least_recently_used_first() {
    let env = Env::new();
    let mut made = Vec::new();
    for (i, days) in [(0, 3), (1, 2), (2, 1)] {
        let src = env.path(&format!("s{i}"));
        write(&src.join("blob"), &pseudo_random(100_000, i));
        let id = env.ingest(&src);
        age(&env, &id, days);
        made.push(id);
    }
    // Room for one blob (plus trees): the two least recently used go, the newest stays.
    let done = json(&env, &["prune", "--max-size", "150K"]);
    let removed: Vec<_> = done["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(removed, vec![made[0].clone(), made[1].clone()]);
    assert!(
        done["removed"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["reason"] == "size")
    );
    assert_eq!(ids(&env), vec![made[2].clone()]);
    assert!(done["size_after"].as_u64().unwrap() <= 150 << 10);
    assert_eq!(done["size_unmet"], false);
}

#[test]
fn prune_skips_a_leased_snapshot_without_waiting() {
    let env = Env::new();
    let src = env.path("src");
    sample_env(&src);
    let id = env.ingest(&src);
    let flag = env.path("started");
    let mut holder = env
        .cmd()
        .args([
            "run",
            &id,
            "--",
            "sh",
            "-c",
            &format!("touch {}; sleep 6", flag.display()),
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    while !flag.exists() {
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = env.run(&["prune", "--older-than", "0"]);
    assert!(out.status.success());
    // It did not wait for the lease: the holder is still running when prune is done.
    assert!(
        holder.try_wait().unwrap().is_none(),
        "prune waited for the lease to end"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("in use (leased)"),
        "{out:?}"
    );
    assert!(env.store.join("envs").join(&id).is_dir());
    assert!(holder.wait().unwrap().success());
    let done = json(&env, &["prune", "--older-than", "0"]);
    assert_eq!(done["removed"][0]["id"], id.as_str());
    assert!(!env.store.join("envs").join(&id).exists());
}

#[test]
fn prune_gives_up_on_a_held_store_lock_with_a_clear_message() {
    let env = Env::new();
    sample_env(&env.path("src"));
    env.ingest(&env.path("src"));
    // Another process holds the store lock (as a long ingest would).
    let held = env.path("held");
    let mut holder = std::process::Command::new("flock")
        .arg("--shared")
        .arg(env.store.join("store.lock"))
        .args(["sh", "-c", &format!("touch {}; sleep 8", held.display())])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("flock (util-linux)");
    // Ready when the holder has the lock (it runs its command only then).
    while !held.exists() {
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = env
        .cmd()
        .env("ENVSTORE_LOCK_TIMEOUT", "0.5")
        .args(["prune", "--older-than", "0"])
        .output()
        .unwrap();
    // It gave up on its own time-out, not when the holder let go.
    assert!(
        holder.try_wait().unwrap().is_none(),
        "prune waited for the holder"
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("timed out")
            && err.contains("store lock")
            && err.contains("ENVSTORE_LOCK_TIMEOUT"),
        "{err}"
    );
    holder.kill().unwrap();
    holder.wait().unwrap();
}

fn corrupt(path: &Path) {
    chmod(path, 0o644);
    fs::write(path, b"written through a hardlink").unwrap();
}

#[test]
fn verify_finds_a_write_through_a_hardlink_and_repair_restores_it() {
    let env = Env::new();
    let src = env.path("src");
    sample_env(&src);
    let path = env.materialize_with("hardlink", &src);
    let id = path.file_name().unwrap().to_str().unwrap().to_owned();
    env.ok(&["verify"]);
    corrupt(&path.join("include/pkg/header.h"));

    let out = env.run(&["verify"]);
    assert_eq!(out.status.code(), Some(1));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("content does not match its hash") && report.contains(&id[..12]),
        "names the snapshot: {report}"
    );
    assert!(
        report.contains("include/pkg/header.h: hardlinked to a damaged object"),
        "{report}"
    );

    // The source is still there: repair restores the object from it and rebuilds the tree.
    let out = env.run(&["verify", "--repair"]);
    assert!(out.status.success(), "{out:?}");
    env.ok(&["verify"]);
    assert_eq!(
        snapshot_of(&path, &|_| false),
        snapshot_of(&src, &is_bytecode)
    );
}

#[test]
fn repair_uses_an_intact_copy_when_the_source_is_gone() {
    let env = Env::new();
    let src = env.path("src");
    sample_env(&src);
    let copy = env.materialize_with("copy", &src);
    let expected = snapshot_of(&src, &is_bytecode);
    fs::remove_dir_all(&src).unwrap();
    // Damage the object itself.
    let object = fs::read_dir(env.store.join("objects"))
        .unwrap()
        .flat_map(|s| fs::read_dir(s.unwrap().path()).unwrap())
        .map(|e| e.unwrap().path())
        .find(|p| fs::read(p).unwrap() == b"#pragma once\nint f(void);\n")
        .unwrap();
    corrupt(&object);
    assert_eq!(env.run(&["verify"]).status.code(), Some(1));
    let out = env.run(&["verify", "--repair"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("from an intact materialized copy"));
    assert_eq!(fs::read(&object).unwrap(), b"#pragma once\nint f(void);\n");
    assert_eq!(snapshot_of(&copy, &|_| false), expected);
}

#[test]
fn verify_reports_damaged_materializations_and_repair_rebuilds_them() {
    let env = Env::new();
    let src = env.path("src");
    sample_env(&src);
    let path = env.materialize(&src);
    fs::remove_file(path.join("share/empty-file")).unwrap();
    write(&path.join("share/intruder"), b"x");
    chmod(&path.join("bin/tool"), 0o444);
    // Python writes bytecode at run time: not damage.
    write(
        &path.join("lib/python3.11/site-packages/pkg/__pycache__/core.cpython-311.pyc"),
        b"pyc",
    );
    let out = env.run(&["verify", path.file_name().unwrap().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("share/empty-file: missing"), "{report}");
    assert!(
        report.contains("share/intruder: not part of the snapshot"),
        "{report}"
    );
    assert!(report.contains("bin/tool: exec bit differs"), "{report}");
    assert!(!report.contains("__pycache__"), "{report}");
    env.ok(&["verify", "--repair"]);
    env.ok(&["verify"]);
    assert_eq!(
        snapshot_of(&path, &|_| false),
        snapshot_of(&src, &is_bytecode)
    );
}

#[test]
fn repair_rebuilds_a_damaged_index_and_pins_live_on() {
    let env = Env::new();
    let src = env.path("src");
    sample_env(&src);
    let id = env
        .ok(&["pin", "kept", src.to_str().unwrap()])
        .trim()
        .to_owned();
    fs::write(env.store.join("index.redb"), b"not a database").unwrap();
    let out = env.run(&["verify"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("index"),
        "{out:?}"
    );
    env.ok(&["verify", "--repair"]);
    let list = json(&env, &["ls"]);
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["pins"], serde_json::json!(["kept"]));
}

/// Workers materialize and check their trees under a lease while prune runs in a loop.
#[test]
fn prune_in_a_loop_never_breaks_leased_workers() {
    let env = Env::new();
    let sources: Vec<PathBuf> = (0..4)
        .map(|i| {
            let src = env.path(&format!("src{i}"));
            write(&src.join("shared/lib.py"), b"shared between all\n");
            write(
                &src.join(format!("own/{i}.bin")),
                &pseudo_random(200_000, i),
            );
            for j in 0..50 {
                write(
                    &src.join(format!("pkg/m{j}.py")),
                    format!("{i} {j}").as_bytes(),
                );
            }
            src
        })
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(12);
    let pruner = {
        let store = env.store.clone();
        std::thread::spawn(move || {
            let mut runs = 0;
            while std::time::Instant::now() < deadline {
                let out = std::process::Command::new(BIN)
                    .env("ENVSTORE_DIR", &store)
                    .args(["-q", "prune", "--older-than", "0"])
                    .output()
                    .unwrap();
                assert!(out.status.success(), "prune failed: {out:?}");
                runs += 1;
            }
            runs
        })
    };
    let workers: Vec<_> = sources
        .iter()
        .cloned()
        .map(|src| {
            let store = env.store.clone();
            std::thread::spawn(move || {
                let mut checks = 0;
                while std::time::Instant::now() < deadline {
                    let script = format!(
                        "diff -r --no-dereference \"$ENVSTORE_PATH\" {}",
                        src.display()
                    );
                    let out = std::process::Command::new(BIN)
                        .env("ENVSTORE_DIR", &store)
                        .args([
                            "-q",
                            "run",
                            src.to_str().unwrap(),
                            "--",
                            "sh",
                            "-c",
                            &script,
                        ])
                        .output()
                        .unwrap();
                    assert!(out.status.success(), "a worker saw a broken tree: {out:?}");
                    checks += 1;
                }
                checks
            })
        })
        .collect();
    let checks: u32 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    let prunes = pruner.join().unwrap();
    assert!(
        checks > 20 && prunes > 5,
        "too little happened: {checks} checks, {prunes} prunes"
    );
    env.ok(&["verify"]);
}

/// Prune's sweep joins sorted id sets with the listing of `objects/`, which must come in id
/// order. A file planted with an uppercase hex name (which the id parser accepts, but sorts by
/// name before lowercase ids it is larger than) must not knock the join out of step and get
/// needed objects deleted; it is not envstore's, so it is left alone.
#[test]
fn a_planted_uppercase_name_cannot_make_prune_delete_what_is_needed() {
    let env = Env::new();
    let src = env.path("src");
    for i in 0..48 {
        write(
            &src.join(format!("f{i}")),
            format!("content {i}").as_bytes(),
        );
    }
    let id = env.ingest(&src);
    env.ok(&["pin", "keep", &id]);
    // A shard holding a needed object whose name starts with a-e (below F).
    let objects = env.store.join("objects");
    let shard = fs::read_dir(&objects)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|shard| {
            fs::read_dir(shard).unwrap().flatten().any(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.starts_with(['a', 'b', 'c', 'd', 'e'])
            })
        })
        .expect("48 objects: some shard holds a name starting with a-e");
    let planted = shard.join(format!("F{}", "0".repeat(61)));
    write(&planted, b"not envstore's");
    let before = object_count(&env);
    env.ok(&["prune", "--older-than", "0s"]);
    assert_eq!(object_count(&env), before, "prune removed objects");
    env.ok(&["verify"]);
    assert!(
        planted.exists(),
        "a file that is not envstore's is left alone"
    );
}
