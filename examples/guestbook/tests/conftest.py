"""The guestbook's tests run against private instances of the real Berth services, started
by `berth.testing.Services` for a fresh app (see docs/python-client.md, "Testing an app")."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from berth import testing

APP_DIR = Path(__file__).resolve().parents[1]
MODERATOR_KEY = "let-me-moderate"


@pytest.fixture(scope="session")
def services() -> Iterator[testing.Services]:
    with testing.Services(limits={"blob_bytes": '"8MiB"'}) as services:
        services.set_secrets(moderator_key=MODERATOR_KEY)
        yield services


@pytest.fixture
def guestbook(services: testing.Services) -> Iterator[ModuleType]:
    """The app's module, imported fresh inside the test app's environment."""
    with services.use(GUESTBOOK_TITLE="Test book"):
        sys.path.insert(0, str(APP_DIR))
        try:
            for name in ("main", "schema"):
                sys.modules.pop(name, None)
            yield importlib.import_module("main")
        finally:
            sys.path.remove(str(APP_DIR))


@pytest.fixture
def client(guestbook: ModuleType) -> testing.Client:
    return testing.Client(guestbook.application)
