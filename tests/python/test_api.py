"""The Python API (issue 13): typed calls that run the bundled binary with --json."""

import os
import subprocess
from pathlib import Path

import pytest

import envstore


def test_materialize_returns_the_stable_path_of_a_directory(tmp_path):
    src = tmp_path / "src"
    (src / "pkg").mkdir(parents=True)
    (src / "pkg" / "mod.py").write_text("X = 1\n")
    env = envstore.materialize(src, store=tmp_path / "store")
    assert isinstance(env, envstore.Env)
    assert env.path.is_dir() and len(env.id) == 64
    assert (env.path / "pkg" / "mod.py").read_text() == "X = 1\n"
    again = envstore.materialize(src, store=tmp_path / "store")
    assert again.path == env.path and not again.built


def test_ensure_builds_once_per_key_and_reports_it(tmp_path):
    store = tmp_path / "store"
    req = tmp_path / "requirements.txt"
    req.write_text("a==1\n")
    cmd = ["sh", "-c", f'cp {req} "$ENVSTORE_OUT/"']
    first = envstore.ensure(cmd, key_files=[req], name="deps", store=store)
    assert first.built and first.key and (first.path / "requirements.txt").read_text() == "a==1\n"
    second = envstore.ensure(cmd, key_files=[req], name="deps", store=store)
    assert not second.built and second.path == first.path
    req.write_text("a==2\n")
    third = envstore.ensure(cmd, key_files=[req], name="deps", store=store)
    assert third.built and third.path != first.path


def test_ensure_returns_while_a_process_the_build_started_holds_stderr(tmp_path):
    # Issue 26: the build leaves a background process holding the command's stderr; the CLI
    # returns at once, and so must the API (it read the pipe until EOF, for as long as the
    # background process lived).
    import threading
    import time

    done = threading.Event()
    result = {}

    def call():
        result["env"] = envstore.ensure(
            ["sh", "-c", 'sleep 60 >&2 & echo built > "$ENVSTORE_OUT/f"'], store=tmp_path / "store"
        )
        done.set()

    started = time.monotonic()
    threading.Thread(target=call, daemon=True).start()
    # A hang bound, not a speed target: the call takes about a second.
    assert done.wait(45), "envstore.ensure() waited on the background process's stderr"
    assert (result["env"].path / "f").read_text() == "built\n"
    assert time.monotonic() - started < 45


def test_errors_are_exceptions_with_the_commands_message_and_code(tmp_path):
    with pytest.raises(envstore.EnvstoreError) as failed:
        envstore.ensure(["sh", "-c", "exit 3"], store=tmp_path / "store")
    assert failed.value.returncode == 3
    assert "nothing was recorded" in str(failed.value)
    with pytest.raises(envstore.EnvstoreError) as missing:
        envstore.materialize(tmp_path / "no-such-dir", store=tmp_path / "store")
    assert missing.value.returncode == 2 and "no-such-dir" in str(missing.value)


def test_venv_gives_a_working_read_only_venv_and_reuses_it(tmp_path):
    store = tmp_path / "store"
    req = tmp_path / "requirements.txt"
    req.write_text("# nothing to install\n")
    env = envstore.venv([req], name="dev", store=store)
    assert env.built
    out = subprocess.run([str(env.path / "bin" / "python"), "-c", "import sys; print(sys.prefix)"],
                         check=True, capture_output=True, text=True)
    assert out.stdout.strip() == str(env.path)
    assert os.stat(env.path).st_mode & 0o222 == 0, "read-only"
    again = envstore.venv([req], name="dev", store=store)
    assert not again.built and again.path == env.path
