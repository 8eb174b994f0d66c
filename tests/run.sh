#!/usr/bin/env bash
# The whole test suite: the Rust workspace (unit and integration tests driving the real binary)
# and the end-to-end tests of the build hook (real pip, uv, cmake, ninja from PyPI).
# Installs the Python tools the hook tests need if they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# The remote tests run against real engines on 127.0.0.1: a 3-node SeaweedFS cluster (S3) and
# nginx WebDAV. Started here when they are installed (.ci/run installs them) and not running.
if [ -z "${ENVSTORE_TEST_S3:-}" ] && command -v weed >/dev/null && command -v nginx >/dev/null; then
  remotes_dir=$(mktemp -d "${TMPDIR:-/tmp}/envstore-remotes.XXXXXX")
  trap 'bash .ci/remotes.sh stop "$remotes_dir" >/dev/null 2>&1; rm -rf "$remotes_dir"' EXIT
  bash .ci/remotes.sh start "$remotes_dir" >/dev/null
  # shellcheck disable=SC1091
  source "$remotes_dir/env"
fi

# The test that kills a SeaweedFS volume server runs alone, after the others.
cargo nextest run --workspace --locked -E 'not test(seaweed_volume_killed)'
cargo nextest run --workspace --locked -E 'test(seaweed_volume_killed)'

python3 -m pip --version >/dev/null
missing=()
for module in pytest uv; do
  python3 -c "import $module" 2>/dev/null || missing+=("$module")
done
if [ ${#missing[@]} -gt 0 ]; then
  python3 -m pip install --quiet --disable-pip-version-check "${missing[@]}"
fi
python3 -m pytest -q tests/python tests/hook
