"""A PEP 517 build backend that builds against a stable copy of the build environment.

Opt in from ``pyproject.toml`` (pinned exactly while envstore is not on the public index; see
docs/integration.md, "Opting in safely")::

    [build-system]
    requires = ["envstore==0.1.0", "scikit-build-core", "pybind11"]
    build-backend = "envstore.build"

For ``build_wheel`` and ``build_editable`` the prefixes of the build environment that pip (or
another frontend) made in a temporary directory are stored with ``envstore`` and replaced, in
``sys.path`` and ``PATH``, by their stable, content-named copies, under a lease; then the wrapped
backend (scikit-build-core by default; see ``[tool.envstore] backend``) is imported and does the
build. CMake and ninja then see the same paths on every build, and the second build recompiles
nothing. Afterwards the persistent build directory is recorded as a root of those environments,
so ``envstore prune`` keeps them while the directory uses them. Every other hook is delegated directly. When envstore cannot help, the build goes on
un-redirected after one warning: a build never fails because of this hook.
"""

from . import _redirect

__all__ = ["build_sdist", "build_wheel"]


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    _redirect.redirect()
    try:
        return _redirect.backend().build_wheel(wheel_directory, config_settings, metadata_directory)
    finally:
        _redirect.register_roots(config_settings)


def _build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    try:
        return _redirect.backend().build_editable(wheel_directory, config_settings, metadata_directory)
    finally:
        _redirect.register_roots(config_settings)


def build_sdist(sdist_directory, config_settings=None):
    return _redirect.backend().build_sdist(sdist_directory, config_settings)


def __getattr__(name):
    # Optional hooks exist here exactly when the wrapped backend has them, so frontends fall
    # back the same way they would without the wrapper.
    if name == "build_editable":
        _redirect.redirect()
        if getattr(_redirect.backend(), name, None) is not None:
            return _build_editable
    if name in _redirect.OPTIONAL_HOOKS:
        hook = getattr(_redirect.backend(), name, None)
        if hook is not None:
            return hook
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
