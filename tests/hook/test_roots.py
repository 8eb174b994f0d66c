"""Roots end to end: the hook records the persistent build directory, so prune keeps the
environments it uses, and lets them go once the directory is gone."""

import json
import os
import shutil

from test_pip import compiled, stable_paths


def test_prune_never_strands_the_build_directory(build):
    first = build.pip_install()
    paths = stable_paths(first)
    assert len(paths) == 2, first
    roots = json.loads(build.envstore("--json", "roots"))
    assert len(roots) == 1, roots
    assert roots[0]["dir"].startswith(str(build.project / "build")), roots
    used = {s["id"] for s in roots[0]["snapshots"]}
    assert used == {os.path.basename(p) for p in paths}
    assert all(s["live"] for s in roots[0]["snapshots"]), roots

    # By age and by size: the build directory's environments stay.
    build.envstore("prune", "--older-than", "0s")
    plan = json.loads(build.envstore("--json", "prune", "--older-than", "0s", "--max-size", "0"))
    assert {r["id"] for r in plan["rooted"]} == used
    assert plan["size_unmet"] is True
    for path in paths:
        assert os.path.isdir(path), f"prune removed {path}, which the build directory uses"

    second = build.pip_install()
    assert compiled(second) == 0, second
    assert build.works() == ["7", "8", "9"]

    # The build directory deleted: the root is dead, and prune lets the environments go.
    shutil.rmtree(build.project / "build")
    plan = json.loads(build.envstore("--json", "prune", "--older-than", "0s"))
    assert {r["id"] for r in plan["dead_roots"]} == used, plan
    for path in paths:
        assert not os.path.exists(path)
    assert json.loads(build.envstore("--json", "roots")) == []
