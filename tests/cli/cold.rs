//! The cold tier: pack, rehydrate, verify of packs, prune's pack policy, and SIGKILL during pack.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::common::*;

/// Three related environments: shared files, one big file edited near its start (content-defined
/// chunks keep most of it shared), and files of their own.
fn related_envs(env: &Env) -> Vec<PathBuf> {
    let big = pseudo_random(4 << 20, 99);
    (0..3u8)
        .map(|i| {
            let src = env.path(&format!("env{i}"));
            sample_env(&src);
            for j in 0..200 {
                write(
                    &src.join(format!("lib/pkg/mod{j}.py")),
                    format!("def f{j}():\n    return {j} * 2  # shared source text\n").as_bytes(),
                );
            }
            write(
                &src.join(format!("lib/own{i}.py")),
                format!("own {i}\n").repeat(1000).as_bytes(),
            );
            let mut edited = big.clone();
            edited.splice(1000..1000, std::iter::repeat_n(i, 100 * usize::from(i)));
            write(&src.join("lib/libbig.so"), &edited);
            src
        })
        .collect()
}

fn loose_objects(env: &Env) -> usize {
    let mut n = 0;
    for shard in fs::read_dir(env.store.join("objects")).unwrap() {
        n += fs::read_dir(shard.unwrap().path()).unwrap().count();
    }
    n
}

fn assert_same_tree(materialized: &Path, src: &Path) {
    assert_eq!(
        snapshot_of(materialized, &|_| false),
        snapshot_of(src, &is_bytecode),
        "{} differs from {}",
        materialized.display(),
        src.display()
    );
}

#[test]
fn pack_frees_loose_objects_and_materializing_rehydrates_byte_identical_trees() {
    let env = Env::new();
    let srcs = related_envs(&env);
    let ids: Vec<String> = srcs.iter().map(|s| env.ingest(s)).collect();
    let before = loose_objects(&env);

    // One environment first, then the other two: their big file is mostly chunks it has.
    let first = json(&env, &["pack", &ids[0]]);
    assert_eq!(first["snapshots"], serde_json::json!([ids[0]]));
    assert!(first["pack_bytes"].as_u64().unwrap() > 0);
    let rest = json(&env, &["pack"]);
    let rest_ids: Vec<&str> = rest["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        rest_ids.len(),
        3,
        "no SOURCE: every unmaterialized snapshot"
    );
    let new_bytes = rest["new_chunk_bytes"].as_u64().unwrap();
    let read_bytes = rest["object_bytes"].as_u64().unwrap();
    assert!(
        new_bytes * 3 < read_bytes,
        "edited big files share most chunks: {new_bytes} new of {read_bytes} read"
    );
    assert!(loose_objects(&env) < before / 4, "loose objects freed");

    let stats = json(&env, &["stats"]);
    assert_eq!(stats["packed_snapshots"], 3);
    let logical = stats["logical_bytes"].as_u64().unwrap();
    let packed = stats["packed_bytes"].as_u64().unwrap();
    assert!(
        packed * 2 < logical,
        "{packed} packed for {logical} logical"
    );
    assert!(stats["compression_ratio"].as_f64().unwrap() > 1.0);
    assert!(env.ok(&["ls"]).contains("packed"));
    assert!(env.ok(&["show", &ids[1]]).contains("in the cold tier"));

    // verify accepts objects that only packs hold, and reads every pack through.
    let report = json(&env, &["verify"]);
    assert_eq!(report["ok"], true, "{report}");
    assert!(report["packed_objects"].as_u64().unwrap() > 0);
    assert!(report["packs"].as_u64().unwrap() >= 2);

    // Materializing by id rehydrates from packs; by directory uses the directory.
    for (id, src) in ids.iter().zip(&srcs).take(2) {
        assert_same_tree(&env.materialize(Path::new(id)), src);
    }
    assert_same_tree(&env.materialize(&srcs[2]), &srcs[2]);
    // Export of a packed snapshot works too (it is materialized now, so pack a fourth first).
    let extra = env.path("extra");
    sample_env(&extra);
    write(&extra.join("x.txt"), b"extra");
    let extra_id = env.ingest(&extra);
    env.ok(&["pack", &extra_id]);
    let out = env.path("extra.tar");
    env.ok(&["export", &extra_id, "-o", out.to_str().unwrap()]);
    let other = Env::new();
    let imported = other.ok(&["import", out.to_str().unwrap()]);
    assert_eq!(imported.trim(), extra_id);
    assert_eq!(json(&env, &["verify"])["ok"], true);
}

#[test]
fn large_files_are_packed_as_a_stream_and_share_chunks_with_their_edits() {
    let env = Env::new();
    let big = pseudo_random(20 << 20, 5); // above the 16 MiB streaming threshold
    let (a, b) = (env.path("a"), env.path("b"));
    write(&a.join("lib/libhuge.so"), &big);
    let mut edited = big.clone();
    edited.splice(10 << 20..10 << 20, b"a patch in the middle".iter().copied());
    write(&b.join("lib/libhuge.so"), &edited);
    let (id_a, id_b) = (env.ingest(&a), env.ingest(&b));
    let first = json(&env, &["pack", &id_a]);
    assert_eq!(first["object_bytes"].as_u64(), Some(20 << 20));
    let second = json(&env, &["pack", &id_b]);
    let new = second["new_chunk_bytes"].as_u64().unwrap();
    assert!(
        new < 1 << 20,
        "an edit in the middle costs a chunk or two, not {new} bytes"
    );
    assert_eq!(json(&env, &["verify"])["ok"], true);
    assert_same_tree(&env.materialize(Path::new(&id_a)), &a);
    assert_same_tree(&env.materialize(Path::new(&id_b)), &b);
}

#[test]
fn pack_refuses_what_it_cannot_pack_with_exit_2() {
    let env = Env::new();
    let src = env.path("src");
    sample_env(&src);
    let err = env.fails(&["pack", src.to_str().unwrap()]);
    assert!(
        err.contains("is a directory") && err.contains("envstore ingest"),
        "{err}"
    );
    let err = env.fails(&["pack", "deadbeefdeadbeef"]);
    assert!(err.contains("no snapshot"), "{err}");
    let err = env.fails(&["pack", "no-such-pin"]);
    assert!(err.contains("no-such-pin"), "{err}");
    // A materialized snapshot named explicitly is packed, its files stay loose.
    env.materialize(&src);
    let id = env.ingest(&src);
    let before = loose_objects(&env);
    let out = env.run(&["pack", &id]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is materialized"));
    assert_eq!(loose_objects(&env), before);
}

/// Flips one byte in the middle of the largest pack.
fn damage_a_pack(env: &Env) -> PathBuf {
    let mut packs: Vec<PathBuf> = fs::read_dir(env.store.join("packs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "pack"))
        .collect();
    packs.sort_by_key(|p| fs::metadata(p).unwrap().len());
    let pack = packs.pop().unwrap();
    let mut bytes = fs::read(&pack).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    chmod(&pack, 0o644);
    fs::write(&pack, bytes).unwrap();
    pack
}

#[test]
fn verify_catches_a_corrupted_chunk_and_repair_restores_it_from_the_source() {
    let env = Env::new();
    let srcs = related_envs(&env);
    let ids: Vec<String> = srcs.iter().map(|s| env.ingest(s)).collect();
    env.ok(&["pack"]);
    let pack = damage_a_pack(&env);

    let out = env.run(&["verify"]);
    assert_eq!(out.status.code(), Some(1), "damage found: {out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&pack.display().to_string()) && stdout.contains("content lost for"),
        "{stdout}"
    );
    // The sources are still there: repair rewrites the intact blocks and restores the rest.
    let out = env.run(&["verify", "--repair"]);
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("rewrote the intact blocks"), "{stderr}");
    assert!(!pack.exists());
    assert_eq!(json(&env, &["verify"])["ok"], true);
    for (id, src) in ids.iter().zip(&srcs) {
        assert_same_tree(&env.materialize(Path::new(id)), src);
    }
}

#[test]
fn damage_without_another_copy_is_reported_as_unrepairable() {
    let env = Env::new();
    let src = env.path("src");
    sample_env(&src);
    let id = env.ingest(&src);
    env.ok(&["pack"]);
    fs::remove_dir_all(&src).unwrap();
    damage_a_pack(&env);
    let out = env.run(&["verify", "--repair"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot repair"));
    // Materializing says what is wrong instead of producing a broken tree.
    let err = env.fails(&["materialize", &id]);
    assert!(err.contains("missing") || err.contains("damaged"), "{err}");
    assert!(!env.store.join("envs").join(&id).exists());
}

#[test]
fn the_chunk_index_is_rebuilt_from_the_packs() {
    let env = Env::new();
    let srcs = related_envs(&env);
    let ids: Vec<String> = srcs.iter().map(|s| env.ingest(s)).collect();
    env.ok(&["pack"]);
    // Lost: the next rehydration indexes the packs again.
    fs::remove_file(env.store.join("index.redb")).unwrap();
    assert_same_tree(&env.materialize(Path::new(&ids[0])), &srcs[0]);
    // Damaged: verify says so, repair rebuilds it from snapshots/ and packs/.
    fs::write(env.store.join("index.redb"), b"not a redb file").unwrap();
    let out = env.run(&["verify"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let out = env.run(&["verify", "--repair"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 packs"));
    assert_eq!(json(&env, &["verify"])["ok"], true);
    assert_same_tree(&env.materialize(Path::new(&ids[1])), &srcs[1]);
    assert_eq!(json(&env, &["stats"])["packed_snapshots"], 3);
}

#[test]
fn prune_moves_unused_snapshots_to_packs_and_sweeps_dead_packs() {
    let env = Env::new();
    let srcs = related_envs(&env);
    let paths: Vec<PathBuf> = srcs.iter().map(|s| env.materialize(s)).collect();
    let ids: Vec<String> = srcs.iter().map(|s| env.ingest(s)).collect();
    env.ok(&["pin", "keep", &ids[0]]);

    let plan = json(&env, &["prune", "--dry-run", "--pack-older-than", "0"]);
    assert_eq!(plan["to_pack"].as_array().unwrap().len(), 3);
    assert!(paths.iter().all(|p| p.exists()), "dry run changes nothing");

    let done = json(&env, &["prune", "--pack-older-than", "0"]);
    assert_eq!(
        done["removed"],
        serde_json::json!([]),
        "30 days: nothing removed"
    );
    assert_eq!(done["packed"]["snapshots"].as_array().unwrap().len(), 3);
    assert!(
        paths.iter().all(|p| !p.exists()),
        "materializations went cold"
    );
    assert!(done["packed"]["freed_objects"].as_u64().unwrap() > 0);
    assert_eq!(json(&env, &["verify"])["ok"], true);

    // The pinned one comes back byte-identical.
    assert_same_tree(&env.materialize(Path::new("keep")), &srcs[0]);

    // Unpinned and unused: prune removes the snapshots, then the packs nobody needs.
    env.ok(&["unpin", "keep"]);
    let done = json(&env, &["prune", "--older-than", "0"]);
    assert_eq!(done["removed"].as_array().unwrap().len(), 3);
    assert!(!done["packs_removed"].as_array().unwrap().is_empty());
    let stats = json(&env, &["stats"]);
    assert_eq!(
        (stats["packs"].as_u64(), stats["chunks"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(json(&env, &["verify"])["ok"], true);
}

#[test]
fn prune_rewrites_packs_that_are_mostly_garbage() {
    let env = Env::new();
    let srcs = related_envs(&env);
    // env1 and env2 get much content of their own: once they are gone, the one pack holding
    // all three is mostly dead.
    for (i, src) in srcs.iter().enumerate().skip(1) {
        write(
            &src.join("own.bin"),
            &pseudo_random(8 << 20, 1000 + i as u64),
        );
    }
    let ids: Vec<String> = srcs.iter().map(|s| env.ingest(s)).collect();
    env.ok(&["pack"]);
    env.ok(&["pin", "keep", &ids[0]]);
    let small = env.path("small");
    write(&small.join("a.txt"), b"a tiny environment that is kept");
    let small_id = env.ingest(&small);
    env.ok(&["pin", "small", &small_id]);
    let done = json(&env, &["prune", "--older-than", "0"]);
    assert_eq!(done["removed"].as_array().unwrap().len(), 2);
    let after = done["pack_bytes_after"].as_u64().unwrap();
    let before = done["pack_bytes_before"].as_u64().unwrap();
    assert_eq!(
        done["packs_rewritten"].as_array().unwrap().len(),
        1,
        "{done}"
    );
    assert!(after * 2 < before, "{after} of {before} pack bytes left");
    let stats = json(&env, &["stats"]);
    assert_eq!(stats["packs"], 1);
    assert_eq!(stats["packed_bytes"].as_u64(), Some(after));
    assert_eq!(json(&env, &["verify"])["ok"], true);
    assert_same_tree(&env.materialize(Path::new("keep")), &srcs[0]);
}

#[test]
fn sigkill_during_pack_leaves_a_store_that_verify_passes() {
    let env = Env::new();
    let mut next = rng(0x2545_f491_4f6c_dd1du64);
    let mut sources = Vec::new();
    let mut killed = 0;
    for round in 0..12u64 {
        let src = env.path(&format!("src{round}"));
        sample_env(&src);
        for j in 0..300 {
            write(
                &src.join(format!("many/{j}.py")),
                format!("round {round} file {j}\n").repeat(20).as_bytes(),
            );
        }
        write(&src.join("blob.bin"), &pseudo_random(12 << 20, round));
        let id = env.ingest(&src);
        sources.push((id, src));
        let mut child = env
            .cmd()
            .args(["pack"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Most packs here take 50-200 ms: kill within the first 100 ms, at any phase.
        std::thread::sleep(Duration::from_micros(next(100_000)));
        if child.try_wait().unwrap().is_none() {
            killed += 1;
        }
        let _ = child.kill();
        child.wait().unwrap();
        let out = env.run(&["--json", "verify"]);
        assert!(
            out.status.success(),
            "verify after a kill in round {round}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    assert!(killed >= 3, "only {killed} of 12 packs were interrupted");
    // Every snapshot comes back right, from packs or loose objects, whichever it is in.
    for (id, src) in &sources {
        assert_same_tree(&env.materialize(Path::new(id)), src);
    }
    env.ok(&["prune", "--older-than", "0", "--pack-older-than", "0"]);
    env.ok(&["verify", "--repair"]);
    let report = json(&env, &["verify"]);
    assert_eq!(report["ok"], true);
    assert_eq!(report["leftovers"], serde_json::json!([]));
}
