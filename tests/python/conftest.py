"""The Python API's tests use this checkout's package (python/) and the envstore binary that
`cargo nextest run` built before them (target/debug), unless ENVSTORE_BIN names another."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "python"))
if not os.environ.get("ENVSTORE_BIN"):
    os.environ["ENVSTORE_BIN"] = str(ROOT / "target" / "debug" / "envstore")
