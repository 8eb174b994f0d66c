//! What takes part in a snapshot's identity, and what does not.

use std::fs;
use std::time::{Duration, SystemTime};

use crate::common::*;

#[test]
fn same_content_in_two_places_gives_the_same_path() {
    let env = Env::new();
    sample_env(&env.path("a"));
    sample_env(&env.path("b"));
    let a = env.materialize(&env.path("a"));
    let b = env.materialize(&env.path("b"));
    assert_eq!(a, b);
    assert!(a.is_absolute());
    assert_eq!(a.parent().unwrap(), env.store.join("envs"));
}

#[test]
fn the_id_is_the_same_in_every_store() {
    let one = Env::new();
    let two = Env::new();
    sample_env(&one.path("src"));
    sample_env(&two.path("elsewhere/src"));
    assert_eq!(
        one.ingest(&one.path("src")),
        two.ingest(&two.path("elsewhere/src"))
    );
}

#[test]
fn mtimes_and_other_mode_bits_do_not_change_the_id() {
    let env = Env::new();
    let src = env.path("src");
    sample_env(&src);
    let before = env.ingest(&src);
    let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let file = fs::File::options()
        .write(true)
        .open(src.join("include/pkg/header.h"))
        .unwrap();
    file.set_modified(old).unwrap();
    chmod(&src.join("include/pkg/header.h"), 0o600);
    chmod(&src.join("bin/tool"), 0o700);
    assert_eq!(env.ingest(&src), before);
}

#[test]
fn content_names_exec_bits_links_and_empty_dirs_change_the_id() {
    let env = Env::new();
    let src = env.path("src");
    sample_env(&src);
    let mut seen = vec![env.ingest(&src)];
    let mut changed = |what: &str| {
        let id = env.ingest(&src);
        assert!(!seen.contains(&id), "{what} did not change the id");
        seen.push(id);
    };
    write(
        &src.join("include/pkg/header.h"),
        b"#pragma once\nint g(void);\n",
    );
    changed("file content");
    fs::rename(
        src.join("include/pkg/header.h"),
        src.join("include/pkg/header2.h"),
    )
    .unwrap();
    changed("a rename");
    chmod(&src.join("include/pkg/header2.h"), 0o755);
    changed("the exec bit");
    fs::remove_file(src.join("bin/tool-link")).unwrap();
    std::os::unix::fs::symlink("other", src.join("bin/tool-link")).unwrap();
    changed("a symlink target");
    fs::create_dir(src.join("share/another-empty-dir")).unwrap();
    changed("an empty directory");
    write(&src.join("lib/big.bin"), &pseudo_random(3 << 20, 8));
    changed("a large file's content");
}

#[test]
fn bytecode_is_filtered_by_default() {
    let env = Env::new();
    let src = env.path("src");
    sample_env(&src);
    let id = env.ingest(&src);
    write(
        &src.join("lib/python3.11/site-packages/pkg/__pycache__/other.pyc"),
        b"new",
    );
    write(&src.join("x.pyc"), b"new");
    assert_eq!(env.ingest(&src), id, "bytecode must not change the id");
    let path = env.materialize(&src);
    assert!(
        !path
            .join("lib/python3.11/site-packages/pkg/__pycache__")
            .exists()
    );
    assert!(!path.join("lib/python3.11/site-packages/stray.pyc").exists());
}

#[test]
fn exclude_flags_add_and_drop_patterns() {
    let env = Env::new();
    let src = env.path("src");
    sample_env(&src);
    let default = env.ingest(&src);
    let kept = env.ok(&["ingest", "--no-default-excludes", src.to_str().unwrap()]);
    assert_ne!(kept.trim(), default);
    let out = env.ok(&[
        "materialize",
        "--no-default-excludes",
        src.to_str().unwrap(),
    ]);
    assert!(
        std::path::Path::new(out.trim())
            .join("lib/python3.11/site-packages/stray.pyc")
            .exists()
    );

    let fewer = env.ok(&[
        "ingest",
        "--exclude",
        "include/**",
        "--exclude",
        "*.bin",
        src.to_str().unwrap(),
    ]);
    let out = env.ok(&[
        "materialize",
        "--exclude",
        "include/**",
        "--exclude",
        "*.bin",
        src.to_str().unwrap(),
    ]);
    assert_ne!(fewer.trim(), default);
    let path = std::path::PathBuf::from(out.trim());
    assert!(
        path.join("include").is_dir(),
        "`include/**` leaves the directory itself"
    );
    assert!(!path.join("include/pkg").exists());
    assert!(!path.join("lib/big.bin").exists());
    assert!(path.join("bin/tool").exists());
}
