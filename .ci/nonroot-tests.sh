#!/usr/bin/env bash
# The tests' non-root paths, run as an unprivileged user (CI runs as root, where root passes
# every permission check and those paths would never run). The test binary and the envstore
# binary are copied where `nobody` can read them; CI is unset for this run only, so a test
# that needs root (a tmpfs, a bind mount) takes its non-root branch instead of failing.
set -euo pipefail
cd "$(dirname "$0")/.."
groups="${*:-trust:: bad_input:: surfaces:: materialize:: keys::}"
test_bin=$(cargo test -p envstore-cli --test cli --no-run --locked --message-format=json 2>/dev/null |
  python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "cli" and m.get("executable"):
        print(m["executable"])')
cargo build -p envstore-cli --locked -q
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
work=$(mktemp -d /tmp/envstore-nonroot.XXXXXX)
trap 'rm -rf "$work"' EXIT
chmod 0755 "$work"
cp "$test_bin" "$work/cli-tests"
cp "$target/debug/envstore" "$work/envstore"
mkdir -m 1777 "$work/tmp"
echo "running as uid 65534: $groups"
# shellcheck disable=SC2086
setpriv --reuid=65534 --regid=65534 --clear-groups -- \
  env -u CI HOME="$work/tmp" TMPDIR="$work/tmp" ENVSTORE_TEST_BIN="$work/envstore" \
  "$work/cli-tests" $groups --test-threads=2 \
  --skip venv_builds_a_venv_keyed_on_its_requirements_with_uv_or_pip
# (That test compares a venv made with uv against one made without: the uv on root's PATH is
# not runnable by this user, so both would be made with pip.)
