"""`uv pip install` twice with the envstore.build hook. uv builds in a temporary venv
(~/.cache/uv/builds-v0/.tmpXXXX) and runs the hook with that venv's interpreter: the hook
stores the venv relocatably and re-runs itself in the stable copy."""

import re

from test_pip import compiled


def venv_paths(log):
    return re.findall(r"envstore: \S+ -> (\S+) \(venv", log)


def test_second_uv_install_compiles_nothing(build):
    first = build.uv_install()
    assert compiled(first) == 6, first
    assert build.works() == ["7", "8", "9"]
    second = build.uv_install()
    assert compiled(second) == 0, second
    paths = venv_paths(first)
    assert paths and paths == venv_paths(second), "two temporary venvs, one stable path"
    assert all(p.startswith(str(build.store / "envs")) for p in paths)
    assert build.works() == ["7", "8", "9"]
    cache = next(build.project.glob("build/*/CMakeCache.txt")).read_text()
    assert "builds-v0" not in cache, "nothing in the CMake cache points at the temporary venv"


def test_switching_one_build_directory_between_pip_and_uv_recompiles_and_doctor_says_so(build):
    """pip's build environment (two prefixes) and uv's (a virtualenv) differ in layout, so they
    are different environments at different paths: switching one build directory between the
    two recompiles everything (docs/integration.md says so), and `envstore doctor` names the
    switch instead of blaming new requirements."""
    first = build.pip_install()
    assert compiled(first) == 6, first
    switched = build.uv_install()
    assert compiled(switched) == 6, switched
    said = build.envstore("doctor", str(build.project))
    assert "the frontend changed: it was built in pip's prefixes and now in a virtualenv" in said, said
    assert "new requirements resolved" not in said, said
    # What each environment holds, by name.
    assert "scikit-build-core" in said and "pybind11" in said, said
