//! Keyed environments (issue 13): `ensure` builds only when the inputs change, finds earlier
//! states at once, builds once for concurrent callers, and records nothing for a failed build.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::*;

/// A build that counts its runs in `count` and copies the key file into the output.
fn build_script(env: &Env) -> String {
    format!(
        "echo run >> {}; cp requirements.txt \"$ENVSTORE_OUT/\"; echo to-stderr",
        env.path("count").display()
    )
}

fn builds(env: &Env) -> usize {
    fs::read_to_string(env.path("count")).map_or(0, |s| s.lines().count())
}

fn ensure(env: &Env, project: &Path, extra: &[&str]) -> std::process::Output {
    ensure_sh(env, project, extra, &build_script(env))
        .output()
        .unwrap()
}

/// `ensure --key-file requirements.txt EXTRA... -- sh -c SCRIPT` in `project`, not yet run.
fn ensure_sh(env: &Env, project: &Path, extra: &[&str], script: &str) -> Command {
    let mut cmd = env.cmd();
    cmd.current_dir(project)
        .args(["ensure", "--key-file", "requirements.txt"])
        .args(extra)
        .args(["--", "sh", "-c", script]);
    cmd
}

fn path_of(out: &std::process::Output) -> PathBuf {
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    assert_eq!(
        stdout.lines().count(),
        1,
        "only the path on stdout: {stdout:?}"
    );
    PathBuf::from(stdout.trim())
}

#[test]
fn ensure_builds_only_when_the_key_changes_and_finds_earlier_states() {
    let env = Env::new();
    let project = env.path("project");
    write(&project.join("requirements.txt"), b"numpy==2.0\n");
    write(&project.join("src/main.py"), b"print(1)\n");
    let first = path_of(&ensure(&env, &project, &["--name", "deps"]));
    assert_eq!(builds(&env), 1);
    assert_eq!(
        fs::read(first.join("requirements.txt")).unwrap(),
        b"numpy==2.0\n"
    );

    // Editing a source file is not a key change: no build.
    write(&project.join("src/main.py"), b"print(2)\n");
    assert_eq!(path_of(&ensure(&env, &project, &["--name", "deps"])), first);
    assert_eq!(builds(&env), 1);

    // Editing the manifest rebuilds, although an environment exists.
    write(&project.join("requirements.txt"), b"numpy==2.1\n");
    let second = path_of(&ensure(&env, &project, &["--name", "deps"]));
    assert_ne!(second, first);
    assert_eq!(builds(&env), 2);

    // Reverting it finds the earlier environment without building.
    write(&project.join("requirements.txt"), b"numpy==2.0\n");
    assert_eq!(path_of(&ensure(&env, &project, &["--name", "deps"])), first);
    assert_eq!(builds(&env), 2);

    // explain says which input changed between the builds.
    let out = env.ok(&["explain", "deps"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].contains("requirements.txt changed"), "{out}");
    assert!(lines[1].contains("first build"), "{out}");
    let keys = json(&env, &["keys"]);
    assert_eq!(keys.as_array().unwrap().len(), 2, "{keys}");
    assert_eq!(keys[0]["name"], "deps");
    assert_eq!(keys[0]["files"], serde_json::json!(["requirements.txt"]));

    // --json says whether it built.
    let out = env
        .cmd()
        .current_dir(&project)
        .args([
            "--json",
            "ensure",
            "--key-file",
            "requirements.txt",
            "--name",
            "deps",
            "--",
            "sh",
            "-c",
        ])
        .arg(build_script(&env))
        .output()
        .unwrap();
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(value["built"], false);
    assert_eq!(value["path"], first.to_str().unwrap());
}

#[test]
fn variables_and_texts_are_part_of_the_key() {
    let env = Env::new();
    let project = env.path("project");
    write(&project.join("requirements.txt"), b"x\n");
    let run = |version: Option<&str>, text: &str| {
        let mut cmd = env.cmd();
        cmd.current_dir(&project).env_remove("PYV");
        if let Some(v) = version {
            cmd.env("PYV", v);
        }
        let out = cmd
            .args([
                "ensure",
                "--key-file",
                "requirements.txt",
                "--key-env",
                "PYV",
                "--key",
                text,
            ])
            .args(["--name", "v", "--", "sh", "-c"])
            .arg(build_script(&env))
            .output()
            .unwrap();
        path_of(&out)
    };
    run(Some("3.11"), "a");
    run(Some("3.11"), "a");
    assert_eq!(builds(&env), 1);
    run(Some("3.12"), "a");
    run(None, "a");
    run(None, "b");
    assert_eq!(builds(&env), 4);
    let out = env.ok(&["explain", "v"]);
    assert!(out.lines().nth(2).unwrap().contains("PYV changed"), "{out}");
    assert!(
        out.lines()
            .nth(2)
            .unwrap()
            .contains("requirements.txt unchanged"),
        "{out}"
    );
}

#[test]
fn a_failing_build_records_nothing_leaves_nothing_and_passes_on_its_exit_code() {
    let env = Env::new();
    let project = env.path("project");
    write(&project.join("requirements.txt"), b"x\n");
    let out = ensure_sh(&env, &project, &[], "touch \"$ENVSTORE_OUT/half\"; exit 7")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    assert!(out.stdout.is_empty());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nothing was recorded"),
        "{out:?}"
    );
    for dir in ["keys", "tmp", "snapshots", "envs"] {
        let left: Vec<_> = fs::read_dir(env.store.join(dir)).unwrap().collect();
        assert!(left.is_empty(), "{dir}: {left:?}");
    }
    // A command that cannot start is exit 2, and also records nothing.
    let err = env.fails(&["ensure", "--", "/no/such/command"]);
    assert!(err.contains("cannot be started"), "{err}");
    // A key file that does not exist is named.
    let err = env.fails(&["ensure", "--key-file", "/no/such/file", "--", "true"]);
    assert!(err.contains("/no/such/file"), "{err}");
}

#[test]
fn concurrent_callers_with_one_key_build_once_and_share_the_path() {
    let env = Env::new();
    let project = env.path("project");
    write(&project.join("requirements.txt"), b"slow\n");
    let script = format!("sleep 1; {}", build_script(&env));
    let children: Vec<_> = (0..4)
        .map(|_| {
            ensure_sh(&env, &project, &[], &script)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let paths: Vec<PathBuf> = children
        .into_iter()
        .map(|c| path_of(&c.wait_with_output().unwrap()))
        .collect();
    assert_eq!(builds(&env), 1, "exactly one build");
    assert!(paths.windows(2).all(|w| w[0] == w[1]), "{paths:?}");
}

#[test]
fn a_build_slower_than_the_lock_timeout_makes_the_waiter_fail_clearly() {
    let env = Env::new();
    let project = env.path("project");
    write(&project.join("requirements.txt"), b"x\n");
    let script = format!("sleep 4; {}", build_script(&env));
    let holder = ensure_sh(&env, &project, &[], &script)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the holder is building (its output directory exists).
    let start = std::time::Instant::now();
    while fs::read_dir(env.store.join("tmp")).map_or(true, |d| d.count() == 0) {
        assert!(
            start.elapsed().as_secs() < 30,
            "the first build never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = env
        .cmd()
        .current_dir(&project)
        .env("ENVSTORE_LOCK_TIMEOUT", "0.5")
        .args([
            "ensure",
            "--key-file",
            "requirements.txt",
            "--",
            "sh",
            "-c",
            &script,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("timed out")
            && err.contains("waiting for the build of key")
            && err.contains(&format!("process {}", holder.id())),
        "names the key and the holder: {err}"
    );
    // Prune meanwhile leaves the running build's output alone.
    env.ok(&["prune", "--older-than", "0s"]);
    path_of(&holder.wait_with_output().unwrap());
    assert_eq!(builds(&env), 1);
}

#[test]
fn prune_keeps_the_newest_build_of_a_name_and_drops_records_with_their_snapshots() {
    let env = Env::new();
    let project = env.path("project");
    write(&project.join("requirements.txt"), b"one\n");
    let old = path_of(&ensure(&env, &project, &["--name", "deps"]));
    write(&project.join("requirements.txt"), b"two\n");
    let new = path_of(&ensure(&env, &project, &["--name", "deps"]));
    write(&project.join("requirements.txt"), b"unnamed\n");
    let unnamed = path_of(&ensure(&env, &project, &[]));
    let plan = json(&env, &["prune", "--older-than", "0s"]);
    assert_eq!(plan["removed"].as_array().unwrap().len(), 2, "{plan}");
    assert!(new.exists() && !old.exists() && !unnamed.exists());
    let keys = json(&env, &["keys"]);
    assert_eq!(keys.as_array().unwrap().len(), 1, "{keys}");
    let locks = fs::read_dir(env.store.join("locks")).unwrap().count();
    assert_eq!(locks, 1, "the build locks of dropped records go with them");
    // The pruned state is built again when asked for.
    write(&project.join("requirements.txt"), b"one\n");
    assert_eq!(path_of(&ensure(&env, &project, &["--name", "deps"])), old);
    assert_eq!(builds(&env), 4);
}

#[test]
fn a_venv_built_by_ensure_is_stored_relocatably_and_runs_from_its_stable_path() {
    let env = Env::new();
    let project = env.path("project");
    write(&project.join("requirements.txt"), b"# nothing to install\n");
    let out = ensure_sh(
        &env,
        &project,
        &[],
        "python3 -m venv --without-pip \"$ENVSTORE_OUT\"",
    )
    .output()
    .unwrap();
    let venv = path_of(&out);
    let prefix = Command::new(venv.join("bin/python"))
        .args(["-c", "import sys; print(sys.prefix)"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&prefix.stdout).trim(),
        venv.to_str().unwrap()
    );
    let activate = fs::read_to_string(venv.join("bin/activate")).unwrap();
    assert!(
        activate.contains(venv.to_str().unwrap()),
        "relocated to its stable path"
    );
}

#[test]
fn venv_builds_a_venv_keyed_on_its_requirements_with_uv_or_pip() {
    let env = Env::new();
    let project = env.path("project");
    write(&project.join("requirements.txt"), b"# nothing to install\n");
    // With uv when it is on PATH, and with venv + pip when it is not: two keys, two venvs.
    let no_uv_path = "/usr/local/bin:/usr/bin:/bin";
    for path in [std::env::var("PATH").unwrap(), no_uv_path.to_owned()] {
        let run = || {
            env.cmd()
                .current_dir(&project)
                .env("PATH", &path)
                .args(["--json", "venv", "-r", "requirements.txt", "--name", "dev"])
                .output()
                .unwrap()
        };
        let out = run();
        assert!(out.status.success(), "{out:?}");
        let first: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(first["built"], true, "{first}");
        let venv = PathBuf::from(first["path"].as_str().unwrap());
        let prefix = Command::new(venv.join("bin/python"))
            .args(["-c", "import sys; print(sys.prefix)"])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&prefix.stdout).trim(),
            venv.to_str().unwrap()
        );
        let second: serde_json::Value = serde_json::from_slice(&run().stdout).unwrap();
        assert_eq!(second["built"], false);
        assert_eq!(second["path"], first["path"]);
    }
    write(&project.join("requirements.txt"), b"# changed\n");
    let out = env
        .cmd()
        .current_dir(&project)
        .args(["--json", "venv", "-r", "requirements.txt", "--name", "dev"])
        .output()
        .unwrap();
    let changed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        changed["built"], true,
        "a changed requirements file builds: {out:?}"
    );
    let explained = env.ok(&["explain", "dev"]);
    assert!(
        explained
            .lines()
            .next()
            .unwrap()
            .contains("requirements.txt changed"),
        "{explained}"
    );
}

/// A prefix shaped like what pip installs: packages with dist-info RECORD files.
fn installed_prefix(root: &Path) {
    let site = root.join("lib/python3.11/site-packages");
    write(&site.join("pkg/__init__.py"), b"VALUE = 1\n");
    write(&site.join("pkg/data.bin"), &pseudo_random(200 << 10, 4));
    write(&site.join("pkg/__pycache__/x.pyc"), b"runtime");
    write(
        &site.join("pkg-1.0.dist-info/RECORD"),
        b"pkg/__init__.py,sha256=x,10\npkg/data.bin,sha256=y,204800\n",
    );
    write(&root.join("bin/tool"), b"#!/bin/sh\n");
    chmod(&root.join("bin/tool"), 0o755);
    std::os::unix::fs::symlink("tool", root.join("bin/tool2")).unwrap();
}

#[test]
fn ingest_by_records_reuses_a_snapshot_on_metadata_and_hashes_on_any_doubt() {
    let env = Env::new();
    let prefix = env.path("overlay");
    installed_prefix(&prefix);
    let ingest = |extra: &[&str]| {
        let mut args = vec!["ingest", "--by-records", "--key", "cp311"];
        args.extend_from_slice(extra);
        args.push(prefix.to_str().unwrap());
        json(&env, &args)
    };
    let first = ingest(&[]);
    assert_eq!(
        first["by_records"], false,
        "a miss hashes and records the key: {first}"
    );
    let second = ingest(&[]);
    assert_eq!(second["by_records"], true, "{second}");
    assert_eq!(second["id"], first["id"]);
    // The same as a plain ingest.
    assert_eq!(env.ingest(&prefix), first["id"].as_str().unwrap());
    // Another interpreter: another key.
    let other = json(
        &env,
        &[
            "ingest",
            "--by-records",
            "--key",
            "cp312",
            prefix.to_str().unwrap(),
        ],
    );
    assert_eq!(other["by_records"], false);

    let site = prefix.join("lib/python3.11/site-packages");
    // Any doubt hashes: a size changed, a file added, a file removed, an exec bit, a link.
    type Doubt<'a> = (&'a str, Box<dyn Fn() + 'a>);
    let doubts: Vec<Doubt> = vec![
        (
            "size",
            Box::new(|| write(&site.join("pkg/__init__.py"), b"VALUE = 22\n")),
        ),
        ("added", Box::new(|| write(&site.join("pkg/new.py"), b""))),
        (
            "removed",
            Box::new(|| fs::remove_file(site.join("pkg/new.py")).unwrap()),
        ),
        (
            "exec",
            Box::new(|| chmod(&site.join("pkg/data.bin"), 0o755)),
        ),
        (
            "link",
            Box::new(|| {
                fs::remove_file(prefix.join("bin/tool2")).unwrap();
                std::os::unix::fs::symlink("other", prefix.join("bin/tool2")).unwrap();
            }),
        ),
    ];
    for (what, change) in doubts {
        change();
        let out = ingest(&[]);
        assert_eq!(out["by_records"], false, "{what}: {out}");
        assert_eq!(
            out["id"],
            env.ingest(&prefix).as_str(),
            "{what}: the hashed id"
        );
        assert_eq!(ingest(&[])["by_records"], true, "{what}: recorded again");
    }
    // Bytecode written at run time is filtered, as by the walk: no doubt.
    write(&site.join("pkg/__pycache__/y.pyc"), b"more runtime");
    assert_eq!(ingest(&[])["by_records"], true);
}

/// The discussions' acceptance criteria, with a real installer (uv when on PATH, else pip).
#[test]
fn venv_meets_the_acceptance_criteria_with_a_real_installer() {
    let env = Env::new();
    let project = env.path("project");
    write(&project.join("requirements.txt"), b"# v1\n");
    write(&project.join("src/app.py"), b"print(1)\n");
    let venv = |extra_env: &[(&str, &str)]| {
        let mut cmd = env.cmd();
        cmd.current_dir(&project).args([
            "--json",
            "venv",
            "-r",
            "requirements.txt",
            "--name",
            "app",
        ]);
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        cmd
    };
    let result = |out: std::process::Output| -> serde_json::Value {
        assert!(out.status.success(), "{out:?}");
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let first = result(venv(&[]).output().unwrap());
    assert_eq!(first["built"], true);
    // A source file edited: reused.
    write(&project.join("src/app.py"), b"print(2)\n");
    let again = result(venv(&[]).output().unwrap());
    assert_eq!(
        (again["built"].clone(), again["path"].clone()),
        (false.into(), first["path"].clone())
    );
    // The manifest edited: rebuilt although a venv exists.
    write(&project.join("requirements.txt"), b"# v2\n");
    // (Only comments changed, so the venv built has the same content: same path.)
    let second = result(venv(&[]).output().unwrap());
    assert_eq!(second["built"], true);
    assert_ne!(second["key"], first["key"]);
    // Reverted: the old venv, without a build.
    write(&project.join("requirements.txt"), b"# v1\n");
    let reverted = result(venv(&[]).output().unwrap());
    assert_eq!(
        (reverted["built"].clone(), reverted["path"].clone()),
        (false.into(), first["path"].clone())
    );
    // Four concurrent callers with a new manifest: one build, one path.
    write(&project.join("requirements.txt"), b"# v3\n");
    let children: Vec<_> = (0..4)
        .map(|_| {
            venv(&[])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let results: Vec<serde_json::Value> = children
        .into_iter()
        .map(|c| result(c.wait_with_output().unwrap()))
        .collect();
    assert_eq!(
        results.iter().filter(|r| r["built"] == true).count(),
        1,
        "{results:?}"
    );
    assert!(
        results.windows(2).all(|w| w[0]["path"] == w[1]["path"]),
        "{results:?}"
    );
    // A failing install records nothing and passes on the installer's exit code.
    let keys_before = json(&env, &["keys"]).as_array().unwrap().len();
    write(
        &project.join("requirements.txt"),
        b"envstore-no-such-package==0.0.1\n",
    );
    let out = venv(&[("UV_OFFLINE", "1"), ("PIP_NO_INDEX", "1")])
        .output()
        .unwrap();
    assert!(!matches!(out.status.code(), Some(0) | None), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nothing was recorded"),
        "{out:?}"
    );
    assert_eq!(json(&env, &["keys"]).as_array().unwrap().len(), keys_before);
    assert_eq!(fs::read_dir(env.store.join("tmp")).unwrap().count(), 0);
}

/// `python3` from PATH, the same interpreter by its real path, and a venv made from it: one
/// interpreter, one key, one environment (issue 27).
#[test]
fn venv_keys_on_the_interpreter_not_on_how_it_was_spelled() {
    let env = Env::new();
    let project = env.path("project");
    write(&project.join("requirements.txt"), b"# nothing to install\n");
    let other_venv = env.path("other-venv");
    let made = Command::new("python3")
        .args(["-m", "venv", "--without-pip", other_venv.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let real = Command::new("python3")
        .args([
            "-c",
            "import os, sys; print(os.path.realpath(sys.executable))",
        ])
        .output()
        .unwrap();
    let real = String::from_utf8(real.stdout).unwrap().trim().to_owned();
    let venv_python = other_venv.join("bin/python");
    let mut ids = Vec::new();
    for python in [
        None,
        Some(real.as_str()),
        Some(venv_python.to_str().unwrap()),
    ] {
        let mut args = vec!["--json", "venv", "-r", "requirements.txt"];
        if let Some(p) = python {
            args.extend(["--python", p]);
        }
        let out = env
            .cmd()
            .current_dir(&project)
            .args(&args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{python:?}: {out:?}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        ids.push((python, v["key"].clone(), v["path"].clone()));
    }
    assert!(
        ids.iter().all(|(_, k, p)| *k == ids[0].1 && *p == ids[0].2),
        "{ids:#?}"
    );
}
