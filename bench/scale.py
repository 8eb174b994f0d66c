#!/usr/bin/env python3
"""envstore at scale (issues 16 and 25): peak memory and time per file at 100k and 1M files.

Workloads (generated once, cached under bench/.cache; not run in CI):
  scale-N     N small files nested like a large site-packages (lib/python3.11/site-packages/
              pkgP/subS/modM/fI.py: 499 packages x 7 x 5 directories, sizes log-normal around
              1 KB, one file in ten a copy of one of 64 shared contents).
  store-20    one store holding 20 snapshots of the 100k workload, each with 5% of its files
              rewritten and 100 files added (what a CI fleet's store looks like after a month).

For each size it runs, each as a child process timed by GNU time (wall seconds, peak RSS):
ingest, verify, pack, first-time materialize, warm materialize (median of --runs), diff of the
snapshot against its directory, export to tar.zst, prune (mark and sweep, nothing to remove),
push to a remote directory and pull into a fresh store (issue 25), and three baselines over the same files: b3sum, `cp -r` and `tar | zstd -3`. Each command runs
after the page cache has written back what the previous one wrote, with its inputs read once
(so a 1M-file run does not pay for its predecessor's writes or start from a cold cache), and
its growth in time per file is printed beside its baseline's, measured in the same run. On the 20-snapshot store: verify, diff of the first
and last snapshots, export, prune --dry-run, pack, verify again (packed), materialize a packed
snapshot, and prune removing half of them.

Two things outside envstore move these times, and the script guards against both: a sandbox
that drops the page cache from outside (a command timed across a drop is repeated, or flagged),
and ext4 without a journal, whose inode allocator skips inodes freed in the last 60-300 s (so
nothing is deleted before a timed command; start the script a few minutes after deleting a
large tree, such as a previous run's, which it removes when it ends).

Usage
  python3 bench/scale.py                         # 100k and 1M files, and the 20-snapshot store
  python3 bench/scale.py --sizes 100000 --no-store --runs 3
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import CACHE, build_envstore, log, timed  # noqa: E402

LIMIT_MIB = 64


def scale_workload(files, seed=1):
    env = CACHE / f"scale-v1-{files}-{seed}"
    if (env / ".complete").exists():
        return env
    log(f"creating a {files}-file workload in {env} (once) ...")
    shutil.rmtree(env, ignore_errors=True)
    rng = random.Random(seed)
    shared = [rng.randbytes(rng.randint(0, 4000)) for _ in range(64)]
    made = set()
    sp = env / "lib" / "python3.11" / "site-packages"
    for i in range(files):
        d = sp / f"pkg{i % 499}" / f"sub{(i // 499) % 7}" / f"mod{(i // 3493) % 5}"
        if d not in made:
            d.mkdir(parents=True, exist_ok=True)
            made.add(d)
        data = shared[i % 64] if i % 10 == 0 else rng.randbytes(min(int(rng.lognormvariate(7.0, 1.0)), 1 << 20))
        fd = os.open(d / f"f{i}.py", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, data)
        os.close(fd)
    (env / ".complete").touch()
    return env


def settle():
    """Waits until the page cache has written back what earlier steps wrote (at most 3 min), so
    that no command pays for its predecessor's writes."""
    subprocess.run(["sync"], check=True)
    for _ in range(180):
        meminfo = Path("/proc/meminfo").read_text().split()
        pending = sum(int(meminfo[i + 1]) for i, k in enumerate(meminfo) if k in ("Dirty:", "Writeback:"))
        if pending < 64 << 10:
            return
        time.sleep(1)


def warm(*paths):
    """Reads every file under `paths` once, so each command starts with its input in the page
    cache (as the 100k runs always do) rather than with what the previous command left there."""
    for path in paths:
        subprocess.run(f"find {path} -type f -print0 | xargs -0 cat > /dev/null", shell=True, check=True)


def drops():
    """How often the page cache was dropped through /proc/sys/vm/drop_caches since boot. A
    sandbox may do that from outside at any time; a command timed across a drop reads from the
    disk what it would otherwise find cached, and its time says nothing about envstore."""
    for line in Path("/proc/vmstat").read_text().splitlines():
        if line.startswith("drop_pagecache "):
            return int(line.split()[1])
    return 0


DROPPED = []  # commands whose time includes a page cache drop (no retry left or possible)


def measure(what, thunk, inputs, reset=None):
    """Runs `thunk` (returning seconds and peak KiB) after warming `inputs` and letting the disk
    settle; a run during which the page cache was dropped is discarded and repeated (after
    `reset`, which restores the state the command expects), up to three times."""
    for attempt in range(4):
        before = drops()
        warm(*inputs)
        settle()
        t, kib = thunk()
        if drops() == before:
            return t, kib
        if reset is None or attempt == 3:
            DROPPED.append(what)
            log(f"  page cache dropped from outside during {what}; kept, flagged")
            return t, kib
        log(f"  page cache dropped from outside during {what} ({t:.2f} s); again")
        reset()


def run(exe, store, *args, runs=1, inputs=(), reset=lambda: None, between=None):
    """Median wall seconds and max peak RSS (MiB) of `envstore --store STORE -q ARGS`, each run
    after the disk settled and with `inputs` (and the store) read once. `reset` undoes what the
    command did, for a repeat (the default fits commands that change nothing); None: none.
    `between` restores the state before each further run (default: `reset`)."""
    times, rss = [], []
    argv = [str(exe), "--store", str(store), "-q", *map(str, args)]
    for i in range(runs):
        if i:
            (between or reset)()
        inputs_now = [*inputs, *([store] if Path(store).exists() else [])]
        t, kib = measure(f"envstore {args[0]} ({Path(store).name})", lambda: timed(argv), inputs_now, reset)
        times.append(t)
        rss.append(kib / 1024)
        log(f"  envstore {' '.join(map(str, args))}: {t:.2f} s, {kib / 1024:.1f} MiB")
    return statistics.median(times), max(rss)


def out(exe, store, *args):
    return subprocess.run([str(exe), "--store", str(store), "-q", *map(str, args)], check=True,
                          capture_output=True, text=True).stdout.strip()


def baseline(cmd, runs=1, inputs=(), after=None):
    """Median wall seconds of a shell command, under the same conditions as `run`."""
    times = []
    for _ in range(runs):
        times.append(measure(cmd, lambda: timed(cmd, shell=True), inputs, after or (lambda: None))[0])
        log(f"  {cmd}: {times[-1]:.2f} s")
        if after:
            after()
    return statistics.median(times)


def aside(work):
    """A function that moves a path out of the way into `work/trash`, deleted only when the run
    ends. On ext4 without a journal (this machine's root file system), an inode freed less than
    60 s ago (300 s while its table block is dirty) is skipped by the allocator after reading
    its table block (`recently_deleted` in fs/ext4/ialloc.c): a 1M-file ingest right after a
    million files were deleted took 128.6 s, alone 63.1 s, so nothing is deleted before a
    timed command."""
    trash = work / "trash"

    def move(path):
        path = Path(path)
        if path.exists():
            trash.mkdir(exist_ok=True)
            path.rename(trash / f"{len(list(trash.iterdir()))}-{path.name}")

    return move


def baselines(src, work, runs, reps):
    """What the machine does with the same files, measured beside envstore: hashing them (the
    floor of a warm materialize, verify, diff), copying them (writing one file per file, as
    ingest and a first materialize do), and archiving them into tar.zst (export, pack)."""
    find = f"find {src} -type f ! -name .complete -print0"
    copy, archive = work / "copy", work / "copy.tar.zst"
    move = aside(work)
    return {
        "b3sum": baseline(f"{find} | xargs -0 b3sum > /dev/null", runs, [src]),
        "cp -r": baseline(f"cp -r {src} {copy}", reps, [src], lambda: move(copy)),
        "tar | zstd -3": baseline(f"tar -C {src} -cf - . | zstd -q -3 -T0 > {archive}", reps, [src],
                                  lambda: move(archive)),
    }


# Which baseline each command's scaling is compared with.
BASELINE_OF = {
    "ingest": "cp -r",
    "verify": "b3sum",
    "diff (snapshot vs directory)": "b3sum",
    "export (tar.zst)": "tar | zstd -3",
    "prune (mark + sweep)": "b3sum",
    "pack": "tar | zstd -3",
    "materialize, first time": "cp -r",
    "materialize, warm": "b3sum",
}


def one_size(exe, files, runs, work):
    src = scale_workload(files)
    log(f"== {files} files")
    work = work / str(files)
    work.mkdir()
    move = aside(work)
    # Every command is a median of `runs` at 100k files, where one run takes about a second and
    # two runs an hour apart differed by 1.7x; at 1M files one run of each takes minutes.
    reps = runs if files <= 100_000 else 1
    rows = {}
    store = work / "store"
    base = baselines(src, work, runs, reps)
    rows["ingest"] = run(exe, store, "ingest", src, runs=reps, inputs=[src], reset=lambda: move(store))
    sid = out(exe, store, "ingest", src)
    out(exe, store, "pin", "bench", sid)
    rows["verify"] = run(exe, store, "verify", runs=reps)
    rows["diff (snapshot vs directory)"] = run(exe, store, "diff", sid, src, runs=reps, inputs=[src])
    export = work / "e.tar.zst"
    rows["export (tar.zst)"] = run(exe, store, "export", sid, "-o", export, runs=reps,
                                   reset=lambda: move(export))
    rows["prune (mark + sweep)"] = run(exe, store, "prune", "--older-than", "0s", runs=reps)
    # A store of its own (pack deletes the loose objects it packs: it runs last).
    fresh = work / "store-materialize"
    rows["materialize, first time"] = run(exe, fresh, "materialize", src, runs=reps, inputs=[src],
                                          reset=lambda: move(fresh))
    rows["materialize, warm"] = run(exe, fresh, "materialize", src, runs=runs, inputs=[src])

    # Push to a remote directory and pull into a fresh store (issue 25): what they track of
    # chunks and trees lives on disk, so memory stays flat as files grow.
    remote = work / "remote"
    rows["push (file://)"] = run(exe, store, "push", sid, "--to", f"file://{remote}", runs=reps,
                                 reset=lambda: move(remote))
    pulled = work / "store-pulled"
    rows["pull (file://)"] = run(exe, pulled, "pull", sid, "--from", f"file://{remote}",
                                 runs=reps, reset=lambda: move(pulled))

    def unpacked_store():
        move(store)
        out(exe, store, "pin", "bench", out(exe, store, "ingest", src))

    rows["pack"] = run(exe, store, "pack", runs=reps, reset=None, between=unpacked_store)
    return rows, base


def mutate(tree, k, rng):
    """Snapshot k of the 20: 5% of the files rewritten, 100 added."""
    files = sorted(p for p in tree.rglob("*.py"))
    for p in rng.sample(files, len(files) // 20):
        p.write_bytes(rng.randbytes(rng.randint(100, 3000)))
    new = tree / "lib" / "python3.11" / "site-packages" / f"added{k}"
    new.mkdir(parents=True, exist_ok=True)
    for i in range(100):
        (new / f"n{i}.py").write_bytes(rng.randbytes(500))


def store_of_20(exe, work, runs):
    log("== a store of 20 snapshots of 100k files")
    src = scale_workload(100000)
    tree = work / "tree"
    shutil.rmtree(tree, ignore_errors=True)
    subprocess.run(["cp", "-r", str(src), str(tree)], check=True)
    store = work / "store-20"
    shutil.rmtree(store, ignore_errors=True)
    rng = random.Random(7)
    ids = []
    for k in range(20):
        if k:
            mutate(tree, k, rng)
        ids.append(out(exe, store, "ingest", tree))
    aside(work)(tree)
    for k, sid in enumerate(ids[:10]):
        out(exe, store, "pin", f"s{k}", sid)
    rows = {}
    rows["verify (20 snapshots)"] = run(exe, store, "verify")
    rows["diff (first vs last)"] = run(exe, store, "diff", ids[0], ids[-1])
    rows["export (tar.zst)"] = run(exe, store, "export", ids[-1], "-o", work / "e.tar.zst")
    (work / "e.tar.zst").unlink(missing_ok=True)
    rows["prune --dry-run"] = run(exe, store, "prune", "--dry-run", "--older-than", "0s")
    rows["prune --dry-run --max-size 1"] = run(exe, store, "prune", "--dry-run", "--max-size", "1")
    rows["pack (20 snapshots)"] = run(exe, store, "pack", reset=None)
    rows["verify (packed)"] = run(exe, store, "verify")
    rows["materialize a packed snapshot"] = run(exe, store, "materialize", ids[3], reset=None)
    rows["prune (removes 10)"] = run(exe, store, "prune", "--older-than", "0s", reset=None)
    shutil.rmtree(store, ignore_errors=True)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--runs", type=int, default=3, help="runs of warm materialize and b3sum")
    ap.add_argument("--no-store", action="store_true", help="skip the 20-snapshot store")
    args = ap.parse_args()
    for tool in ["b3sum", "/usr/bin/time"]:
        if not shutil.which(tool):
            sys.exit(f"bench: needs {tool} (apt-get install b3sum time)")
    exe = build_envstore()
    sizes = [int(s) for s in args.sizes.split(",")]
    CACHE.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="scale-work-", dir=CACHE))
    try:
        results = {n: one_size(exe, n, args.runs, work) for n in sizes}
        store_rows = None if args.no_store else store_of_20(exe, work, args.runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    over = []
    print(f"\n## Peak RSS (MiB) and wall time at {', '.join(f'{n:,}' for n in sizes)} files\n")
    print("| command | " + " | ".join(f"{n:,} files: time | RSS" for n in sizes) + " |")
    print("|---|" + "---:|---:|" * len(sizes))
    for name in results[sizes[0]][0]:
        cells = []
        for n in sizes:
            t, rss = results[n][0][name]
            cells += [f"{t:.2f} s", f"{rss:.1f}"]
            if rss > LIMIT_MIB:
                over.append(f"{name} at {n}: {rss:.1f} MiB")
        print(f"| {name} | " + " | ".join(cells) + " |")
    for name in results[sizes[0]][1]:
        print(f"| baseline: {name.replace('|', chr(92) + '|')} | " + " | ".join(f"{results[n][1][name]:.2f} s | -" for n in sizes) + " |")

    print("\n| target | " + " | ".join(f"{n:,}" for n in sizes) + " | goal |")
    print("|---|" + "---:|" * len(sizes) + "---|")
    print("| warm materialize / b3sum | " + " | ".join(
        f"{results[n][0]['materialize, warm'][0] / results[n][1]['b3sum']:.2f}" for n in sizes) + " | <= 0.5 |")
    if len(sizes) > 1:
        small, big = sizes[0], sizes[-1]
        print(f"\nTime per file at {big:,} over time per file at {small:,}: envstore's, its baseline's, and "
              "envstore's over the baseline's (how much worse envstore scales than the machine does "
              "with the same files).\n")
        print("| command | envstore | baseline | ratio | envstore / baseline | goal |\n|---|---:|---|---:|---:|---|")
        for name in results[small][0]:
            mine = results[big][0][name][0] / results[small][0][name][0] * small / big
            b = BASELINE_OF[name]
            theirs = results[big][1][b] / results[small][1][b] * small / big
            print(f"| {name} | {mine:.2f} | {b.replace('|', chr(92) + '|')} | {theirs:.2f} | {mine / theirs:.2f} | <= 1.2 |")
    if store_rows:
        print("\n## A store of 20 snapshots of 100k files\n\n| command | time | peak RSS (MiB) |\n|---|---:|---:|")
        for name, (t, rss) in store_rows.items():
            print(f"| {name} | {t:.2f} s | {rss:.1f} |")
            if rss > LIMIT_MIB:
                over.append(f"{name} (20 snapshots): {rss:.1f} MiB")
    if DROPPED:
        print("\ntimed across a page cache drop from outside (no repeat possible or left): " + ", ".join(DROPPED))
    print("\npeak RSS over 64 MiB: " + (", ".join(over) if over else "none"))


if __name__ == "__main__":
    main()
