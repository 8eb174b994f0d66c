#!/usr/bin/env python3
"""envstore fleet benchmark: fresh CI runners against a remote that keeps growing.

A remote on the 3-node SeaweedFS cluster (S3, loopback) is grown to each size in --sizes with
synthetic environments related as real ones are: each is 24 packages drawn from a pool of 300
(popular ones more often: a few versions of numpy and friends in most environments), each
package a directory of modules and its .dist-info, plus a small file of its own. At each size,
--clients fresh stores run at once, each pushing a new related environment (one package no one
has pushed yet) and pulling another environment already on the remote, as ephemeral CI runners
do. Per client: requests, bytes down and up, peak RSS and wall time of the push and of the
pull. The baseline, measured at the same time: `aws s3 cp` of the same bytes (each client's
environment as one tar.zst up, the pulled one down), with the same concurrency.

What should hold: a fresh client's push and pull cost the same at every size (requests and bytes
flat), not more as the remote grows.

Usage
  python3 bench/fleet.py                          # sizes 100,1000; 16 clients
  python3 bench/fleet.py --sizes 1000,10000      # 10,000 snapshots: ~35 minutes to grow here
  python3 bench/fleet.py --sizes 20,200 --clients 4 --check   # what CI runs
"""

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import CACHE, build_envstore, log  # noqa: E402
from remote import aws_cli, cleanup, ensure_servers, s3_target  # noqa: E402

POOL = 300
PER_ENV = 24
BATCH = 50  # environments per push command while growing


POOL_DIR = None  # packages written once, linked into each environment (growing is then fast)


def write_package(d: Path, p: int):
    m = d / f"pkg{p}"
    m.mkdir(parents=True, exist_ok=True)
    rng = random.Random(p)
    for i in range(8):
        (m / f"mod{i}.py").write_bytes(rng.randbytes(200 + (p * 37 + i * 101) % 3000).hex().encode())
    info = d / f"pkg{p}-1.0.dist-info"
    info.mkdir(exist_ok=True)
    for f in ("METADATA", "RECORD", "WHEEL", "INSTALLER"):
        (info / f).write_text(f"pkg{p} {f}\n")


def package(root: Path, p: int):
    d = root / "lib/python3.11/site-packages"
    d.mkdir(parents=True, exist_ok=True)
    if POOL_DIR is None or p >= POOL:
        write_package(d, p)
        return
    src = POOL_DIR / str(p)
    if not src.exists():
        write_package(src, p)
    for top in src.iterdir():
        (d / top.name).mkdir()
        for f in top.iterdir():
            os.link(f, d / top.name / f.name)


def make_env(root: Path, seed: int, extra: int | None = None):
    rng = random.Random(seed)
    # Popularity: low-numbered packages far more often (a Zipf-like draw).
    chosen = set()
    while len(chosen) < PER_ENV:
        chosen.add(min(int(rng.paretovariate(0.8)) - 1, POOL - 1))
    if extra is not None:
        chosen.add(extra)
    for p in sorted(chosen):
        package(root, p)
    (root / "pyvenv.cfg").write_text(f"home = /usr/bin\nenv = {seed}\n")


def run(cmd, env):
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"bench: {' '.join(map(str, cmd))} failed:\n{p.stderr}")
    return p.stdout


def measured(cmd, env):
    """Runs cmd; returns (stdout, wall seconds, peak RSS KiB)."""
    start = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - start
    out = p.stdout.read()
    err = p.stderr.read()
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        sys.exit(f"bench: {' '.join(map(str, cmd))} failed:\n{err}")
    return out, wall, usage.ru_maxrss


def grow(exe, url, work, start, end):
    env = {**os.environ, "ENVSTORE_DIR": str(work / "grower")}
    ids = []
    for b in range(start, end, BATCH):
        dirs = []
        for i in range(b, min(b + BATCH, end)):
            d = work / "grow" / f"env{i}"
            make_env(d, i)
            dirs.append(str(d))
        out = json.loads(run([exe, "--json", "push", *dirs, "--to", url], env))
        ids.extend(s["id"] for s in out["snapshots"])
        shutil.rmtree(work / "grow", ignore_errors=True)
        # The grower's store is a cache of what it pushed; keep it small.
        run([exe, "-q", "prune", "--older-than", "0s"], env)
    return ids


def client(exe, aws, url, endpoint, bucket, prefix, work, size, n, pull_id):
    d = work / f"c{size}-{n}"
    env = {**os.environ, "ENVSTORE_DIR": str(d / "store")}
    src = d / "env"
    make_env(src, 10_000_000 + size * 100 + n, extra=POOL + size * 100 + n)
    out, push_wall, push_rss = measured([exe, "--json", "push", str(src), "--to", url], env)
    push = json.loads(out)
    out, pull_wall, pull_rss = measured([exe, "--json", "pull", pull_id, "--from", url], env)
    pull = json.loads(out)[0]
    # The baseline: the same environment up as one tar.zst, the pulled one down.
    tz = d / "env.tar.zst"
    subprocess.run(["sh", "-c", f"tar -C '{src}' -cf - . | zstd -q -3 -o '{tz}' -f"], check=True)
    key = f"s3://{bucket}/{prefix}-tars/{size}-{n}.tar.zst"
    t = time.perf_counter()
    subprocess.run([aws, "--endpoint-url", endpoint, "s3", "cp", "--quiet", str(tz), key], check=True)
    aws_up = time.perf_counter() - t
    t = time.perf_counter()
    subprocess.run([aws, "--endpoint-url", endpoint, "s3", "cp", "--quiet", key, str(d / "down.tar.zst")], check=True)
    aws_down = time.perf_counter() - t
    shutil.rmtree(d, ignore_errors=True)
    return {
        "push_requests": push["requests"], "push_down": push["bytes_down"], "push_up": push["bytes_up"],
        "push_rss": push_rss, "push_wall": push_wall,
        "pull_requests": pull["requests"], "pull_down": pull["bytes_down"],
        "pull_rss": pull_rss, "pull_wall": pull_wall,
        "aws_up": aws_up, "aws_down": aws_down,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100,1000")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--envstore", type=Path, help="binary to use instead of building one")
    ap.add_argument("--check", action="store_true",
                    help="exit 1 if a fresh push's requests or bytes down grow more than 2x (+10, +256 KiB) from the first size to the last")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    CACHE.mkdir(parents=True, exist_ok=True)
    exe = str(args.envstore or build_envstore())
    servers = ensure_servers()
    aws = aws_cli()
    url, endpoint, bucket, prefix = s3_target("fleet")
    work = Path(tempfile.mkdtemp(prefix="envstore-fleet-", dir=CACHE))
    global POOL_DIR
    POOL_DIR = work / "pool"
    rows = []
    try:
        ids, have = [], 0
        for size in sizes:
            t = time.perf_counter()
            ids += grow(exe, url, work, have, size)
            have = size
            log(f"remote grown to {size} snapshots in {time.perf_counter() - t:.0f} s; {args.clients} clients ...")
            rng = random.Random(size)
            with ThreadPoolExecutor(args.clients) as pool:
                results = list(pool.map(
                    lambda n: client(exe, aws, url, endpoint, bucket, prefix, work, size, n, rng.choice(ids)),
                    range(args.clients)))
            rows.append((size, results))
        med = lambda rs, k: statistics.median(r[k] for r in rs)  # noqa: E731
        print(f"\n## Fleet: {args.clients} fresh clients at once against a growing remote (S3, 3-node SeaweedFS, loopback)\n")
        print("Medians per client. Push: a new related environment; pull: another one already there.\n")
        print("| snapshots on the remote | push requests | push KiB down | push KiB up | push peak RSS | push wall | aws s3 cp up | pull requests | pull KiB down | pull peak RSS | pull wall | aws s3 cp down |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for size, rs in rows:
            print(f"| {size} | {med(rs, 'push_requests'):.0f} | {med(rs, 'push_down') / 1024:.1f} | {med(rs, 'push_up') / 1024:.0f} "
                  f"| {med(rs, 'push_rss') / 1024:.0f} MiB | {med(rs, 'push_wall'):.2f} s | {med(rs, 'aws_up'):.2f} s "
                  f"| {med(rs, 'pull_requests'):.0f} | {med(rs, 'pull_down') / 1024:.0f} | {med(rs, 'pull_rss') / 1024:.0f} MiB "
                  f"| {med(rs, 'pull_wall'):.2f} s | {med(rs, 'aws_down'):.2f} s |")
        first, last = rows[0][1], rows[-1][1]
        ok = (max(r["push_requests"] for r in last) <= 2 * max(r["push_requests"] for r in first) + 10
              and max(r["push_down"] for r in last) <= 2 * max(r["push_down"] for r in first) + (256 << 10))
        print(f"\nfresh push from {rows[0][0]} to {rows[-1][0]} snapshots: {'flat' if ok else 'GROWS'} "
              "(within 2x +10 requests, +256 KiB, worst client)")
        if args.check and not ok:
            sys.exit("bench: a fresh push costs more as the remote grows")
    finally:
        cleanup(work, servers)


if __name__ == "__main__":
    main()
