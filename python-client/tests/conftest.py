"""Fixtures of the berth client tests: real cache, blob, log and query servers (servers.py),
the test MariaDB, and a clean config."""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pymysql
import pytest
from servers import (
    BlobServer,
    BlobServerFactory,
    CacheServer,
    LogCollector,
    QueryProxy,
    ServerFactory,
)

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


# Log collector and query proxy apps: the same names as above, their own tokens.
LOG_TENANTS = """
[[app]]
name = "alpha"
token = "tok-log-alpha"

[[app]]
name = "beta"
token = "tok-log-beta"

[[app]]
name = "limited"
token = "tok-log-limited"
log_rate = 5
"""


def _binary(request: pytest.FixtureRequest, name: str) -> Path:
    binary = Path(str(request.config.getoption("--bin-dir"))) / name
    if not binary.exists():
        pytest.fail(f"{binary} does not exist; build it with `cargo build --release -p {name}`")
    return binary


@pytest.fixture(scope="module")
def log_collector(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LogCollector]:
    """One log collector (apps alpha, beta, limited at 5 events/s) shared by a module."""
    d = tmp_path_factory.mktemp("logs")
    (d / "tenants.toml").write_text(LOG_TENANTS)
    (d / "data").mkdir()
    server = LogCollector(
        _binary(request, "log-collector"), ["--tenants", str(d / "tenants.toml")], d / "data", d
    )
    yield server
    server.stop()


@dataclass
class MariaDB:
    host: str
    port: int
    user: str
    password: str


MARIADB_HINT = (
    "the berth.db tests need MariaDB on {addr} with user {user!r} able to log in over TCP "
    "(scripts/test starts one and sets BERTH_TEST_MARIADB; on Debian: `apt-get install "
    "mariadb-server && service mariadb start`), or point BERTH_TEST_MARIADB / "
    "BERTH_TEST_MARIADB_USER / BERTH_TEST_MARIADB_PASSWORD at one"
)


@pytest.fixture(scope="session")
def mariadb() -> MariaDB:
    host, _, port = os.environ.get("BERTH_TEST_MARIADB", "127.0.0.1:3306").partition(":")
    m = MariaDB(
        host,
        int(port or 3306),
        os.environ.get("BERTH_TEST_MARIADB_USER", "root"),
        os.environ.get("BERTH_TEST_MARIADB_PASSWORD", ""),
    )
    try:
        pymysql.connect(host=m.host, port=m.port, user=m.user, password=m.password).close()
    except pymysql.MySQLError as e:
        pytest.fail(MARIADB_HINT.format(addr=f"{m.host}:{m.port}", user=m.user) + f"\n({e})")
    return m


@dataclass
class DbApp:
    name: str
    token: str

    @property
    def database(self) -> str:
        return "app_" + self.name.replace("-", "_")


@dataclass
class ProxyFixture:
    proxy: QueryProxy
    apps: dict[str, DbApp]

    def environ(self, app: str, secrets_dir: Path) -> dict[str, str]:
        """A runtime-contract environment (and secrets file) for `app` behind this proxy."""
        a = self.apps[app]
        secrets_file = secrets_dir / f"{app}-secrets.toml"
        secrets_file.write_text(f'token = "{a.token}"\n')
        secrets_file.chmod(0o600)
        return {
            "BERTH_APP": a.name,
            "BERTH_DB_HOST": "127.0.0.1",
            "BERTH_DB_PORT": str(self.proxy.port),
            "BERTH_DB_NAME": a.database,
            "BERTH_SECRETS_FILE": str(secrets_file),
        }


@pytest.fixture(scope="session")
def query_proxy(
    request: pytest.FixtureRequest, mariadb: MariaDB, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ProxyFixture]:
    """A query proxy with two provisioned apps (`one`, `two`, random names and tokens); their
    databases are dropped again afterwards."""
    binary = _binary(request, "query-proxy")
    d = tmp_path_factory.mktemp("query-proxy")
    suffix = secrets.token_hex(3)
    apps = {key: DbApp(f"pc{key[0]}-{suffix}", secrets.token_hex(32)) for key in ("one", "two")}
    (d / "tenants.toml").write_text(
        "".join(f'[[app]]\nname = "{a.name}"\ntoken = "{a.token}"\n\n' for a in apps.values())
    )
    (d / "query-proxy.toml").write_text(
        f'backend = "{mariadb.host}:{mariadb.port}"\nbackend_admin_user = "{mariadb.user}"\n'
    )
    env = {
        "BERTH_QUERY_BACKEND_SECRET": secrets.token_hex(32),
        "BERTH_QUERY_ADMIN_PASSWORD": mariadb.password,
    }
    base = [str(binary), "--config", str(d / "query-proxy.toml")]
    for a in apps.values():
        subprocess.run(
            [*base, "provision", a.name],
            env={**os.environ, **env},
            check=True,
            capture_output=True,
            timeout=60,
        )
    argv = [
        *base,
        *("--tenants", str(d / "tenants.toml"), "--data-dir", str(d / "data")),
        *("--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"),
    ]
    proxy = QueryProxy(argv, ["mysql"], d, "query-proxy", env=env)
    yield ProxyFixture(proxy, apps)
    proxy.stop()
    for a in apps.values():
        subprocess.run(
            [*base, "deprovision", a.name],
            env={**os.environ, **env},
            capture_output=True,
            timeout=60,
        )
