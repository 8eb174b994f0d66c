"""Fixtures for the end-to-end tests of the build hook: a wheel of envstore built from this
repository (what `pip install envstore` would fetch), and fresh target venvs."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def check_pins(wheels):
    """The demo projects pin envstore exactly (the safe opt-in the docs give): the wheel under
    test must be that version."""
    (wheel,) = wheels.glob("envstore-*.whl")
    version = wheel.name.split("-")[1]
    for project in ("project", "meson_project"):
        text = (Path(__file__).parent / project / "pyproject.toml").read_text()
        assert f'"envstore=={version}"' in text, f"{project}/pyproject.toml does not pin envstore=={version}"
    return wheels


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory):
    """A directory holding the envstore wheel: the release wheel in ENVSTORE_TEST_WHEELHOUSE
    when set (CI builds it with .ci/build-wheels.sh: manylinux, what an index would serve),
    else built once per session the way users build it: `pip wheel .` at the repository root
    (maturin, from PyPI, in an isolated environment)."""
    given = os.environ.get("ENVSTORE_TEST_WHEELHOUSE")
    if given:
        assert list(Path(given).glob("envstore-*.whl")), f"no envstore wheel in {given}"
        return check_pins(Path(given))
    out = tmp_path_factory.mktemp("wheelhouse")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(out), "."],
        cwd=ROOT,
        check=True,
    )
    assert list(out.glob("envstore-*.whl")), "maturin built no wheel"
    return check_pins(out)


class Build:
    """One scratch area: a target venv, a store, a copy of the demo project."""

    def __init__(self, root, wheelhouse, project="project"):
        self.root = root
        self.store = root / "store"
        self.venv = root / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(self.venv)], check=True)
        self.python = self.venv / "bin" / "python"
        self.project = root / project
        shutil.copytree(Path(__file__).parent / project, self.project)
        self.env = dict(
            os.environ,
            ENVSTORE_DIR=str(self.store),
            PIP_FIND_LINKS=str(wheelhouse),
            UV_FIND_LINKS=str(wheelhouse),
            # cmake and ninja from PyPI, in the build environment (the common case).
            SKBUILD_CMAKE_VERSION=">=3.26",
            SKBUILD_NINJA_VERSION=">=1.12",
            ENVSTORE_HOOK_VERBOSE="1",
            PIP_DISABLE_PIP_VERSION_CHECK="1",
        )
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
        self.env.pop("VIRTUAL_ENV", None)

    def pip_install(self, project=None, *extra):
        return self._run([str(self.python), "-m", "pip", "install", "-v", *extra, "."], project)

    def uv_install(self, project=None, *extra):
        uv = shutil.which("uv")
        if uv is None:
            pytest.fail("uv is not installed (pip install uv)")
        package = "envstore-meson-demo" if (project or self.project).name == "meson_project" else "envstore-demo"
        cmd = [uv, "pip", "install", "-v", "--python", str(self.python), "--reinstall-package", package, *extra, "."]
        return self._run(cmd, project)

    def install(self, frontend, *extra):
        """`pip install` or `uv pip install` of the project, with extra flags (`-e`)."""
        if frontend == "pip":
            return self.pip_install(None, *extra)
        return self.uv_install(None, *extra)

    def _run(self, cmd, project):
        result = subprocess.run(
            cmd, cwd=project or self.project, env=self.env, capture_output=True, text=True
        )
        log = result.stdout + result.stderr
        assert result.returncode == 0, log
        return log

    def works(self, activated=False):
        """The demo's three functions at 3, from a fresh interpreter of the target venv (with
        the venv's bin first on PATH when `activated`, as `source venv/bin/activate` does)."""
        env = None
        if activated:
            env = dict(os.environ, PATH=f"{self.venv / 'bin'}:{os.environ['PATH']}", VIRTUAL_ENV=str(self.venv))
        out = subprocess.run(
            [str(self.python), "-c", "import _demo; print('demo:', _demo.a(3), _demo.b(3), _demo.c(3))"],
            capture_output=True, text=True, env=env,
        )
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        # An editable install that rebuilds on import says so on stdout first.
        (line,) = [line for line in out.stdout.splitlines() if line.startswith("demo: ")]
        return line.split()[1:]

    def stock(self):
        """Turns the project into a stock one: its backend without envstore."""
        pyproject = self.project / "pyproject.toml"
        text = pyproject.read_text()
        backend = "mesonpy" if "mesonpy" in text else "scikit_build_core.build"
        text = re.sub(r'"envstore[^"]*", ', "", text)
        text = text.replace('build-backend = "envstore.build"', f'build-backend = "{backend}"')
        pyproject.write_text(text)

    def envstore(self, *args):
        out = subprocess.run([str(self.bin), *args], env=self.env, capture_output=True, text=True, check=True)
        return out.stdout


@pytest.fixture(scope="session")
def envstore_bin(wheelhouse, tmp_path_factory):
    """The envstore binary from the wheel, for inspecting stores from the tests (or the one
    ENVSTORE_TEST_BIN names, as in the Rust tests: a build of the working tree)."""
    given = os.environ.get("ENVSTORE_TEST_BIN")
    if given:
        return Path(given)
    out = tmp_path_factory.mktemp("wheel")
    wheel = next(wheelhouse.glob("envstore-*.whl"))
    subprocess.run([sys.executable, "-m", "zipfile", "-e", str(wheel), str(out)], check=True)
    binary = next(out.glob("envstore-*.data/scripts/envstore"))
    binary.chmod(0o755)
    return binary


@pytest.fixture
def build(tmp_path, wheelhouse, envstore_bin):
    b = Build(tmp_path, wheelhouse)
    b.bin = envstore_bin
    return b
