//! SIGKILL at random moments of ingest, materialize and prune leaves a store that verify passes
//! (leftovers at most) and that gives correct trees afterwards.

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::Duration;

use crate::common::*;

fn spawn(env: &Env, args: &[&str]) -> Child {
    env.cmd()
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn sigkill_at_random_points_never_damages_the_store() {
    let env = Env::new();
    let mut next = rng(0x9e37_79b9_7f4a_7c15u64);
    let mut sources: Vec<PathBuf> = Vec::new();
    // Kills that landed while the command ran (a command that finished first proves nothing):
    // rounds go on until enough did, so the test means the same on a fast or a slow machine.
    const LANDED: usize = 16;
    let mut landed = 0;
    let mut round = 0u64;
    while landed < LANDED {
        assert!(round < 400, "only {landed} of {round} kills landed mid-run");
        let src = env.path(&format!("src{round}"));
        sample_env(&src);
        for j in 0..150 {
            write(
                &src.join(format!("many/{j}.py")),
                format!("{round} {j}").as_bytes(),
            );
        }
        write(&src.join("blob.bin"), &pseudo_random(1 << 20, round));
        let src_str = src.to_str().unwrap().to_owned();
        let mut child = match round % 4 {
            0 => spawn(&env, &["ingest", &src_str]),
            1 | 2 => spawn(&env, &["materialize", &src_str]),
            _ => spawn(&env, &["prune", "--older-than", "0"]),
        };
        std::thread::sleep(Duration::from_micros(next(60_000)));
        let _ = child.kill();
        let status = child.wait().unwrap();
        if std::os::unix::process::ExitStatusExt::signal(&status) == Some(9) {
            landed += 1;
        }
        sources.push(src);
        round += 1;
    }
    // Whatever was interrupted, the store is consistent: leftovers at most.
    let out = env.run(&["--json", "verify"]);
    assert!(
        out.status.success(),
        "verify after kills: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    // And every tree comes back right.
    for src in &sources {
        let path = env.materialize(src);
        assert_eq!(
            snapshot_of(&path, &|_| false),
            snapshot_of(src, &is_bytecode),
            "{}",
            src.display()
        );
    }
    env.ok(&["verify", "--repair"]);
    let report: serde_json::Value = serde_json::from_str(&env.ok(&["--json", "verify"])).unwrap();
    assert_eq!(
        report["leftovers"],
        serde_json::json!([]),
        "repair removed the leftovers"
    );
}
