"""meson-python through the hook (`[tool.envstore] backend = "mesonpy"`), with a persistent
build directory: the second `pip install .` (and the second editable install) compiles
nothing, and the build directory is a root of the environments it uses."""

import json
import re
import shutil
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
        [str(build.python), "-c", "import _mdemo; print('demo:', _mdemo.a(3), _mdemo.b(3))"],
        capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    (line,) = [line for line in out.stdout.splitlines() if line.startswith("demo: ")]
    return line.split()[1:]


@pytest.mark.parametrize("frontend", ["pip", "uv"])
@pytest.mark.parametrize("editable", [False, True], ids=["wheel", "editable"])
def test_second_meson_python_install_compiles_nothing(meson, editable, frontend):
    """Through the hook the second install with a persistent build directory compiles
    nothing (stock, it recompiles everything, or fails outright where the build files name
    headers of the deleted environment: contourpy, PyWavelets; see the control below)."""
    flags = ["-C", "build-dir=build"] + (["-e"] if editable else [])
    first = meson.install(frontend, *flags)
    assert compiled(first) == 3, first
    assert works(meson) == ["4", "6"]
    second = meson.install(frontend, *flags)
    assert compiled(second) == 0, second
    assert works(meson) == ["4", "6"]
    roots = json.loads(meson.envstore("--json", "roots"))
    assert any(r["dir"].endswith("/build") and all(s["live"] for s in r["snapshots"]) for r in roots), roots


def test_control_stock_meson_python_second_install_recompiles_everything(meson):
    """The control of the test above: the same project with stock meson-python."""
    meson.stock()
    flags = ["-C", "build-dir=build"]
    assert compiled(meson.install("pip", *flags)) == 3
    assert compiled(meson.install("pip", *flags)) == 3, "stock: the new environment's paths"


def loader_commands(build):
    """The rebuild command meson-python's editable loader runs on import."""
    (loader,) = build.venv.glob("lib/python*/site-packages/_envstore_meson_demo_editable_loader.py")
    return re.findall(r"'(/[^']*ninja[^']*)'", loader.read_text())


@pytest.mark.parametrize("frontend", ["pip", "uv"])
def test_meson_python_editable_rebuilds_on_import_under_build_isolation(meson, frontend):
    """meson-python rebuilds an editable install on import with the ninja of its build
    environment; pip and uv delete that environment after the install, so the stock editable
    install fails at its first import (meson-python#784, uv#10214). Through the hook the loader
    names the environment's stable copy: the import after an edit rebuilds and works, also
    after `envstore prune` (the build directory is a root of what it uses)."""
    meson.install(frontend, "-e")
    commands = loader_commands(meson)
    assert commands, "the loader names a ninja"
    assert all(c.startswith(str(meson.store / "envs")) for c in commands), commands
    assert works(meson) == ["4", "6"]

    meson.envstore("prune", "--older-than", "0s")
    source = meson.project / "src" / "bind_a.cpp"
    source.write_text(source.read_text().replace("x + 1", "x + 10"))
    assert works(meson) == ["13", "6"], "the import rebuilt the edited unit"

    # The control: stock, the first import fails (the loader's ninja is gone).
    meson.stock()
    shutil.rmtree(meson.project / "build")
    meson.install(frontend, "-e")
    with pytest.raises(AssertionError, match=r"(pip-build-env|builds-v0)\S*ninja"):
        works(meson)
