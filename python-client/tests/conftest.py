"""Fixtures of the berth client tests: real cache and blob servers (see servers.py) and a clean
config."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import BlobServer, BlobServerFactory, CacheServer, ServerFactory

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
        help="directory holding the cache-server and blob-server binaries "
        "(default: target/release)",
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


# Blob-server apps: alpha and beta have room to work (and see each other's isolation); small
# is for quota and size limits. Keys and signed URLs belong to the app, not the server.
BLOB_TENANTS = """
[[app]]
name = "alpha"
token = "tok-alpha"
blob_bytes = "64MiB"
max_object_bytes = "32MiB"

[[app]]
name = "beta"
token = "tok-beta"
blob_bytes = "64MiB"

[[app]]
name = "small"
token = "tok-small"
blob_bytes = "1MiB"
max_object_bytes = "512KiB"
"""

# Small listing pages, so paging is exercised with a few dozen keys.
BLOB_CONFIG = """
max_list_page = 10
"""


@pytest.fixture(scope="session")
def blob_server_bin(request: pytest.FixtureRequest) -> Path:
    binary = Path(str(request.config.getoption("--bin-dir"))) / "blob-server"
    if not binary.exists():
        pytest.fail(
            f"{binary} does not exist; build it with `cargo build --release -p blob-server`"
        )
    return binary


@pytest.fixture(scope="session")
def blob_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The blob servers' tenants file and config file."""
    d = tmp_path_factory.mktemp("blob-conf")
    (d / "tenants.toml").write_text(BLOB_TENANTS)
    (d / "blob-server.toml").write_text(BLOB_CONFIG)
    return d / "tenants.toml", d / "blob-server.toml"


@pytest.fixture
def start_blob_server(
    blob_server_bin: Path, blob_files: tuple[Path, Path], tmp_path: Path
) -> Iterator[BlobServerFactory]:
    factory = BlobServerFactory(blob_server_bin, *blob_files, tmp_path)
    yield factory
    factory.stop_all()


@pytest.fixture(scope="module")
def blob_server(
    blob_server_bin: Path,
    blob_files: tuple[Path, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[BlobServer]:
    """One blob server (apps alpha, beta, small; 10 names a listing page) shared by a module."""
    factory = BlobServerFactory(blob_server_bin, *blob_files, tmp_path_factory.mktemp("blob"))
    yield factory()
    factory.stop_all()
