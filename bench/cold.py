#!/usr/bin/env python3
"""envstore cold-tier benchmark: four related environments, pinned and packed.

Workloads
  pip        four real build environments made with `pip install --target` (cached under
             bench/.cache): scikit-build-core + pybind11 + cmake + ninja; the same plus numpy;
             the same with an older pybind11; the same plus one small package (six).
  synthetic  four related trees built from a seed (a base, and three variants that add, replace
             and edit files), a few seconds: what CI runs.

Measured, side by side in one run (median of --runs):
  - the store after `envstore pack` (packs + trees + records, as `du` counts them) against the
    sum of the four environments' separate `tar | zstd -3` sizes (target <= 0.5x);
  - each environment materialized back from packs, compared file by file (must be identical);
  - pack and rehydrate (materializing from packs) throughput against `zstd -3` compressing the
    same four tars (target >= 1x), and against `zstd -d | tar -x` for context.

Usage
  python3 bench/cold.py                          # pip workload, 3 runs
  python3 bench/cold.py --workload synthetic --runs 1 --check
"""

import argparse
import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import CACHE, build_envstore, du, files_of, log, pip_target  # noqa: E402

BASE = ["scikit-build-core", "pybind11", "cmake", "ninja"]
PIP_ENVS = {
    "base": BASE,
    "numpy": BASE + ["numpy"],
    "old-pybind11": [p if p != "pybind11" else "pybind11<2.12" for p in BASE],
    "plus-six": BASE + ["six"],
}


def pip_envs():
    return [(name, pip_target(CACHE / f"cold-{name}", reqs)) for name, reqs in PIP_ENVS.items()]


def synthetic_envs():
    """A base of text-like sources and binaries; variants add, replace and edit files."""
    root = CACHE / "cold-synthetic-v1"
    names = ["base", "plus-lib", "replaced", "edited"]
    if all((root / n / ".complete").exists() for n in names):
        return [(n, root / n) for n in names]
    shutil.rmtree(root, ignore_errors=True)
    rng = random.Random(7)
    words = [rng.randbytes(rng.randint(2, 9)).hex() for _ in range(3000)]

    def text(n):
        return " ".join(rng.choice(words) for _ in range(n)).encode()

    base = {}
    for i in range(1500):
        base[f"lib/pkg{i % 40}/mod{i}.py"] = text(rng.randint(20, 1500))
    for i in range(6):
        base[f"lib/ext{i}.so"] = rng.randbytes(300_000) + text(40_000)
    variants = {"base": dict(base)}
    v = dict(base)
    for i in range(200):
        v[f"lib/extra/x{i}.py"] = text(rng.randint(20, 800))
    v["lib/extra/big.so"] = rng.randbytes(2_000_000)
    variants["plus-lib"] = v
    v = dict(base)
    for i in range(0, 1500, 10):
        v[f"lib/pkg{i % 40}/mod{i}.py"] = text(rng.randint(20, 1500))
    variants["replaced"] = v
    v = dict(base)
    for i in range(6):
        blob = v[f"lib/ext{i}.so"]
        v[f"lib/ext{i}.so"] = blob[:5000] + b"patched" + blob[5000:]
    variants["edited"] = v
    out = []
    for name in names:
        env = root / name
        for rel, data in variants[name].items():
            path = env / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        (env / ".complete").touch()
        out.append((name, env))
    return out


def digest_tree(root):
    """Relative path -> (sha256, exec bit) for every file, and symlink targets."""
    out = {}
    for path in files_of(root):
        rel = os.path.relpath(path, root)
        if rel == ".complete":
            continue
        if os.path.islink(path):
            out[rel] = ("link", os.readlink(path))
        else:
            with open(path, "rb") as f:
                out[rel] = (hashlib.sha256(f.read()).hexdigest(), os.stat(path).st_mode & 0o100 != 0)
    return out


def wall(cmd, **kw):
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, **kw)
    return time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workload", choices=["pip", "synthetic"], default="pip")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=CACHE, help="where stores and archives go")
    ap.add_argument("--envstore", type=Path, help="binary to use instead of building one")
    ap.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    args = ap.parse_args()
    if not shutil.which("zstd"):
        sys.exit("bench: needs zstd (apt-get install zstd)")
    CACHE.mkdir(parents=True, exist_ok=True)
    args.dir.mkdir(parents=True, exist_ok=True)
    exe = str(args.envstore or build_envstore())
    envs = pip_envs() if args.workload == "pip" else synthetic_envs()
    work = Path(tempfile.mkdtemp(prefix="envstore-cold-", dir=args.dir))
    exclude = ["--exclude", ".complete"]
    try:
        logical = sum(os.path.getsize(p) for _, e in envs for p in files_of(e) if not os.path.islink(p))
        # Baselines: each environment as its own tar | zstd -3 (what people keep today).
        tar_zst, zstd_t, unzstd_t = 0, [], []
        for run in range(args.runs):
            total_c, total_d = 0.0, 0.0
            for name, env in envs:
                out = work / f"{name}.tar.zst"
                cmd = f"tar -C '{env}' --exclude=__pycache__ --exclude='*.pyc' --exclude=.complete -cf - . | zstd -q -3 -o '{out}' -f"
                total_c += wall(["sh", "-c", cmd])
                if run == 0:
                    tar_zst += out.stat().st_size
                dest = work / f"x-{name}"
                dest.mkdir()
                total_d += wall(["sh", "-c", f"zstd -q -d -c '{out}' | tar -C '{dest}' -xf -"])
                shutil.rmtree(dest)
            zstd_t.append(total_c)
            unzstd_t.append(total_d)

        pack_t, rehydrate_t, store_bytes, stats = [], [], 0, {}
        identical = True
        for run in range(args.runs):
            store = work / f"store{run}"
            env_vars = dict(os.environ, ENVSTORE_DIR=str(store), ENVSTORE_LINK_MODE="auto")
            for name, env in envs:
                subprocess.run([exe, "-q", "pin", name, str(env)] + exclude, check=True, env=env_vars, stdout=subprocess.DEVNULL)
            pack_t.append(wall([exe, "-q", "pack"], env=env_vars))
            stats = json.loads(subprocess.run([exe, "--json", "stats"], check=True, env=env_vars, capture_output=True).stdout)
            # packs + trees + records + index: the whole store but its (empty) envs/.
            store_bytes = du(store)
            start = time.perf_counter()
            paths = [
                subprocess.run([exe, "materialize", name], check=True, env=env_vars, capture_output=True, text=True).stdout.strip()
                for name, _ in envs
            ]
            rehydrate_t.append(time.perf_counter() - start)
            if run == 0:
                for (name, env), path in zip(envs, paths):
                    if digest_tree(env) != digest_tree(path):
                        identical = False
                        log(f"{name}: the materialized tree differs from {env}")
            verify = subprocess.run([exe, "-q", "verify"], env=env_vars)
            identical &= verify.returncode == 0
            shutil.rmtree(store)

        med = statistics.median
        mb = lambda b: f"{b / 1e6:.1f} MB"  # noqa: E731
        rate = lambda t: logical / t / 1e6  # noqa: E731
        print(f"\n### cold tier, {args.workload}: 4 environments, {mb(logical)} logical, median of {args.runs} runs, {os.cpu_count()} cores\n")
        print("| environment | files | bytes |")
        print("|---|---:|---:|")
        for name, env in envs:
            files = [p for p in files_of(env) if os.path.basename(p) != ".complete"]
            print(f"| {name} | {len(files)} | {mb(sum(os.path.getsize(p) for p in files if not os.path.islink(p)))} |")
        print()
        print("| what | size | time | throughput |")
        print("|---|---:|---:|---:|")
        print(f"| 4 x `tar \\| zstd -3` | {mb(tar_zst)} | {med(zstd_t):.2f} s | {rate(med(zstd_t)):.0f} MB/s |")
        print(f"| 4 x `zstd -d \\| tar -x` | | {med(unzstd_t):.2f} s | {rate(med(unzstd_t)):.0f} MB/s |")
        print(f"| `envstore pack` (store after) | {mb(store_bytes)} | {med(pack_t):.2f} s | {rate(med(pack_t)):.0f} MB/s |")
        print(f"| `envstore materialize` x 4 from packs | | {med(rehydrate_t):.2f} s | {rate(med(rehydrate_t)):.0f} MB/s |")
        print(
            f"\npacks {mb(stats['packed_bytes'])} ({stats['chunks']} chunks, {mb(stats['chunk_bytes'])} uncompressed); "
            f"dedup {stats['dedup_ratio']:.2f}x, compression {stats['compression_ratio']:.2f}x, overall {stats['total_ratio']:.2f}x\n"
        )
        targets = [
            ("store / sum of tar|zstd -3", store_bytes / tar_zst, "<=", 0.5),
            ("pack speed / zstd -3 speed", med(zstd_t) / med(pack_t), ">=", 1.0),
            ("rehydrate speed / zstd -3 speed", med(zstd_t) / med(rehydrate_t), ">=", 1.0),
        ]
        print("| target | measured | goal | met |")
        print("|---|---:|---|---|")
        met = identical
        for label, value, op, goal in targets:
            ok = value <= goal if op == "<=" else value >= goal
            met &= ok
            print(f"| {label} | {value:.2f} | {op} {goal} | {'yes' if ok else 'NO'} |")
        print(f"| every environment materializes byte-identical, verify passes | {'yes' if identical else 'no'} | yes | {'yes' if identical else 'NO'} |")
        if not identical:
            sys.exit("bench: a materialized environment differs from its source")
        if args.check and not met:
            sys.exit(1)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
