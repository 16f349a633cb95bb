"""Fixtures for the query-proxy tests: the machine's MariaDB, a proxy started from --bin-dir
with a tenants file of test apps, and the apps provisioned through `query-proxy provision`.

MariaDB must run on 127.0.0.1:3306 with a `root` account that logs in over TCP without a
password (override with BERTH_TEST_MARIADB=host:port, BERTH_TEST_MARIADB_USER,
BERTH_TEST_MARIADB_PASSWORD). If it is not reachable the tests fail and say how to start it.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pymysql
import pytest

from support.procs import ServerProcess

from .rawmysql import Raw

BUILD_HINT = "run `cargo build --release -p query-proxy` (or scripts/test, which builds everything)"
MARIADB_HINT = (
    "the query-proxy tests need MariaDB on {addr} with user {user!r} able to log in over TCP "
    "(on Debian: `apt-get install mariadb-server && service mariadb start`; root then logs in "
    "from 127.0.0.1 without a password), or point BERTH_TEST_MARIADB / "
    "BERTH_TEST_MARIADB_USER / BERTH_TEST_MARIADB_PASSWORD at one"
)

# Big enough for the 20 MiB row test; the backend's max_allowed_packet is raised to this for
# the session (and restored afterwards) when it is lower.
BIG_PACKET = 64 << 20


@dataclass
class App:
    name: str
    token: str
    limits: dict[str, str] = field(default_factory=dict)

    @property
    def db(self) -> str:
        return "app_" + self.name.replace("-", "_")

    def tenant_toml(self) -> str:
        sha = hashlib.sha256(self.token.encode()).hexdigest()
        native = "*" + hashlib.sha1(hashlib.sha1(self.token.encode()).digest()).hexdigest().upper()
        lines = [
            "[[app]]",
            f'name = "{self.name}"',
            f'tokens = [{{ sha256 = "{sha}", mysql_native = "{native}" }}]',
        ]
        lines += [f"{k} = {v}" for k, v in self.limits.items()]
        return "\n".join(lines) + "\n"


@dataclass
class MariaDB:
    host: str
    port: int
    user: str
    password: str

    def connect(self, **kw) -> pymysql.connections.Connection:
        return pymysql.connect(
            host=self.host, port=self.port, user=self.user, password=self.password,
            autocommit=True, **kw,
        )

    def query(self, sql: str, args=None) -> list[tuple]:
        with self.connect() as c, c.cursor() as cur:
            cur.execute(sql, args)
            return list(cur.fetchall())


@dataclass
class Proxy:
    host: str
    port: int
    admin: tuple[str, int]
    process: ServerProcess
    apps: dict[str, App]
    bin: Path
    env: dict[str, str]
    config: Path
    tenants: Path

    def spawn(self, tmp: Path, extra_config: str, tenants: Path | None = None) -> "Proxy":
        """Another proxy on the same apps and backend with `extra_config` appended to the
        config; the caller stops it (`.process.stop()`)."""
        config = tmp / "extra.toml"
        keys = {line.split("=")[0].strip() for line in extra_config.splitlines() if "=" in line}
        base = [line for line in self.config.read_text().splitlines() if line.split("=")[0].strip() not in keys]
        config.write_text("\n".join(base) + "\n" + extra_config)
        argv = [
            self.bin, "--config", config, "--tenants", tenants or self.tenants, "--data-dir", tmp / "data",
            "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
        ]
        proc = _start_with_env(argv, tmp / "logs", self.env)
        addrs = proc.wait_listen(["mysql", "admin"])
        host, port = addrs["mysql"]
        return Proxy(host, port, addrs["admin"], proc, self.apps, self.bin, self.env, config, tenants or self.tenants)

    def pymysql(self, app: str, **kw) -> pymysql.connections.Connection:
        a = self.apps[app]
        kw.setdefault("database", a.db)
        return pymysql.connect(
            host=self.host, port=self.port, user=a.name, password=a.token, autocommit=True, **kw
        )

    def raw(self) -> Raw:
        return Raw(self.host, self.port)

    def login(self, app: str, **kw) -> Raw:
        r = self.raw()
        a = self.apps[app]
        r.login(a.name, a.token, **kw)
        return r

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Runs the query-proxy binary with this proxy's config and secret (operator commands)."""
        return subprocess.run(
            [str(self.bin), "--config", str(self.config), *args],
            env=self.env, capture_output=True, text=True, timeout=60, check=check,
        )


@pytest.fixture(scope="session")
def mariadb() -> MariaDB:
    host, _, port = os.environ.get("BERTH_TEST_MARIADB", "127.0.0.1:3306").partition(":")
    m = MariaDB(
        host, int(port or 3306),
        os.environ.get("BERTH_TEST_MARIADB_USER", "root"),
        os.environ.get("BERTH_TEST_MARIADB_PASSWORD", ""),
    )
    try:
        m.query("SELECT 1")
    except Exception as e:  # noqa: BLE001 - any failure means the same thing here
        pytest.fail(MARIADB_HINT.format(addr=f"{m.host}:{m.port}", user=m.user) + f"\n({e})")
    return m


@pytest.fixture(scope="session")
def big_packets(mariadb: MariaDB) -> Iterator[None]:
    (old,) = mariadb.query("SELECT @@GLOBAL.max_allowed_packet")[0]
    if old < BIG_PACKET:
        mariadb.query(f"SET GLOBAL max_allowed_packet = {BIG_PACKET}")
    yield
    if old < BIG_PACKET:
        mariadb.query(f"SET GLOBAL max_allowed_packet = {old}")


def _suffix() -> str:
    return secrets.token_hex(3)


@pytest.fixture(scope="session")
def proxy(pytestconfig: pytest.Config, mariadb: MariaDB, big_packets: None, tmp_path_factory) -> Iterator[Proxy]:
    binary = Path(pytestconfig.getoption("--bin-dir")) / "query-proxy"
    if not binary.exists():
        pytest.fail(f"{binary} does not exist: {BUILD_HINT}")
    tmp = tmp_path_factory.mktemp("query-proxy")
    s = _suffix()
    apps = {
        "alpha": App(f"qa-{s}", secrets.token_hex(32)),
        "beta": App(f"qb-{s}", secrets.token_hex(32)),
        "limits": App(
            f"ql-{s}", secrets.token_hex(32),
            {
                "max_connections": "2",
                "statement_timeout": '"1s"',
                "max_result_bytes": '"1MiB"',
                "db_bytes": '"256KiB"',
            },
        ),
    }
    tenants = tmp / "tenants.toml"
    tenants.write_text("".join(a.tenant_toml() for a in apps.values()))
    config = tmp / "query-proxy.toml"
    config.write_text(
        f'backend = "{mariadb.host}:{mariadb.port}"\n'
        f'backend_admin_user = "{mariadb.user}"\n'
        'db_size_interval = "500ms"\n'
        f"max_packet = \"{BIG_PACKET // (1 << 20)}MiB\"\n"
    )
    env = dict(os.environ)
    env["BERTH_QUERY_BACKEND_SECRET"] = secrets.token_hex(32)
    env["BERTH_QUERY_ADMIN_PASSWORD"] = mariadb.password
    for a in apps.values():
        subprocess.run(
            [str(binary), "--config", str(config), "provision", a.name],
            env=env, check=True, capture_output=True, timeout=60,
        )
    argv = [
        binary, "--config", config, "--tenants", tenants, "--data-dir", tmp / "data",
        "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
    ]
    proc = _start_with_env(argv, tmp / "logs", env)
    try:
        addrs = proc.wait_listen(["mysql", "admin"])
        host, port = addrs["mysql"]
        yield Proxy(host, port, addrs["admin"], proc, apps, binary, env, config, tenants)
    finally:
        proc.stop()
        for a in apps.values():
            subprocess.run(
                [str(binary), "--config", str(config), "deprovision", a.name],
                env=env, capture_output=True, timeout=60,
            )


def _start_with_env(argv: list, log_dir: Path, env: dict[str, str]) -> ServerProcess:
    """ServerProcess passes os.environ to the child: set the proxy's two secret variables
    for the duration of the start only."""
    saved = {k: os.environ.get(k) for k in ("BERTH_QUERY_BACKEND_SECRET", "BERTH_QUERY_ADMIN_PASSWORD")}
    os.environ.update({k: env[k] for k in saved})
    try:
        return ServerProcess(argv, log_dir, "query-proxy")
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
