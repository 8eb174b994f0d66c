#!/usr/bin/env python3
"""Keyed environments (issue 13): what a warm `ensure`, `venv` and the hook's fast path cost,
against baselines measured in the same run. Prints markdown; only ratios count (the machine is
shared and noisy).

Targets:
  warm `envstore ensure`  <= 2x `sha256sum` of the manifests, and faster than a no-op
                          `uv pip install -r`
  `envstore.venv()` warm, in-process: <= 10 ms plus the interpreter's start-up
  warm hook fast path (`ingest --by-records`) on a 1 GB synthetic build environment
                          <= 0.1x hashing it (`ingest`, warm: the walk and hash, nothing stored)

Usage:
  python3 bench/keys.py [--runs 7] [--envstore target/release/envstore] [--size-mb 1024]
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(cmd, runs, **kw):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def synthetic_prefix(root, size_mb):
    """A prefix shaped like an installed site-packages: 40 distributions with RECORD files,
    many small modules, and large shared libraries making up most of the bytes."""
    rnd = __import__("random").Random(13)
    site = root / "lib" / "python3.11" / "site-packages"
    big_total = size_mb << 20
    for d in range(40):
        pkg = site / f"pkg{d}"
        pkg.mkdir(parents=True)
        record = []
        for m in range(60):
            path = pkg / f"mod{m}.py"
            path.write_bytes(f"# module {d}.{m}\n".encode() * rnd.randint(5, 200))
            record.append(f"pkg{d}/mod{m}.py,sha256=x,{path.stat().st_size}")
        lib = pkg / f"_native{d}.so"
        with open(lib, "wb") as f:
            chunk = os.urandom(1 << 20)
            for _ in range(max(1, (big_total // 40) >> 20)):
                f.write(chunk)
        record.append(f"pkg{d}/_native{d}.so,sha256=x,{lib.stat().st_size}")
        info = site / f"pkg{d}-1.0.dist-info"
        info.mkdir()
        (info / "RECORD").write_text("\n".join(record) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--envstore", default=None)
    parser.add_argument("--size-mb", type=int, default=1024)
    args = parser.parse_args()
    exe = args.envstore
    if exe is None:
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "envstore-cli"], cwd=ROOT, check=True)
        given = os.environ.get("CARGO_TARGET_DIR")
        exe = str((ROOT / given if given else ROOT / "target") / "release" / "envstore")
    uv = shutil.which("uv")
    work = Path(tempfile.mkdtemp(prefix="envstore-bench-keys-"))
    try:
        env = dict(os.environ, ENVSTORE_DIR=str(work / "store"))
        project = work / "project"
        project.mkdir()
        (project / "requirements.txt").write_text("# the project's manifest\n")
        (project / "constraints.txt").write_text("# pinned\n")
        venv_dir = project / ".venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv_dir)], check=True)
        ensure = [exe, "ensure", "--key-file", "requirements.txt", "--key-file", "constraints.txt", "--",
                  "sh", "-c", 'python3 -m venv --without-pip "$ENVSTORE_OUT"']
        subprocess.run(ensure, cwd=project, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rows = []
        r = args.runs
        t_test = timed(["test", "-d", str(venv_dir)], r)
        t_sha = timed(["sha256sum", "requirements.txt", "constraints.txt"], r, cwd=project)
        t_ensure = timed(ensure, r, cwd=project, env=env)
        rows += [("test -d venv", t_test), ("sha256sum of the manifests", t_sha), ("envstore ensure, warm", t_ensure)]
        t_uv = None
        if uv:
            t_uv = timed([uv, "pip", "install", "--quiet", "--python", str(venv_dir / "bin" / "python"),
                          "-r", "requirements.txt"], r, cwd=project)
            rows.append(("uv pip install -r (no-op)", t_uv))
        # envstore.venv() in-process, warm: the call alone, timed inside one interpreter.
        code = (
            "import sys, time; sys.path.insert(0, sys.argv[1]); import envstore\n"
            "envstore.venv([sys.argv[2]])\n"
            "ts = []\n"
            "for _ in range(int(sys.argv[3])):\n"
            "    t = time.perf_counter(); envstore.venv([sys.argv[2]]); ts.append(time.perf_counter() - t)\n"
            "ts.sort(); print(ts[len(ts) // 2])\n"
        )
        out = subprocess.run([sys.executable, "-c", code, str(ROOT / "python"), str(project / "requirements.txt"), str(r)],
                             env=dict(env, ENVSTORE_BIN=exe), check=True, capture_output=True, text=True)
        t_api = float(out.stdout.strip())
        t_python = timed([sys.executable, "-c", "pass"], r)
        rows += [("envstore.venv(), warm, in-process", t_api), ("python3 -c pass (start-up)", t_python)]

        # The hook's fast path on a large synthetic prefix.
        prefix = work / "overlay"
        synthetic_prefix(prefix, args.size_mb)
        size = sum(p.stat().st_size for p in prefix.rglob("*") if p.is_file())
        fast = [exe, "ingest", "--by-records", "--key", "cp311", str(prefix)]
        subprocess.run(fast, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t_hash = timed([exe, "ingest", str(prefix)], r, env=env)
        t_fast = timed(fast, r, env=env)
        rows += [(f"ingest (hash {size / 1e9:.2f} GB), warm", t_hash), ("ingest --by-records, warm", t_fast)]

        print(f"### keyed environments: median of {r} runs, 2 cores\n")
        print("| command | median |\n|---|---:|")
        for name, t in rows:
            print(f"| {name} | {t * 1000:.1f} ms |")
        print("\n| target | measured | goal | met |\n|---|---:|---|---|")
        def row(name, value, goal, ok):
            print(f"| {name} | {value} | {goal} | {'yes' if ok else 'NO'} |")
        row("warm ensure / sha256sum", f"{t_ensure / t_sha:.2f}", "<= 2", t_ensure <= 2 * t_sha)
        if t_uv is not None:
            row("warm ensure / no-op uv pip install", f"{t_ensure / t_uv:.2f}", "< 1", t_ensure < t_uv)
        row("envstore.venv() warm, in-process", f"{t_api * 1000:.1f} ms", "<= 10 ms + start-up", t_api <= 0.010 + t_python)
        row("hook fast path / hashing the env", f"{t_fast / t_hash:.3f}", "<= 0.1", t_fast <= 0.1 * t_hash)
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(work)])
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
