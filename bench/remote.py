#!/usr/bin/env python3
"""envstore remote benchmark: four related environments pushed to S3 and pulled back.

Runs against the S3 remote the environment names (ENVSTORE_TEST_S3 and the AWS_* variables,
as `.ci/remotes.sh start DIR` prints them: a 3-node SeaweedFS cluster on 127.0.0.1); starts one
with .ci/remotes.sh when none is set.

Workloads (the same as bench/cold.py)
  pip        four real pip environments (scikit-build-core + pybind11 + cmake + ninja; plus
             numpy; with an older pybind11; plus six), cached under bench/.cache
  synthetic  four related generated trees (seconds; what CI runs)

Measured, side by side in one run:
  - bytes up for the four pushes, and bytes down for pulling all four into one fresh store,
    against the remote's packs after the pushes: its unique compressed chunk bytes
    (target: bytes moved <= 1.1x);
  - requests per push and per pull;
  - pull + materialize into a fresh store, against downloading the environment's tar.zst
    with the AWS CLI (`aws s3 cp`) and extracting it (`zstd -d | tar -x`), per environment,
    median of --runs, interleaved.

Usage
  python3 bench/remote.py                                  # pip workload, 3 runs
  python3 bench/remote.py --workload synthetic --runs 1 --check
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import CACHE, ROOT, build_envstore, log  # noqa: E402
from cold import pip_envs, synthetic_envs  # noqa: E402


def run(cmd, env=None, capture=True):
    p = subprocess.run(cmd, env=env, capture_output=capture, text=True)
    if p.returncode != 0:
        sys.exit(f"bench: {' '.join(map(str, cmd))} failed:\n{p.stderr}")
    return p.stdout


def wall(cmd, env=None):
    start = time.perf_counter()
    run(cmd, env=env)
    return time.perf_counter() - start


def ensure_servers():
    if os.environ.get("ENVSTORE_TEST_S3"):
        return None
    d = tempfile.mkdtemp(prefix="envstore-bench-remotes-")
    log(f"starting SeaweedFS and nginx in {d} ...")
    subprocess.run(["bash", str(ROOT / ".ci" / "remotes.sh"), "start", d], check=True, capture_output=True)
    for line in Path(d, "env").read_text().splitlines():
        k, v = line.removeprefix("export ").split("=", 1)
        os.environ[k] = v
    return d


def cleanup(work, servers):
    """Removes a run's work directory (stores are read-only inside) and stops the servers
    ensure_servers started, if it did."""
    subprocess.run(["chmod", "-R", "u+w", str(work)], capture_output=True)
    shutil.rmtree(work, ignore_errors=True)
    if servers:
        subprocess.run(["bash", str(ROOT / ".ci" / "remotes.sh"), "stop", servers], capture_output=True)
        shutil.rmtree(servers, ignore_errors=True)


def s3_target(kind):
    """Where a run writes: (url of a fresh prefix, endpoint, bucket, prefix), from
    ENVSTORE_TEST_S3 and AWS_ENDPOINT_URL (ensure_servers sets them when none are)."""
    base = os.environ["ENVSTORE_TEST_S3"]
    prefix = f"{kind}-{os.getpid()}-{int(time.time())}"
    bucket = base.removeprefix("s3://").split("/")[0]
    return f"{base}/{prefix}", os.environ["AWS_ENDPOINT_URL"], bucket, prefix


def aws_cli():
    exe = shutil.which("aws")
    if exe:
        return exe
    venv = CACHE / "awscli-venv"
    if not (venv / "bin" / "aws").exists():
        log("installing the AWS CLI (pip install awscli) into bench/.cache ...")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "awscli"], check=True)
    return str(venv / "bin" / "aws")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workload", choices=["pip", "synthetic"], default="pip")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--envstore", type=Path, help="binary to use instead of building one")
    ap.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    args = ap.parse_args()
    CACHE.mkdir(parents=True, exist_ok=True)
    exe = str(args.envstore or build_envstore())
    envs = pip_envs() if args.workload == "pip" else synthetic_envs()
    servers = ensure_servers()
    aws = aws_cli()
    url, endpoint, bucket, prefix = s3_target("bench")
    work = Path(tempfile.mkdtemp(prefix="envstore-remote-", dir=CACHE))
    exclude = ["--exclude", ".complete"]
    try:
        src = {"ENVSTORE_DIR": str(work / "src-store")}
        env_src = {**os.environ, **src}
        ids, push_rows = {}, []
        for name, d in envs:
            # One name for the four, as a CI job publishes each new version of its environment:
            # the name's previous target is the base a push finds edited files' chunks in.
            out = json.loads(run([exe, "--json", "push", str(d), "--to", url, "--name", "env", *exclude], env=env_src))
            s = out["snapshots"][0]
            ids[name] = s["id"]
            push_rows.append((name, out["requests"], out["bytes_up"], s["new_chunk_bytes"]))
        stats = json.loads(run([exe, "--json", "remote", "stats", url], env=env_src))
        unique = stats["pack_bytes"]
        bytes_up = sum(r[2] for r in push_rows)

        # All four into one fresh store: what moves is what the store lacks.
        one = {**os.environ, "ENVSTORE_DIR": str(work / "one-store")}
        pull_rows = []
        for name, _ in envs:
            out = json.loads(run([exe, "--json", "pull", ids[name], "--from", url], env=one))[0]
            pull_rows.append((name, out["requests"], out["bytes_down"], out["fetched_bytes"]))
        bytes_down = sum(r[2] for r in pull_rows)
        for name, d in envs:
            path = run([exe, "materialize", ids[name]], env=one).strip()
            run(["diff", "-r", "--no-dereference", "-x", "__pycache__", "-x", "*.pyc", "-x", ".complete", str(d), path])

        # Baseline: each environment as a tar.zst object, downloaded with the AWS CLI.
        for name, d in envs:
            tz = work / f"{name}.tar.zst"
            run(["sh", "-c", f"tar -C '{d}' --exclude=__pycache__ --exclude='*.pyc' --exclude=.complete -cf - . | zstd -q -3 -o '{tz}' -f"])
            run([aws, "--endpoint-url", endpoint, "s3", "cp", "--quiet", str(tz), f"s3://{bucket}/{prefix}-tars/{name}.tar.zst"])
        times = {name: ([], []) for name, _ in envs}
        for r in range(args.runs):
            for name, _ in envs:
                fresh = {**os.environ, "ENVSTORE_DIR": str(work / f"fresh-{r}-{name}")}
                t = wall(["sh", "-c", f"'{exe}' materialize \"$('{exe}' -q pull {ids[name]} --from '{url}')\" >/dev/null"], env=fresh)
                times[name][0].append(t)
                dest = work / f"x-{r}-{name}"
                dest.mkdir()
                cmd = f"'{aws}' --endpoint-url '{endpoint}' s3 cp --quiet 's3://{bucket}/{prefix}-tars/{name}.tar.zst' - | zstd -q -d | tar -C '{dest}' -xf -"
                times[name][1].append(wall(["sh", "-c", cmd]))
                shutil.rmtree(dest, ignore_errors=True)
                subprocess.run(["chmod", "-R", "u+w", str(work / f"fresh-{r}-{name}")], capture_output=True)
                shutil.rmtree(work / f"fresh-{r}-{name}", ignore_errors=True)

        print(f"\n## Remote: four related environments ({args.workload}), S3 on a 3-node SeaweedFS cluster, loopback\n")
        print(f"remote packs after four pushes (unique compressed chunk bytes): {unique / 2**20:.1f} MiB")
        print(f"bytes up, four pushes:            {bytes_up / 2**20:.1f} MiB = {bytes_up / unique:.3f}x (target <= 1.1x)")
        print(f"bytes down, four pulls (one store): {bytes_down / 2**20:.1f} MiB = {bytes_down / unique:.3f}x (target <= 1.1x)\n")
        print("| environment | push requests | push MiB up | pull requests | pull MiB down |")
        print("|---|---:|---:|---:|---:|")
        for (name, preq, pup, _), (_, lreq, ldown, _) in zip(push_rows, pull_rows):
            print(f"| {name} | {preq} | {pup / 2**20:.1f} | {lreq} | {ldown / 2**20:.1f} |")
        print(f"\n| environment (fresh store) | pull + materialize | aws s3 cp + zstd -d + tar -x | ratio |")
        print("|---|---:|---:|---:|")
        for name, _ in envs:
            a, b = statistics.median(times[name][0]), statistics.median(times[name][1])
            print(f"| {name} | {a:.2f} s | {b:.2f} s | {a / b:.2f}x |")
        ok = bytes_up / unique <= 1.1 and bytes_down / unique <= 1.1
        if args.check and not ok:
            sys.exit("bench: bytes moved exceed 1.1x the unique compressed chunk bytes")
    finally:
        cleanup(work, servers)


if __name__ == "__main__":
    main()
