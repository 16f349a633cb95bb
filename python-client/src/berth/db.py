"""The app's database: connections to Berth's query proxy with the app's own credentials.

The query proxy speaks the MySQL protocol; the app logs in with its name as the user and its
token as the password, and lands in its own database (`BERTH_DB_NAME`). The proxy refuses
anything outside the app's rights (other databases, the file system, administration) with a
MySQL error, which reaches the app unchanged as PyMySQL's `OperationalError` or
`ProgrammingError` carrying the proxy's code and message.

    from berth import db

    with db.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT id, body FROM notes WHERE author = %s", ("ada",))
        rows = cur.fetchall()

SQLAlchemy: `create_engine(db.sqlalchemy_url(), pool_pre_ping=True)`.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from typing import Any, Final

import pymysql
import pymysql.cursors
from pymysql.connections import Connection

from berth import config

__all__ = [
    "DEFAULT_PORT",
    "Connection",
    "Error",
    "OperationalError",
    "ProgrammingError",
    "Settings",
    "connect",
    "settings",
    "sqlalchemy_url",
]

ENV_DB_HOST: Final = "BERTH_DB_HOST"
ENV_DB_PORT: Final = "BERTH_DB_PORT"
ENV_DB_NAME: Final = "BERTH_DB_NAME"

#: The query proxy's default port.
DEFAULT_PORT: Final = 6033

#: The errors a refused statement or a lost connection raise (PyMySQL's own classes).
Error = pymysql.MySQLError
OperationalError = pymysql.OperationalError
ProgrammingError = pymysql.ProgrammingError


@dataclass(frozen=True)
class Settings:
    """Where and as whom the app logs in: read from the runtime contract by `settings()`."""

    host: str
    port: int
    user: str
    password: str
    database: str


def settings(cfg: config.Config | None = None) -> Settings:
    """The connection settings of the app described by `cfg` (default: `config.current()`).

    Raises `ConfigError` when `BERTH_DB_HOST`, `BERTH_DB_NAME` or `BERTH_APP` is missing, or
    `BERTH_DB_PORT` is not a port number.
    """
    cfg = cfg or config.current()
    host = cfg.get(ENV_DB_HOST)
    if not host:
        raise config.ConfigError(
            f"berth.db: the database is not configured: set {ENV_DB_HOST} "
            f"(and {ENV_DB_PORT}, default {DEFAULT_PORT}, and {ENV_DB_NAME})"
        )
    port_text = cfg.get(ENV_DB_PORT) or str(DEFAULT_PORT)
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise config.ConfigError(f"berth.db: {ENV_DB_PORT}={port_text!r} is not a port number")
    database = cfg.get(ENV_DB_NAME)
    if not database:
        raise config.ConfigError(
            f"berth.db: {ENV_DB_NAME} is not set: it names the app's own database"
        )
    return Settings(
        host=host,
        port=int(port_text),
        user=cfg.app,
        password=cfg.token or "",
        database=database,
    )


def connect(
    *,
    autocommit: bool = False,
    dict_rows: bool = False,
    connect_timeout: float = 10.0,
    read_timeout: float | None = None,
    write_timeout: float | None = None,
    cfg: config.Config | None = None,
    **kwargs: Any,
) -> Connection[Any]:
    """A new PyMySQL connection to the query proxy, logged in as the app, in its database.

    `dict_rows=True` makes cursors return dicts instead of tuples. `read_timeout` and
    `write_timeout` (seconds) bound each wait on the socket; the proxy also enforces the app's
    statement timeout. Other keyword arguments go to `pymysql.connect` unchanged (for example
    `init_command`). The connection speaks utf8mb4. Use it as a context manager to close it;
    commit explicitly unless `autocommit=True`.

    Raises `ConfigError` when the database is not configured, and PyMySQL's
    `OperationalError` when the proxy is unreachable or refuses the login.
    """
    s = settings(cfg)
    if dict_rows:
        kwargs.setdefault("cursorclass", pymysql.cursors.DictCursor)
    conn: Connection[Any] = pymysql.connect(
        host=s.host,
        port=s.port,
        user=s.user,
        password=s.password,
        database=s.database,
        charset="utf8mb4",
        autocommit=autocommit,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        write_timeout=write_timeout,
        **kwargs,
    )
    return conn


def sqlalchemy_url(*, driver: str = "pymysql", cfg: config.Config | None = None) -> str:
    """The app's database as a SQLAlchemy URL, e.g. `mysql+pymysql://app:…@host:6033/app_x`.

    The token is percent-encoded into the URL, so treat the URL as a secret (SQLAlchemy's
    `repr` of an engine hides the password). `driver` picks the DBAPI (`pymysql`, or
    `mysqldb` for mysqlclient).
    """
    s = settings(cfg)
    quote = urllib.parse.quote
    host = f"[{s.host}]" if ":" in s.host else s.host
    return (
        f"mysql+{driver}://{quote(s.user, safe='')}:{quote(s.password, safe='')}"
        f"@{host}:{s.port}/{quote(s.database, safe='')}?charset=utf8mb4"
    )
