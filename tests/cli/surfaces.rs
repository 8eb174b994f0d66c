//! Trust for the new surfaces (issue 26): no input a user names hangs envstore, no remote
//! stalls it, no secret leaves it. Each test failed on the build before its fix.

use std::io::Write;
use std::path::Path;
use std::process::Output;

use crate::common::{Env, mkfifo, output_within, sample_env, silent_server};

/// Generous: every call here finishes in seconds when it does not hang.
const NO_HANG: u64 = 90;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Puts `lines` first in the store's remotes file (a remote that is down when added cannot be
/// added: `remote add` checks it answers).
fn prepend_remotes(env: &Env, lines: &str) {
    env.ok(&["stats"]); // the store exists
    let config = env.store.join("remotes");
    let text =
        std::fs::read_to_string(&config).unwrap_or_else(|_| "envstore-remotes 1\n".to_owned());
    let text = text.replacen(
        "envstore-remotes 1\n",
        &format!("envstore-remotes 1\n{lines}"),
        1,
    );
    std::fs::write(&config, text).unwrap();
}

#[test]
fn a_remote_that_accepts_and_never_answers_is_bounded_and_asked_once() {
    let (silent, _) = silent_server();
    let a = Env::new();
    let src = a.path("src");
    sample_env(&src);
    let id = a.ingest(&src);
    let live = tempfile::tempdir().unwrap();
    let live_url = format!("file://{}", live.path().display());
    a.ok(&["push", &id, "--to", &live_url, "--name", "tools"]);

    // pull from it: a named failure, in a bounded time.
    let b = Env::new();
    let out = output_within(
        b.cmd()
            .env("ENVSTORE_REMOTE_TIMEOUT", "1")
            .args(["pull", &id, "--from", &silent]),
        NO_HANG,
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(stderr(&out).contains("did not answer"), "{}", stderr(&out));

    // Fall-through: the silent remote, twice under two names, then the live one. The second
    // entry is not asked again (one time-out per command, not one per call).
    b.ok(&["remote", "add", "live", &live_url]);
    prepend_remotes(
        &b,
        &format!(
            "remote hung {silent} create-if-absent=no\nremote hung-again {silent} create-if-absent=no\n"
        ),
    );
    let out = output_within(
        b.cmd()
            .env("ENVSTORE_REMOTE_TIMEOUT", "1")
            .args(["materialize", &id]),
        NO_HANG,
    );
    assert!(out.status.success(), "{out:?}");
    let err = stderr(&out);
    assert!(err.contains("did not answer"), "{err}");
    assert!(err.contains("not asked again"), "{err}");

    // ensure on a key miss: the silent remote is a warning, the build runs here.
    let c = Env::new();
    prepend_remotes(&c, &format!("remote hung {silent} create-if-absent=no\n"));
    let out = output_within(
        c.cmd().env("ENVSTORE_REMOTE_TIMEOUT", "1").args([
            "ensure",
            "--key",
            "silent-remote",
            "--",
            "sh",
            "-c",
            "echo built > \"$ENVSTORE_OUT/f\"",
        ]),
        NO_HANG,
    );
    assert!(out.status.success(), "{out:?}");
    assert!(stderr(&out).contains("did not answer"), "{}", stderr(&out));
    let path = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        std::fs::read_to_string(Path::new(path.trim()).join("f")).unwrap(),
        "built\n"
    );
}

#[test]
fn no_message_shows_a_secret_from_a_url() {
    let env = Env::new();
    for (args, secret) in [
        (
            vec![
                "remote",
                "add",
                "x",
                "s3://AKIAEXAMPLE:s3cr3tVALUE@bucket/p",
            ],
            "s3cr3tVALUE",
        ),
        (
            vec![
                "pull",
                "main",
                "--from",
                "s3://AKIAEXAMPLE:s3cr3tVALUE@bucket/p",
            ],
            "s3cr3tVALUE",
        ),
        (
            vec!["push", "x", "--to", "http://me:s3cr3tVALUE@127.0.0.1:9/a b"],
            "s3cr3tVALUE",
        ),
        (
            vec![
                "-v",
                "--json",
                "pull",
                "main",
                "--from",
                "http://me:s3cr3tVALUE@127.0.0.1:9/e",
            ],
            "s3cr3tVALUE",
        ),
    ] {
        let out = output_within(env.cmd().args(&args), NO_HANG);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!all.contains(secret), "{args:?} printed the secret: {all}");
    }
    let err = env.fails(&[
        "remote",
        "add",
        "x",
        "s3://AKIAEXAMPLE:s3cr3tVALUE@bucket/p",
    ]);
    assert!(err.contains("AWS_SECRET_ACCESS_KEY"), "{err}");
}

#[test]
fn key_files_and_requirement_files_that_are_not_regular_files_are_refused_at_once() {
    let env = Env::new();
    let fifo = env.path("fifo");
    mkfifo(&fifo);
    let dir = env.path("a-dir");
    std::fs::create_dir(&dir).unwrap();
    for input in [fifo.to_str().unwrap(), "/dev/zero", dir.to_str().unwrap()] {
        let args = ["ensure", "--key-file", input, "--", "true"];
        let out = output_within(env.cmd().args(args), NO_HANG);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let err = stderr(&out);
        assert!(
            err.contains(input) && err.contains("not a regular file"),
            "{args:?}: {err}"
        );
        let args = ["venv", "-r", input];
        let out = output_within(env.cmd().args(args), NO_HANG);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(stderr(&out).contains(input), "{args:?}: {}", stderr(&out));
    }
    // The store is intact and nothing was recorded.
    assert!(env.ok(&["keys"]).trim().is_empty());
    env.ok(&["verify"]);
}

#[test]
fn doctor_in_a_project_whose_pyproject_is_a_fifo_reports_it() {
    let env = Env::new();
    let project = env.path("project");
    std::fs::create_dir(&project).unwrap();
    mkfifo(&project.join("pyproject.toml"));
    let out = output_within(
        env.cmd().args(["doctor", project.to_str().unwrap()]),
        NO_HANG,
    );
    assert!(out.status.success(), "{out:?}");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("cannot be read") && report.contains("fifo"),
        "{report}"
    );
}

#[test]
fn a_build_that_replaces_its_output_with_a_link_is_refused() {
    let env = Env::new();
    let outside = env.path("outside");
    std::fs::create_dir(&outside).unwrap();
    let secret = outside.join("private.txt");
    std::fs::write(&secret, "not for the store\n").unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
    let script = format!(
        "rmdir \"$ENVSTORE_OUT\" && ln -s {} \"$ENVSTORE_OUT\"",
        outside.display()
    );
    let out = output_within(
        env.cmd()
            .args(["ensure", "--key", "link-out", "--", "sh", "-c", &script]),
        NO_HANG,
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(stderr(&out).contains("ENVSTORE_OUT"), "{}", stderr(&out));
    // Nothing of the outside directory entered the store.
    assert!(env.ok(&["ls"]).lines().count() <= 1, "{}", env.ok(&["ls"]));
    let objects = walk_files(&env.store.join("objects"));
    let leaked = objects
        .iter()
        .any(|p| std::fs::read(p).is_ok_and(|b| b == b"not for the store\n"));
    assert!(!leaked, "the outside file was stored");
}

fn walk_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(walk_files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn completions_into_a_closed_pipe_end_quietly() {
    let env = Env::new();
    let mut child = env
        .cmd()
        .args(["completions", "bash"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // `| head -0`: the reader is gone before envstore writes.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert!(!err.contains("panicked"), "{err}");
    assert!(matches!(out.status.code(), Some(0)), "{out:?}");
    let _ = std::io::stderr().flush();
}

#[test]
fn an_import_error_shows_no_raw_bytes_of_the_input() {
    let env = Env::new();
    // A tar header whose name is 100 bytes of terminal escapes and bidi overrides, and whose
    // numeric fields are garbage: the parser's message quotes them.
    let mut bytes = Vec::new();
    for i in 0..100u8 {
        bytes.extend_from_slice(if i % 2 == 0 {
            b"\x1b[2J"
        } else {
            "\u{202e}".as_bytes()
        });
    }
    bytes.resize(512, 0xff);
    bytes.extend((0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8));
    let file = env.path("garbage.tar");
    std::fs::write(&file, &bytes).unwrap();
    let err = env.fails(&["import", file.to_str().unwrap()]);
    assert!(err.contains("refusing the archive"), "{err}");
    assert!(
        err.chars()
            .all(|c| c == '\n' || c == ' ' || c.is_ascii_graphic()),
        "raw bytes in the message: {err:?}"
    );
    let first = err.lines().next().unwrap();
    assert!(
        first.len() < 600,
        "a line's length, not the input: {} chars",
        first.len()
    );
}

/// A small tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    /// `None` where this process cannot mount (not root); CI runs as root, so there it must.
    fn new(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok || !crate::common::in_ci(),
            "CI runs as root and must be able to mount a tmpfs"
        );
        ok.then_some(Tmpfs(dir))
    }

    /// Fills the file system to the last byte.
    fn fill(&self) {
        let mut file = std::fs::File::create(self.0.path().join("fill")).unwrap();
        let block = vec![0u8; 4096];
        while file.write_all(&block).is_ok() {}
        let mut file = std::fs::File::create(self.0.path().join("fill-bytes")).unwrap();
        while file.write_all(&[0]).is_ok() {}
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.0.path())
            .status();
    }
}

#[test]
fn verify_and_prune_answer_on_a_full_file_system() {
    let Some(fs) = Tmpfs::new("16m") else { return };
    let env = Env::new();
    let src = env.path("src");
    for i in 0..400 {
        crate::common::write(
            &src.join(format!("d{}/f{i}", i % 7)),
            format!("{i}\n").as_bytes(),
        );
    }
    let store = fs.0.path().join("store");
    let run = |args: &[&str]| {
        output_within(
            env.cmd()
                .env("ENVSTORE_DIR", &store)
                // Tiny in-memory sets, so that these passes must write sorted runs.
                .env("ENVSTORE_SORT_BUFFER", "16")
                .args(args),
            NO_HANG,
        )
    };
    assert!(
        run(&["materialize", src.to_str().unwrap()])
            .status
            .success()
    );
    fs.fill();
    let out = run(&["verify"]);
    assert!(out.status.success(), "verify on a full disk: {out:?}");
    let err = stderr(&out);
    assert!(
        err.contains("ok") && err.contains("kept in memory"),
        "{err}"
    );
    let out = run(&["prune", "--dry-run"]);
    assert!(
        out.status.success(),
        "prune --dry-run on a full disk: {out:?}"
    );
}

#[test]
fn an_unsigned_key_mapping_on_a_remote_is_ignored_and_the_build_runs_here() {
    let remote = tempfile::tempdir().unwrap();
    let url = format!("file://{}", remote.path().display());
    let args = [
        "ensure",
        "--key",
        "fleet-tool",
        "--",
        "sh",
        "-c",
        "echo here > \"$ENVSTORE_OUT/tool\"",
    ];
    // Someone who can write the remote pushes an unsigned mapping for the key.
    let a = Env::new();
    let path = a.ok(&args);
    a.ok(&["push", path.trim(), "--to", &url]);

    // A store that trusts only signed refs.
    let b = Env::new();
    let key = b.path("ci.key");
    let public = b.ok(&["key", "generate", "ci", "--out", key.to_str().unwrap()]);
    b.ok(&["remote", "trust", public.trim()]);
    b.ok(&["remote", "add", "fleet", &url]);
    let out = output_within(b.cmd().args(args), NO_HANG);
    assert!(out.status.success(), "{out:?}");
    let err = stderr(&out);
    assert!(err.contains("building it here"), "{err}");
    assert!(err.contains("building: sh"), "the build ran here: {err}");
}

#[test]
fn a_roots_scan_adds_only_this_stores_environments() {
    let env = Env::new();
    let src = env.path("src");
    sample_env(&src);
    let path = env.materialize(&src);
    let id = path.file_name().unwrap().to_str().unwrap().to_owned();
    let build = env.path("build");
    std::fs::create_dir(&build).unwrap();
    // The same id, but under another store's envs/: not this store's environment.
    crate::common::write(
        &build.join("CMakeCache.txt"),
        format!("CMAKE_PREFIX_PATH:PATH=/tmp/some-other-store/envs/{id}\n").as_bytes(),
    );
    env.ok(&["roots", "--scan", build.to_str().unwrap(), "--add"]);
    let roots = crate::common::json(&env, &["roots"]);
    assert_eq!(roots.as_array().map(Vec::len), Some(0), "{roots}");
    // Its own path is.
    crate::common::write(
        &build.join("CMakeCache.txt"),
        format!("CMAKE_PREFIX_PATH:PATH={}\n", path.display()).as_bytes(),
    );
    env.ok(&["roots", "--scan", build.to_str().unwrap(), "--add"]);
    let roots = crate::common::json(&env, &["roots"]);
    assert_eq!(roots.as_array().map(Vec::len), Some(1), "{roots}");
}

#[test]
fn the_remotes_file_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let remote = tempfile::tempdir().unwrap();
    env.ok(&[
        "remote",
        "add",
        "r",
        &format!("file://{}", remote.path().display()),
    ]);
    let mode = std::fs::metadata(env.store.join("remotes"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
}

#[test]
fn a_key_record_does_not_let_a_variables_value_be_guessed() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let build = ["--", "sh", "-c", "echo x > \"$ENVSTORE_OUT/f\""];
    for token in ["hunter2", "hunter3"] {
        let mut args = vec!["ensure", "--name", "t", "--key-env", "TOKEN"];
        args.extend_from_slice(&build);
        let out = env.cmd().env("TOKEN", token).args(&args).output().unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    for entry in std::fs::read_dir(env.store.join("keys")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for guess in ["hunter2", "hunter3"] {
            let plain = blake3::hash(guess.as_bytes()).to_hex().to_string();
            assert!(!text.contains(&plain), "a plain hash of the value: {text}");
        }
    }
    let secret = std::fs::metadata(env.store.join("secret")).unwrap();
    assert_eq!(secret.permissions().mode() & 0o777, 0o600);
    // explain still tells what changed.
    let explained = env.ok(&["explain", "t"]);
    assert!(explained.contains("TOKEN changed"), "{explained}");
}

#[test]
fn import_streams_from_a_fifo_with_a_writer_and_refuses_one_without_at_once() {
    let env = Env::new();
    let src = env.path("src");
    sample_env(&src);
    let id = env.ingest(&src);
    let archive = env.path("env.tar");
    env.ok(&["export", &id, "-o", archive.to_str().unwrap()]);
    let other = Env::new();
    // `import <(cat env.tar)`: a pipe with a writer streams as before.
    let fifo = other.path("stream");
    mkfifo(&fifo);
    let (from, to) = (archive.clone(), fifo.clone());
    let writer = std::thread::spawn(move || {
        let bytes = std::fs::read(from).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(to)
            .unwrap()
            .write_all(&bytes)
            .unwrap();
    });
    let out = output_within(
        other.cmd().args(["import", fifo.to_str().unwrap()]),
        NO_HANG,
    );
    writer.join().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), id);
    // Nobody writing: refused at once, not a wait forever.
    let idle = other.path("idle");
    mkfifo(&idle);
    let out = output_within(
        other.cmd().args(["import", idle.to_str().unwrap()]),
        NO_HANG,
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[test]
fn prune_dry_run_says_why_it_keeps_each_snapshot_and_empty_builds_are_warned_about() {
    let env = Env::new();
    let src = env.path("src");
    sample_env(&src);
    let pinned = env.ingest(&src);
    env.ok(&["pin", "keep-me", &pinned]);
    let out = env.run(&["ensure", "--name", "tools", "--key", "empty", "--", "true"]);
    assert!(out.status.success(), "{out:?}");
    assert!(stderr(&out).contains("empty"), "{}", stderr(&out));
    let other = env.path("other");
    crate::common::write(&other.join("x.py"), b"X = 2\n");
    env.ingest(&other);
    let out = env.run(&["prune", "--dry-run"]);
    let err = stderr(&out);
    assert!(err.contains("pinned as keep-me"), "{err}");
    assert!(
        err.contains("the newest build of the key name tools"),
        "{err}"
    );
    assert!(err.contains(": used "), "{err}");
}

#[test]
fn a_key_name_means_its_newest_build_to_every_command() {
    // Issue 27: after `ensure --name tools`, `push tools` failed (key names, pins and refs
    // looked alike but resolved differently).
    let env = Env::new();
    for version in ["1", "2"] {
        let out = env.run(&[
            "ensure",
            "--name",
            "tools",
            "--key",
            version,
            "--",
            "sh",
            "-c",
            &format!("echo {version} > \"$ENVSTORE_OUT/v\""),
        ]);
        assert!(out.status.success(), "{out:?}");
    }
    let path = env.ok(&["materialize", "tools"]);
    assert_eq!(
        std::fs::read_to_string(Path::new(path.trim()).join("v")).unwrap(),
        "2\n",
        "the newest build"
    );
    let remote = tempfile::tempdir().unwrap();
    let url = format!("file://{}", remote.path().display());
    env.ok(&["push", "tools", "--to", &url]);
    // A pin of the same name comes first.
    let src = env.path("src");
    sample_env(&src);
    let pinned = env.ingest(&src);
    env.ok(&["pin", "tools", &pinned]);
    let path = env.ok(&["materialize", "tools"]);
    assert!(path.trim().ends_with(&pinned), "{path}");
    let err = env.fails(&["show", "no-such-name"]);
    assert!(err.contains("a pin or a key name"), "{err}");
}
