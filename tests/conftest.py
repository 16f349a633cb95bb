"""Options shared by every cross-service test suite under tests/.

`--memcached-reference` runs the cache suite against Debian's memcached instead of our
cache-server, to prove that the expected bytes are memcached's own.
"""

from __future__ import annotations

import pytest

from support.procs import DEFAULT_BIN_DIR


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("berth")
    group.addoption(
        "--memcached-reference",
        action="store_true",
        default=False,
        help="run the cache tests that apply to both against /usr/bin/memcached "
        "instead of target/release/cache-server (Berth-only tests are skipped)",
    )
    group.addoption(
        "--bin-dir",
        default=str(DEFAULT_BIN_DIR),
        help="directory holding the Berth binaries (default: target/release)",
    )
    group.addoption(
        "--memcached-bin",
        default="/usr/bin/memcached",
        help="memcached binary used by --memcached-reference",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("--memcached-reference"):
        return
    skip = pytest.mark.skip(reason="Berth-only behaviour; not part of the memcached reference run")
    for item in items:
        if "ours_only" in item.keywords:
            item.add_marker(skip)
