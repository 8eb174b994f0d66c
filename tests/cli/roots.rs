//! Roots (build directories that keep environments) and `envstore rm`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::common::{Env, json, pseudo_random, sample_env, write};

/// A build directory whose CMakeCache.txt and build.ninja name `env`, as CMake writes them.
fn cmake_build_dir(dir: &Path, env: &Path) {
    write(
        &dir.join("CMakeCache.txt"),
        format!(
            "CMAKE_PREFIX_PATH:UNINITIALIZED={}\nCMAKE_BUILD_TYPE:STRING=Release\n",
            env.display()
        )
        .as_bytes(),
    );
    write(
        &dir.join("build.ninja"),
        format!(
            "build x.o: CXX_COMPILER ../x.cpp\n  FLAGS = -isystem {}/include\n",
            env.display()
        )
        .as_bytes(),
    );
}

/// A store with `sample_env` materialized: the source, the stable path, the id.
fn materialized_sample(e: &Env) -> (PathBuf, PathBuf, String) {
    let src = e.path("src");
    sample_env(&src);
    let path = e.materialize(&src);
    let id = path.file_name().unwrap().to_str().unwrap().to_owned();
    (src, path, id)
}

/// `envstore run ID -- sleep 30` in a process group of its own: the snapshot is leased (by
/// envstore and, inherited, by the command) until [`release`].
fn hold_lease(e: &Env, id: &str) -> std::process::Child {
    use std::os::unix::process::CommandExt;
    // Ready when the command runs: `run` takes the lease before it starts it.
    let ready = e.path(&format!("leased-{id}"));
    let holder = e
        .cmd()
        .args([
            "run",
            id,
            "--",
            "sh",
            "-c",
            &format!("touch {}; exec sleep 30", ready.display()),
        ])
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    while !ready.exists() {
        std::thread::sleep(Duration::from_millis(10));
    }
    holder
}

/// Ends the whole group: the command holds the lease too.
fn release(mut holder: std::process::Child) {
    std::process::Command::new("kill")
        .args(["-9", "--", &format!("-{}", holder.id())])
        .status()
        .unwrap();
    holder.wait().unwrap();
}

fn prune(env: &Env, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["prune"];
    all.extend_from_slice(args);
    json(env, &all)
}

#[test]
fn a_live_build_directory_keeps_its_environment_through_prune() {
    let e = Env::new();
    let (_, path, id) = materialized_sample(&e);
    let build = e.path("build");
    cmake_build_dir(&build, &path);
    e.ok(&["root", "add", build.to_str().unwrap(), &id]);
    let roots = json(&e, &["roots"]);
    assert_eq!(roots[0]["snapshots"][0]["live"], true, "{roots}");

    // Age and size: the root keeps it, and says so.
    let plan = prune(&e, &["--older-than", "0s", "--dry-run"]);
    assert_eq!(plan["rooted"][0]["id"], id.as_str());
    assert!(plan["removed"].as_array().unwrap().is_empty());
    prune(&e, &["--older-than", "0s"]);
    let out = e.run(&["prune", "--older-than", "0s", "--max-size", "0"]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("live build directory") && stderr.contains(&id[..12]),
        "{stderr}"
    );
    assert!(path.join("bin/tool").exists());

    // The build directory reconfigured against something else: the root is dead, dropped.
    write(
        &build.join("CMakeCache.txt"),
        b"CMAKE_PREFIX_PATH:UNINITIALIZED=/opt/other\n",
    );
    write(
        &build.join("build.ninja"),
        b"build x.o: CXX_COMPILER ../x.cpp\n",
    );
    let roots = json(&e, &["roots"]);
    assert_eq!(roots[0]["snapshots"][0]["live"], false);
    assert!(
        roots[0]["snapshots"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("no longer use")
    );
    let plan = prune(&e, &["--older-than", "0s"]);
    assert_eq!(plan["dead_roots"][0]["id"], id.as_str());
    assert_eq!(plan["removed"][0]["id"], id.as_str());
    assert!(!path.exists());
    assert_eq!(json(&e, &["roots"]), serde_json::json!([]));
}

#[test]
fn a_deleted_build_directory_lets_its_environment_go() {
    let e = Env::new();
    let (src, path, id) = materialized_sample(&e);
    let build = e.path("build");
    cmake_build_dir(&build, &path);
    // `run --root` registers it too.
    e.ok(&["run", "--root", build.to_str().unwrap(), &id, "--", "true"]);
    prune(&e, &["--older-than", "0s"]);
    assert!(path.exists());
    std::fs::remove_dir_all(&build).unwrap();
    let plan = prune(&e, &["--older-than", "0s"]);
    assert_eq!(plan["dead_roots"][0]["reason"], "the directory is gone");
    assert!(!path.exists());

    // A directory with no build files to read is kept while it exists.
    let path = e.materialize(&src);
    let plain = e.path("plain");
    std::fs::create_dir_all(&plain).unwrap();
    e.ok(&[
        "root",
        "add",
        plain.to_str().unwrap(),
        path.to_str().unwrap(),
    ]);
    prune(&e, &["--older-than", "0s"]);
    assert!(path.exists());
}

#[test]
fn roots_scan_finds_build_directories_and_adds_them() {
    let e = Env::new();
    let (_, path, id) = materialized_sample(&e);
    let projects = e.path("projects");
    cmake_build_dir(&projects.join("a/build"), &path);
    write(
        &projects.join("b/build/meson-info/intro-buildoptions.json"),
        format!("[{{\"value\": \"{}/lib\"}}]", path.display()).as_bytes(),
    );
    write(
        &projects.join("c/build/CMakeCache.txt"),
        b"nothing of ours\n",
    );
    let found = json(&e, &["roots", "--scan", projects.to_str().unwrap()]);
    let dirs: Vec<&str> = found
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["dir"].as_str().unwrap())
        .collect();
    assert_eq!(dirs.len(), 2, "{found}");
    assert!(
        dirs[0].ends_with("a/build") && dirs[1].ends_with("b/build"),
        "{dirs:?}"
    );
    assert_eq!(
        json(&e, &["roots"]),
        serde_json::json!([]),
        "no --add, nothing registered"
    );
    e.ok(&["roots", "--scan", projects.to_str().unwrap(), "--add"]);
    let roots = json(&e, &["roots"]);
    assert_eq!(roots.as_array().unwrap().len(), 2);
    assert!(
        roots
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["snapshots"][0]["id"] == id.as_str())
    );
}

#[test]
fn rm_removes_now_but_never_what_is_pinned_rooted_or_in_use_without_being_told() {
    let e = Env::new();
    // Two snapshots sharing most objects.
    let a = e.path("a");
    sample_env(&a);
    let b = e.path("b");
    sample_env(&b);
    write(&b.join("lib/own.bin"), &pseudo_random(100 << 10, 5));
    let pa = e.materialize(&a);
    let pb = e.materialize(&b);
    let ida = pa.file_name().unwrap().to_str().unwrap().to_owned();
    let idb = pb.file_name().unwrap().to_str().unwrap().to_owned();

    // --dry-run changes nothing.
    let before = e.ok(&["ls"]);
    let dry = json(&e, &["rm", &ida, "--dry-run"]);
    assert_eq!(dry["removed"][0], ida.as_str());
    assert_eq!(e.ok(&["ls"]), before);
    assert!(pa.exists());

    // Pinned: refused, then --force.
    e.ok(&["pin", "keep-a", &ida]);
    let err = e.fails(&["rm", &ida]);
    assert!(
        err.contains("pinned as `keep-a`") && err.contains("--force"),
        "{err}"
    );
    assert!(pa.exists());

    // Rooted: refused.
    let build = e.path("build");
    cmake_build_dir(&build, &pb);
    e.ok(&["root", "add", build.to_str().unwrap(), &idb]);
    let err = e.fails(&["rm", &idb]);
    assert!(
        err.contains("build directory") && err.contains("live root"),
        "{err}"
    );

    // Leased: never, even with --force; the message names the holder.
    let holder = hold_lease(&e, &idb);
    let err = e.fails(&["rm", &idb, "--force"]);
    assert!(
        err.contains("in use") && err.contains("lease") && err.contains("sleep"),
        "{err}"
    );
    assert!(pb.join("lib/own.bin").exists());
    release(holder);

    // --force: the pin goes with it; objects b shares stay.
    let out = json(&e, &["rm", &ida, "--force"]);
    assert_eq!(out["unpinned"][0], "keep-a");
    assert!(!pa.exists());
    assert!(e.fails(&["show", "keep-a"]).contains("keep-a"));
    e.ok(&["verify"]);
    assert_eq!(
        std::fs::read(pb.join("lib/big.bin")).unwrap(),
        std::fs::read(b.join("lib/big.bin")).unwrap()
    );
    let out = json(&e, &["rm", &idb, "--force"]);
    assert_eq!(
        out["unrooted"][0],
        serde_json::Value::String(build.canonicalize().unwrap().to_str().unwrap().into())
    );
    assert_eq!(json(&e, &["roots"]), serde_json::json!([]));
    let stats = json(&e, &["stats"]);
    assert_eq!(stats["snapshots"], 0, "{stats}");
    let _: PathBuf = pb;
}

#[test]
fn doctor_says_whether_the_hook_is_on_and_what_the_build_directory_uses() {
    let e = Env::new();
    let (_, path, id) = materialized_sample(&e);
    let project = e.path("proj");
    write(
        &project.join("pyproject.toml"),
        b"[build-system]\nrequires = [\"envstore\", \"scikit-build-core\"]\nbuild-backend = \"envstore.build\"\n\n[tool.scikit-build]\nbuild-dir = \"build/{wheel_tag}\"\n",
    );
    let build = project.join("build/cp311");
    cmake_build_dir(&build, &path);
    let findings = |e: &Env| doctor_findings(e, &project);
    let text = findings(&e);
    assert!(text.contains("the hook is active"), "{text}");
    assert!(
        text.contains(&id[..12]) && text.contains("materialized") && text.contains("no root"),
        "{text}"
    );

    e.ok(&["root", "add", build.to_str().unwrap(), &id]);
    assert!(findings(&e).contains("kept by a live root"));

    // Removed from the store: said, with what happens next.
    e.ok(&["rm", &id, "--force"]);
    let text = findings(&e);
    assert!(text.contains("gone from the store"), "{text}");

    // A configure without the hook, and a moved build directory.
    write(
        &project.join("other/CMakeCache.txt"),
        b"CMAKE_CACHEFILE_DIR:INTERNAL=/somewhere/else\npybind11_DIR:PATH=/tmp/pip-build-env-abc/overlay/lib/python3.11/site-packages/pybind11/share/cmake/pybind11\n",
    );
    let text = findings(&e);
    assert!(
        text.contains("temporary build environment") && text.contains("pip-build-env-abc"),
        "{text}"
    );

    // Not opted in.
    write(
        &project.join("pyproject.toml"),
        b"[build-system]\nbuild-backend = \"scikit_build_core.build\"\n",
    );
    assert!(findings(&e).contains("the hook is not active"));
}

/// The findings of `doctor DIR`, one per line.
fn doctor_findings(e: &Env, project: &Path) -> String {
    let out = json(e, &["doctor", project.to_str().unwrap()]);
    out["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn doctor_describes_environments_by_content_and_names_a_frontend_switch() {
    let e = Env::new();
    // pip builds in bare prefixes; uv in a virtualenv.
    let site = "lib/python3.11/site-packages";
    let pip = e.path("pip-overlay");
    for name in [
        "pybind11-3.0.1.dist-info/METADATA",
        "scikit_build_core-0.11.6.dist-info/METADATA",
        "pybind11/__init__.py",
    ] {
        write(&pip.join(site).join(name), b"x");
    }
    let uv = e.path("uv-venv");
    write(&uv.join("pyvenv.cfg"), b"home = /usr/bin\n");
    for name in [
        "pybind11-3.0.1.dist-info/METADATA",
        "cmake-4.1.2.dist-info/METADATA",
    ] {
        write(&uv.join(site).join(name), b"x");
    }
    let (pip_path, uv_path) = (e.materialize(&pip), e.materialize(&uv));
    let project = e.path("proj");
    write(
        &project.join("pyproject.toml"),
        b"[build-system]\nrequires = [\"envstore\", \"scikit-build-core\"]\nbuild-backend = \"envstore.build\"\n",
    );
    let build = project.join("build/cp311");
    // A build in `build` against `env`, recorded as the hook records it; then doctor's words.
    let built_with = |env: &Path| {
        cmake_build_dir(&build, env);
        e.ok(&["roots", "--add", "--scan", build.to_str().unwrap()]);
        doctor_findings(&e, &project)
    };
    let text = built_with(&pip_path);
    assert!(
        text.contains("pip's prefixes: scikit-build-core 0.11.6, pybind11 3.0.1"),
        "{text}"
    );
    // The opt-in as README once showed it: unpinned, so a squatter on the index would win.
    assert!(
        text.contains("requires \"envstore\" without an exact version")
            && text.contains("envstore=="),
        "{text}"
    );
    assert!(!text.contains("frontend changed"), "{text}");

    // The same build directory built again by uv: named as a frontend switch.
    let text = built_with(&uv_path);
    assert!(
        text.contains("a virtualenv (uv, or python -m build): cmake 4.1.2, pybind11 3.0.1"),
        "{text}"
    );
    assert!(
        text.contains(
            "the frontend changed: it was built in pip's prefixes and now in a virtualenv"
        ),
        "{text}"
    );
    assert!(!text.contains("new requirements resolved"), "{text}");

    // Pinned: no warning.
    write(
        &project.join("pyproject.toml"),
        b"[build-system]\nrequires = [\"envstore==0.1.0\", \"scikit-build-core\"]\nbuild-backend = \"envstore.build\"\n",
    );
    assert!(!doctor_findings(&e, &project).contains("exact version"));
}

#[test]
fn prune_all_empties_the_store_but_what_is_in_use() {
    let e = Env::new();
    let (_, path, id) = materialized_sample(&e);
    e.ok(&["pin", "p", &id]);
    let build = e.path("build");
    cmake_build_dir(&build, &path);
    e.ok(&["root", "add", build.to_str().unwrap(), &id]);
    let other = e.path("other");
    write(&other.join("x"), b"in use\n");
    let used = e.ingest(&other);
    let holder = hold_lease(&e, &used);
    let dry = json(&e, &["prune", "--all", "--dry-run"]);
    assert_eq!(dry["removed"], serde_json::json!([id]));
    assert!(path.exists());
    let out = e.run(&["prune", "--all"]);
    release(holder);
    assert!(!path.exists(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("1 in use kept") && stderr.contains("CACHEDIR.TAG"),
        "{stderr}"
    );
    assert_eq!(
        e.ok(&["ls"])
            .lines()
            .filter(|l| l.contains(&used[..12]))
            .count(),
        1
    );
    assert_eq!(json(&e, &["roots"]), serde_json::json!([]));
    assert!(e.fails(&["show", "p"]).contains("`p`"));
}
