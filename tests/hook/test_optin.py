"""The opt-in the docs give while envstore is not on the public index: the project pins
`envstore==VERSION` and the frontend is told where that exact file is (pip: a constraints
file, uv: build constraints), with no find-links. The frontend then never takes envstore from
the index, so a squatter registering the name there would not be asked."""

import pytest


@pytest.mark.parametrize("frontend", ["pip", "uv"])
def test_the_pinned_opt_in_builds_from_the_named_file(build, wheelhouse, frontend):
    (wheel,) = wheelhouse.glob("envstore-*.whl")
    constraints = build.root / "build-constraints.txt"
    constraints.write_text(f"envstore @ {wheel.as_uri()}\n")
    for key in ("PIP_FIND_LINKS", "UV_FIND_LINKS"):
        build.env.pop(key)
    build.env["PIP_CONSTRAINT" if frontend == "pip" else "UV_BUILD_CONSTRAINT"] = str(constraints)
    log = build.install(frontend)
    assert "envstore: building against" in log, log
    assert str(wheel) in log or wheel.name in log, "envstore came from the named file"
    assert build.works() == ["7", "8", "9"]
