//! Export and import: deterministic archives, round trips, and hostile archives refused.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use crate::common::*;

#[test]
fn the_same_snapshot_exports_to_the_same_bytes_from_any_store() {
    let env = Env::new();
    let (a, b) = (env.path("a"), env.path("b"));
    sample_env(&a);
    sample_env(&b);
    // Different mtimes, different stores.
    let old = SystemTime::now() - Duration::from_secs(86_400 * 400);
    fs::File::options()
        .write(true)
        .open(b.join("include/pkg/header.h"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    let other = Env::new();
    for (format, name) in [("tar", "x.tar"), ("tar.zst", "x.tar.zst")] {
        let (fa, fb) = (
            env.path(&format!("a-{name}")),
            env.path(&format!("b-{name}")),
        );
        env.ok(&["export", a.to_str().unwrap(), "-o", fa.to_str().unwrap()]);
        other.ok(&[
            "export",
            b.to_str().unwrap(),
            "-o",
            fb.to_str().unwrap(),
            "--format",
            format,
        ]);
        assert_eq!(fs::read(&fa).unwrap(), fs::read(&fb).unwrap(), "{format}");
    }
    // stdout gives the same bytes as a file.
    let out = env.run(&["export", a.to_str().unwrap(), "-o", "-"]);
    assert_eq!(out.stdout, fs::read(env.path("a-x.tar")).unwrap());
    assert_eq!(
        &fs::read(env.path("a-x.tar.zst")).unwrap()[..4],
        &[0x28, 0xb5, 0x2f, 0xfd]
    );
}

#[test]
fn import_round_trips_the_id_for_both_formats() {
    let env = Env::new();
    let src = env.path("src");
    sample_env(&src);
    let id = env.ingest(&src);
    for name in ["e.tar", "e.tar.zst"] {
        let file = env.path(name);
        env.ok(&["export", &id, "-o", file.to_str().unwrap()]);
        let fresh = Env::new();
        let got = fresh.ok(&["import", file.to_str().unwrap(), "--name", "imported"]);
        assert_eq!(got.trim(), id, "{name}");
        let path = fresh.materialize(Path::new("imported"));
        assert_eq!(
            snapshot_of(&path, &|_| false),
            snapshot_of(&src, &is_bytecode)
        );
        fresh.ok(&["verify"]);
    }
    // From stdin.
    let fresh = Env::new();
    let mut child = fresh
        .cmd()
        .args(["import", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&fs::read(env.path("e.tar.zst")).unwrap())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), id);
}

#[test]
fn a_relocated_snapshot_round_trips() {
    let env = Env::new();
    let src = env.path("venvish");
    write(
        &src.join("bin/tool"),
        format!("#!{}/bin/python\n", src.display()).as_bytes(),
    );
    write(&src.join("lib/x.py"), b"x = 1\n");
    let id = env
        .ok(&["ingest", "--relocate", src.to_str().unwrap()])
        .trim()
        .to_owned();
    let file = env.path("r.tar.zst");
    env.ok(&["export", &id, "-o", file.to_str().unwrap()]);
    let fresh = Env::new();
    assert_eq!(fresh.ok(&["import", file.to_str().unwrap()]).trim(), id);
    let path = fresh.materialize(Path::new(&id));
    assert_eq!(
        fs::read_to_string(path.join("bin/tool")).unwrap(),
        format!("#!{}/bin/python\n", path.display())
    );
}

/// A tar writer that writes whatever it is told, so tests can build hostile archives.
#[derive(Default)]
struct RawTar(Vec<u8>);

impl RawTar {
    fn header(&mut self, name: &[u8], kind: u8, link: &[u8], size: u64) {
        let mut h = [0u8; 512];
        h[..name.len().min(100)].copy_from_slice(&name[..name.len().min(100)]);
        h[100..107].copy_from_slice(b"0000644");
        h[108..115].copy_from_slice(b"0000000");
        h[116..123].copy_from_slice(b"0000000");
        h[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
        h[136..147].copy_from_slice(b"00000000000");
        h[156] = kind;
        h[157..157 + link.len().min(100)].copy_from_slice(&link[..link.len().min(100)]);
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        self.0.extend_from_slice(&h);
    }

    fn data(&mut self, data: &[u8]) {
        self.0.extend_from_slice(data);
        self.0.resize(self.0.len().div_ceil(512) * 512, 0);
    }

    fn file(mut self, name: &[u8], data: &[u8]) -> Self {
        self.header(name, b'0', b"", data.len() as u64);
        self.data(data);
        self
    }

    fn entry(mut self, name: &[u8], kind: u8, link: &[u8]) -> Self {
        self.header(name, kind, link, 0);
        self
    }

    /// A GNU long name ('L') record, then the entry.
    fn long(mut self, name: &[u8], data: &[u8]) -> Self {
        self.header(b"././@LongLink", b'L', b"", name.len() as u64 + 1);
        let mut n = name.to_vec();
        n.push(0);
        self.data(&n);
        self.file(b"placeholder", data)
    }

    fn end(mut self) -> Vec<u8> {
        self.0.extend_from_slice(&[0; 1024]);
        self.0
    }
}

fn zstd(data: &[u8]) -> Vec<u8> {
    let mut child = std::process::Command::new("zstd")
        .args(["-q", "-c", "-3"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("zstd is installed");
    let mut stdin = child.stdin.take().unwrap();
    let data = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data).unwrap());
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out.stdout
}

#[test]
fn a_valid_hand_made_archive_with_a_hard_link_imports() {
    let env = Env::new();
    let tar = RawTar::default()
        .file(b"./dir/a", b"same")
        .entry(b"dir/b", b'1', b"dir/a")
        .end();
    let file = env.path("ok.tar");
    fs::write(&file, tar).unwrap();
    let id = env
        .ok(&["import", file.to_str().unwrap()])
        .trim()
        .to_owned();
    let path = env.materialize(Path::new(&id));
    assert_eq!(fs::read(path.join("dir/b")).unwrap(), b"same");
}

#[test]
fn hostile_archives_are_refused_and_the_store_is_unharmed() {
    let env = Env::new();
    sample_env(&env.path("good"));
    let good = env.ingest(&env.path("good"));
    let outside = env.path("outside");
    fs::create_dir(&outside).unwrap();
    let long = vec![b'n'; 300];
    let mut bomb_tar = RawTar::default();
    bomb_tar.header(b"zeros", b'0', b"", 64 << 20);
    bomb_tar.data(&vec![0; 64 << 20]);
    let bomb = zstd(&bomb_tar.end());
    assert!(bomb.len() < 1 << 20, "a small file that expands to 64 MiB");
    let complete = RawTar::default().file(b"a", b"0123456789").end();
    let mut lying = RawTar::default();
    lying.header(b"big", b'0', b"", 1 << 20);
    lying.data(b"only a little data");
    let mut corrupt_zstd = zstd(&complete);
    let mid = corrupt_zstd.len() / 2;
    corrupt_zstd[mid..].iter_mut().for_each(|b| *b ^= 0x5a);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "dot-dot",
            RawTar::default().file(b"../escape", b"x").end(),
            "escapes the archive",
        ),
        (
            "dot-dot inside",
            RawTar::default().file(b"a/../../escape", b"x").end(),
            "escapes the archive",
        ),
        (
            "absolute",
            RawTar::default()
                .file(outside.join("abs").as_os_str().as_encoded_bytes(), b"x")
                .end(),
            "absolute path",
        ),
        (
            "under a file",
            RawTar::default()
                .file(b"f", b"x")
                .file(b"f/inner", b"y")
                .end(),
            "inside a regular file",
        ),
        (
            "through a symlink",
            RawTar::default()
                .entry(b"l", b'2', outside.as_os_str().as_encoded_bytes())
                .file(b"l/inner", b"y")
                .end(),
            "through a symlink",
        ),
        (
            "hard link outside",
            RawTar::default()
                .entry(b"h", b'1', b"../../etc/passwd")
                .end(),
            "outside the archive",
        ),
        (
            "hard link unseen",
            RawTar::default()
                .entry(b"h", b'1', b"later")
                .file(b"later", b"x")
                .end(),
            "not seen before",
        ),
        (
            "char device",
            RawTar::default().entry(b"dev", b'3', b"").end(),
            "character device",
        ),
        (
            "block device",
            RawTar::default().entry(b"dev", b'4', b"").end(),
            "block device",
        ),
        (
            "fifo",
            RawTar::default().entry(b"pipe", b'6', b"").end(),
            "a fifo",
        ),
        (
            "duplicate",
            RawTar::default()
                .file(b"dup", b"1")
                .file(b"dup", b"2")
                .end(),
            "appears twice",
        ),
        (
            "long name",
            RawTar::default().long(&long, b"x").end(),
            "longer than 255",
        ),
        (
            "NUL in name",
            RawTar::default().long(b"a\0b/c", b"x").end(),
            "",
        ),
        ("truncated data", complete[..600].to_vec(), ""),
        (
            "truncated at a boundary",
            complete[..1024].to_vec(),
            "truncated",
        ),
        ("declared size larger than data", lying.0.clone(), ""),
        (
            "garbage",
            b"this is not an archive at all, just text".repeat(40),
            "",
        ),
        ("empty", Vec::new(), "empty"),
        ("corrupt zstd", corrupt_zstd, ""),
        ("zip bomb", bomb, "expands to more than"),
    ];
    for (what, bytes, reason) in cases {
        let file = env.path("hostile.tar");
        fs::write(&file, &bytes).unwrap();
        let out = env.run(&[
            "import",
            "--max-size",
            "1M",
            file.to_str().unwrap(),
            "--name",
            "hostile",
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        if what == "NUL in name" && out.status.success() {
            // tar names end at the first NUL: this archive names `a`, a plain file.
            continue;
        }
        assert_eq!(out.status.code(), Some(2), "{what}: {out:?}");
        assert!(
            err.contains("refusing the archive") && err.contains(reason),
            "{what}: {err}"
        );
        assert!(
            !env.path("escape").exists() && fs::read_dir(&outside).unwrap().count() == 0,
            "{what}: wrote outside"
        );
        let snapshots: Vec<_> = fs::read_dir(env.store.join("snapshots")).unwrap().collect();
        assert_eq!(
            snapshots.len(),
            1,
            "{what}: nothing half-imported is visible"
        );
        assert!(!env.store.join("pins/hostile").exists(), "{what}");
        env.ok(&["verify"]);
    }
    assert_eq!(env.ok(&["ls", "--json"]).matches(&good).count(), 1);
}

#[test]
fn export_of_an_unknown_snapshot_or_to_an_unwritable_place_fails_cleanly() {
    let env = Env::new();
    sample_env(&env.path("src"));
    let id = env.ingest(&env.path("src"));
    let err = env.fails(&[
        "export",
        "deadbeefdeadbeef",
        "-o",
        env.path("x.tar").to_str().unwrap(),
    ]);
    assert!(err.contains("deadbeefdeadbeef"), "{err}");
    let err = env.fails(&["export", &id, "-o", "/nonexistent/dir/x.tar"]);
    assert!(err.contains("/nonexistent/dir"), "{err}");
    let _ = PathBuf::new();
}
