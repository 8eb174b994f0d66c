"""envstore: stable, content-named homes for build and runtime environments.

This package ships the ``envstore`` command-line tool and ``envstore.build``, a PEP 517 build
backend that wraps scikit-build-core (or any other backend) so that a build sees a stable,
content-named copy of its build environment instead of a new temporary directory every time.
"""

import os
import shutil
import sys
import sysconfig
from pathlib import Path

__all__ = ["find_binary"]


def find_binary():
    """The path of the ``envstore`` executable installed with this package.

    Order: ``$ENVSTORE_BIN``; the scripts directory of the prefix this package is installed in
    (where pip puts the binary); ``envstore`` on ``PATH``. Returns None if none is found.
    """
    explicit = os.environ.get("ENVSTORE_BIN")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    exe = "envstore.exe" if os.name == "nt" else "envstore"
    here = Path(__file__).resolve().parent
    # site-packages/envstore -> the prefix that holds site-packages: try each ancestor's scheme.
    for prefix in here.parents:
        scripts = sysconfig.get_path("scripts", vars={"base": str(prefix), "platbase": str(prefix)})
        candidate = Path(scripts) / exe
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
        if prefix == Path(sys.base_prefix) or len(prefix.parts) <= 1:
            break
    return shutil.which(exe)
