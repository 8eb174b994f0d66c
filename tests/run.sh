#!/usr/bin/env bash
# The whole test suite: the Rust workspace (unit and integration tests driving the real binary)
# and the end-to-end tests of the build hook (real pip, uv, cmake, ninja from PyPI).
# Installs the Python tools the hook tests need if they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo nextest run --workspace --locked

python3 -m pip --version >/dev/null
missing=()
for module in pytest uv; do
  python3 -c "import $module" 2>/dev/null || missing+=("$module")
done
if [ ${#missing[@]} -gt 0 ]; then
  python3 -m pip install --quiet --disable-pip-version-check "${missing[@]}"
fi
python3 -m pytest -q tests/python tests/hook
