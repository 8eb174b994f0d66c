"""envstore: stable, content-named homes for build and runtime environments.

This package ships the ``envstore`` command-line tool and ``envstore.build``, a PEP 517 build
backend that wraps scikit-build-core (or any other backend) so that a build sees a stable,
content-named copy of its build environment instead of a new temporary directory every time.
"""

import os
import shutil
import sys
import sysconfig
from pathlib import Path

__all__ = ["find_binary"]


def find_binary():
    """The path of the ``envstore`` executable installed with this package.

    Order: ``$ENVSTORE_BIN``; the scripts directory of the prefix this package is installed in
    (where pip puts the binary); ``envstore`` on ``PATH``. Returns None if none is found.
    """
    explicit = os.environ.get("ENVSTORE_BIN")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    exe = "envstore.exe" if os.name == "nt" else "envstore"
    here = Path(__file__).resolve().parent
    # site-packages/envstore -> the prefix that holds site-packages: try each ancestor's scheme.
    for prefix in here.parents:
        scripts = sysconfig.get_path("scripts", vars={"base": str(prefix), "platbase": str(prefix)})
        candidate = Path(scripts) / exe
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
        if prefix == Path(sys.base_prefix) or len(prefix.parts) <= 1:
            break
    return shutil.which(exe)


# --- The Python API: the envstore command, called with --json. -------------------------------
# One implementation of the store (the binary); this only runs it and reads its JSON.

import json as _json
import subprocess as _subprocess
import tempfile as _tempfile
from dataclasses import dataclass as _dataclass
from typing import Iterable, Mapping, Optional, Sequence, Union

__all__ += ["Env", "EnvstoreError", "materialize", "ensure", "venv"]

PathLike = Union[str, "os.PathLike[str]"]


class EnvstoreError(Exception):
    """The envstore command failed; the message is the command's own (what was wrong and what
    to do). ``returncode`` is its exit code (2 for bad input; a failed ``ensure`` build passes on
    the build's)."""

    def __init__(self, message: str, returncode: int):
        super().__init__(message)
        self.returncode = returncode


@_dataclass(frozen=True)
class Env:
    """An environment at its stable path.

    ``path``: where it is (read-only, content-named); ``id``: its snapshot id; ``key``: the key
    it was built for (``ensure`` and ``venv``), else None; ``built``: whether this call built it.
    """

    path: Path
    id: str
    key: Optional[str] = None
    built: bool = False


def _run(args: Sequence[str], store: Optional[PathLike], extra_env: Optional[Mapping[str, str]] = None) -> dict:
    binary = find_binary()
    if binary is None:
        raise EnvstoreError("the envstore binary was not found; reinstall the envstore package or set ENVSTORE_BIN", 2)
    env = dict(os.environ)
    if store is not None:
        env["ENVSTORE_DIR"] = os.fspath(store)
    if extra_env:
        env.update(extra_env)
    # Output goes to temporary files, not pipes: a background process the build started may
    # inherit the command's stderr and hold it open long after envstore exits, and a pipe is
    # read until every holder closes it. A file is read once envstore itself has exited.
    with _tempfile.TemporaryFile() as out, _tempfile.TemporaryFile() as err:
        returncode = _subprocess.run([binary, "--json", *args], stdout=out, stderr=err, env=env).returncode
        out.seek(0)
        err.seek(0)
        stdout = out.read()
        stderr = err.read().decode("utf-8", "replace")
    proc = _subprocess.CompletedProcess(args, returncode, stdout, stderr)
    if proc.returncode != 0:
        errors = [line for line in stderr.splitlines() if "error:" in line]
        message = errors[-1].split("error:", 1)[1].strip() if errors else stderr.strip()
        raise EnvstoreError(message or f"envstore exited with {proc.returncode}", proc.returncode)
    return _json.loads(proc.stdout)


def materialize(path: PathLike, *, relocate: bool = False, store: Optional[PathLike] = None) -> Env:
    """Stores the directory ``path`` (when new) and returns it at its stable path."""
    args = ["materialize"]
    if relocate:
        args.append("--relocate")
    out = _run([*args, "--", os.fspath(path)], store)
    return Env(path=Path(out["path"]), id=out["id"], built=bool(out.get("created")))


def ensure(
    cmd: Sequence[str],
    *,
    key_files: Iterable[PathLike] = (),
    keys: Iterable[str] = (),
    env: Iterable[str] = (),
    name: Optional[str] = None,
    relocate: bool = False,
    store: Optional[PathLike] = None,
) -> Env:
    """The environment built by ``cmd`` for these inputs: built (``cmd`` run with
    ``ENVSTORE_OUT`` naming the directory to fill) only when the key files' contents, the
    ``keys`` texts, the values of the ``env`` variables or ``cmd`` change; otherwise the earlier
    build, at once. See ``envstore ensure --help``."""
    args = ["ensure"]
    for f in key_files:
        args += ["--key-file", os.fspath(f)]
    for k in keys:
        args += ["--key", k]
    for var in env:
        args += ["--key-env", var]
    if name is not None:
        args += ["--name", name]
    if relocate:
        args.append("--relocate")
    out = _run([*args, "--", *cmd], store)
    return Env(path=Path(out["path"]), id=out["id"], key=out["key"], built=out["built"])


def venv(
    requirements: Iterable[PathLike] = (),
    *,
    python: Optional[PathLike] = None,
    name: Optional[str] = None,
    store: Optional[PathLike] = None,
) -> Env:
    """A virtualenv with ``requirements`` installed, built only when they (or the interpreter,
    or the installer) change. Read-only: to change it, change the requirements. ``python``
    defaults to the interpreter running this code."""
    args = ["venv"]
    for r in requirements:
        args += ["-r", os.fspath(r)]
    # Default: this interpreter (a real binary; `python3` on PATH may be a slow shim).
    args += ["--python", os.fspath(python) if python is not None else sys.executable]
    if name is not None:
        args += ["--name", name]
    out = _run(args, store)
    return Env(path=Path(out["path"]), id=out["id"], key=out["key"], built=out["built"])
