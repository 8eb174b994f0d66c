"""`python -m build --wheel` twice with the envstore.build hook. pypa/build makes a temporary
venv (build-env-XXXX) for the build requirements, like uv: the hook stores it relocatably and
re-runs itself in the stable copy, so the second build compiles nothing."""

import subprocess

from test_pip import compiled
from test_uv import venv_paths


def test_second_pypa_build_compiles_nothing(build):
    subprocess.run(
        [str(build.python), "-m", "pip", "install", "--quiet", "build"],
        env=build.env, check=True,
    )
    cmd = [str(build.python), "-m", "build", "--wheel", "--outdir", "dist", "."]
    first = build._run(cmd, None)
    assert compiled(first) == 6, first
    second = build._run(cmd, None)
    assert compiled(second) == 0, second
    paths = venv_paths(first)
    assert paths and paths == venv_paths(second), "two temporary venvs, one stable path"
    assert all(p.startswith(str(build.store / "envs")) for p in paths)
    cache = next(build.project.glob("build/*/CMakeCache.txt")).read_text()
    assert "build-env-" not in cache, "nothing in the CMake cache points at the temporary venv"
    assert list((build.project / "dist").glob("envstore_demo-*.whl"))
