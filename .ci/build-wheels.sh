#!/usr/bin/env bash
# Builds what a package index accepts: a manylinux2014 x86_64 wheel (the envstore binary and
# the `envstore` Python package, linked by zig against an old glibc so it runs on any Linux
# from 2014 on) and a source distribution, then checks the wheel with auditwheel.
#
#   bash .ci/build-wheels.sh OUTDIR
#
# Needs cargo and python3 with venv; maturin, ziglang and auditwheel come from PyPI into a
# private virtualenv. docs/release.md explains the other targets.
set -euo pipefail
out=${1:?usage: .ci/build-wheels.sh OUTDIR}
cd "$(dirname "$0")/.."
mkdir -p "$out"
out=$(cd "$out" && pwd)
echo "build-wheels: a release build linked by zig: ~5-10 minutes on 2 cores; zig keeps its" \
     "caches under ~/.cache/zig, cargo its build under target/" >&2
tools=$(mktemp -d "${TMPDIR:-/tmp}/envstore-wheels.XXXXXX")
trap 'rm -rf "$tools"' EXIT
python3 -m venv "$tools/venv"
"$tools/venv/bin/pip" install --quiet --disable-pip-version-check "maturin>=1.5,<2" "ziglang==0.13.0" auditwheel
export PATH="$tools/venv/bin:$PATH"

maturin build --release --zig --compatibility manylinux2014 --target x86_64-unknown-linux-gnu --out "$out"
maturin sdist --out "$out"
wheel=$(ls -t "$out"/envstore-*manylinux*.whl | head -n 1)
report=$(auditwheel show "$wheel")
echo "$report"
case "$report" in
  *'"manylinux_2_17_x86_64"'*) ;;
  *) echo "build-wheels: auditwheel does not find $wheel manylinux_2_17 (manylinux2014)" >&2; exit 1 ;;
esac
ls -l "$out"
