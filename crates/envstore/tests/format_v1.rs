//! A store in format 1, made by the build of 2026-12-06 and kept in `fixtures/store-v1.tar.zst`:
//! every later build must open it, verify it clean, find its pins, key records and packed
//! snapshot, and lay them out byte for byte (redb's backward-compatibility test, for us).
//! The snapshot id of the fixed tree below is golden: identity must not drift across versions.
//!
//! To make the fixture again (only when the format version changes, with a new file name):
//! `ENVSTORE_WRITE_FIXTURE=1 cargo test -p envstore --test format_v1`.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use envstore::{EnsureSpec, Filter, LinkMode, LinkPolicy, Source, Store, StoreOptions};

const FIXTURE: &str = "tests/fixtures/store-v1.tar.zst";
/// The id of [`fixed_tree`], as every version of envstore computes it.
const GOLDEN: &str = "e51b20543bf4fa31ad328087bd8f4bbb4e353e18f499cc5ef61970472c9bd9bd";

/// Pseudo-random bytes (xorshift), the same on every machine.
fn noise(len: usize, mut x: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A small environment with every kind of entry identity covers: executable and plain files,
/// an empty file, a symlink, nested directories, a large file (chunked in the cold tier), and a
/// `__pycache__` that the default filter leaves out.
fn fixed_tree(root: &Path, variant: u8) -> PathBuf {
    let dir = root.join(format!("env-{variant}"));
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("bin/tool", b"#!/bin/sh\necho tool\n".to_vec()),
        (
            "lib/site-packages/pkg/__init__.py",
            format!("VERSION = '1.{variant}'\n").into_bytes(),
        ),
        (
            "lib/site-packages/pkg/data.bin",
            noise(120_000, 0x5eed + u64::from(variant)),
        ),
        (
            "lib/site-packages/pkg/__pycache__/__init__.cpython-311.pyc",
            b"\0junk".to_vec(),
        ),
        ("nested/deep/dir/file.txt", b"deep\n".to_vec()),
        ("empty", Vec::new()),
    ];
    for (path, content) in &files {
        let file = dir.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, content).unwrap();
    }
    std::fs::set_permissions(dir.join("bin/tool"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("bin/tool", dir.join("link")).unwrap();
    dir
}

fn fixture_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURE)
}

/// Makes the fixture: snapshot 0 pinned as `fixture`, snapshot 1 packed, and a key record
/// named `fixture-key`.
fn write_fixture() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    let store = Store::open(&root, StoreOptions::default()).unwrap();
    let a = store
        .ingest(&fixed_tree(tmp.path(), 0), &Filter::default())
        .unwrap()
        .id;
    store.pin("fixture", &a).unwrap();
    let b = store
        .ingest(&fixed_tree(tmp.path(), 1), &Filter::default())
        .unwrap()
        .id;
    store.pack(&[b]).unwrap();
    let spec = EnsureSpec {
        texts: vec!["fixture".into()],
        argv: vec!["build".into()],
        name: Some("fixture-key".into()),
        ..EnsureSpec::default()
    };
    store
        .ensure(&spec, &mut |out| {
            std::fs::write(out.join("built"), b"built by ensure\n").unwrap();
            Ok(())
        })
        .unwrap();
    // Materializations and locks are per machine: not part of the format fixture.
    for dir in ["envs", "leases", "locks", "tmp"] {
        let path = root.join(dir);
        for entry in std::fs::read_dir(&path).unwrap() {
            let p = entry.unwrap().path();
            make_writable(&p);
            if p.is_dir() {
                std::fs::remove_dir_all(&p).unwrap();
            } else {
                std::fs::remove_file(&p).unwrap();
            }
        }
    }
    let out = std::fs::File::create(fixture_path()).unwrap();
    let zst = zstd::Encoder::new(out, 19).unwrap().auto_finish();
    let mut tar = tar::Builder::new(zst);
    tar.follow_symlinks(false);
    tar.append_dir_all("store", &root).unwrap();
    tar.finish().unwrap();
    eprintln!("wrote {} (snapshot 0: {a})", fixture_path().display());
}

fn make_writable(path: &Path) {
    if let Ok(meta) = std::fs::symlink_metadata(path)
        && meta.is_dir()
    {
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755));
        for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
            make_writable(&entry.path());
        }
    }
}

fn unpack(into: &Path) -> PathBuf {
    let mut bytes = Vec::new();
    std::fs::File::open(fixture_path())
        .unwrap()
        .read_to_end(&mut bytes)
        .unwrap();
    let mut archive = tar::Archive::new(zstd::Decoder::new(&bytes[..]).unwrap());
    archive.set_preserve_permissions(true);
    archive.unpack(into).unwrap();
    into.join("store")
}

#[test]
fn a_format_1_store_opens_verifies_and_lays_out_byte_for_byte() {
    if std::env::var_os("ENVSTORE_WRITE_FIXTURE").is_some() {
        write_fixture();
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&unpack(tmp.path()), StoreOptions::default()).unwrap();

    let report = store.verify(None, false).unwrap();
    assert!(report.ok(false), "{:?}", report.problems);
    assert_eq!(report.snapshots, 3);

    // Identity: the fixed tree hashes to the golden id today, and the old store holds it.
    let a = store
        .identify(&Source::Dir(fixed_tree(tmp.path(), 0)), &Filter::default())
        .unwrap();
    assert_eq!(a.to_hex(), GOLDEN, "snapshot identity changed");
    assert_eq!(store.pin_target("fixture").unwrap(), Some(a));

    // Laid out from loose objects, and from the cold tier.
    let b = store
        .identify(&Source::Dir(fixed_tree(tmp.path(), 1)), &Filter::default())
        .unwrap();
    assert!(
        store.snapshot_meta(&b).unwrap().packed > 0,
        "snapshot 1 was packed"
    );
    for (id, variant) in [(a, 0), (b, 1)] {
        let done = store
            .materialize(
                &Source::Snapshot(id),
                &Filter::default(),
                LinkPolicy::Only(LinkMode::Copy),
            )
            .unwrap();
        let expected = fixed_tree(&tmp.path().join("expected"), variant);
        let diff = store
            .diff(
                &Source::Dir(expected),
                &Source::Dir(done.path.clone()),
                &Filter::default(),
            )
            .unwrap();
        assert!(diff.is_empty(), "{diff:?}");
        assert_eq!(
            std::fs::read_link(done.path.join("link")).unwrap(),
            Path::new("bin/tool")
        );
    }

    // The key record, and what it names.
    let keys = store.keys().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].name.as_deref(), Some("fixture-key"));
    let built = store
        .materialize(
            &Source::Snapshot(keys[0].snapshot),
            &Filter::default(),
            LinkPolicy::Auto,
        )
        .unwrap();
    assert_eq!(
        std::fs::read(built.path.join("built")).unwrap(),
        b"built by ensure\n"
    );
    assert_eq!(store.list().unwrap().len(), 3);
}
