//! Random store operations mixed with random damage to the store, checked against a model
//! after every step (issue 12): no panic, nothing outside the store changed, every
//! materialization holds its id's content or `verify` reports it, and `verify --repair` brings
//! the store back to where every snapshot it keeps materializes byte-identical (or is named
//! by verify as unrepairable), and no materialization holds wrong bytes after repair.
//!
//! Since issue 26 it also drives keys (`ensure`), roots, `rm`, `import` and a `file://` remote
//! (push, pull), expects the exit code the model calls for while the store is undamaged, and
//! requires verify to name each snapshot whose materialization differs.
//!
//! The damage is what a careless user, another tool or an attacker with write access can do
//! to files at rest: truncate, flip a byte, replace by a link to a file or a directory
//! outside, replace by a directory, delete. `FORMAT` is left alone: it is how envstore knows a
//! directory is a store, and a damaged one is refused as not a store.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};

use crate::common::*;

/// What a test run looks like: sources never changed, the ids they hash to, and where
/// damage may point.
struct World {
    env: Env,
    sources: Vec<PathBuf>,
    ids: Vec<String>,
    expected: BTreeMap<String, BTreeMap<PathBuf, Node>>,
    outside: PathBuf,
    exports: PathBuf,
    remote: String,
    build: PathBuf,
}

impl World {
    fn new() -> World {
        let env = Env::new();
        let sources: Vec<PathBuf> = (0..3).map(|i| env.path(&format!("src{i}"))).collect();
        sample_env(&sources[0]);
        sample_env(&sources[1]);
        write(&sources[1].join("extra/one-more.py"), b"ONE_MORE = 1\n");
        write(&sources[2].join("shared.txt"), b"VALUE = 1\n");
        write(&sources[2].join("bin/run"), b"#!/bin/sh\nexit 0\n");
        chmod(&sources[2].join("bin/run"), 0o755);
        write(
            &sources[2].join("data/blob.bin"),
            &pseudo_random(200 << 10, 5),
        );
        let outside = env.path("outside");
        write(&outside.join("notes.txt"), b"a user's notes\n");
        write(&outside.join("sub/data.bin"), &pseudo_random(4096, 3));
        let exports = env.path("exports");
        fs::create_dir_all(&exports).unwrap();
        let remote_dir = env.path("remote");
        fs::create_dir_all(&remote_dir).unwrap();
        let build = env.path("build");
        fs::create_dir_all(&build).unwrap();
        // The ids, from a scratch store: the model knows them before the store under test
        // has seen anything.
        let scratch = Env::new();
        let ids: Vec<String> = sources.iter().map(|s| scratch.ingest(s)).collect();
        let expected = ids
            .iter()
            .zip(&sources)
            .map(|(id, s)| (id.clone(), snapshot_of(s, &is_bytecode)))
            .collect();
        World {
            env,
            sources,
            ids,
            expected,
            outside,
            exports,
            remote: format!("file://{}", remote_dir.display()),
            build,
        }
    }

    /// What must never change: the sources and the directory damage points links at.
    fn untouchable(&self) -> Vec<BTreeMap<PathBuf, FileState>> {
        let mut out = vec![metadata_of(&self.outside), metadata_of(&self.build)];
        out.extend(self.sources.iter().map(|s| metadata_of(s)));
        out
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        let out = output_within(self.env.cmd().args(args), 120);
        assert_no_panic(args, &out);
        out
    }

    /// Every entry of the store (links not followed), but the root and FORMAT.
    fn store_entries(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![self.env.store.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path == self.env.store.join("FORMAT") {
                    continue;
                }
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(path.clone());
                }
                out.push(path);
            }
        }
        out.sort();
        out
    }

    /// Damages one entry of the store; returns what was done, for the failure message.
    fn damage(&self, rnd: &mut impl FnMut(u64) -> u64) -> String {
        // Mostly files (objects, trees, records, pins, files in materializations, the index):
        // the 512 shard directories would otherwise draw most of the damage.
        let entries = self.store_entries();
        let files: Vec<&PathBuf> = entries
            .iter()
            .filter(|p| fs::symlink_metadata(p).is_ok_and(|m| !m.is_dir()))
            .collect();
        let dirs: Vec<&PathBuf> = entries.iter().filter(|p| !files.contains(p)).collect();
        let pool = if files.is_empty() || (rnd(4) == 0 && !dirs.is_empty()) {
            dirs
        } else {
            files
        };
        if pool.is_empty() {
            return "nothing to damage".to_owned();
        }
        let target = pool[rnd(pool.len() as u64) as usize];
        // Read-only directories (materializations) would stop a user who is not root.
        if let Some(parent) = target.parent() {
            let mode = fs::symlink_metadata(parent).unwrap().mode();
            chmod(parent, (mode | 0o700) & 0o7777);
        }
        let meta = fs::symlink_metadata(target).unwrap();
        let action = rnd(6);
        let what = match action {
            0 | 1 if meta.is_file() && meta.len() > 0 => {
                chmod(target, 0o644);
                let mut bytes = fs::read(target).unwrap();
                if action == 0 {
                    bytes.truncate(bytes.len() / 2);
                } else {
                    let at = rnd(bytes.len() as u64) as usize;
                    bytes[at] ^= 0x20;
                }
                fs::write(target, bytes).unwrap();
                if action == 0 {
                    "truncated"
                } else {
                    "flipped a byte of"
                }
            }
            2 => {
                remove(target);
                symlink(self.outside.join("notes.txt"), target).unwrap();
                "replaced by a link to an outside file"
            }
            3 => {
                remove(target);
                symlink(self.outside.join("sub"), target).unwrap();
                "replaced by a link to an outside directory"
            }
            4 => {
                remove(target);
                write(&target.join("junk"), b"junk");
                "replaced by a directory"
            }
            _ => {
                remove(target);
                "deleted"
            }
        };
        format!("{what} {}", target.display())
    }

    /// Every materialization of a known snapshot holds its content, or verify reports a
    /// problem. Returns whether all were intact.
    fn check_materializations(&self, log: &[String]) -> bool {
        let mut differing = Vec::new();
        for (id, expected) in &self.expected {
            let path = self.env.store.join("envs").join(id);
            let is_dir = fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
            if is_dir && !same_content(&path, expected) {
                differing.push(id.clone());
            }
        }
        if differing.is_empty() {
            return true;
        }
        let out = self.run(&["--json", "verify"]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "materializations {differing:?} differ from their snapshots but verify passes; \
             steps: {log:#?}"
        );
        let report = String::from_utf8_lossy(&out.stdout);
        for id in &differing {
            // Damage to the store's own layout stops the other checks until repair (said).
            assert!(
                report.contains(&id[..12]) || report.contains("the other checks wait"),
                "verify does not name {id}, whose materialization differs: {report}; \
                 steps: {log:#?}"
            );
        }
        false
    }

    /// After `verify --repair`: every snapshot the store lists materializes byte-identical,
    /// or verify names it among what it could not repair; and verify passes when nothing is
    /// left unrepaired.
    /// Returns whether the store is clean after repair (verify found nothing left).
    fn check_repaired(&self, log: &[String]) -> bool {
        let out = self.run(&["verify", "--repair"]);
        let repair = String::from_utf8_lossy(&out.stderr).into_owned();
        let out = self.run(&["--json", "verify"]);
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("verify --json: {e}: {out:?}; steps: {log:#?}"));
        let problems: Vec<String> = report["problems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().to_owned())
            .collect();
        let out = self.run(&["--json", "ls"]);
        assert!(
            out.status.success(),
            "ls after repair: {out:?}; steps: {log:#?}"
        );
        let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        for snapshot in listed.as_array().unwrap() {
            let id = snapshot["id"].as_str().unwrap();
            let Some(expected) = self.expected.get(id) else {
                panic!("an unknown snapshot {id} after repair; steps: {log:#?}");
            };
            let out = self.run(&["materialize", id]);
            let named = problems.iter().any(|p| p.contains(&id[..12]));
            if out.status.success() {
                let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
                assert!(
                    same_content(&path, expected) || named,
                    "{id} materializes with other content after repair ({repair}); \
                     steps: {log:#?}"
                );
            } else {
                assert!(
                    named,
                    "{id} does not materialize after repair and verify does not say why: \
                     {out:?}; problems: {problems:?}; repair said: {repair}; steps: {log:#?}"
                );
            }
        }
        // No materialization holds wrong bytes after repair, whatever could not be mended.
        for (id, expected) in &self.expected {
            let path = self.env.store.join("envs").join(id);
            if fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
                assert!(
                    same_content(&path, expected),
                    "{id} is materialized with wrong bytes after repair ({repair}); \
                     steps: {log:#?}"
                );
            }
        }
        // Problems that remain are only those verify could not mend, and it said so.
        for problem in &problems {
            let unrepairable = problem.contains("is missing")
                || problem.contains("is not in the store")
                || problem.contains("content lost");
            assert!(
                unrepairable,
                "after repair, verify still finds: {problem}; repair said: {repair}; \
                 steps: {log:#?}"
            );
        }
        problems.is_empty()
    }
}

fn remove(path: &Path) {
    let meta = fs::symlink_metadata(path).unwrap();
    if meta.is_dir() {
        // Materialized trees are read-only; root passes, others need write bits first.
        let _ = std::process::Command::new("chmod")
            .args(["-R", "u+w"])
            .arg(path)
            .status();
        fs::remove_dir_all(path).unwrap();
    } else {
        fs::remove_file(path).unwrap();
    }
}

/// The pins the store has (rm --force and repair change them behind the model's back).
fn pins_on_disk(world: &World) -> std::collections::BTreeSet<String> {
    fs::read_dir(world.env.store.join("pins"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect()
}

fn same_content(path: &Path, expected: &BTreeMap<PathBuf, Node>) -> bool {
    let runtime = |rel: &Path| is_bytecode(rel);
    &snapshot_of(path, &runtime) == expected
}

fn scenario(seed: u64, steps: usize) {
    let world = World::new();
    let mut rnd = rng(seed);
    let untouchable = world.untouchable();
    let mut log: Vec<String> = Vec::new();
    // The model: whether the store is undamaged since the last clean repair, and the pins.
    let mut clean = true;
    let mut pins: std::collections::BTreeSet<String> = Default::default();
    for step in 0..steps {
        let pick = |rnd: &mut dyn FnMut(u64) -> u64, n: usize| rnd(n as u64) as usize;
        let src = world.sources[pick(&mut rnd, 3)]
            .to_str()
            .unwrap()
            .to_owned();
        let id = world.ids[pick(&mut rnd, 3)].clone();
        let pin = format!("pin{}", rnd(3));
        let export = world
            .exports
            .join(format!("{step}.tar"))
            .to_str()
            .unwrap()
            .to_owned();
        let earlier = world
            .exports
            .join(format!("{}.tar", rnd(step as u64 + 1)))
            .to_str()
            .unwrap()
            .to_owned();
        let key = format!("key{}", rnd(3));
        let copy = format!("cp -R {src}/. \"$ENVSTORE_OUT/\"");
        let build = world.build.to_str().unwrap().to_owned();
        // (arguments, the exit code an undamaged store must give, if the model knows it)
        let (args, expect): (Vec<&str>, Option<i32>) = match rnd(22) {
            0 => (vec!["ingest", &src], Some(0)),
            1..=3 => (vec!["materialize", &src], Some(0)),
            4 => (vec!["materialize", &id], None),
            5 => (vec!["pin", &pin, &src], Some(0)),
            6 => (
                vec!["unpin", &pin],
                Some(if pins.contains(&pin) { 0 } else { 2 }),
            ),
            7 if rnd(3) == 0 => (vec!["prune", "--older-than", "0s"], Some(0)),
            7 => (vec!["prune"], Some(0)),
            8 => (vec!["prune", "--dry-run", "--older-than", "0s"], Some(0)),
            9 => (vec!["pack"], Some(0)),
            10 => (vec!["ls"], Some(0)),
            11 => (vec!["export", &id, "-o", &export], None),
            12 => (
                vec!["ensure", "--key", &key, "--", "sh", "-c", &copy],
                Some(0),
            ),
            13 => (vec!["root", "add", &build, &id], None),
            14 => (vec!["rm", "--force", &id], None),
            15 if fs::metadata(&earlier).is_ok_and(|m| m.len() > 0) => {
                (vec!["import", &earlier], None)
            }
            16 => (vec!["push", &id, "--to", &world.remote], None),
            17 => (vec!["pull", &id, "--from", &world.remote], None),
            _ => (vec![], None),
        };
        if args.is_empty() {
            log.push(world.damage(&mut rnd));
            clean = false;
        } else {
            let out = world.run(&args);
            log.push(format!("{args:?} -> {:?}", out.status.code()));
            if let (true, Some(code)) = (clean, expect) {
                assert_eq!(
                    out.status.code(),
                    Some(code),
                    "{args:?} on an undamaged store: {}; steps: {log:#?}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            match args.as_slice() {
                ["pin", name, ..] if out.status.success() => {
                    pins.insert((*name).to_owned());
                }
                ["unpin", name] => {
                    pins.remove(*name);
                }
                _ => {}
            }
            if args.first() == Some(&"rm") {
                // rm --force takes the pins of what it removes.
                pins = pins_on_disk(&world);
            }
        }
        assert_eq!(
            world.untouchable(),
            untouchable,
            "something outside the store changed; steps: {log:#?}"
        );
        world.check_materializations(&log);
        if step % 10 == 9 {
            clean = world.check_repaired(&log);
            pins = pins_on_disk(&world);
            log.push("verify --repair".to_owned());
            assert_eq!(world.untouchable(), untouchable, "steps: {log:#?}");
        }
    }
    world.check_repaired(&log);
    assert_eq!(world.untouchable(), untouchable, "steps: {log:#?}");
    if std::env::var_os("ENVSTORE_TEST_SHOW_STEPS").is_some() {
        eprintln!("seed {seed}: {log:#?}");
    }
}

#[test]
fn random_operations_and_damage_keep_the_store_honest_seeds_1_to_3() {
    for seed in 1..=3 {
        scenario(seed, 60);
    }
}

#[test]
fn random_operations_and_damage_keep_the_store_honest_seeds_4_to_6() {
    for seed in 4..=6 {
        scenario(seed, 60);
    }
}

/// `ENVSTORE_HOSTILE_SEEDS=N` runs N more seeds (from 100 on): for a longer hunt than CI's.
#[test]
fn random_operations_and_damage_keep_the_store_honest_more_seeds() {
    let more: u64 = std::env::var("ENVSTORE_HOSTILE_SEEDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    for seed in 100..100 + more {
        scenario(seed, 60);
    }
}
