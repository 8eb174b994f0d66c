"""`pip install .` twice with the envstore.build hook: the second compiles nothing.

These are end-to-end: real pip, scikit-build-core, pybind11, cmake and ninja from PyPI, a real
C++ build. They count compiled translation units in pip's verbose log.
"""

import json
import re
import shutil


def compiled(log):
    return len(re.findall(r"Building CXX object", log))


def stable_paths(log):
    return re.findall(r"envstore: \S+ -> (\S+)", log)


def test_second_pip_install_compiles_nothing(build):
    first = build.pip_install()
    assert compiled(first) == 6, first
    assert build.works() == ["7", "8", "9"]
    paths = stable_paths(first)
    assert len(paths) == 2, "overlay and normal, each materialized separately"
    # The one line the hook prints by default (issue 27): what it did, new or reused.
    said = [line for line in first.splitlines() if "envstore: building against" in line]
    assert said and "(new)" in said[0], first
    assert all(p.startswith(str(build.store / "envs")) for p in paths)

    second = build.pip_install()
    assert compiled(second) == 0, second
    said = [line for line in second.splitlines() if "envstore: building against 2 stable environments" in line]
    assert said and "(new)" not in said[0] and "(reused)" in said[0], second
    assert stable_paths(second) == paths, "the same environment lands at the same paths"
    assert "clearing cache" not in second.lower()
    assert build.works() == ["7", "8", "9"]
    cache = next(build.project.glob("build/*/CMakeCache.txt")).read_text()
    assert "pip-build-env" not in cache, "nothing in the CMake cache points at the temporary env"


def test_a_changed_build_requirement_gets_a_new_environment_and_a_real_rebuild(build):
    build.pip_install()
    pyproject = build.project / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"pybind11"]', '"pybind11==3.0.1"]'))
    log = build.pip_install()
    assert compiled(log) >= 4, "the pybind11 translation units rebuild against the other pybind11"
    assert build.works() == ["7", "8", "9"]
    snapshots = json.loads(build.envstore("ls", "--json"))
    assert len(snapshots) == 3, "a new overlay; the cmake/ninja prefix is reused"


def test_two_projects_share_the_stored_cmake_prefix(build):
    first = build.pip_install()
    before = json.loads(build.envstore("stats", "--json"))
    other = build.root / "other"
    shutil.copytree(build.project, other, ignore=shutil.ignore_patterns("build"))
    text = (other / "pyproject.toml").read_text()
    text = text.replace('name = "envstore-demo"', 'name = "envstore-other"')
    text = text.replace('"pybind11"]', '"pybind11", "typing-extensions"]')
    (other / "pyproject.toml").write_text(text)
    second = build.pip_install(project=other)
    assert compiled(second) == 6, "a new project builds from scratch"
    # The cmake + ninja prefix is the same snapshot for both projects.
    shared = set(stable_paths(first)) & set(stable_paths(second))
    assert shared, (stable_paths(first), stable_paths(second))
    after = json.loads(build.envstore("stats", "--json"))
    grown = after["object_bytes"] - before["object_bytes"]
    assert before["object_bytes"] > 50 << 20, "cmake is in the store"
    assert grown < 2 << 20, f"the store grew by {grown} bytes: only the project-specific part"


def test_when_envstore_cannot_help_the_build_still_succeeds_with_one_warning(build):
    (build.root / "not-a-dir").write_text("x")
    build.env["ENVSTORE_DIR"] = str(build.root / "not-a-dir")
    log = build.pip_install()
    assert log.count("envstore: warning:") == 1, log
    assert "building without a stable environment" in log
    assert compiled(log) == 6
    assert build.works() == ["7", "8", "9"]
