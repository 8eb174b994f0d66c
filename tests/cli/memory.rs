//! Memory that does not grow with the environment (issues 16 and 25): a 200k-file tree is
//! ingested, materialized for the first time and again (warm), verified, pruned (dry run),
//! pushed to a remote and pulled into another store, each as a
//! child process whose peak RSS is read from `wait4`'s rusage. Not timed: only memory is
//! asserted. The build before issue 16 fails it (`ENVSTORE_TEST_BIN=<old envstore>`): 94-96 MiB
//! for ingest and materialize, 142 MiB for prune, 235 MiB for verify.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::{Env, bin};

const FILES: usize = 200_000;
const LIMIT_KIB: i64 = 64 * 1024;

/// A tree shaped like a large site-packages: 499 packages x 7 x 5 directories, small files,
/// one in ten a copy of a few shared contents.
fn make_tree(root: &Path) {
    let sp = root.join("lib/python3.11/site-packages");
    for i in 0..FILES {
        let dir = sp.join(format!(
            "pkg{}/sub{}/mod{}",
            i % 499,
            (i / 499) % 7,
            (i / 3493) % 5
        ));
        if i < 499 * 7 * 5 {
            fs::create_dir_all(&dir).unwrap();
        }
        let content = if i % 10 == 0 {
            format!("shared {}\n", i % 64)
        } else {
            format!(
                "def f{i}():\n    return {}\n",
                i.wrapping_mul(2_654_435_761)
            )
        };
        fs::write(dir.join(format!("f{i}.py")), content).unwrap();
    }
}

/// Runs envstore with `args`; returns its peak RSS in KiB (Linux reports ru_maxrss in KiB).
pub fn peak_rss_kib(env: &Env, args: &[&str]) -> i64 {
    let child = Command::new(bin())
        .arg("--store")
        .arg(&env.store)
        .arg("-q")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid value to be filled in; `pid` is our own child, waited
    // for exactly once here (the Child handle is dropped without waiting).
    #[allow(unsafe_code)]
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        let waited = libc::wait4(pid, &mut status, 0, &mut usage);
        assert_eq!(waited, pid, "wait4: {}", std::io::Error::last_os_error());
        usage
    };
    drop(child);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "envstore {args:?} failed: status {status:#x}"
    );
    usage.ru_maxrss
}

#[test]
fn a_200k_file_environment_is_stored_and_materialized_in_64_mib() {
    let env = Env::new();
    let tree = env.path("site");
    make_tree(&tree);
    let tree = tree.to_str().unwrap();
    let mut over = Vec::new();
    for args in [
        vec!["ingest", tree],
        vec!["materialize", tree], // first time: lays it out
        vec!["materialize", tree], // warm: hashes only
        vec!["verify"],
        vec!["prune", "--dry-run", "--older-than", "0s"],
    ] {
        let kib = peak_rss_kib(&env, &args);
        eprintln!("envstore {}: peak RSS {} KiB", args[0], kib);
        if kib >= LIMIT_KIB {
            over.push(format!("envstore {args:?}: {kib} KiB"));
        }
    }
    // Push to a remote and pull into a fresh store (issue 25): the chunks, trees and files
    // they track live in tables and files on disk. (Before: 96 MiB each.)
    let id = env.ok(&["-q", "ingest", tree]).trim().to_owned();
    let remote = format!("file://{}", env.path("remote").display());
    let other = Env::new();
    for (env, args) in [
        (&env, ["push", &id, "--to", &remote]),
        (&other, ["pull", &id, "--from", &remote]),
    ] {
        let kib = peak_rss_kib(env, &args);
        eprintln!("envstore {}: peak RSS {} KiB", args[0], kib);
        if kib >= LIMIT_KIB {
            over.push(format!("envstore {args:?}: {kib} KiB"));
        }
    }
    other.ok(&["verify"]);
    assert!(over.is_empty(), "over {LIMIT_KIB} KiB: {over:?}");
}
