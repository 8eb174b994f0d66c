"""The mechanism behind ``envstore.build``: find the build environment's temporary prefixes,
replace them with stable copies made by ``envstore``, and import the wrapped backend.

See docs/integration.md for what is changed and why.
"""

import fcntl
import importlib
import json
import os
import re
import subprocess
import tempfile
import sys
import time

from . import find_binary

DEFAULT_BACKEND = "scikit_build_core.build"

OPTIONAL_HOOKS = {
    "get_requires_for_build_wheel",
    "get_requires_for_build_sdist",
    "get_requires_for_build_editable",
    "prepare_metadata_for_build_wheel",
    "prepare_metadata_for_build_editable",
    "build_editable",
}

# pip's isolated build environments: /tmp/pip-build-env-XXXX/{overlay,normal}.
_PIP_PREFIX = re.compile(r"^(?P<prefix>.*/pip-build-env-[^/]+/(?:overlay|normal))(?:/|$)")

# Venv-style build environments: uv (~/.cache/uv/builds-v0/.tmpXXXX), pip's venv isolation
# (pip-build-env-XXXX), pypa/build (build-env-XXXX).
_EPHEMERAL_VENV = re.compile(r"/(?:pip-build-env-[^/]+|build-env-[^/]+|builds-v0/\.tmp[^/]+)/?$")

# What frontends leave in a venv-style build environment's root besides the venv: uv writes
# each hook's result there (`build_wheel.txt`, `metadata_directory`). Not part of the env.
_VENV_EXCLUDES = ["/*.txt", "/metadata_directory", "/CACHEDIR.TAG"]

_state = {"done": False, "mapping": {}, "leases": []}


def _warn(message):
    print(f"envstore: warning: {message}; building without a stable environment", file=sys.stderr)


def _log(message):
    if os.environ.get("ENVSTORE_HOOK_VERBOSE"):
        print(f"envstore: {message}", file=sys.stderr)


def backend_name():
    """``[tool.envstore] backend`` from the project's pyproject.toml, else scikit-build-core."""
    try:
        try:
            import tomllib
        except ImportError:  # Python < 3.11: scikit-build-core depends on tomli there.
            import tomli as tomllib
        with open("pyproject.toml", "rb") as f:
            config = tomllib.load(f)
        return config.get("tool", {}).get("envstore", {}).get("backend", DEFAULT_BACKEND)
    except (OSError, ImportError, ValueError):
        return DEFAULT_BACKEND


def backend():
    return importlib.import_module(backend_name())


def ephemeral_prefixes():
    """The temporary prefixes of this build environment, in ``sys.path`` order."""
    found = []
    for entry in sys.path:
        match = _PIP_PREFIX.match(entry)
        if match and match["prefix"] not in found and os.path.isdir(match["prefix"]):
            found.append(match["prefix"])
    return found


class HookError(Exception):
    pass


def _envstore(exe, *args):
    # Temporary files, not pipes: read once envstore has exited, whoever else holds them.
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        code = subprocess.run([exe, "--json", "-q", *args], stdout=out, stderr=err).returncode
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read().decode("utf-8", "replace")
    if code != 0:
        raise HookError(f"`envstore {' '.join(args)}` failed: {stderr.strip()}")
    return json.loads(stdout)


def ephemeral_venv():
    """The temporary venv this hook runs in, if it runs in one."""
    if sys.prefix == sys.base_prefix or not os.path.isfile(os.path.join(sys.prefix, "pyvenv.cfg")):
        return None
    return sys.prefix if _EPHEMERAL_VENV.search(sys.prefix) else None


def take_lease(store, snapshot_id, timeout=60.0):
    """A shared flock on <store>/leases/<id>, kept open until this process exits (the lease
    protocol of docs/maintenance.md). The descriptor is inheritable: the lease survives the
    re-exec into a stable venv and lasts while child processes (cmake, ninja) run. Returns
    False if it could not be had in time."""
    path = os.path.join(store, "leases", snapshot_id)
    deadline = time.monotonic() + timeout
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        os.set_inheritable(fd, True)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
            continue
        # Prune removes the lease files of what it deletes: only a lock on the file the path
        # names now counts.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            _state["leases"].append(fd)
            return True
        os.close(fd)


def stable_copy(exe, prefix, *ingest_flags):
    """Stores `prefix`, leases it, materializes it; returns the stable path."""
    snapshot = _envstore(exe, "ingest", *ingest_flags, prefix)
    if not take_lease(snapshot["store"], snapshot["id"]):
        raise HookError(f"could not take a lease on {snapshot['id']} in time")
    path = _envstore(exe, "materialize", snapshot["id"])["path"]
    _state.setdefault("used", []).append((path, "new" if snapshot.get("created") else "reused"))
    return path


def _say_what_was_done():
    """One line per build, by default (pip shows it with -v, uv with -v): which environments,
    new or reused, at which stable paths. ENVSTORE_HOOK_VERBOSE adds the detail."""
    used = _state.get("used") or []
    if used and os.environ.get("ENVSTORE_HOOK_QUIET", "").lower() not in ("1", "true", "yes"):
        listed = ", ".join(f"{path} ({how})" for path, how in used)
        print(f"envstore: building against {len(used)} stable environment{'s' if len(used) != 1 else ''}: {listed}", file=sys.stderr)


def _remap(path, mapping):
    for old, new in mapping.items():
        if path == old or path.startswith(old + os.sep):
            return new + path[len(old):]
    return path


def _reexec(venv, stable):
    """Runs this very hook invocation again with the stable venv's interpreter, so sys.prefix,
    sys.executable, sysconfig's paths and everything derived from them are stable."""
    argv = getattr(sys, "orig_argv", None)
    if not argv:
        raise HookError("this Python has no sys.orig_argv (3.10+ is needed for venv-style builds)")
    python = os.path.join(stable, "bin", os.path.basename(sys.executable))
    if not os.path.exists(python):
        python = os.path.join(stable, "bin", "python")
    env = dict(os.environ)
    env["VIRTUAL_ENV"] = stable
    env["ENVSTORE_HOOK_STABLE"] = stable
    env["PATH"] = os.pathsep.join(_remap(p, {venv: stable}) for p in env.get("PATH", "").split(os.pathsep))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(python, [python] + list(argv[1:]), env)


def redirect():
    """Point this process at stable copies of the build environment. Never raises."""
    if _state["done"]:
        return
    _state["done"] = True
    if os.environ.get("ENVSTORE_HOOK", "1").lower() in ("0", "false", "no", "off"):
        _log("ENVSTORE_HOOK is off")
        return
    start = time.monotonic()
    try:
        if os.environ.get("ENVSTORE_HOOK_STABLE") == sys.prefix:
            _log(f"running in the stable environment {sys.prefix}")
            return
        venv = ephemeral_venv()
        prefixes = ephemeral_prefixes()
        if venv is None and not prefixes:
            _log("no temporary build environment found (build isolation off?)")
            return
        exe = find_binary()
        if exe is None:
            _warn("the envstore binary was not found")
            return
        if venv is not None:
            flags = ["--relocate"] + [f"--exclude={pattern}" for pattern in _VENV_EXCLUDES]
            stable = stable_copy(exe, venv, *flags)
            _log(f"{venv} -> {stable} (venv; {time.monotonic() - start:.3f}s)")
            _say_what_was_done()
            _reexec(venv, stable)  # does not return
        # The fast path: a prefix is keyed on its RECORD files and this interpreter, and
        # reused after a metadata check, without hashing (envstore ingest --by-records).
        interpreter = f"--key={sys.implementation.cache_tag} {sys.version}"
        mapping = {prefix: stable_copy(exe, prefix, "--by-records", interpreter) for prefix in prefixes}
    except HookError as error:
        _warn(str(error))
        return
    except Exception as error:  # noqa: BLE001 - the contract: a build never fails because of the hook
        _warn(f"{type(error).__name__}: {error}")
        return
    _state["mapping"] = mapping
    sys.path[:] = [_remap(p, mapping) for p in sys.path]
    for var in ("PATH", "PYTHONPATH"):
        if var in os.environ:
            os.environ[var] = os.pathsep.join(_remap(p, mapping) for p in os.environ[var].split(os.pathsep))
    # Python processes the build starts (meson's `run_command(py, ...)`, CMake's
    # `execute_process`) get pip's build environment from a sitecustomize.py in a temporary
    # directory on PYTHONPATH, which names the temporary prefixes: put the stable copies'
    # site-packages first, so they import from the stable paths too.
    stable_sites = [p for p in sys.path if any(p == new or p.startswith(new + os.sep) for new in mapping.values())]
    if stable_sites:
        rest = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p not in stable_sites]
        os.environ["PYTHONPATH"] = os.pathsep.join(stable_sites + rest)
    # Anything already imported from the temporary prefixes (but this package) is imported
    # again from the stable copies.
    for name, module in list(sys.modules.items()):
        origin = getattr(module, "__file__", None) or ""
        if name != "envstore" and not name.startswith("envstore.") and _remap(origin, mapping) != origin:
            del sys.modules[name]
    importlib.invalidate_caches()
    for old, new in mapping.items():
        _log(f"{old} -> {new}")
    _log(f"redirected in {time.monotonic() - start:.3f}s")
    _say_what_was_done()


def _build_dirs(config_settings):
    """The persistent build directories this build may use: ``build-dir`` (or ``builddir``)
    from the config settings, else ``[tool.scikit-build] build-dir`` from pyproject.toml, else
    meson-python's default for editable installs (``build/cp311``). A placeholder
    (``build/{wheel_tag}``) is cut off: the scan below finds the directory."""
    candidates = []
    for key in ("build-dir", "build_dir", "builddir"):
        value = (config_settings or {}).get(key)
        if isinstance(value, str) and value:
            candidates.append(value)
    try:
        import tomllib

        with open("pyproject.toml", "rb") as f:
            value = tomllib.load(f).get("tool", {}).get("scikit-build", {}).get("build-dir")
        if isinstance(value, str) and value:
            candidates.append(value)
    except (OSError, ImportError, ValueError):
        pass
    if not candidates and backend_name() == "mesonpy":
        # meson-python's own default for editable installs: build/<interpreter tag>.
        candidates.append("build/{tag}")
    dirs = []
    for value in candidates:
        head = value.split("{", 1)[0]
        if head != value:
            head = os.path.dirname(head.rstrip("/")) if not head.endswith("/") else head
        path = os.path.abspath(head or ".")
        if os.path.isdir(path) and path not in dirs:
            dirs.append(path)
    return dirs


def register_roots(config_settings):
    """After a build: record the persistent build directories that now use stable copies as
    roots, so ``envstore prune`` keeps those environments while the directories use them.
    Best effort and quiet: a build never fails because of this."""
    if not (_state["mapping"] or os.environ.get("ENVSTORE_HOOK_STABLE") == sys.prefix):
        return
    try:
        dirs = _build_dirs(config_settings)
        exe = find_binary() if dirs else None
        if exe is None:
            return
        found = _envstore(exe, "roots", "--add", "--scan", *dirs)
        for entry in found:
            count = len(entry["snapshots"])
            _log(f"root: {entry['dir']} uses {count} environment{'' if count == 1 else 's'}")
    except Exception as error:  # noqa: BLE001 - the contract: a build never fails because of the hook
        _log(f"could not record the build directory as a root: {error}")
