//! Relocation: a venv contains its own path (activate scripts, console-script shebangs,
//! RECORD hashes of those scripts, pyvenv.cfg). Stored with --relocate, the same venv made at
//! two paths gets the same id, and its materialization works at the new path.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::common::*;

fn make_venv(path: &Path) {
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(path)
        .status()
        .expect("python3 is installed");
    assert!(status.success());
}

fn ingest(env: &Env, dir: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["--json", "ingest"];
    args.extend_from_slice(extra);
    args.push(dir.to_str().unwrap());
    serde_json::from_str(&env.ok(&args)).unwrap()
}

#[test]
fn the_same_venv_at_two_paths_gets_one_id_and_works_where_it_is_materialized() {
    let env = Env::new();
    let (a, b) = (
        env.path("build-a/.tmpAAAA"),
        env.path("elsewhere/build-b/.tmpBBBB"),
    );
    make_venv(&a);
    make_venv(&b);
    // Without relocation the venvs differ (their own paths are inside).
    assert_ne!(ingest(&env, &a, &[])["id"], ingest(&env, &b, &[])["id"]);
    let (ra, rb) = (
        ingest(&env, &a, &["--relocate"]),
        ingest(&env, &b, &["--relocate"]),
    );
    assert_eq!(ra["id"], rb["id"], "one id for the same venv at two paths");
    let relocated: Vec<&str> = ra["relocated"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        relocated.iter().any(|p| p.ends_with("/bin/activate")),
        "{relocated:?}"
    );
    assert!(
        relocated.iter().any(|p| p.ends_with("/bin/pip")),
        "console scripts: {relocated:?}"
    );
    assert!(
        relocated.iter().any(|p| p.ends_with("/pyvenv.cfg")),
        "{relocated:?}"
    );
    assert_eq!(ra["binary_with_prefix"], serde_json::json!([]));

    let out = env.ok(&["materialize", ra["id"].as_str().unwrap()]);
    let stable = PathBuf::from(out.trim());
    // The venv works at its new path: python, imports, console scripts, activate.
    let python = stable.join("bin/python");
    let out = Command::new(&python)
        .args([
            "-c",
            "import sys, pip; print(sys.prefix); print(pip.__file__)",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.lines()
            .all(|l| l.starts_with(stable.to_str().unwrap())),
        "{text}"
    );
    let out = Command::new(stable.join("bin/pip"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success(), "the console script runs: {out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains(stable.to_str().unwrap()));
    let activate = fs::read_to_string(stable.join("bin/activate")).unwrap();
    assert!(
        activate.contains(&format!("VIRTUAL_ENV=\"{}\"", stable.display()))
            && !activate.contains(".tmpAAAA"),
        "{activate}"
    );
    let shebang = fs::read_to_string(stable.join("bin/pip")).unwrap();
    assert!(
        shebang.starts_with(&format!("#!{}/bin/python", stable.display())),
        "{shebang}"
    );
    // RECORD no longer pins the bytes of the relocated scripts.
    let record = fs::read_dir(stable.join("lib"))
        .unwrap()
        .flat_map(|py| fs::read_dir(py.unwrap().path().join("site-packages")).unwrap())
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name().unwrap().to_string_lossy().starts_with("pip-")
                && p.extension().is_some_and(|x| x == "dist-info")
        })
        .unwrap()
        .join("RECORD");
    let record = fs::read_to_string(record).unwrap();
    assert!(
        record.lines().any(|l| l == "../../../bin/pip,,"),
        "{record}"
    );
    env.ok(&["verify"]);
    // And the identity does not depend on where the store is.
    assert!(
        !fs::read_to_string(stable.join("bin/activate"))
            .unwrap()
            .contains("@@ENVSTORE_PREFIX@@")
    );
}

#[test]
fn a_binary_file_with_the_path_is_kept_and_reported() {
    let env = Env::new();
    let src = env.path("venvlike");
    let mut binary = b"\x7fELF\0\0RPATH=".to_vec();
    binary.extend_from_slice(src.to_str().unwrap().as_bytes());
    binary.extend_from_slice(b"/lib\0");
    write(&src.join("lib/ext.so"), &binary);
    write(
        &src.join("bin/tool"),
        format!("#!{}/bin/python\n", src.display()).as_bytes(),
    );
    std::os::unix::fs::symlink(src.join("lib"), src.join("lib64")).unwrap();
    let out = env.run(&["--json", "ingest", "--relocate", src.to_str().unwrap()]);
    assert!(out.status.success());
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["binary_with_prefix"],
        serde_json::json!([src.join("lib/ext.so")])
    );
    let again = env.run(&["ingest", "--relocate", src.to_str().unwrap()]);
    let warning = String::from_utf8_lossy(&again.stderr);
    assert!(
        warning.contains("1 binary files contain the directory's own path"),
        "{warning}"
    );
    let path = PathBuf::from(
        env.ok(&["materialize", report["id"].as_str().unwrap()])
            .trim(),
    );
    assert_eq!(
        fs::read(path.join("lib/ext.so")).unwrap(),
        binary,
        "binaries are never rewritten"
    );
    assert_eq!(
        fs::read_link(path.join("lib64")).unwrap(),
        path.join("lib"),
        "an absolute symlink into the tree follows it"
    );
    assert_eq!(
        fs::read_to_string(path.join("bin/tool")).unwrap(),
        format!("#!{}/bin/python\n", path.display())
    );
}
