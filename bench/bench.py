#!/usr/bin/env python3
"""envstore benchmarks: ratios against baselines measured in the same run.

The machine is shared and noisy, so nothing here asserts absolute times: every figure is the
median of several runs, and targets are ratios to baselines run side by side.

Workloads
  pip        a real build environment: `pip install --target` of scikit-build-core, pybind11,
             cmake, ninja and numpy (cached under bench/.cache).
  synthetic  trees shaped like real environments (mostly small source files, some shared
             objects, a few 5-25 MB binaries), one per --files size, built from a seed.

Usage
  python3 bench/bench.py                                   # pip workload, 7 runs each
  python3 bench/bench.py --workload synthetic --files 10000,100000 --runs 3
  python3 bench/bench.py --workload synthetic --files 10000 --dir /mnt/xfs   # a reflink fs
  python3 bench/bench.py --workload synthetic --files 2000 --runs 3          # what CI runs

--dir puts the store, the copies and (if it is on another file system) a copy of the workload
on that file system, so reflink and hardlink baselines are possible.
"""

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
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
    return target_dir() / "release" / "envstore"


def target_dir():
    """Cargo's target directory: $CARGO_TARGET_DIR (relative to the repository) or target/."""
    given = os.environ.get("CARGO_TARGET_DIR")
    return ROOT / given if given else ROOT / "target"


def pip_target(env, requirements, compile_bytecode=False):
    """`pip install --target env requirements`, once: cached until the directory is removed."""
    if (env / ".complete").exists():
        return env
    log(f"creating {env} ...")
    shutil.rmtree(env, ignore_errors=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-compile", "--target", str(env)] + requirements,
        check=True,
    )
    if compile_bytecode:
        # Build environments carry the bytecode their hooks wrote; envstore filters it.
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(env)], check=False)
    (env / ".complete").touch()
    return env


def pip_workload():
    return pip_target(CACHE / "pip-env", PIP_REQUIREMENTS, compile_bytecode=True)


def synthetic_workload(files, seed=1):
    """~10 KB per file on average: 10k files ~ 100 MB, 100k files ~ 1 GB."""
    env = CACHE / f"synthetic-v2-{files}-{seed}"
    if (env / ".complete").exists():
        return env
    log(f"creating a synthetic workload of {files} files in {env} ...")
    shutil.rmtree(env, ignore_errors=True)
    rng = random.Random(seed)
    big = max(1, files // 20000)
    for i in range(files):
        pkg = env / "lib" / f"pkg{i % 97}" / f"sub{i % 13}"
        pkg.mkdir(parents=True, exist_ok=True)
        if i < big:
            size = rng.randint(5 << 20, 25 << 20)
            (env / "bin").mkdir(exist_ok=True)
            path = env / "bin" / f"tool{i}"
        elif i % 200 == 0:
            size = rng.randint(100 << 10, 1 << 20)
            path = pkg / f"ext{i}.so"
        else:
            size = min(int(rng.lognormvariate(8.0, 1.2)), 1 << 20)
            path = pkg / f"mod{i}.py"
        path.write_bytes(rng.randbytes(size))
        if path.suffix == ".so" or path.parent.name == "bin":
            path.chmod(0o755)
    (env / ".complete").touch()
    return env


def files_of(root):
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        out.extend(os.path.join(dirpath, f) for f in filenames if not f.endswith(".pyc") and f != ".complete")
    return out


def timed(cmd, env=None, shell=False):
    """Wall seconds and peak RSS (KiB) of one command, via GNU time."""
    with tempfile.NamedTemporaryFile("r") as stats:
        argv = ["/usr/bin/time", "-o", stats.name, "-f", "%M"] + (["sh", "-c", cmd] if shell else cmd)
        start = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        elapsed = time.perf_counter() - start
        rss = int(stats.read().strip().splitlines()[-1])
    return elapsed, rss


def works(cmd):
    return subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


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


def du(path):
    out = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0])


def bench_workload(name, env_dir, exe, runs, parent):
    """Measures one workload; returns (rows, facts)."""
    work = Path(tempfile.mkdtemp(prefix="envstore-bench-", dir=parent))
    try:
        if os.stat(env_dir).st_dev != os.stat(work).st_dev:
            log(f"  copying the workload onto {parent} ...")
            subprocess.run(["cp", "-r", str(env_dir), str(work / "src")], check=True)
            env_dir = work / "src"
        files = files_of(env_dir)
        total = sum(os.path.getsize(f) for f in files)
        log(f"{name}: {env_dir} ({len(files)} files, {total / 1e6:.1f} MB after filtering)")
        store = work / "store"
        run_env = dict(os.environ, ENVSTORE_DIR=str(store))
        empty = work / "empty"
        empty.mkdir()
        dest = work / "copy"
        seed_root = work / "seed-pr"
        seed_root.mkdir()
        q = lambda p: "'" + str(p) + "'"
        find = f"find {q(env_dir)} -type f ! -name '*.pyc' ! -name .complete ! -path '*/__pycache__/*' -print0"

        def fresh_dest():
            shutil.rmtree(dest, ignore_errors=True)
            subprocess.run(["sync"], check=True)

        def fresh_store():
            shutil.rmtree(store, ignore_errors=True)
            subprocess.run([exe, "-q", "ingest", str(empty)], env=run_env, check=True, stdout=subprocess.DEVNULL)
            subprocess.run(["sync"], check=True)

        def cold(mode):
            def run():
                fresh_store()
                return timed([exe, "-q", "materialize", "--link-mode", mode, str(env_dir)], env=run_env)
            return run

        def copy_with(*flags):
            def run():
                fresh_dest()
                return timed(["cp", "-r", *flags, str(env_dir), str(dest)])
            return run

        reflink_ok = works(["cp", "--reflink=always", files[0], str(work / "probe")])
        hardlink_ok = works(["cp", "-l", files[0], str(work / "probe2")])
        cases = [
            ("read every byte (cat)", lambda: timed(f"{find} | xargs -0 cat > /dev/null", shell=True)),
            ("b3sum (hashing floor)", lambda: timed(f"{find} | xargs -0 b3sum > /dev/null", shell=True)),
            ("seed PR (tar+sha256, warm)", lambda: timed([sys.executable, "-c", SEED_PR, str(env_dir), str(seed_root)])),
            ("envstore materialize, warm", lambda: timed([exe, "-q", "materialize", str(env_dir)], env=run_env)),
            ("tar | zstd -3", lambda: timed(f"tar -cf - -C {q(env_dir)} . | zstd -3 -q -o {q(work / 'env.tar.zst')} -f", shell=True)),
            ("cp -r", copy_with()),
        ]
        if reflink_ok:
            cases.append(("cp -r --reflink=always", copy_with("--reflink=always")))
        if hardlink_ok:
            cases.append(("cp -rl", copy_with("-l")))
        def settle():
            # `cp -rl` links and unlinks the source files, which moves their ctime: envstore
            # re-reads files changed in the last 2 s (see Stamp in envstore-walk), so let them
            # settle, as a build environment made earlier has.
            shutil.rmtree(dest, ignore_errors=True)
            time.sleep(2.5)
            return (0.0, 0)

        cases.append(("(settle)", settle))
        cases.append(("envstore materialize, cold (auto)", cold("auto")))
        cases.append(("envstore materialize, cold, copy", cold("copy")))
        if hardlink_ok:
            cases.append(("envstore materialize, cold, hardlink", cold("hardlink")))
        if reflink_ok:
            cases.append(("envstore materialize, cold, reflink", cold("reflink")))

        # Warm every cache and the stores once.
        fresh_store()
        subprocess.run([exe, "-q", "materialize", str(env_dir)], env=run_env, check=True, stdout=subprocess.DEVNULL)
        timed([sys.executable, "-c", SEED_PR, str(env_dir), str(seed_root)])
        rows = {}
        for label, fn in cases:
            if label == "(settle)":
                fn()
                continue
            results = [fn() for _ in range(runs)]
            rows[label] = (statistics.median(r[0] for r in results), max(r[1] for r in results))
            log(f"  {label}: {rows[label][0] * 1000:.1f} ms, peak {rows[label][1] / 1024:.1f} MiB")
        fresh_store()
        subprocess.run([exe, "-q", "ingest", str(env_dir)], env=run_env, check=True, stdout=subprocess.DEVNULL)
        facts = {
            "files": len(files),
            "bytes": total,
            "store": du(store / "objects") + du(store / "trees"),
            "tar.zst": (work / "env.tar.zst").stat().st_size,
            "reflink": reflink_ok,
        }
        return rows, facts
    finally:
        shutil.rmtree(work, ignore_errors=True)


def report(name, rows, facts, runs):
    floor = rows["b3sum (hashing floor)"][0]
    warm_t, warm_rss = rows["envstore materialize, warm"]
    cold_t = rows["envstore materialize, cold (auto)"][0]
    peak = max(rss for label, (t, rss) in rows.items() if label.startswith("envstore"))
    targets = [
        ("warm materialize / b3sum", warm_t / floor, "<= 1.5"),
        ("seed PR / warm materialize", rows["seed PR (tar+sha256, warm)"][0] / warm_t, ">= 5"),
        ("peak RSS of any envstore run (MiB)", peak / 1024, "<= 64"),
    ]
    if facts["reflink"]:
        targets.append(("cold materialize / cp -r --reflink=always", cold_t / rows["cp -r --reflink=always"][0], "<= 1.5"))
    else:
        targets.append(("cold materialize / cp -r", cold_t / rows["cp -r"][0], "<= 1.0"))
    print(f"\n### {name}: {facts['files']} files, {facts['bytes'] / 1e6:.1f} MB, median of {runs} runs, {os.cpu_count()} cores\n")
    print("| command | median | peak RSS |")
    print("|---|---:|---:|")
    for label, (t, rss) in rows.items():
        print(f"| {label.replace('|', chr(92) + '|')} | {t * 1000:.1f} ms | {rss / 1024:.1f} MiB |")
    print(f"\nstore after ingest (objects + trees): {facts['store'] / 1e6:.1f} MB; `tar | zstd -3`: {facts['tar.zst'] / 1e6:.1f} MB\n")
    print("| target | measured | goal | met |")
    print("|---|---:|---|---|")
    met = True
    for label, value, goal in targets:
        ok = value <= float(goal.split()[1]) if goal.startswith("<=") else value >= float(goal.split()[1])
        met &= ok
        print(f"| {label} | {value:.2f} | {goal} | {'yes' if ok else 'NO'} |")
    return met


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workload", choices=["pip", "synthetic"], default="pip")
    ap.add_argument("--files", default="10000", help="synthetic workload sizes, comma-separated")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--dir", type=Path, default=CACHE, help="where stores and copies go")
    ap.add_argument("--envstore", type=Path, help="binary to use instead of building one")
    ap.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    args = ap.parse_args()
    for tool in ["b3sum", "/usr/bin/time", "zstd"]:
        if not shutil.which(tool):
            sys.exit(f"bench: needs {tool} (apt-get install b3sum time zstd)")
    CACHE.mkdir(parents=True, exist_ok=True)
    args.dir.mkdir(parents=True, exist_ok=True)
    exe = str(args.envstore or build_envstore())
    if args.workload == "pip":
        workloads = [("pip build env", pip_workload())]
    else:
        workloads = [(f"synthetic {n}", synthetic_workload(int(n))) for n in args.files.split(",")]
    results = []
    all_met = True
    for name, env_dir in workloads:
        rows, facts = bench_workload(name, env_dir, exe, args.runs, args.dir)
        all_met &= report(name, rows, facts, args.runs)
        results.append((name, rows, facts))
    if len(results) > 1:
        # Linear growth: cost per file (and per byte) should stay flat as the tree grows.
        (n0, r0, f0), (n1, r1, f1) = results[0], results[-1]
        print(f"\n### growth from {f0['files']} to {f1['files']} files ({f1['files'] / f0['files']:.0f}x files, {f1['bytes'] / f0['bytes']:.1f}x bytes)\n")
        print("| command | time ratio | per file | per byte | peak RSS ratio |")
        print("|---|---:|---:|---:|---:|")
        for label in r0:
            if label in r1:
                ratio = r1[label][0] / r0[label][0]
                print(f"| {label.replace('|', chr(92) + '|')} | {ratio:.1f}x | {ratio / (f1['files'] / f0['files']):.2f} | {ratio / (f1['bytes'] / f0['bytes']):.2f} | {r1[label][1] / r0[label][1]:.2f} |")
    if args.check and not all_met:
        sys.exit(1)


if __name__ == "__main__":
    main()
