//! Pins and inspection: pin, unpin, ls, show, diff, path, stats, completions.

use std::fs;
use std::path::Path;

use serde_json::Value;

use crate::common::*;

#[test]
fn pins_name_snapshots_for_every_command() {
    let env = Env::new();
    let src = env.path("src");
    sample_env(&src);
    let id = env
        .ok(&["pin", "release-2.3", src.to_str().unwrap()])
        .trim()
        .to_owned();
    assert_eq!(
        id,
        env.ingest(&src),
        "pin of a directory stores it and prints the id"
    );
    assert_eq!(
        fs::read_to_string(env.store.join("pins/release-2.3")).unwrap(),
        format!("{id}\n")
    );
    // A pin of a pin, of an id prefix.
    env.ok(&["pin", "alias_1.0+x", "release-2.3"]);
    env.ok(&["pin", "by-prefix", &id[..10]]);
    for name in ["release-2.3", "alias_1.0+x", "by-prefix"] {
        assert_eq!(
            env.materialize(Path::new(name)),
            env.store.join("envs").join(&id),
            "{name}"
        );
        assert_eq!(
            env.ok(&["path", name]).trim(),
            env.store.join("envs").join(&id).to_str().unwrap()
        );
        assert_eq!(json(&env, &["show", name])["id"], id.as_str());
    }
    assert_eq!(env.ok(&["unpin", "by-prefix"]), "");
    let err = env.fails(&["materialize", "by-prefix"]);
    assert!(
        err.contains("`by-prefix` is not a directory, a snapshot id"),
        "{err}"
    );
    let err = env.fails(&["unpin", "release-2.4"]);
    assert!(
        err.contains("no pin named `release-2.4`; did you mean `release-2.3`?"),
        "{err}"
    );
    let err = env.fails(&["materialize", "relase-2.3"]);
    assert!(err.contains("did you mean `release-2.3`?"), "{err}");
}

#[test]
fn a_pin_moves_when_pinned_again() {
    let env = Env::new();
    write(&env.path("a/f"), b"a");
    write(&env.path("b/f"), b"b");
    let a = env.ok(&["pin", "current", env.path("a").to_str().unwrap()]);
    let b = env.ok(&["pin", "current", env.path("b").to_str().unwrap()]);
    assert_ne!(a, b);
    assert_eq!(json(&env, &["show", "current"])["id"], b.trim());
}

#[test]
fn bad_pin_names_are_refused_and_nothing_is_written_outside() {
    let env = Env::new();
    let src = env.path("src");
    sample_env(&src);
    env.ingest(&src);
    let before: Vec<_> = fs::read_dir(env.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    for bad in [
        "",
        ".",
        "..",
        "../escape",
        "a/b",
        "/abs",
        ".hidden",
        "sp ace",
        "tab\t",
        "semi;colon",
        "ünïcode",
        "a\\b",
        &"x".repeat(201),
    ] {
        let err = env.fails(&["pin", bad, src.to_str().unwrap()]);
        assert!(err.contains("invalid pin name"), "{bad:?}: {err}");
    }
    assert_eq!(fs::read_dir(env.store.join("pins")).unwrap().count(), 0);
    let after: Vec<_> = fs::read_dir(env.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(before, after);
    assert!(!env.path("escape").exists());
    // Pinning an id that is not in the store is bad input too.
    let err = env.fails(&["pin", "ghost", &"a".repeat(64)]);
    assert!(err.contains("no snapshot"), "{err}");
}

#[test]
fn ls_lists_newest_first_with_json_fields() {
    let env = Env::new();
    write(&env.path("one/f"), b"one");
    write(&env.path("two/f"), b"two");
    write(&env.path("two/g"), b"2");
    let one = env.ingest(&env.path("one"));
    // Creation times have one-second resolution.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let two = env
        .ok(&["pin", "second", env.path("two").to_str().unwrap()])
        .trim()
        .to_owned();
    env.materialize(&env.path("two"));
    let list = json(&env, &["ls"]);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["id"], two.as_str());
    assert_eq!(list[1]["id"], one.as_str());
    assert_eq!(list[0]["pins"], serde_json::json!(["second"]));
    assert_eq!(list[0]["files"], 2);
    assert_eq!(list[0]["bytes"], 4);
    assert_eq!(list[0]["materialized"], true);
    assert_eq!(list[1]["materialized"], false);
    assert!(list[0]["source"].as_str().unwrap().ends_with("/two"));
    let table = env.ok(&["ls"]);
    assert!(
        table.starts_with("ID") && table.contains(&two[..12]) && table.contains("second"),
        "{table}"
    );
}

#[test]
fn ls_heals_a_lost_index() {
    let env = Env::new();
    sample_env(&env.path("src"));
    let id = env.ingest(&env.path("src"));
    fs::remove_file(env.store.join("index.redb")).unwrap();
    assert_eq!(json(&env, &["ls"])[0]["id"], id.as_str());
    // A garbage index is a cache gone bad: set aside with a warning and rebuilt, never a
    // failed command (issue 12, item 5; it used to fail `ls`).
    fs::write(env.store.join("index.redb"), b"garbage").unwrap();
    let out = env.run(&["ls", "--json"]);
    assert!(out.status.success(), "a damaged index is rebuilt: {out:?}");
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["id"], id.as_str());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("index was damaged"),
        "{out:?}"
    );
    assert_eq!(json(&env, &["ls"])[0]["id"], id.as_str());
}

#[test]
fn diff_reports_content_added_removed_and_exec_changes() {
    let env = Env::new();
    let (a, b) = (env.path("a"), env.path("b"));
    sample_env(&a);
    sample_env(&b);
    write(
        &b.join("include/pkg/header.h"),
        b"#pragma once\nint f(int);\n",
    );
    write(&b.join("lib/new_module.py"), b"x = 1\n");
    fs::remove_file(b.join("lib/python3.11/site-packages/pkg/core.py")).unwrap();
    chmod(&b.join("share/empty-file"), 0o755);
    fs::remove_file(b.join("bin/tool-link")).unwrap();
    std::os::unix::fs::symlink("elsewhere", b.join("bin/tool-link")).unwrap();
    env.ok(&["pin", "old", a.to_str().unwrap()]);
    env.ok(&["pin", "new", b.to_str().unwrap()]);
    let changes = json(&env, &["diff", "old", "new"]);
    let expect = serde_json::json!([
        {"change": "symlink", "path": "bin/tool-link", "old_target": "tool", "new_target": "elsewhere"},
        {"change": "modified", "path": "include/pkg/header.h", "old_size": 26, "new_size": 25},
        {"change": "added", "path": "lib/new_module.py", "kind": "file", "size": 6},
        {"change": "removed", "path": "lib/python3.11/site-packages/pkg/core.py", "kind": "file", "size": 22},
        {"change": "mode", "path": "share/empty-file", "executable": true},
    ]);
    assert_eq!(changes, expect);
    // A directory works as either side, hashed but not stored.
    assert_eq!(json(&env, &["diff", "old", b.to_str().unwrap()]), expect);
    let text = env.ok(&["diff", "old", "new"]);
    assert!(
        text.contains("+ lib/new_module.py (6 B)")
            && text.contains("X share/empty-file (now executable)"),
        "{text}"
    );
    assert_eq!(json(&env, &["diff", "old", "old"]), serde_json::json!([]));
}

#[test]
fn path_does_no_work_and_exits_1_when_not_materialized() {
    let env = Env::new();
    let src = env.path("src");
    sample_env(&src);
    let id = env.ingest(&src);
    for source in [src.to_str().unwrap(), &id] {
        let out = env.run(&["path", source]);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        assert!(out.stdout.is_empty());
    }
    assert_eq!(
        fs::read_dir(env.store.join("envs")).unwrap().count(),
        0,
        "path laid nothing out"
    );
    let path = env.materialize(&src);
    assert_eq!(env.ok(&["path", &id]).trim(), path.to_str().unwrap());
}

#[test]
fn show_and_stats_report_sizes_dedup_and_link_modes() {
    let env = Env::new();
    let (a, b) = (env.path("a"), env.path("b"));
    sample_env(&a);
    sample_env(&b);
    write(&b.join("extra.bin"), &pseudo_random(10_000, 5));
    env.ok(&["pin", "a", a.to_str().unwrap()]);
    env.ok(&["materialize", "--link-mode", "copy", b.to_str().unwrap()]);
    let show = json(&env, &["show", b.to_str().unwrap()]);
    assert_eq!(
        show["unique_bytes"], 10_000,
        "only extra.bin is unique to b"
    );
    assert_eq!(show["link_mode"], "copy");
    assert_eq!(show["materialized"], true);
    let show_a = json(&env, &["show", "a"]);
    assert_eq!(show_a["unique_bytes"], 0);
    assert_eq!(show_a["pins"], serde_json::json!(["a"]));
    assert_eq!(show_a["path"], Value::Null);

    let stats = json(&env, &["stats"]);
    assert_eq!(stats["snapshots"], 2);
    assert_eq!(stats["materialized"], 1);
    assert_eq!(stats["pins"], 1);
    let logical = stats["logical_bytes"].as_u64().unwrap();
    let stored = stats["object_bytes"].as_u64().unwrap();
    assert_eq!(logical, 2 * show_a["bytes"].as_u64().unwrap() + 10_000);
    assert_eq!(stored, show_a["bytes"].as_u64().unwrap() + 10_000);
    assert!((stats["dedup_ratio"].as_f64().unwrap() - logical as f64 / stored as f64).abs() < 1e-9);
    assert_eq!(stats["link_modes"]["hardlink"]["supported"], true);
    assert_eq!(stats["link_modes"]["copy"]["supported"], true);
    assert!(
        env.ok(&["stats"])
            .contains(&format!("dedup {:.2}x", logical as f64 / stored as f64))
    );
}

#[test]
fn completions_for_bash_zsh_and_fish() {
    let env = Env::new();
    for shell in ["bash", "zsh", "fish"] {
        let out = env.ok(&["completions", shell]);
        assert!(
            out.contains("materialize") && out.contains("envstore"),
            "{shell}"
        );
    }
    env.fails(&["completions", "tcsh"]);
}

#[test]
fn every_command_has_help_with_an_example() {
    let env = Env::new();
    for cmd in [
        "ingest",
        "materialize",
        "pin",
        "unpin",
        "ls",
        "show",
        "diff",
        "path",
        "stats",
        "completions",
    ] {
        let out = env.ok(&[cmd, "--help"]);
        assert!(
            out.contains("Example"),
            "{cmd} --help has an example:\n{out}"
        );
    }
}

#[test]
fn progress_is_shown_on_a_terminal_only() {
    let env = Env::new();
    let src = env.path("src");
    sample_env(&src);
    // In a pipe (here, and in CI): nothing but the summary.
    let out = env.run(&["ingest", src.to_str().unwrap()]);
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("hashing"),
        "{out:?}"
    );
    // On a terminal (a pty made by `script`, from util-linux): a progress display.
    fs::remove_dir_all(&env.store).unwrap();
    let cmd = format!("{BIN} ingest {}", src.display());
    let out = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("ENVSTORE_DIR", &env.store)
        .env("TERM", "xterm")
        .output()
        .expect("script (util-linux) runs a command on a pty");
    assert!(out.status.success(), "{out:?}");
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(
        screen.contains("storing") || screen.contains("hashing"),
        "{screen}"
    );
    assert!(screen.contains("stored 7 files"), "{screen}");
}
