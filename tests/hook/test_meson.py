"""meson-python through the hook (`[tool.envstore] backend = "mesonpy"`), with a persistent
build directory: the second `pip install .` (and the second editable install) compiles
nothing, and the build directory is a root of the environments it uses."""

import json
import re
import subprocess

import pytest

from conftest import Build


def compiled(log):
    return len(re.findall(r"Compiling C\+\+ object", log))


@pytest.fixture
def meson(tmp_path, wheelhouse, envstore_bin):
    b = Build(tmp_path, wheelhouse, project="meson_project")
    b.bin = envstore_bin
    return b


def works(build):
    out = subprocess.run(
        [str(build.python), "-c", "import _mdemo; print(_mdemo.a(3), _mdemo.b(3))"],
        capture_output=True, text=True, check=True,
    )
    return out.stdout.split()


@pytest.mark.parametrize("editable", [False, True], ids=["wheel", "editable"])
def test_second_meson_python_install_compiles_nothing(meson, editable):
    flags = ["--config-settings=build-dir=build"] + (["-e"] if editable else [])
    first = meson.pip_install(None, *flags)
    assert compiled(first) == 3, first
    assert works(meson) == ["4", "6"]
    second = meson.pip_install(None, *flags)
    assert compiled(second) == 0, second
    assert works(meson) == ["4", "6"]
    roots = json.loads(meson.envstore("--json", "roots"))
    assert any(r["dir"].endswith("/build") and all(s["live"] for s in r["snapshots"]) for r in roots), roots
