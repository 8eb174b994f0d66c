//! Link modes. Reflink tests need a file system that can clone: `.ci/run` mounts XFS with
//! `reflink=1` and sets ENVSTORE_TEST_REFLINK_DIR; without it they are skipped locally, and
//! fail under CI so they can never be skipped silently there.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::common::*;

fn object_inodes(store: &Path) -> Vec<u64> {
    let mut out = Vec::new();
    for shard in fs::read_dir(store.join("objects")).unwrap() {
        for obj in fs::read_dir(shard.unwrap().path()).unwrap() {
            out.push(obj.unwrap().metadata().unwrap().ino());
        }
    }
    out
}

#[test]
fn hardlink_mode_shares_inodes_with_objects_except_empty_files() {
    let env = Env::new();
    let src = env.path("src");
    sample_env(&src);
    let path = env.materialize_with("hardlink", &src);
    let objects = object_inodes(&env.store);
    for rel in ["include/pkg/header.h", "lib/big.bin", "bin/tool"] {
        let meta = fs::metadata(path.join(rel)).unwrap();
        assert!(
            objects.contains(&meta.ino()),
            "{rel} is a hardlink into objects/"
        );
    }
    assert_eq!(
        fs::metadata(path.join("bin/tool")).unwrap().mode() & 0o777,
        0o555,
        "exec twin"
    );
    assert_eq!(
        fs::metadata(path.join("include/pkg/header.h"))
            .unwrap()
            .mode()
            & 0o777,
        0o444
    );
    let empty = fs::metadata(path.join("share/empty-file")).unwrap();
    assert_eq!(empty.nlink(), 1, "empty files are never hardlinked");
    assert!(!objects.contains(&empty.ino()));
}

#[test]
fn copy_mode_shares_nothing() {
    let env = Env::new();
    let src = env.path("src");
    sample_env(&src);
    let out = env.run(&["materialize", "--link-mode", "copy", src.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("with copy"),
        "{out:?}"
    );
    let path = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    let objects = object_inodes(&env.store);
    for rel in ["include/pkg/header.h", "lib/big.bin", "bin/tool"] {
        let meta = fs::metadata(path.join(rel)).unwrap();
        assert!(!objects.contains(&meta.ino()) && meta.nlink() == 1, "{rel}");
    }
    assert_eq!(
        snapshot_of(&path, &|_| false),
        snapshot_of(&src, &is_bytecode)
    );
}

/// Whether the file system holding `dir` can clone files, asked of `cp`.
fn can_reflink(dir: &Path) -> bool {
    // A private directory: tests run in parallel on the same mount.
    let probe = tempfile::tempdir_in(dir).unwrap();
    let a = probe.path().join("a");
    fs::write(&a, b"probe").unwrap();
    std::process::Command::new("cp")
        .arg("--reflink=always")
        .arg(&a)
        .arg(probe.path().join("b"))
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success()
}

#[test]
fn auto_says_which_mode_it_used_and_why() {
    let env = Env::new();
    let src = env.path("src");
    sample_env(&src);
    let out = env.run(&["materialize", src.to_str().unwrap()]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    fs::create_dir_all(&env.store).unwrap();
    if can_reflink(&env.store) {
        assert!(err.contains("with reflink"), "{err}");
    } else {
        assert!(
            err.contains("with hardlink (reflink not possible:"),
            "{err}"
        );
        // The strict mode refuses instead of falling back.
        sample_env(&env.path("src2"));
        write(&env.path("src2/extra"), b"new content");
        let err = env.fails(&[
            "materialize",
            "--link-mode",
            "reflink",
            env.path("src2").to_str().unwrap(),
        ]);
        assert!(
            err.contains("--link-mode reflink is not possible here")
                && err.contains("--link-mode auto"),
            "{err}"
        );
        let envs: Vec<_> = fs::read_dir(env.store.join("envs")).unwrap().collect();
        assert_eq!(envs.len(), 1, "no half-built tree left behind");
    }
}

/// The reflink file system for these tests, or None (then the test is skipped, except in CI).
fn reflink_dir() -> Option<PathBuf> {
    match std::env::var_os("ENVSTORE_TEST_REFLINK_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            assert!(
                can_reflink(&dir),
                "ENVSTORE_TEST_REFLINK_DIR={} cannot reflink",
                dir.display()
            );
            Some(dir)
        }
        None if crate::common::in_ci() => {
            panic!("CI must run the reflink tests: set ENVSTORE_TEST_REFLINK_DIR (see .ci/run)")
        }
        None => {
            eprintln!(
                "skipped: set ENVSTORE_TEST_REFLINK_DIR to a directory on XFS (reflink=1) or btrfs"
            );
            None
        }
    }
}

fn available_bytes(dir: &Path) -> u64 {
    assert!(
        std::process::Command::new("sync")
            .arg("-f")
            .arg(dir)
            .status()
            .unwrap()
            .success()
    );
    let out = std::process::Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(dir)
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn reflink_materialization_costs_no_data_blocks_and_keeps_exec_bits() {
    let Some(parent) = reflink_dir() else { return };
    let env = Env::in_dir(&parent);
    let src = env.path("src");
    sample_env(&src);
    write(&src.join("lib/huge.bin"), &pseudo_random(64 << 20, 3));
    chmod(&src.join("lib/big.bin"), 0o755);
    let id = env.ingest(&src);

    let before = available_bytes(&parent);
    let out = env.run(&["materialize", &id]);
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("with reflink") && !err.contains("not possible"),
        "auto chose reflink: {err}"
    );
    let path = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    let used = before.saturating_sub(available_bytes(&parent));
    assert!(used < 8 << 20, "a 67 MiB reflinked tree used {used} bytes");

    // Own inodes (unlike hardlinks), same bytes, and exec bits despite FICLONE.
    let objects = object_inodes(&env.store);
    let meta = fs::metadata(path.join("lib/huge.bin")).unwrap();
    assert!(!objects.contains(&meta.ino()));
    assert_eq!(
        fs::metadata(path.join("bin/tool")).unwrap().mode() & 0o777,
        0o555
    );
    assert_eq!(
        fs::metadata(path.join("lib/big.bin")).unwrap().mode() & 0o777,
        0o555
    );
    assert_eq!(meta.mtime(), 315_619_200);
    assert_eq!(
        snapshot_of(&path, &|_| false),
        snapshot_of(&src, &is_bytecode)
    );

    // For contrast, a real copy of the same bytes does cost its size (so the measure works).
    // (envstore's own copy mode uses copy_file_range, which XFS may turn into a clone too.)
    let before = available_bytes(&parent);
    let status = std::process::Command::new("cp")
        .args(["-r", "--reflink=never"])
        .arg(&path)
        .arg(env.path("plain-copy"))
        .status()
        .unwrap();
    assert!(status.success());
    let used = before.saturating_sub(available_bytes(&parent));
    assert!(used > 60 << 20, "a plain copy used only {used} bytes");
}

#[test]
fn strict_reflink_mode_works_on_a_reflink_file_system() {
    let Some(parent) = reflink_dir() else { return };
    let env = Env::in_dir(&parent);
    let src = env.path("src");
    sample_env(&src);
    let out = env.run(&[
        "--json",
        "materialize",
        "--link-mode",
        "reflink",
        src.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(value["link_mode"], "reflink");
    assert_eq!(value["link_counts"]["reflink"], 6, "six non-empty files");
}

/// Regression: executables used to be stored twice (a 0444 object plus a 0555 twin), which
/// doubled the store's size for cmake and numpy's shared objects.
#[test]
fn executables_are_stored_once_and_both_variants_only_when_needed() {
    let env = Env::new();
    let src = env.path("src");
    write(&src.join("bin/only-exec"), b"#!/bin/sh\n");
    chmod(&src.join("bin/only-exec"), 0o755);
    write(&src.join("plain"), b"same bytes");
    write(&src.join("bin/exec"), b"same bytes");
    chmod(&src.join("bin/exec"), 0o755);
    let path = env.materialize_with("hardlink", &src);
    let stored: Vec<PathBuf> = fs::read_dir(env.store.join("objects"))
        .unwrap()
        .flat_map(|shard| fs::read_dir(shard.unwrap().path()).unwrap())
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(
        stored.len(),
        3,
        "one object for the executable, two variants of the shared bytes: {stored:?}"
    );
    for (rel, mode) in [
        ("bin/only-exec", 0o555),
        ("plain", 0o444),
        ("bin/exec", 0o555),
    ] {
        let meta = fs::metadata(path.join(rel)).unwrap();
        assert_eq!(meta.mode() & 0o777, mode, "{rel}");
        assert!(
            stored
                .iter()
                .any(|o| fs::metadata(o).unwrap().ino() == meta.ino()),
            "{rel} is hardlinked"
        );
    }
}
