"""The app's test fixtures: private, real Berth services for a fresh app."""

from __future__ import annotations

# ANCHOR: services
from collections.abc import Iterator

import pytest
from berth import testing


@pytest.fixture(scope="session")
def services() -> Iterator[testing.Services]:
    with testing.Services(limits={"blob_bytes": '"8MiB"'}) as services:
        services.set_secrets(signing_key="test-key")  # the app's [secrets]
        yield services


# ANCHOR_END: services
