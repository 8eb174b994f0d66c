//! Every bad input: a clear message naming what was wrong, exit code 2, and the store intact.

use std::fs;
use std::os::unix::net::UnixListener;
use std::path::Path;

use crate::common::*;

/// A store with one snapshot in it, to check that failures leave it as it was.
fn store_with_snapshot() -> (Env, String) {
    let env = Env::new();
    sample_env(&env.path("good"));
    let id = env.ingest(&env.path("good"));
    env.materialize(&env.path("good"));
    (env, id)
}

fn assert_intact(env: &Env, id: &str) {
    let snapshots: Vec<_> = fs::read_dir(env.store.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(snapshots.len(), 1, "no half-stored snapshot: {snapshots:?}");
    assert_eq!(
        fs::read_dir(env.store.join("tmp")).unwrap().count(),
        0,
        "no leftovers in tmp/"
    );
    let envs: Vec<_> = fs::read_dir(env.store.join("envs"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        envs,
        [std::ffi::OsString::from(id)],
        "no half-built materialization"
    );
    let path = env.materialize(&env.path("good"));
    assert_eq!(
        snapshot_of(&path, &|_| false),
        snapshot_of(&env.path("good"), &is_bytecode)
    );
}

#[test]
fn missing_directory() {
    let (env, id) = store_with_snapshot();
    let missing = env.path("no/such/dir");
    for cmd in ["ingest", "materialize"] {
        let err = env.fails(&[cmd, missing.to_str().unwrap()]);
        assert!(
            err.contains(missing.to_str().unwrap()) && err.contains("does not exist"),
            "{err}"
        );
    }
    assert_intact(&env, &id);
}

#[test]
fn a_file_given_as_the_directory() {
    let (env, id) = store_with_snapshot();
    let file = env.path("good/include/pkg/header.h");
    for cmd in ["ingest", "materialize"] {
        let err = env.fails(&[cmd, file.to_str().unwrap()]);
        assert!(
            err.contains("is not a directory") && err.contains("header.h"),
            "{err}"
        );
    }
    assert_intact(&env, &id);
}

#[test]
fn fifos_and_sockets_are_refused_by_name() {
    let (env, id) = store_with_snapshot();
    let src = env.path("special");
    sample_env(&src);
    let fifo = src.join("lib/a-fifo");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let err = env.fails(&["materialize", src.to_str().unwrap()]);
    assert!(
        err.contains("a-fifo") && err.contains("is a fifo") && err.contains("--exclude"),
        "{err}"
    );
    // The advice works.
    env.ok(&["ingest", "--exclude", "a-fifo", src.to_str().unwrap()]);
    fs::remove_file(&fifo).unwrap();
    fs::remove_dir_all(env.store.join("snapshots")).unwrap();
    fs::create_dir(env.store.join("snapshots")).unwrap();
    env.ingest(&env.path("good"));

    let _listener = UnixListener::bind(src.join("include/a-socket")).unwrap();
    let err = env.fails(&["ingest", src.to_str().unwrap()]);
    assert!(
        err.contains("a-socket") && err.contains("is a socket"),
        "{err}"
    );
    assert_intact(&env, &id);
}

#[test]
fn an_unreadable_file_is_named() {
    let (env, id) = store_with_snapshot();
    let src = env.path("unreadable");
    sample_env(&src);
    let secret = src.join("include/pkg/secret.h");
    write(&secret, b"secret");
    chmod(&secret, 0o000);
    let out = if is_root() {
        // Root reads everything, so run envstore as `nobody` on a store it may write.
        chmod(env.dir.path(), 0o755);
        for dir in [
            env.store.clone(),
            env.store.join("tmp"),
            env.store.join("snapshots"),
        ] {
            chmod(&dir, 0o777);
        }
        let nobody = tempfile::tempdir().unwrap();
        chmod(nobody.path(), 0o777);
        let store = nobody.path().join("store");
        std::process::Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                BIN,
                "ingest",
            ])
            .arg(&src)
            .env("ENVSTORE_DIR", &store)
            .output()
            .expect("setpriv (util-linux) runs the test as nobody")
    } else {
        env.run(&["ingest", src.to_str().unwrap()])
    };
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("secret.h") && err.contains("Permission denied"),
        "{err}"
    );
    assert_intact(&env, &id);
}

#[test]
fn bad_ids_and_prefixes() {
    let (env, id) = store_with_snapshot();
    let err = env.fails(&["materialize", "not-a-thing"]);
    assert!(
        err.contains("`not-a-thing` is not a directory, a snapshot id"),
        "{err}"
    );
    let err = env.fails(&["materialize", "abc123"]);
    assert!(err.contains("at least 8 hex digits"), "{err}");
    let err = env.fails(&["materialize", "0123456789abcdef"]);
    assert!(
        err.contains("no snapshot in the store has an id starting with `0123456789abcdef`"),
        "{err}"
    );
    let unknown = "f".repeat(64);
    let err = env.fails(&["materialize", &unknown]);
    assert!(err.contains(&unknown), "{err}");
    assert_intact(&env, &id);
}

#[test]
fn an_ambiguous_prefix_lists_the_candidates() {
    let (env, id) = store_with_snapshot();
    // Two ids that share 10 digits are astronomically unlikely; plant a second record.
    let twin = format!("{}{}", &id[..10], "0".repeat(54));
    fs::write(
        env.store.join("snapshots").join(&twin),
        fs::read(env.store.join("snapshots").join(&id)).unwrap(),
    )
    .unwrap();
    let err = env.fails(&["materialize", &id[..10]]);
    assert!(
        err.contains("ambiguous") && err.contains(&id) && err.contains(&twin),
        "{err}"
    );
    assert_eq!(
        env.materialize(Path::new(&id[..12])),
        env.store.join("envs").join(&id)
    );
    fs::remove_file(env.store.join("snapshots").join(&twin)).unwrap();
    assert_intact(&env, &id);
}

#[test]
fn a_store_that_is_not_a_store() {
    let env = Env::new();
    sample_env(&env.path("src"));
    let src = env.path("src");
    // A file.
    write(&env.path("file"), b"x");
    let out = env
        .cmd()
        .env("ENVSTORE_DIR", env.path("file"))
        .args(["ingest", src.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not a directory"),
        "{out:?}"
    );
    // Someone's documents.
    write(&env.path("docs/thesis.tex"), b"precious");
    let out = env
        .cmd()
        .args([
            "--store",
            env.path("docs").to_str().unwrap(),
            "ingest",
            src.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not an envstore store"),
        "{out:?}"
    );
    assert_eq!(
        fs::read_dir(env.path("docs")).unwrap().count(),
        1,
        "nothing written into it"
    );
    // A store of a future format.
    fs::create_dir_all(&env.store).unwrap();
    fs::write(env.store.join("FORMAT"), "envstore-store 99\n").unwrap();
    let err = env.fails(&["ingest", src.to_str().unwrap()]);
    assert!(err.contains("envstore-store 99"), "{err}");
}

#[test]
fn bad_flags_and_settings() {
    let (env, id) = store_with_snapshot();
    let good = env.path("good");
    let err = env.fails(&[
        "materialize",
        "--link-mode",
        "symlink",
        good.to_str().unwrap(),
    ]);
    assert!(err.contains("symlink") && err.contains("reflink"), "{err}");
    let err = env.fails(&["ingest", "--exclude", "[", good.to_str().unwrap()]);
    assert!(err.contains("invalid exclude pattern `[`"), "{err}");
    let out = env
        .cmd()
        .env("ENVSTORE_LOCK_TIMEOUT", "soon")
        .args(["ingest", good.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ENVSTORE_LOCK_TIMEOUT=`soon`"));
    let err = env.fails(&["frobnicate"]);
    assert!(err.contains("frobnicate"), "{err}");
    assert_intact(&env, &id);
}
