//! The materialized tree, the store layout, atomicity and concurrency.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::Stdio;

use crate::common::*;

#[test]
fn materialized_tree_equals_the_source_minus_filtered_entries() {
    let env = Env::new();
    let src = env.path("src");
    sample_env(&src);
    let path = env.materialize(&src);
    assert_eq!(
        snapshot_of(&path, &|_| false),
        snapshot_of(&src, &is_bytecode)
    );
}

#[test]
fn files_are_read_only_with_the_fixed_mtime() {
    let env = Env::new();
    let src = env.path("src");
    sample_env(&src);
    let path = env.materialize(&src);
    for (rel, exec) in [
        ("bin/tool", true),
        ("include/pkg/header.h", false),
        ("share/empty-file", false),
        ("lib/big.bin", false),
    ] {
        let meta = fs::metadata(path.join(rel)).unwrap();
        assert_eq!(
            meta.mode() & 0o777,
            if exec { 0o555 } else { 0o444 },
            "{rel}"
        );
        assert_eq!(meta.mtime(), 315_619_200, "{rel}: 1980-01-02T00:00:00Z");
    }
}

#[test]
fn ingest_and_materialize_never_modify_the_source() {
    let env = Env::new();
    let src = env.path("src");
    sample_env(&src);
    let before = metadata_of(&src);
    env.ingest(&src);
    env.materialize(&src);
    env.ok(&[
        "materialize",
        "--link-mode",
        "hardlink",
        src.to_str().unwrap(),
    ]);
    // Same inodes, modes, mtimes, link counts (no hardlink into the store) and bytes.
    assert_eq!(metadata_of(&src), before);
}

#[test]
fn symlinks_are_stored_as_symlinks_never_followed() {
    let env = Env::new();
    let src = env.path("src");
    write(&env.path("outside/secret.txt"), b"not part of the env");
    write(&src.join("a"), b"a");
    std::os::unix::fs::symlink(env.path("outside"), src.join("to-dir")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/dangling", src.join("dangling")).unwrap();
    let path = env.materialize(&src);
    assert_eq!(
        fs::read_link(path.join("to-dir")).unwrap(),
        env.path("outside")
    );
    assert_eq!(
        fs::read_link(path.join("dangling")).unwrap(),
        PathBuf::from("/nonexistent/dangling")
    );
    // Nothing from behind the link was stored.
    let objects = snapshot_of(&env.store.join("objects"), &|_| false);
    assert!(
        !objects
            .values()
            .any(|n| matches!(n, Node::File { content, .. } if content == b"not part of the env"))
    );
}

#[test]
fn a_symlink_to_a_directory_is_followed_only_as_the_root() {
    let env = Env::new();
    sample_env(&env.path("real"));
    std::os::unix::fs::symlink(env.path("real"), env.path("alias")).unwrap();
    assert_eq!(
        env.materialize(&env.path("alias")),
        env.materialize(&env.path("real"))
    );
}

#[test]
fn store_layout_is_versioned_and_tagged() {
    let env = Env::new();
    sample_env(&env.path("src"));
    env.ingest(&env.path("src"));
    assert_eq!(
        fs::read_to_string(env.store.join("FORMAT")).unwrap(),
        "envstore-store 1\n"
    );
    assert!(
        fs::read_to_string(env.store.join("CACHEDIR.TAG"))
            .unwrap()
            .starts_with("Signature: 8a477f597d28d172789f06886806bc55")
    );
    for dir in [
        "objects/00",
        "objects/ff",
        "trees/ab",
        "snapshots",
        "envs",
        "pins",
        "tmp",
    ] {
        assert!(env.store.join(dir).is_dir(), "{dir}");
    }
}

#[test]
fn objects_are_deduplicated_across_files_and_snapshots() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("a"), b"same bytes");
    write(&src.join("b/c"), b"same bytes");
    write(&src.join("d"), b"other bytes");
    env.ingest(&src);
    write(&src.join("e"), b"other bytes");
    env.ingest(&src);
    let count = snapshot_of(&env.store.join("objects"), &|_| false)
        .values()
        .filter(|n| matches!(n, Node::File { .. }))
        .count();
    assert_eq!(count, 2);
}

#[test]
fn materialize_by_id_and_prefix_rebuilds_from_the_store() {
    let env = Env::new();
    let src = env.path("src");
    sample_env(&src);
    let id = env.ingest(&src);
    // The source may go away: the store has everything.
    fs::rename(&src, env.path("gone")).unwrap();
    let by_id = env.materialize(std::path::Path::new(&id));
    assert_eq!(by_id, env.store.join("envs").join(&id));
    assert_eq!(
        snapshot_of(&by_id, &|_| false),
        snapshot_of(&env.path("gone"), &is_bytecode)
    );
    assert_eq!(env.materialize(std::path::Path::new(&id[..8])), by_id);
    assert_eq!(
        env.materialize(std::path::Path::new(&id[..12].to_uppercase())),
        by_id
    );
}

#[test]
fn materialize_is_idempotent_and_leaves_no_temporary_files() {
    let env = Env::new();
    let src = env.path("src");
    sample_env(&src);
    let first = env.materialize(&src);
    let inode = fs::metadata(first.join("include/pkg/header.h"))
        .unwrap()
        .ino();
    let second = env.materialize(&src);
    assert_eq!(first, second);
    assert_eq!(
        fs::metadata(second.join("include/pkg/header.h"))
            .unwrap()
            .ino(),
        inode,
        "not rebuilt"
    );
    assert_eq!(fs::read_dir(env.store.join("tmp")).unwrap().count(), 0);
    let envs: Vec<_> = fs::read_dir(env.store.join("envs"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(envs.len(), 1, "{envs:?}");
}

#[test]
fn eight_processes_materializing_the_same_new_tree_all_agree() {
    for round in 0..3 {
        let env = Env::new();
        let src = env.path("src");
        sample_env(&src);
        for i in 0..200 {
            write(
                &src.join(format!("many/f{i}")),
                format!("{round} {i}").as_bytes(),
            );
        }
        let children: Vec<_> = (0..8)
            .map(|_| {
                env.cmd()
                    .args(["materialize", src.to_str().unwrap()])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let outputs: Vec<_> = children
            .into_iter()
            .map(|c| c.wait_with_output().unwrap())
            .collect();
        for out in &outputs {
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let paths: Vec<_> = outputs
            .iter()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .collect();
        assert!(
            paths
                .iter()
                .all(|p| p == &paths[0] && p.lines().count() == 1),
            "{paths:?}"
        );
        let path = PathBuf::from(paths[0].trim());
        assert_eq!(
            snapshot_of(&path, &|_| false),
            snapshot_of(&src, &is_bytecode)
        );
        let envs: Vec<_> = fs::read_dir(env.store.join("envs"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            envs.len(),
            1,
            "losers removed their temporary trees: {envs:?}"
        );
        assert_eq!(fs::read_dir(env.store.join("tmp")).unwrap().count(), 0);
    }
}

#[test]
fn a_store_inside_the_source_is_not_stored() {
    let env = Env::new();
    let src = env.path("src");
    sample_env(&src);
    let outside = env.ingest(&src);
    let out = env
        .cmd()
        .env("ENVSTORE_DIR", src.join(".store"))
        .args(["materialize", src.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let again = env
        .cmd()
        .env("ENVSTORE_DIR", src.join(".store"))
        .args(["ingest", src.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&again.stdout).trim(), outside);
}

#[test]
fn json_output_is_one_object_on_stdout() {
    let env = Env::new();
    let src = env.path("src");
    sample_env(&src);
    let out = env.ok(&["--json", "materialize", src.to_str().unwrap()]);
    let value: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(value["created"], true);
    assert!(
        value["path"]
            .as_str()
            .unwrap()
            .ends_with(value["id"].as_str().unwrap())
    );
    let out = env.ok(&["ingest", "--json", src.to_str().unwrap()]);
    let value: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(value["created"], false);
    assert_eq!(value["files"], 7);
}

/// A `pip install` into a materialized environment (simulated: a new file in one of its
/// directories, which must be made writable first by anyone but root) is noticed on the next
/// hit: a warning, and a fresh copy at the same path.
#[test]
fn a_hit_never_hands_out_an_environment_written_to_since() {
    let env = Env::new();
    let src = env.path("src");
    sample_env(&src);
    let path = env.materialize(&src);
    // Python running as root writes bytecode caches even into read-only directories: that
    // alone is not a change.
    let pkg = path.join("lib/python3.11/site-packages/pkg");
    crate::common::chmod(&pkg, 0o755);
    std::fs::create_dir(pkg.join("__pycache__")).unwrap();
    std::fs::write(pkg.join("__pycache__/core.cpython-311.pyc"), b"\0").unwrap();
    crate::common::chmod(&pkg, 0o555);
    let out = env.run(&["materialize", src.to_str().unwrap()]);
    assert!(out.status.success() && out.stderr.is_empty(), "{out:?}");
    assert!(pkg.join("__pycache__").exists());
    // An install writes files beside the others.
    let sp = path.join("lib/python3.11/site-packages");
    crate::common::chmod(&sp, 0o755);
    std::fs::write(sp.join("injected.py"), b"print('hi')\n").unwrap();
    crate::common::chmod(&sp, 0o555);

    let out = env.run(&["materialize", src.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("was written to after it was laid out")
            && stderr.contains("lib/python3.11/site-packages"),
        "{stderr}"
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        path.to_str().unwrap()
    );
    assert!(!sp.join("injected.py").exists());
    env.ok(&["verify"]);
    // Untouched now: the next hit says nothing.
    let out = env.run(&["materialize", src.to_str().unwrap()]);
    assert!(out.stderr.is_empty(), "{out:?}");
}
