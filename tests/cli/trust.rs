//! Issue 12: the same path always holds the same bytes, and nothing outside the store is ever
//! touched. One test (or a few) per item of the issue; each failed on the main before it
//! (`ENVSTORE_TEST_BIN=<old envstore> cargo nextest run trust` shows it).

use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::*;

/// The object file holding `content` (plain variant).
fn object_path(env: &Env, content: &[u8]) -> PathBuf {
    let hex = blake3::hash(content).to_hex().to_string();
    env.store.join("objects").join(&hex[..2]).join(&hex[2..])
}

/// The file of a snapshot's root tree (a snapshot's id is its root tree's).
fn root_tree_path(env: &Env, id: &str) -> PathBuf {
    env.store.join("trees").join(&id[..2]).join(&id[2..])
}

/// A directory outside the store with files a careless store would follow links into.
fn outside(env: &Env) -> PathBuf {
    let dir = env.path("outside");
    write(&dir.join("notes.txt"), b"a user's notes\n");
    write(&dir.join("sub/data.bin"), &pseudo_random(4096, 3));
    dir
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn make_writable(path: &Path) {
    let mode = fs::symlink_metadata(path).unwrap().mode();
    chmod(path, (mode | 0o200) & 0o7777);
}

// 1. A file rewritten in place while it is ingested.

/// Flips bytes all over a file through a shared writable mapping (which, once a page is dirty,
/// changes bytes without moving ctime until writeback) for up to 60 s.
const MAPPED_WRITER: &str = r#"
import mmap, random, sys, time
f = open(sys.argv[1], "r+b")
m = mmap.mmap(f.fileno(), 0)
r = random.Random(1)
n = len(m)
end = time.time() + 60
while time.time() < end:
    for _ in range(64):
        i = r.randrange(n)
        m[i] = (m[i] + 1) % 256
    time.sleep(0.001)
"#;

fn racing_writer_in(parent: &Path) {
    let env = Env::in_dir(parent);
    let src = env.path("src");
    write(&src.join("big.bin"), &pseudo_random(8 << 20, 1));
    write(&src.join("small.txt"), b"steady\n");
    let mut writer = Command::new("python3")
        .args(["-c", MAPPED_WRITER])
        .arg(src.join("big.bin"))
        .spawn()
        .unwrap();
    // Let ctime age past the walk's 2 s "settled" window: the old shortcut then trusted the
    // copy, although the mapping kept changing the bytes.
    std::thread::sleep(std::time::Duration::from_millis(2600));
    let (mut stored, mut refused) = (0, 0);
    for _ in 0..8 {
        let out = env.run(&["ingest", src.to_str().unwrap()]);
        match out.status.code() {
            Some(0) => stored += 1,
            Some(2) => {
                assert!(stderr(&out).contains("changed while"), "{out:?}");
                refused += 1;
            }
            _ => panic!("ingest crashed: {out:?}"),
        }
    }
    writer.kill().unwrap();
    writer.wait().unwrap();
    eprintln!(
        "racing writer in {}: {stored} stored, {refused} refused",
        parent.display()
    );
    // Whatever was stored holds exactly the bytes its name says.
    let out = env.run(&["verify"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    // And a clean tree that shares no content with the racy one materializes exactly.
    let clean = env.path("clean");
    write(
        &clean.join("big.bin"),
        &fs::read(src.join("big.bin")).unwrap(),
    );
    let path = env.materialize(&clean);
    assert_eq!(
        fs::read(path.join("big.bin")).unwrap(),
        fs::read(clean.join("big.bin")).unwrap()
    );
}

#[test]
fn a_file_written_through_a_shared_mapping_during_ingest_is_refused_or_stored_exactly() {
    racing_writer_in(&std::env::temp_dir());
    // The clone path too, where the store's file system can clone.
    if let Some(dir) = std::env::var_os("ENVSTORE_TEST_REFLINK_DIR") {
        racing_writer_in(Path::new(&dir));
    }
}

// 2. Dedup hands out damaged objects.

#[test]
fn reuse_never_lays_out_a_damaged_object() {
    let env = Env::new();
    let data = pseudo_random(64 << 10, 9);
    let a = env.path("a");
    write(&a.join("lib/data.bin"), &data);
    write(&a.join("a.txt"), b"a\n");
    let id_a = env.ingest(&a);
    let object = object_path(&env, &data);

    // Truncated: a new tree with the same file is laid out from its own source, and the
    // object is replaced on the way.
    make_writable(&object);
    fs::OpenOptions::new()
        .write(true)
        .open(&object)
        .unwrap()
        .set_len(10)
        .unwrap();
    let b = env.path("b");
    write(&b.join("lib/data.bin"), &data);
    write(&b.join("b.txt"), b"b\n");
    let path = env.materialize(&b);
    assert_eq!(fs::read(path.join("lib/data.bin")).unwrap(), data);
    assert_eq!(fs::read(&object).unwrap(), data, "the object was replaced");

    // Replaced by a link to a file outside of the right size: never linked out.
    let outside = outside(&env);
    let impostor = outside.join("impostor.bin");
    fs::write(&impostor, vec![b'!'; data.len()]).unwrap();
    fs::remove_file(&object).unwrap();
    symlink(&impostor, &object).unwrap();
    let before = metadata_of(&outside);
    let err = env.fails(&["materialize", &id_a]);
    assert!(
        err.contains(object.to_str().unwrap()) && err.contains("verify --repair"),
        "{err}"
    );
    assert!(!env.store.join("envs").join(&id_a).exists());
    env.ok(&["verify", "--repair"]);
    assert_eq!(metadata_of(&outside), before, "nothing outside changed");
    let path = env.materialize(Path::new(&id_a));
    let laid = fs::symlink_metadata(path.join("lib/data.bin")).unwrap();
    assert!(laid.is_file());
    assert_eq!(fs::read(path.join("lib/data.bin")).unwrap(), data);
}

// 3. Symlinks inside the store.

#[test]
fn a_store_directory_replaced_by_a_link_is_refused_and_repaired_without_following_it() {
    for dir in ["tmp", "envs", "objects", "leases"] {
        let env = Env::new();
        sample_env(&env.path("src"));
        let id = env.ingest(&env.path("src"));
        env.materialize(&env.path("src"));
        let outside = outside(&env);
        let before = metadata_of(&outside);
        let path = env.store.join(dir);
        fs::rename(&path, env.path("moved")).unwrap();
        symlink(&outside, &path).unwrap();
        for args in [
            vec!["prune", "--older-than", "0s"],
            vec!["materialize", &id],
            vec!["ingest", env.path("src").to_str().unwrap()],
            vec!["ls"],
        ] {
            let err = env.fails(&args);
            assert!(
                err.contains(path.to_str().unwrap()) && err.contains("symbolic link"),
                "{dir}: {args:?}: {err}"
            );
        }
        // verify reports it (exit 1); repair replaces the link, never entering it.
        let out = env.run(&["verify"]);
        assert_eq!(out.status.code(), Some(1), "{dir}: {out:?}");
        let out = env.run(&["verify", "--repair"]);
        assert_no_panic(&["verify", "--repair"], &out);
        assert_eq!(
            metadata_of(&outside),
            before,
            "{dir}: nothing outside changed"
        );
        assert!(fs::symlink_metadata(&path).unwrap().is_dir(), "{dir}");
        // The store works again, and the environment comes back whole.
        let out = env.run(&["verify", "--repair"]);
        assert_eq!(out.status.code(), Some(0), "{dir}: {out:?}");
        let env_path = env.materialize(&env.path("src"));
        assert_eq!(
            snapshot_of(&env_path, &|_| false),
            snapshot_of(&env.path("src"), &is_bytecode),
            "{dir}"
        );
        assert_eq!(
            metadata_of(&outside),
            before,
            "{dir}: nothing outside changed"
        );
    }
}

#[test]
fn a_materialization_replaced_by_a_link_is_never_handed_out() {
    let env = Env::new();
    sample_env(&env.path("src"));
    let id = env.ingest(&env.path("src"));
    let outside = outside(&env);
    let before = metadata_of(&outside);
    let link = env.store.join("envs").join(&id);
    symlink(&outside, &link).unwrap();
    for args in [
        vec!["materialize", id.as_str()],
        vec!["materialize", env.path("src").to_str().unwrap()],
    ] {
        let err = env.fails(&args);
        assert!(err.contains(link.to_str().unwrap()), "{args:?}: {err}");
    }
    let out = env.run(&["verify"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    env.ok(&["verify", "--repair"]);
    assert_eq!(metadata_of(&outside), before);
    assert!(fs::symlink_metadata(&link).unwrap().is_dir());
    assert_eq!(
        snapshot_of(&env.materialize(Path::new(&id)), &|_| false),
        snapshot_of(&env.path("src"), &is_bytecode)
    );
}

#[test]
fn lock_lease_and_object_links_create_or_serve_nothing_outside() {
    let env = Env::new();
    sample_env(&env.path("src"));
    let id = env.ingest(&env.path("src"));
    let outside = outside(&env);
    // A lock file and a lease file pointing at files that do not exist yet.
    fs::remove_file(env.store.join("store.lock")).unwrap();
    symlink(
        outside.join("created-by-lock"),
        env.store.join("store.lock"),
    )
    .unwrap();
    let err = env.fails(&["ingest", env.path("src").to_str().unwrap()]);
    assert!(err.contains("store.lock"), "{err}");
    assert!(!outside.join("created-by-lock").exists());
    env.ok(&["verify", "--repair"]);
    assert!(!env.store.join("store.lock").is_symlink());

    let lease = env.store.join("leases").join(&id);
    symlink(outside.join("created-by-lease"), &lease).unwrap();
    let err = env.fails(&["run", &id, "--", "true"]);
    assert!(err.contains(lease.to_str().unwrap()), "{err}");
    assert!(!outside.join("created-by-lease").exists());
    // Prune keeps going past it, and repair removes it.
    env.ok(&["prune"]);
    env.ok(&["verify", "--repair"]);
    assert!(fs::symlink_metadata(&lease).is_err());
    env.ok(&["run", &id, "--", "true"]);

    // A shard directory replaced by a link: prune never deletes through it.
    let shard = env.store.join("objects").join("00");
    fs::remove_dir(&shard).unwrap();
    write(
        &outside.join("shard/0011223344"),
        b"looks like an object name",
    );
    symlink(outside.join("shard"), &shard).unwrap();
    let before = metadata_of(&outside);
    for args in [
        vec!["prune", "--older-than", "0s"],
        vec!["verify", "--repair"],
    ] {
        let out = env.run(&args);
        assert_no_panic(&args, &out);
        assert_eq!(metadata_of(&outside), before, "{args:?}");
    }
    assert!(fs::symlink_metadata(&shard).unwrap().is_dir());
}

#[test]
fn pack_reads_no_object_through_a_link() {
    let env = Env::new();
    let content = pseudo_random(3000, 11);
    write(&env.path("src/lib/data.bin"), &content);
    env.ingest(&env.path("src"));
    // The object replaced by a link to a file outside with the same bytes: following it would
    // pack the right bytes, but from outside the store.
    let outside = outside(&env);
    write(&outside.join("same.bin"), &content);
    let object = object_path(&env, &content);
    fs::remove_file(&object).unwrap();
    symlink(outside.join("same.bin"), &object).unwrap();
    let err = env.fails(&["pack"]);
    assert!(err.contains("symbolic link"), "{err}");
    assert!(err.contains(object.to_str().unwrap()), "{err}");
    env.ok(&["verify", "--repair"]);
    assert!(fs::symlink_metadata(&object).unwrap().is_file());
    env.ok(&["pack"]);
}

// 4. Pins read without bounds.

#[test]
fn damaged_pins_never_hang_and_can_be_replaced_or_removed() {
    let env = Env::new();
    sample_env(&env.path("src"));
    let id = env.ingest(&env.path("src"));
    env.ok(&["pin", "good", &id]);
    let pins = env.store.join("pins");
    symlink("/dev/zero", pins.join("zero")).unwrap();
    symlink("/dev/urandom", pins.join("random")).unwrap();
    mkfifo(&pins.join("fifo"));
    let huge = fs::File::create(pins.join("huge")).unwrap();
    huge.set_len(1 << 30).unwrap();
    fs::write(pins.join("junk"), b"not an id\n").unwrap();

    for args in [
        vec!["ls"],
        vec!["--json", "ls"],
        vec!["prune"],
        vec!["stats"],
    ] {
        let out = output_within(env.cmd().args(&args), 30);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
        let err = stderr(&out);
        for name in ["zero", "random", "fifo", "huge", "junk"] {
            assert!(
                err.contains(&format!("pin {name} is damaged")),
                "{args:?}: {err}"
            );
        }
    }
    let list = json(&env, &["ls"]);
    assert_eq!(list[0]["pins"], serde_json::json!(["good"]));
    let err = env.fails(&["show", "zero"]);
    assert!(
        err.contains("pin `zero` is damaged") && err.contains("envstore pin zero"),
        "{err}"
    );
    // verify names them (exit 1) and never hangs either.
    let out = output_within(env.cmd().arg("verify"), 60);
    assert_eq!(out.status.code(), Some(1), "{out:?}");

    // pin replaces a damaged pin; unpin removes one; the devices stay devices.
    env.ok(&["pin", "zero", &id]);
    assert_eq!(fs::read_to_string(pins.join("zero")).unwrap().trim(), id);
    assert!(
        fs::metadata("/dev/zero")
            .unwrap()
            .file_type()
            .is_char_device()
    );
    for name in ["random", "fifo", "huge", "junk"] {
        let out = output_within(env.cmd().args(["unpin", name]), 30);
        assert_eq!(out.status.code(), Some(0), "{name}: {out:?}");
        assert!(fs::symlink_metadata(pins.join(name)).is_err(), "{name}");
    }
    let out = env.run(&["ls"]);
    assert!(out.status.success() && stderr(&out).is_empty(), "{out:?}");
}

// 5. A torn index.

#[test]
fn a_torn_or_replaced_index_never_panics_and_is_rebuilt() {
    let env = Env::new();
    sample_env(&env.path("src"));
    let id = env.ingest(&env.path("src"));
    env.ok(&["pin", "p", &id]);
    let index = env.store.join("index.redb");
    let len = fs::metadata(&index).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&index)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    for args in [
        vec!["ls"],
        vec!["show", "p"],
        vec!["materialize", "p"],
        vec!["stats"],
        vec!["pack"],
        vec!["verify"],
        vec!["verify", "--repair"],
        vec!["ls"],
    ] {
        let out = env.run(&args);
        assert_no_panic(&args, &out);
        if args[0] != "verify" {
            assert!(out.status.success(), "{args:?}: {out:?}");
        }
    }
    assert_eq!(json(&env, &["ls"])[0]["id"], id.as_str());

    // Replaced by a directory: repair sets it aside and builds a new one.
    fs::remove_file(&index).unwrap();
    write(&index.join("inside"), b"x");
    let out = env.run(&["ls"]);
    assert!(out.status.success(), "{out:?}");
    env.ok(&["verify", "--repair"]);
    assert!(fs::symlink_metadata(&index).unwrap().is_file());
    assert_eq!(json(&env, &["verify"])["ok"], true);
    assert_eq!(json(&env, &["ls"])[0]["pins"], serde_json::json!(["p"]));
}

// 6. A damaged snapshot record or tree.

#[test]
fn a_damaged_record_blocks_nothing_and_is_rewritten() {
    let env = Env::new();
    sample_env(&env.path("a"));
    let id = env.ingest(&env.path("a"));
    let files = json(&env, &["show", &id])["files"].clone();
    write(&env.path("b/other.txt"), b"another environment\n");
    let other = env.ingest(&env.path("b"));
    let record = env.store.join("snapshots").join(&id);
    make_writable(&record);
    fs::write(&record, b"\x00garbage").unwrap();
    for args in [vec!["prune"], vec!["ls"], vec!["stats"]] {
        let out = env.run(&args);
        assert!(out.status.success(), "{args:?}: {out:?}");
    }
    env.ok(&["verify", "--repair"]);
    assert_eq!(json(&env, &["verify"])["ok"], true);
    let shown = json(&env, &["show", &id]);
    assert_eq!(
        shown["files"], files,
        "counts derived from the trees: {shown}"
    );

    // Ingesting the source again heals it too.
    fs::write(&record, b"\x00garbage again").unwrap();
    env.ingest(&env.path("a"));
    assert_eq!(
        json(&env, &["show", &id])["source"],
        env.path("a").to_str().unwrap()
    );
    assert!(
        json(&env, &["ls"]).as_array().unwrap().len() == 2,
        "{other}"
    );
}

#[test]
fn a_damaged_tree_is_rebuilt_from_its_source_or_its_loss_is_reported() {
    let env = Env::new();
    sample_env(&env.path("a"));
    let id = env.ingest(&env.path("a"));
    let tree = root_tree_path(&env, &id);
    let flip = |path: &Path| {
        make_writable(path);
        let mut bytes = fs::read(path).unwrap();
        bytes[3] ^= 0x40;
        fs::write(path, bytes).unwrap();
    };
    flip(&tree);
    env.ok(&["prune"]);
    let out = env.run(&["verify"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    env.ok(&["verify", "--repair"]);
    assert_eq!(
        snapshot_of(&env.materialize(Path::new(&id)), &|_| false),
        snapshot_of(&env.path("a"), &is_bytecode)
    );

    // Nothing left to rebuild it from: removed, and said so; the store goes on.
    write(&env.path("c/only.txt"), b"only here\n");
    let lost = env.ingest(&env.path("c"));
    fs::remove_dir_all(env.path("c")).unwrap();
    flip(&root_tree_path(&env, &lost));
    let out = env.run(&["verify", "--repair"]);
    assert_eq!(out.status.code(), Some(1), "loss is not success: {out:?}");
    assert!(stderr(&out).contains("removed snapshot"), "{out:?}");
    let ids: Vec<String> = json(&env, &["ls"])
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, std::slice::from_ref(&id));
    env.ok(&["prune"]);
    assert_eq!(json(&env, &["verify"])["ok"], true);
}

// 7. Materialized environments changed in place.

fn all_dirs(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![root.to_owned()];
    let mut i = 0;
    while i < out.len() {
        for entry in fs::read_dir(&out[i]).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                out.push(entry.path());
            }
        }
        i += 1;
    }
    out
}

#[test]
fn materializations_are_read_only_to_the_last_directory() {
    let env = Env::new();
    sample_env(&env.path("src"));
    let path = env.materialize(&env.path("src"));
    for dir in all_dirs(&path) {
        let mode = fs::metadata(&dir).unwrap().mode();
        assert_eq!(mode & 0o222, 0, "{} is writable ({mode:o})", dir.display());
    }
    // As a user other than root, nothing can be added (root passes permission bits).
    if is_root() && Path::new("/usr/bin/setpriv").exists() {
        chmod(env.dir.path(), 0o755);
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg("touch")
            .arg(path.join("lib/injected.py"))
            .output()
            .unwrap();
        assert!(!out.status.success(), "a user added a file: {out:?}");
    }
    // Someone made a directory writable: verify says so, repair makes it read-only again.
    let lib = path.join("lib");
    chmod(&lib, 0o755);
    let out = env.run(&["verify"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("writable"),
        "{out:?}"
    );
    env.ok(&["verify", "--repair"]);
    assert_eq!(fs::metadata(&lib).unwrap().mode() & 0o222, 0);
    // Prune and repair cope with read-only trees (also as a user who is not root).
    env.ok(&["prune", "--older-than", "0s"]);
    assert!(!path.exists());
}

#[test]
fn repair_keeps_the_recorded_link_mode() {
    let env = Env::new();
    sample_env(&env.path("src"));
    let path = env.materialize_with("copy", &env.path("src"));
    let file = path.join("include/pkg/header.h");
    make_writable(&file);
    fs::write(&file, b"changed in place\n").unwrap();
    env.ok(&["verify", "--repair"]);
    let content = fs::read(env.path("src/include/pkg/header.h")).unwrap();
    assert_eq!(fs::read(&file).unwrap(), content);
    let object = object_path(&env, &content);
    assert_ne!(
        fs::metadata(&file).unwrap().ino(),
        fs::metadata(&object).unwrap().ino(),
        "a copy-mode environment stays copies after repair"
    );
    assert_eq!(fs::metadata(&file).unwrap().nlink(), 1);
}

// 8. export -o special files, and a closed or full stdout.

#[test]
fn export_writes_into_special_targets_instead_of_replacing_them() {
    let env = Env::new();
    sample_env(&env.path("src"));
    let id = env.ingest(&env.path("src"));

    // A fifo: written into, and still a fifo.
    let fifo = env.path("fifo");
    mkfifo(&fifo);
    let (tx, rx) = std::sync::mpsc::channel();
    {
        let fifo = fifo.clone();
        // Blocks until a writer opens the fifo; if envstore replaces it instead, it waits
        // forever, and the timeout below fails the test rather than hanging it.
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            fs::File::open(fifo)
                .unwrap()
                .read_to_end(&mut bytes)
                .unwrap();
            let _ = tx.send(bytes);
        });
    }
    let out = env.run(&["export", &id, "-o", fifo.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let tar = rx
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("the archive went through the fifo");
    assert!(tar.len() > 10_000, "{} bytes through the fifo", tar.len());
    assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());

    // A character device (a private copy of /dev/null, so a broken envstore cannot
    // destroy the machine's).
    if is_root() {
        let null = env.path("null");
        let ok = Command::new("mknod")
            .arg(&null)
            .args(["c", "1", "3"])
            .status()
            .unwrap()
            .success();
        assert!(ok);
        env.ok(&["export", &id, "-o", null.to_str().unwrap()]);
        assert!(
            fs::symlink_metadata(&null)
                .unwrap()
                .file_type()
                .is_char_device()
        );
    }

    // A link to this process's stdout, and /dev/fd/1: the archive arrives on stdout, the
    // link stays a link.
    let link = env.path("to-stdout");
    symlink("/proc/self/fd/1", &link).unwrap();
    for target in [link.to_str().unwrap(), "/dev/fd/1"] {
        let out = env.run(&["export", &id, "-o", target]);
        assert!(out.status.success(), "{target}: {out:?}");
        assert_eq!(out.stdout, tar, "{target}: the same archive");
    }
    assert!(
        fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );

    // A regular file behind a link: the file is written, the link stays.
    let real = env.path("real.tar");
    fs::write(&real, b"old").unwrap();
    let to_real = env.path("to-real.tar");
    symlink(&real, &to_real).unwrap();
    env.ok(&["export", &id, "-o", to_real.to_str().unwrap()]);
    assert_eq!(fs::read(&real).unwrap(), tar);
    assert!(
        fs::symlink_metadata(&to_real)
            .unwrap()
            .file_type()
            .is_symlink()
    );

    // A full disk names the output, not the store.
    let out = env.run(&["export", &id, "-o", "/dev/full"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = stderr(&out);
    assert!(err.contains("/dev/full") && err.contains("output"), "{err}");
    assert!(!err.contains(env.store.to_str().unwrap()), "{err}");
}

#[test]
fn a_closed_or_full_stdout_never_panics() {
    let env = Env::new();
    sample_env(&env.path("src"));
    env.ingest(&env.path("src"));
    for args in [vec!["ls"], vec!["--json", "ls"], vec!["stats"]] {
        // `envstore ls | head -0`: the reader is gone before envstore writes.
        let mut child = env
            .cmd()
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
        assert!(stderr(&out).is_empty(), "quietly: {out:?}");
    }
    // `> /dev/full`: an error and exit 2, never 0 and never a panic.
    for args in [
        vec!["ls"],
        vec!["--json", "ls"],
        vec!["ingest", env.path("src").to_str().unwrap()],
    ] {
        let out = env
            .cmd()
            .args(&args)
            .stdout(fs::File::create("/dev/full").unwrap())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(stderr(&out).contains("cannot write to stdout"), "{out:?}");
    }
}

// 9. Venv relocation and the venv's name.

fn shell_available(shell: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {shell}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn venvs_differing_only_in_their_names_get_one_id_and_activate_in_every_shell() {
    let env = Env::new();
    let mut paths = Vec::new();
    for (i, name) in ["env", "bin", "venv", "python", "penv"].iter().enumerate() {
        let venv = env.path(&format!("{i}/{name}"));
        let ok = Command::new("python3")
            .args(["-m", "venv", "--without-pip"])
            .arg(&venv)
            .status()
            .unwrap()
            .success();
        assert!(ok, "python3 -m venv");
        let out = env.ok(&["materialize", "--relocate", venv.to_str().unwrap()]);
        paths.push(PathBuf::from(out.trim()));
    }
    assert!(paths.windows(2).all(|w| w[0] == w[1]), "one id: {paths:?}");
    let path = &paths[0];
    let csh = fs::read_to_string(path.join("bin/activate.csh")).unwrap();
    assert!(csh.contains("setenv VIRTUAL_ENV"), "{csh}");
    let python = path.join("bin/python");
    let p = path.display();
    let shells: [(&str, String); 4] = [
        (
            "bash",
            format!(". {p}/bin/activate && echo $VIRTUAL_ENV && command -v python"),
        ),
        (
            "zsh",
            format!(". {p}/bin/activate && echo $VIRTUAL_ENV && command -v python"),
        ),
        (
            "fish",
            format!("source {p}/bin/activate.fish; and echo $VIRTUAL_ENV; and command -v python"),
        ),
        // A non-interactive csh has no $prompt, which activate.csh reads.
        (
            "csh",
            format!(
                "set prompt = ''; source {p}/bin/activate.csh && echo $VIRTUAL_ENV && which python"
            ),
        ),
    ];
    for (shell, script) in shells {
        if !shell_available(shell) {
            assert!(!in_ci(), "{shell} is missing; .ci/run installs it");
            eprintln!("skipped {shell}: not installed");
            continue;
        }
        let out = Command::new(shell)
            .args(["-c", &script])
            .env("HOME", env.dir.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = stdout.lines().collect();
        assert!(out.status.success(), "{shell}: {out:?}");
        assert_eq!(
            lines,
            [path.to_str().unwrap(), python.to_str().unwrap()],
            "{shell}: {out:?}"
        );
    }
}

// 10. The smaller ones.

#[test]
fn bad_values_are_refused_with_the_value_named_never_a_panic() {
    let env = Env::new();
    sample_env(&env.path("src"));
    env.ingest(&env.path("src"));
    for (args, needle) in [
        (vec!["prune", "--older-than", "30"], "`30` has no unit"),
        (vec!["prune", "--older-than", "-1s"], "`-1s` is negative"),
        (
            vec!["prune", "--older-than", "99999999999999999999d"],
            "`99999999999999999999d`",
        ),
        (vec!["prune", "--pack-older-than", "1e99s"], "`1e99s`"),
        (
            vec!["prune", "--max-size", "99999999999999999999T"],
            "`99999999999999999999T`",
        ),
        (vec!["prune", "--max-size", "-5G"], "`-5G` is negative"),
        (
            vec!["import", "-", "--max-size", "16777216T"],
            "`16777216T`",
        ),
    ] {
        let err = env.fails(&args);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    let out = env
        .cmd()
        .env("ENVSTORE_LOCK_TIMEOUT", "1e99")
        .arg("ls")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        stderr(&out).contains("ENVSTORE_LOCK_TIMEOUT=`1e99`"),
        "{out:?}"
    );
    assert_eq!(
        json(&env, &["ls"]).as_array().unwrap().len(),
        1,
        "nothing pruned"
    );
}

#[test]
fn a_dry_run_prune_changes_nothing_not_even_lease_files() {
    let env = Env::new();
    sample_env(&env.path("src"));
    env.materialize(&env.path("src"));
    let before = metadata_of(&env.store);
    let plan = json(
        &env,
        &[
            "prune",
            "--dry-run",
            "--older-than",
            "0s",
            "--pack-older-than",
            "0s",
        ],
    );
    assert_eq!(plan["removed"].as_array().unwrap().len(), 1, "{plan}");
    assert_eq!(fs::read_dir(env.store.join("leases")).unwrap().count(), 0);
    let after = metadata_of(&env.store);
    let changed: Vec<_> = after
        .keys()
        .filter(|k| before.get(*k) != after.get(*k) && !k.ends_with("index.redb"))
        .collect();
    let added: Vec<_> = after.keys().filter(|k| !before.contains_key(*k)).collect();
    assert!(
        added
            .iter()
            .all(|k| k.ends_with("index.lock") || k.ends_with("store.lock")),
        "{added:?}"
    );
    assert!(changed.iter().all(|k| k.ends_with(".lock")), "{changed:?}");
}

#[test]
fn the_store_is_never_ingested_as_an_environment() {
    let env = Env::new();
    sample_env(&env.path("src"));
    let path = env.materialize(&env.path("src"));
    for dir in [
        env.store.clone(),
        env.store.join("objects"),
        env.store.join("envs"),
    ] {
        let err = env.fails(&["ingest", dir.to_str().unwrap()]);
        assert!(err.contains("inside the store"), "{}: {err}", dir.display());
    }
    // A materialization is an environment like any other, with the same id.
    assert_eq!(env.materialize(&path), path);
}

#[test]
fn diff_quotes_names_that_would_garble_a_terminal() {
    let env = Env::new();
    write(&env.path("a/plain.txt"), b"x");
    write(&env.path("b/plain.txt"), b"x");
    write(&env.path("b/two\nlines"), b"x");
    write(&env.path("b/\x1b[31mred"), b"x");
    let out = env.ok(&[
        "diff",
        env.path("a").to_str().unwrap(),
        env.path("b").to_str().unwrap(),
    ]);
    assert!(!out.contains('\x1b'), "{out:?}");
    assert_eq!(out.lines().count(), 2, "one line per change: {out:?}");
    assert!(
        out.contains(r"$'two\nlines'") && out.contains(r"$'\x1b[31mred'"),
        "{out}"
    );
    let json = json(
        &env,
        &[
            "diff",
            env.path("a").to_str().unwrap(),
            env.path("b").to_str().unwrap(),
        ],
    );
    let paths: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["path"].as_str().unwrap())
        .collect();
    assert!(
        paths.contains(&"two\nlines"),
        "JSON keeps the name: {paths:?}"
    );
}

#[test]
fn import_errors_do_not_echo_raw_bytes() {
    let env = Env::new();
    let archive = env.path("evil.tar");
    let script = r#"
import io, sys, tarfile
with tarfile.open(sys.argv[1], "w", format=tarfile.GNU_FORMAT) as t:
    info = tarfile.TarInfo("pkg/\x1b]0;pwned\x07/../../../etc/x")
    info.size = 1
    t.addfile(info, io.BytesIO(b"x"))
"#;
    let ok = Command::new("python3")
        .args(["-c", script])
        .arg(&archive)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let err = env.fails(&["import", archive.to_str().unwrap()]);
    assert!(!err.contains('\x1b') && !err.contains('\x07'), "{err:?}");
    assert!(err.contains("\\u{1b}"), "shown escaped: {err}");
}

#[test]
fn sparse_files_stay_sparse_in_the_store_and_in_copies() {
    let env = Env::new();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    let file = fs::File::create(src.join("sparse.img")).unwrap();
    file.set_len(256 << 20).unwrap();
    std::os::unix::fs::FileExt::write_at(&file, b"data in the middle", 100 << 20).unwrap();
    drop(file);
    let path = env.materialize_with("copy", &src);
    let content = fs::read(src.join("sparse.img")).unwrap();
    let object = object_path(&env, &content);
    for stored in [object, path.join("sparse.img")] {
        let meta = fs::metadata(&stored).unwrap();
        assert_eq!(meta.len(), 256 << 20);
        assert!(
            meta.blocks() * 512 < 4 << 20,
            "{} takes {} bytes",
            stored.display(),
            meta.blocks() * 512
        );
    }
    assert!(fs::read(path.join("sparse.img")).unwrap() == content);
}

#[test]
fn a_full_store_says_that_prune_frees_what_the_failed_run_stored() {
    if !is_root() {
        assert!(
            !in_ci(),
            "CI runs as root, which this test needs for a small tmpfs"
        );
        eprintln!("skipped: needs root to mount a small tmpfs");
        return;
    }
    let env = Env::new();
    let mount = env.path("small");
    fs::create_dir_all(&mount).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(&mount)
        .status()
        .unwrap()
        .success();
    assert!(ok, "mount tmpfs");
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mount.clone());
    let store = mount.join("store");
    let src = env.path("src");
    write(&src.join("a.bin"), &pseudo_random(1 << 20, 1));
    write(&src.join("b.bin"), &pseudo_random(2 << 20, 2));
    let run = |args: &[&str]| {
        Command::new(bin())
            .env("ENVSTORE_DIR", &store)
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["ingest", src.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = stderr(&out);
    assert!(
        err.contains("No space left") && err.contains("envstore prune"),
        "{err}"
    );
    assert!(run(&["prune"]).status.success());
    let stats: serde_json::Value =
        serde_json::from_slice(&run(&["--json", "stats"]).stdout).unwrap();
    assert_eq!(
        stats["objects"], 0,
        "what the failed run stored is gone: {stats}"
    );
}

#[test]
fn the_ls_header_is_the_one_the_docs_show() {
    let env = Env::new();
    sample_env(&env.path("src"));
    env.ingest(&env.path("src"));
    let out = env.ok(&["ls"]);
    let header: Vec<&str> = out
        .lines()
        .next()
        .unwrap()
        .split("  ")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let docs =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/cli.md")).unwrap();
    let documented = docs
        .lines()
        .find(|l| l.starts_with("ID "))
        .expect("docs/cli.md shows ls");
    let documented: Vec<&str> = documented
        .split("  ")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(header, documented);
}

// 11. Read-only stores.

#[test]
fn a_read_only_store_serves_every_reading_command() {
    if !is_root() {
        assert!(
            !in_ci(),
            "CI runs as root, which this test needs for a read-only bind mount"
        );
        eprintln!("skipped: needs root for a read-only bind mount");
        return;
    }
    let env = Env::new();
    sample_env(&env.path("a"));
    write(&env.path("b/b.txt"), b"b\n");
    let a = env.ingest(&env.path("a"));
    env.materialize(&env.path("a"));
    env.ok(&["pin", "p", &a]);
    let b = env.ingest(&env.path("b"));
    let ro = env.path("ro");
    fs::create_dir(&ro).unwrap();
    let mount = |args: &[&str]| {
        let ok = Command::new("mount").args(args).status().unwrap().success();
        assert!(ok, "mount {args:?}");
    };
    mount(&["--bind", env.store.to_str().unwrap(), ro.to_str().unwrap()]);
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(ro.clone());
    mount(&["-o", "remount,bind,ro", ro.to_str().unwrap()]);
    let ro_env = Env {
        dir: tempfile::tempdir().unwrap(),
        store: ro.clone(),
    };
    let export = env.path("a.tar");
    for args in [
        vec!["ls"],
        vec!["--json", "ls"],
        vec!["show", "p"],
        vec!["diff", &a, &b],
        vec!["path", "p"],
        vec!["stats"],
        vec!["verify"],
        vec!["export", "p", "-o", export.to_str().unwrap()],
        vec!["materialize", "p"],
        vec!["materialize", env.path("a").to_str().unwrap()],
    ] {
        let out = ro_env.run(&args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
    }
    assert_eq!(
        ro_env.ok(&["materialize", "p"]).trim(),
        ro.join("envs").join(&a).to_str().unwrap()
    );
    let c = env.path("c");
    write(&c.join("c.txt"), b"new\n");
    for args in [
        vec!["ingest", c.to_str().unwrap()],
        vec!["materialize", &b],
        vec!["pin", "q", &a],
        vec!["prune"],
        vec!["verify", "--repair"],
    ] {
        let err = ro_env.fails(&args);
        assert!(err.contains("read-only"), "{args:?}: {err}");
    }

    // Another user's store: readable, not writable.
    chmod(env.dir.path(), 0o755);
    let as_nobody = |args: &[&str]| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(bin())
            .args(args)
            .env("ENVSTORE_DIR", &env.store)
            .output()
            .unwrap()
    };
    for args in [
        vec!["ls"],
        vec!["show", "p"],
        vec!["path", "p"],
        vec!["verify"],
    ] {
        let out = as_nobody(&args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
    }
    let out = as_nobody(&["ingest", c.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(stderr(&out).contains("read-only"), "{out:?}");
}
