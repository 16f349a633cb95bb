"""Fixtures of the berth client tests: real cache servers (see servers.py) and a clean config."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import CacheServer, ServerFactory

from berth import config

REPO_ROOT = Path(__file__).resolve().parents[2]

TENANTS = """
[[app]]
name = "alpha"
token = "tok-a"
cache_bytes = "2MiB"

[[app]]
name = "beta"
token = "tok-b"
cache_bytes = "2MiB"
"""


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--bin-dir",
        default=os.environ.get("BERTH_BIN_DIR", str(REPO_ROOT / "target" / "release")),
        help="directory holding the cache-server binary (default: target/release)",
    )


@pytest.fixture(scope="session")
def cache_server_bin(request: pytest.FixtureRequest) -> Path:
    binary = Path(str(request.config.getoption("--bin-dir"))) / "cache-server"
    if not binary.exists():
        pytest.fail(f"{binary} does not exist; build it with `cargo build --release`")
    return binary


@pytest.fixture(scope="session")
def tenants_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tenants") / "tenants.toml"
    path.write_text(TENANTS)
    return path


@pytest.fixture
def start_server(
    cache_server_bin: Path, tenants_file: Path, tmp_path: Path
) -> Iterator[ServerFactory]:
    factory = ServerFactory(cache_server_bin, tenants_file, tmp_path)
    yield factory
    factory.stop_all()


@pytest.fixture(scope="module")
def server(
    cache_server_bin: Path, tenants_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CacheServer]:
    """One multi-tenant server (alpha/tok-a, beta/tok-b; 64 KiB items) shared by a module."""
    factory = ServerFactory(cache_server_bin, tenants_file, tmp_path_factory.mktemp("server"))
    yield factory()
    factory.stop_all()


@pytest.fixture(autouse=True)
def _restore_config() -> Iterator[None]:
    """Tests may `config.reload(...)` a made-up environment; put the real one back."""
    yield
    config.reload()
