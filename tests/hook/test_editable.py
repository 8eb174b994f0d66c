"""Editable installs through the hook: `pip install -e .` twice, the second compiles nothing."""

import shutil
from pathlib import Path

import pytest

from test_pip import compiled, stable_paths

ROOT_SRC = Path(__file__).parent / "project" / "src"


def test_second_editable_install_compiles_nothing(build):
    first = build.pip_install(None, "-e")
    assert compiled(first) == 6, first
    assert build.works() == ["7", "8", "9"]
    # pip asks whether build_editable exists in its own process first (overlay only then).
    paths = set(stable_paths(first))
    assert len(paths) == 2, first

    second = build.pip_install(None, "-e")
    assert compiled(second) == 0, second
    assert set(stable_paths(second)) == paths
    assert build.works() == ["7", "8", "9"]


def edit(build):
    """An edit of one unit: b(3) becomes 108."""
    source = build.project / "src" / "bind_b.cpp"
    text = source.read_text()
    source.write_text(text.replace("return", "return 100 +", 1))


@pytest.mark.parametrize("frontend", ["pip", "uv"])
def test_scikit_build_core_editable_rebuild_works_under_build_isolation(build, frontend):
    """scikit-build-core's `editable.rebuild` runs `cmake --build` on import: with the `cmake`
    on PATH (scikit-build-core's rule: here the target venv's, activated), in the build
    directory whose build files name the build environment's cmake, ninja and pybind11. pip and
    uv delete that environment after the install, so stock, the import fails (the rebuild runs a
    cmake that is gone). Through the hook they name the stable copy: the edit is rebuilt on
    import, also after `envstore prune` (the build directory is a root)."""
    build._run([str(build.python), "-m", "pip", "install", "--quiet", "cmake", "ninja"], None)
    build.install(frontend, "-C", "editable.rebuild=true", "-e")
    assert build.works(activated=True) == ["7", "8", "9"]
    build.envstore("prune", "--older-than", "0s")
    edit(build)
    assert build.works(activated=True) == ["7", "108", "9"], "the import rebuilt the edited unit"

    # Stock, the same steps fail at the first import: the rebuild runs the build environment's
    # cmake, which is gone.
    build.stock()
    shutil.rmtree(build.project / "build")
    (build.project / "src" / "bind_b.cpp").write_text((ROOT_SRC / "bind_b.cpp").read_text())
    build.install(frontend, "-C", "editable.rebuild=true", "-e")
    with pytest.raises(AssertionError, match="pip-build-env|builds-v0"):
        build.works(activated=True)
