#!/usr/bin/env python3
"""envstore benchmarks: ratios against baselines measured in the same run.

The machine is shared and noisy, so nothing here asserts absolute times: every figure is the
median of several runs, and targets are ratios to baselines run side by side.

Workloads
  pip        a real build environment: `pip install --target` of scikit-build-core, pybind11,
             cmake, ninja and numpy (cached under bench/.cache).
  synthetic  a tree shaped like real environments, built from a seed (--files N).

Usage
  python3 bench/bench.py                       # pip workload, 7 runs each
  python3 bench/bench.py --workload synthetic --files 2000 --runs 3   # quick (CI)
"""

import argparse
import hashlib
import io
import os
import random
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "bench" / ".cache"
PIP_REQUIREMENTS = ["scikit-build-core", "pybind11", "cmake", "ninja", "numpy"]


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def build_envstore():
    log("building envstore (release)...")
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "envstore-cli"], cwd=ROOT, check=True)
    return ROOT / "target" / "release" / "envstore"


def pip_workload():
    env = CACHE / "pip-env"
    marker = env / ".complete"
    if not marker.exists():
        log(f"creating the pip workload in {env} ...")
        shutil.rmtree(env, ignore_errors=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-compile", "--target", str(env)]
            + PIP_REQUIREMENTS,
            check=True,
        )
        # Build environments carry the bytecode their hooks wrote; envstore filters it.
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(env)], check=False)
        marker.touch()
    return env


def synthetic_workload(files, seed=1):
    """Mostly small source files in nested packages, some shared objects, a few big binaries."""
    env = CACHE / f"synthetic-{files}-{seed}"
    marker = env / ".complete"
    if marker.exists():
        return env
    log(f"creating a synthetic workload of {files} files in {env} ...")
    shutil.rmtree(env, ignore_errors=True)
    rng = random.Random(seed)
    big = max(1, files // 4000)
    for i in range(files):
        pkg = env / "lib" / f"pkg{i % 97}" / f"sub{i % 13}"
        pkg.mkdir(parents=True, exist_ok=True)
        if i < big:
            size = rng.randint(5 << 20, 25 << 20)
            (env / "bin").mkdir(exist_ok=True)
            path = env / "bin" / f"tool{i}"
        elif i % 50 == 0:
            size = rng.randint(200 << 10, 2 << 20)
            path = pkg / f"ext{i}.so"
        else:
            size = int(rng.lognormvariate(8.5, 1.2))
            path = pkg / f"mod{i}.py"
        path.write_bytes(rng.randbytes(size))
        if path.suffix == ".so" or path.parent.name == "bin":
            path.chmod(0o755)
    marker.touch()
    return env


def files_of(root):
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        out.extend(os.path.join(dirpath, f) for f in filenames if not f.endswith(".pyc"))
    return out


def timed(cmd, env=None):
    """Wall seconds and peak RSS (KiB) of one command, via GNU time."""
    with tempfile.NamedTemporaryFile("r") as stats:
        start = time.perf_counter()
        subprocess.run(
            ["/usr/bin/time", "-o", stats.name, "-f", "%M"] + cmd,
            check=True,
            stdout=subprocess.DEVNULL,
            env=env,
        )
        elapsed = time.perf_counter() - start
        rss = int(stats.read().strip().splitlines()[-1])
    return elapsed, rss


def median_of(runs, fn):
    results = [fn() for _ in range(runs)]
    return statistics.median(r[0] for r in results), max(r[1] for r in results)


SEED_PR = r'''
import hashlib, io, os, sys, tarfile
src, dest_root = sys.argv[1], sys.argv[2]
def flt(info):
    name = os.path.basename(info.name)
    if name == "__pycache__" or name.endswith(".pyc"):
        return None
    info.mtime = 0
    return info
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w") as tar:
    tar.add(src, arcname=".", filter=flt)
digest = hashlib.sha256(buf.getvalue()).hexdigest()
dest = os.path.join(dest_root, digest)
if not os.path.exists(dest):
    buf.seek(0)
    tmp = dest + ".tmp"
    with tarfile.open(fileobj=buf, mode="r") as tar:
        tar.extractall(tmp, filter="tar")
    os.rename(tmp, dest)
print(dest)
'''


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workload", choices=["pip", "synthetic"], default="pip")
    ap.add_argument("--files", type=int, default=10_000, help="synthetic workload size")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--envstore", type=Path, help="binary to use instead of building one")
    ap.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    args = ap.parse_args()

    for tool in ["b3sum", "/usr/bin/time"]:
        if not shutil.which(tool):
            sys.exit(f"bench: needs {tool} (apt-get install b3sum time)")
    CACHE.mkdir(parents=True, exist_ok=True)
    exe = str(args.envstore or build_envstore())
    env_dir = pip_workload() if args.workload == "pip" else synthetic_workload(args.files)
    files = files_of(env_dir)
    total = sum(os.path.getsize(f) for f in files)
    log(f"workload: {env_dir} ({len(files)} files, {total / 1e6:.1f} MB after filtering)")

    work = Path(tempfile.mkdtemp(prefix="envstore-bench-", dir=CACHE))
    try:
        store = work / "store"
        list_file = work / "files.txt"
        list_file.write_text("\0".join(files))
        run_env = dict(os.environ, ENVSTORE_DIR=str(store))

        def b3sum_all():
            # Walk (find) and hash every file: the floor for anything that must read them all.
            return timed(["sh", "-c", f"find '{env_dir}' -type f ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 | xargs -0 b3sum > /dev/null"])

        def read_all():
            return timed(["sh", "-c", f"find '{env_dir}' -type f -print0 | xargs -0 cat > /dev/null"])

        seed_root = work / "seed-pr"
        seed_root.mkdir()

        def seed_pr():
            return timed([sys.executable, "-c", SEED_PR, str(env_dir), str(seed_root)])

        def warm():
            return timed([exe, "-q", "materialize", str(env_dir)], env=run_env)

        empty = work / "empty"
        empty.mkdir()

        def cold():
            # A new environment into an existing (initialized, empty) store: the common
            # first-time case. Creating a store's 512 shard directories happens once per machine.
            shutil.rmtree(store, ignore_errors=True)
            subprocess.run([exe, "-q", "ingest", str(empty)], env=run_env, check=True, stdout=subprocess.DEVNULL)
            subprocess.run(["sync"], check=True)
            return timed([exe, "-q", "materialize", str(env_dir)], env=run_env)

        copy_dest = work / "copy"

        def cp_r():
            shutil.rmtree(copy_dest, ignore_errors=True)
            subprocess.run(["sync"], check=True)
            return timed(["cp", "-r", str(env_dir), str(copy_dest)])

        # Warm the page cache and the stores once, then measure.
        for fn in [read_all, b3sum_all, seed_pr, cold, warm]:
            fn()
        rows = {}
        for name, fn in [
            ("read every byte (cat)", read_all),
            ("b3sum (hashing floor)", b3sum_all),
            ("seed PR (tar+sha256, warm)", seed_pr),
            ("envstore materialize, warm", warm),
            ("cp -r", cp_r),
            ("envstore materialize, cold", cold),
        ]:
            rows[name] = median_of(args.runs, fn)
            log(f"  {name}: {rows[name][0] * 1000:.1f} ms, peak {rows[name][1] / 1024:.1f} MiB")
        subprocess.run(["du", "-sh", str(store)], check=False, stdout=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    floor = rows["b3sum (hashing floor)"][0]
    warm_t, warm_rss = rows["envstore materialize, warm"]
    seed_t = rows["seed PR (tar+sha256, warm)"][0]
    cold_t, cold_rss = rows["envstore materialize, cold"]
    cp_t = rows["cp -r"][0]
    targets = [
        ("warm materialize / b3sum", warm_t / floor, "<= 1.5", warm_t / floor <= 1.5),
        ("seed PR / warm materialize", seed_t / warm_t, ">= 5", seed_t / warm_t >= 5),
        ("peak RSS warm (MiB)", warm_rss / 1024, "<= 64", warm_rss / 1024 <= 64),
        ("peak RSS cold (MiB)", cold_rss / 1024, "<= 64", cold_rss / 1024 <= 64),
        ("cold materialize / cp -r", cold_t / cp_t, "<= 1.0 (issue 8)", cold_t / cp_t <= 1.0),
    ]
    print(f"\nworkload: {args.workload}, {len(files)} files, {total / 1e6:.1f} MB, median of {args.runs} runs, {os.cpu_count()} cores\n")
    print("| command | median | peak RSS |")
    print("|---|---:|---:|")
    for name, (t, rss) in rows.items():
        print(f"| {name} | {t * 1000:.1f} ms | {rss / 1024:.1f} MiB |")
    print("\n| target | measured | goal | met |")
    print("|---|---:|---|---|")
    for name, value, goal, ok in targets:
        print(f"| {name} | {value:.2f} | {goal} | {'yes' if ok else 'NO'} |")
    if args.check and not all(ok for name, _, _, ok in targets if "issue 8" not in name):
        sys.exit(1)


if __name__ == "__main__":
    main()
