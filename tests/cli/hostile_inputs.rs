//! Hostile inputs against the new surfaces (issue 26), drawn at random from fixed seeds: every
//! operation a user points at a file or a remote (`ensure --key-file`, `venv -r`, `doctor`,
//! `import`, `push`, `pull`, `materialize` falling through) meets fifos, devices, links, link
//! loops, huge sparse and binary files, directories, missing paths, and remotes that are dead,
//! silent, not ours or carry a password. For each call: it ends within a bound (no hang), exits
//! with the code the case calls for (0 or 2, never a crash), prints no panic, and no secret
//! reaches stdout or stderr. The store stays verifiable throughout.
//!
//! `ENVSTORE_HOSTILE_INPUT_SEEDS` sets how many seeds run (CI runs the default, a fixed set).

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common::{Env, mkfifo, output_within, rng, sample_env, silent_server, write};

const NO_HANG: u64 = 90;
const SECRET: &str = "s3cr3t-Hostile-9f2";

/// A user-named input, and whether a command that needs a regular file may accept it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Input {
    Fifo,
    DevZero,
    DevNull,
    LinkToFifo,
    LinkLoop,
    HugeSparse,
    Binary,
    Directory,
    Missing,
    Text,
}

impl Input {
    const ALL: [Input; 10] = [
        Input::Fifo,
        Input::DevZero,
        Input::DevNull,
        Input::LinkToFifo,
        Input::LinkLoop,
        Input::HugeSparse,
        Input::Binary,
        Input::Directory,
        Input::Missing,
        Input::Text,
    ];

    /// Makes it at `path` (a fresh name).
    fn make(self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        match self {
            Input::Fifo => mkfifo(&path),
            Input::DevZero => return PathBuf::from("/dev/zero"),
            Input::DevNull => return PathBuf::from("/dev/null"),
            Input::LinkToFifo => {
                let fifo = dir.join(format!("{name}.fifo"));
                mkfifo(&fifo);
                std::os::unix::fs::symlink(&fifo, &path).unwrap();
            }
            Input::LinkLoop => {
                std::os::unix::fs::symlink(dir.join(format!("{name}.b")), &path).unwrap();
                std::os::unix::fs::symlink(&path, dir.join(format!("{name}.b"))).unwrap();
            }
            Input::HugeSparse => {
                let file = std::fs::File::create(&path).unwrap();
                file.set_len(3 << 30).unwrap(); // 3 GiB of holes: past every cap
            }
            Input::Binary => write(
                &path,
                &(0..70_000u32)
                    .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
                    .collect::<Vec<_>>(),
            ),
            Input::Directory => std::fs::create_dir(&path).unwrap(),
            Input::Missing => {}
            Input::Text => write(&path, format!("token={SECRET}\nsix==1.16\n").as_bytes()),
        }
        path
    }

    /// Whether it is a regular file of a sane size, which key and requirement files must be.
    fn is_fine_file(self) -> bool {
        matches!(self, Input::Binary | Input::Text)
    }
}

/// Remotes that fail in every way but the network's address being elsewhere.
fn remotes(dir: &Path, silent: &str) -> Vec<String> {
    let garbage = dir.join("not-a-remote");
    write(&garbage.join("envstore-remote"), b"\x00\xffnot ours");
    vec![
        silent.to_owned(),
        "http://127.0.0.1:9/refused".to_owned(),
        format!("http://user:{SECRET}@127.0.0.1:9/with-password"),
        format!("s3://AKIA:{SECRET}@bucket/p"),
        format!("file://{}", garbage.display()),
        "ftp://nowhere/x".to_owned(),
    ]
}

fn check(args: &[String], out: &Output, expect: Option<i32>) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked") && matches!(out.status.code(), Some(0..=2)),
        "envstore {args:?} crashed: {out:?}"
    );
    if let Some(code) = expect {
        assert_eq!(out.status.code(), Some(code), "envstore {args:?}: {stderr}");
    }
    assert!(
        !stdout.contains(SECRET) && !stderr.contains(SECRET),
        "envstore {args:?} printed a secret:\n{stdout}\n{stderr}"
    );
}

#[test]
fn hostile_inputs_and_remotes_never_hang_crash_or_leak() {
    let seeds: u64 = std::env::var("ENVSTORE_HOSTILE_INPUT_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(48);
    let (silent, _) = silent_server();
    let env = Env::new();
    let src = env.path("src");
    sample_env(&src);
    let id = env.ingest(&src);
    let inputs = env.path("inputs");
    std::fs::create_dir(&inputs).unwrap();
    let remotes = remotes(env.dir.path(), &silent);

    for seed in 0..seeds {
        // The same cases on every machine for a seed.
        let mut next = rng(0x9E37_79B9_7F4A_7C15 ^ (seed + 1).wrapping_mul(0x1000_0000_01B3));
        let input = Input::ALL[next(Input::ALL.len() as u64) as usize];
        let path = input.make(&inputs, &format!("in-{seed}"));
        let p = path.to_string_lossy().into_owned();
        let remote = remotes[next(remotes.len() as u64) as usize].clone();
        let (args, expect): (Vec<String>, Option<i32>) = match next(7) {
            0 => (
                vec![
                    "ensure".into(),
                    "--key-file".into(),
                    p.clone(),
                    "--key-env".into(),
                    "HOSTILE_TOKEN".into(),
                    "--".into(),
                    "sh".into(),
                    "-c".into(),
                    "echo ok > \"$ENVSTORE_OUT/f\"".into(),
                ],
                Some(if input.is_fine_file() { 0 } else { 2 }),
            ),
            1 => (
                vec![
                    "venv".into(),
                    "-r".into(),
                    p.clone(),
                    "--python".into(),
                    "/nonexistent/python".into(),
                ],
                // Never 0: the interpreter does not exist; an unfit file or the interpreter
                // is named, exit 2 either way.
                Some(2),
            ),
            2 => {
                let project = inputs.join(format!("project-{seed}"));
                std::fs::create_dir(&project).unwrap();
                let target = project.join("pyproject.toml");
                if input != Input::Missing {
                    std::os::unix::fs::symlink(&path, &target).unwrap();
                }
                (
                    vec!["doctor".into(), project.to_string_lossy().into_owned()],
                    Some(0),
                )
            }
            3 => (
                vec!["import".into(), p.clone()],
                // Nothing here is a valid archive but all-zero input, an empty tar (its end
                // marker): an empty snapshot, and the read stops there.
                Some(if matches!(input, Input::DevZero | Input::HugeSparse) {
                    0
                } else {
                    2
                }),
            ),
            4 => (
                vec!["push".into(), id.clone(), "--to".into(), remote.clone()],
                Some(2),
            ),
            5 => (
                // An id this store lacks (one it has is not fetched at all).
                vec![
                    "pull".into(),
                    "ab".repeat(32),
                    "--from".into(),
                    remote.clone(),
                ],
                Some(2),
            ),
            _ => {
                // Fall-through: a remote in the config that fails; the store has the id.
                (vec!["materialize".into(), id.clone()], Some(0))
            }
        };
        let out = output_within(
            env.cmd()
                .env("ENVSTORE_REMOTE_TIMEOUT", "1")
                .env("HOSTILE_TOKEN", SECRET)
                .args(&args),
            NO_HANG,
        );
        check(&args, &out, expect);
    }
    // Whatever was refused, the store is whole.
    let out = output_within(env.cmd().arg("verify"), NO_HANG);
    assert!(out.status.success(), "{out:?}");
}
