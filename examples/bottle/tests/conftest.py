"""The pastebin's tests run against private instances of the real Berth services, started by
`berth.testing.Services` for a fresh app (see docs/python-client.md, "Testing an app")."""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from berth import testing

APP_DIR = Path(__file__).resolve().parents[1]


def release(services: testing.Services) -> subprocess.CompletedProcess[str]:
    """The release command of berth.toml, `python -m schema`, as `berth deploy` runs it: in
    the app's directory, with the app's environment."""
    return subprocess.run(
        [sys.executable, "-m", "schema"],
        cwd=APP_DIR,
        env={**services.environ(), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def import_app() -> ModuleType:
    """The app's module, imported fresh (it reads its config at import)."""
    sys.path.insert(0, str(APP_DIR))
    try:
        sys.modules.pop("main", None)
        return importlib.import_module("main")
    finally:
        sys.path.remove(str(APP_DIR))


@pytest.fixture(scope="session")
def services() -> Iterator[testing.Services]:
    with testing.Services() as services:
        done = release(services)
        assert done.returncode == 0, done.stderr
        yield services


@pytest.fixture
def pastebin(services: testing.Services) -> Iterator[ModuleType]:
    """The app's module inside the test app's environment (for the whole test)."""
    with services.use(PASTEBIN_TITLE="Test bin"):
        yield import_app()


@pytest.fixture
def client(pastebin: ModuleType) -> testing.Client:
    return testing.Client(pastebin.app)
