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
