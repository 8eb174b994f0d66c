"""The Python API's tests use this checkout's package (python/) and the envstore binary that
`cargo nextest run` built before them (target/debug, or $CARGO_TARGET_DIR/debug), unless ENVSTORE_BIN names another. Set
per test, not for the session: the hook tests collected beside these must use their wheel's
own binary."""

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "python"))


@pytest.fixture(autouse=True)
def envstore_binary(monkeypatch):
    if not os.environ.get("ENVSTORE_BIN"):
        target = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
        if not target.is_absolute():
            target = ROOT / target
        monkeypatch.setenv("ENVSTORE_BIN", str(target / "debug" / "envstore"))
