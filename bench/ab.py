# Interleaved A/B of two envstore binaries on one source: fresh store per run, sync around
# each, median wall time. Usage: OLD=... NEW=... [AB_DIR=store parent] python3 bench/ab.py SRC RUNS MODES
import os, shutil, statistics, subprocess, sys, time
src = sys.argv[1]; runs = int(sys.argv[2]); modes = sys.argv[3].split(",")
bins = {"old": os.environ["OLD"], "new": os.environ["NEW"]}
res = {}
for i in range(runs):
    for mode in modes:
        for name, b in (bins.items() if i % 2 == 0 else reversed(list(bins.items()))):
            store = os.environ.get("AB_DIR", "/tmp") + f"/ab-store-{name}"
            if os.path.exists(store):
                subprocess.run(["chmod", "-R", "u+w", store]); shutil.rmtree(store)
            subprocess.run(["sync"])
            t = time.perf_counter()
            subprocess.run([b, "--store", store, "materialize", "--link-mode", mode, src], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            subprocess.run(["sync"])
            res.setdefault((mode, name), []).append(time.perf_counter() - t)
for (mode, name), v in sorted(res.items()):
    print(f"{mode:9} {name}: median {statistics.median(v)*1000:7.1f} ms  (incl. sync) runs {[round(x*1000) for x in v]}")
