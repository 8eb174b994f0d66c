"""Editable installs through the hook: `pip install -e .` twice, the second compiles nothing."""

from test_pip import compiled, stable_paths


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
