use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const BIN: &str = env!("CARGO_BIN_EXE_envstore");

/// The binary under test: this build's, or `ENVSTORE_TEST_BIN` (to show a test fails on an
/// older build, as every trust test must have on the main before issue 12).
pub fn bin() -> PathBuf {
    std::env::var_os("ENVSTORE_TEST_BIN").map_or_else(|| PathBuf::from(BIN), PathBuf::from)
}

/// Whether this run is CI's, where a test that cannot run its real parts fails instead of
/// skipping.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false")
}

/// Runs a command, killing it and failing the test if it runs longer than `secs` (a hang is a
/// bug here, not a slow machine: every such command finishes in well under a second).
pub fn output_within(cmd: &mut Command, secs: u64) -> Output {
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > std::time::Duration::from_secs(secs) {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!("{cmd:?} still ran after {secs} s (hung): {out:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// No panic: exit code 0, 1 or 2 and no panic message.
pub fn assert_no_panic(args: &[&str], out: &Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        matches!(out.status.code(), Some(0..=2)) && !stderr.contains("panicked"),
        "envstore {args:?} crashed: {out:?}"
    );
}

/// A scratch directory with a store in it.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub store: PathBuf,
}

impl Env {
    pub fn new() -> Env {
        Env::in_dir(&std::env::temp_dir())
    }

    /// A scratch directory under `parent` (used to put stores on a reflink file system).
    pub fn in_dir(parent: &Path) -> Env {
        let dir = tempfile::Builder::new()
            .prefix("envstore-test-")
            .tempdir_in(parent)
            .unwrap();
        let store = dir.path().join("store");
        Env { dir, store }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn cmd(&self) -> Command {
        let mut cmd = Command::new(bin());
        // The user's remotes file of this test alone (never the developer's).
        cmd.env("ENVSTORE_DIR", &self.store)
            .env("XDG_CONFIG_HOME", self.dir.path().join("config"))
            .env_remove("ENVSTORE_LINK_MODE");
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// Runs and expects success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "envstore {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs and expects exit code 2; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(out.status.code(), Some(2), "envstore {args:?}: {out:?}");
        assert!(
            out.stdout.is_empty(),
            "nothing on stdout when failing: {out:?}"
        );
        String::from_utf8(out.stderr).unwrap()
    }

    pub fn materialize(&self, source: &Path) -> PathBuf {
        let out = self.ok(&["materialize", source.to_str().unwrap()]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 1, "exactly one line on stdout: {out:?}");
        PathBuf::from(lines[0])
    }

    /// `materialize --link-mode MODE SOURCE`; returns the path.
    pub fn materialize_with(&self, mode: &str, source: &Path) -> PathBuf {
        let out = self.ok(&["materialize", "--link-mode", mode, source.to_str().unwrap()]);
        PathBuf::from(out.trim())
    }

    pub fn ingest(&self, source: &Path) -> String {
        self.ok(&["ingest", source.to_str().unwrap()])
            .trim()
            .to_owned()
    }
}

/// Runs with `--json` and expects success; returns the parsed stdout.
pub fn json(env: &Env, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&env.ok(&all)).unwrap()
}

/// A small deterministic generator (xorshift) for random but repeatable test schedules.
pub fn rng(seed: u64) -> impl FnMut(u64) -> u64 {
    let mut state = seed | 1;
    move |bound| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % bound
    }
}

pub fn write(path: &Path, content: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
}

pub fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// A small environment shaped like a Python prefix: nested packages, an executable, a symlink,
/// an empty file, an empty directory, a non-UTF-8 name and bytecode caches to be filtered.
pub fn sample_env(root: &Path) {
    write(
        &root.join("lib/python3.11/site-packages/pkg/__init__.py"),
        b"VALUE = 1\n",
    );
    write(
        &root.join("lib/python3.11/site-packages/pkg/core.py"),
        b"def f():\n    return 2\n",
    );
    write(
        &root.join("lib/python3.11/site-packages/pkg/__pycache__/core.cpython-311.pyc"),
        b"\x00junk",
    );
    write(
        &root.join("lib/python3.11/site-packages/stray.pyc"),
        b"\x00junk",
    );
    write(
        &root.join("include/pkg/header.h"),
        b"#pragma once\nint f(void);\n",
    );
    write(&root.join("bin/tool"), b"#!/bin/sh\necho tool\n");
    chmod(&root.join("bin/tool"), 0o755);
    write(&root.join("share/empty-file"), b"");
    fs::create_dir_all(root.join("share/empty-dir")).unwrap();
    std::os::unix::fs::symlink("tool", root.join("bin/tool-link")).unwrap();
    write(
        &root.join(OsStr::from_bytes(b"share/caf\xe9.txt")),
        b"latin-1 name\n",
    );
    write(&root.join("lib/big.bin"), &pseudo_random(3 << 20, 7));
}

pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// What a tree looks like to a user: every path with its kind, content or target, and exec bit.
#[derive(Debug, PartialEq, Eq)]
pub enum Node {
    File { content: Vec<u8>, exec: bool },
    Dir,
    Symlink(PathBuf),
}

pub fn snapshot_of(root: &Path, skip: &dyn Fn(&Path) -> bool) -> BTreeMap<PathBuf, Node> {
    let mut out = BTreeMap::new();
    fn visit(
        root: &Path,
        dir: &Path,
        skip: &dyn Fn(&Path) -> bool,
        out: &mut BTreeMap<PathBuf, Node>,
    ) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().to_owned();
            if skip(&rel) {
                continue;
            }
            let meta = fs::symlink_metadata(&path).unwrap();
            let node = if meta.file_type().is_symlink() {
                Node::Symlink(fs::read_link(&path).unwrap())
            } else if meta.is_dir() {
                visit(root, &path, skip, out);
                Node::Dir
            } else {
                Node::File {
                    content: fs::read(&path).unwrap(),
                    exec: meta.mode() & 0o100 != 0,
                }
            };
            out.insert(rel, node);
        }
    }
    visit(root, root, skip, &mut out);
    out
}

pub fn is_bytecode(rel: &Path) -> bool {
    rel.file_name() == Some(OsStr::new("__pycache__")) || rel.extension() == Some(OsStr::new("pyc"))
}

/// What must not change about a source file when envstore reads it.
#[derive(Debug, PartialEq, Eq)]
pub struct FileState {
    ino: u64,
    mode: u32,
    mtime: (i64, i64),
    nlink: u64,
    content: Vec<u8>,
}

/// Every entry under `root` with its state, to prove a source was not modified.
pub fn metadata_of(root: &Path) -> BTreeMap<PathBuf, FileState> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path.clone());
            }
            let content = if meta.is_file() {
                fs::read(&path).unwrap()
            } else {
                Vec::new()
            };
            let state = FileState {
                ino: meta.ino(),
                mode: meta.mode(),
                mtime: (meta.mtime(), meta.mtime_nsec()),
                nlink: meta.nlink(),
                content,
            };
            out.insert(path, state);
        }
    }
    out
}

pub fn is_root() -> bool {
    // SAFETY-free check: root's home is usually /root, but ask the kernel through /proc.
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// Makes a fifo at `path` (with mkfifo(1), so the tests need no unsafe code).
pub fn mkfifo(path: &Path) {
    let ok = Command::new("mkfifo").arg(path).status().unwrap().success();
    assert!(ok, "mkfifo {}", path.display());
}

/// A server on loopback that accepts connections and never answers (a hung cache server);
/// its URL, and the count of connections it accepted.
pub fn silent_server() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/envs", listener.local_addr().unwrap());
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            held.push(stream); // kept open, never read or written
        }
    });
    (url, accepted)
}
