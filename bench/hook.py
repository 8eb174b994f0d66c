#!/usr/bin/env python3
"""Second-install wall time of the demo project (tests/hook/project: 4 pybind11 TUs, 2 plain),
with the envstore.build hook and without it (scikit-build-core directly), under pip and uv.

Each variant: one first install (not timed), then --runs timed second installs; medians are
printed. cmake and ninja come from PyPI in the build environment. Needs uv.

    python3 bench/hook.py --runs 3
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="envstore-hook-bench-"))
    try:
        wheels = work / "wheels"
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), "."], cwd=ROOT, check=True)
        rows = []
        for frontend in ["pip", "uv"]:
            for hook in [False, True]:
                case = work / f"{frontend}-{'hook' if hook else 'plain'}"
                shutil.copytree(ROOT / "tests/hook/project", case / "project")
                pyproject = case / "project/pyproject.toml"
                if not hook:
                    text = re.sub(r'"envstore[^"]*", ', "", pyproject.read_text()).replace('"envstore.build"', '"scikit_build_core.build"')
                    pyproject.write_text(text)
                subprocess.run([sys.executable, "-m", "venv", str(case / "venv")], check=True)
                python = case / "venv/bin/python"
                env = dict(os.environ, ENVSTORE_DIR=str(work / "store"), PIP_FIND_LINKS=str(wheels), UV_FIND_LINKS=str(wheels),
                           SKBUILD_CMAKE_VERSION=">=3.26", SKBUILD_NINJA_VERSION=">=1.12", ENVSTORE_HOOK_VERBOSE="1")
                if frontend == "pip":
                    cmd = [str(python), "-m", "pip", "install", "-v", "."]
                else:
                    cmd = ["uv", "pip", "install", "-v", "--python", str(python), "--reinstall-package", "envstore-demo", "."]

                def once():
                    start = time.perf_counter()
                    out = subprocess.run(cmd, cwd=case / "project", env=env, capture_output=True, text=True)
                    elapsed = time.perf_counter() - start
                    if out.returncode != 0:
                        sys.exit(out.stdout + out.stderr)
                    log = out.stdout + out.stderr
                    hook_times = [float(t) for t in re.findall(r"redirected in ([0-9.]+)s", log)]
                    hook_times += [float(t) for t in re.findall(r"\(venv; ([0-9.]+)s\)", log)]
                    return elapsed, len(re.findall("Building CXX", log)), sum(hook_times)

                once()
                results = [once() for _ in range(args.runs)]
                t = statistics.median(r[0] for r in results)
                tus = max(r[1] for r in results)
                hook_t = statistics.median(r[2] for r in results) if hook else None
                rows.append((frontend, hook, t, tus, hook_t))
                print(f"{frontend} {'hook' if hook else 'plain'}: {t:.2f} s, {tus} TUs", file=sys.stderr)
        print(f"\nsecond install of tests/hook/project, median of {args.runs}, {os.cpu_count()} cores\n")
        print("| frontend | backend | wall time | TUs compiled | hook's own time |")
        print("|---|---|---:|---:|---:|")
        for frontend, hook, t, tus, hook_t in rows:
            backend = "envstore.build" if hook else "scikit_build_core.build"
            print(f"| {frontend} | {backend} | {t:.2f} s | {tus} | {'%.3f s' % hook_t if hook_t is not None else '-'} |")
        for frontend in ["pip", "uv"]:
            plain = next(r[2] for r in rows if r[0] == frontend and not r[1])
            hooked = next(r[2] for r in rows if r[0] == frontend and r[1])
            print(f"\n{frontend}: {plain / hooked:.1f}x faster with the hook")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
