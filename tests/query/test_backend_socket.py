"""The proxy reaching MariaDB over its Unix socket (`backend = "/path/to/mysqld.sock"`): apps
log in, read and write, refusals and limits hold, and the backend sees the app's own account
from `localhost` (the socket), not over TCP."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest

from .conftest import MariaDB, Proxy


@pytest.fixture(scope="module")
def socket_proxy(proxy: Proxy, mariadb: MariaDB, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    ((path,),) = mariadb.query("SELECT @@GLOBAL.socket")
    if not path or not Path(path).is_socket():
        pytest.fail(
            f"the backend's socket {path!r} is not on this host: these tests need MariaDB running "
            "locally (scripts/test starts one when none runs on 127.0.0.1:3306)"
        )
    p = proxy.spawn(tmp_path_factory.mktemp("socket-proxy"), f'backend = "{path}"\n')
    try:
        yield p
    finally:
        p.process.stop()


def test_apps_work_over_the_socket_as_their_own_account(socket_proxy: Proxy, mariadb: MariaDB) -> None:
    a = socket_proxy.apps["alpha"]
    with socket_proxy.pymysql("alpha") as c, c.cursor() as cur:
        cur.execute("SELECT USER(), DATABASE(), CONNECTION_ID()")
        user, db, thread = cur.fetchone()
        assert (user, db) == (f"{a.db}@localhost", a.db)  # account and database share a name
        # The backend's own view of the session: a TCP client's host carries its port
        # (`localhost:41234`), a socket client's does not.
        ((host,),) = mariadb.query("SELECT HOST FROM information_schema.PROCESSLIST WHERE ID = %s", (thread,))
        assert host == "localhost", host
        cur.execute("CREATE TABLE IF NOT EXISTS over_socket (id INT PRIMARY KEY, v VARCHAR(20))")
        cur.execute("REPLACE INTO over_socket VALUES (1, %s)", ("by socket",))
        # Server-side prepared statements, as sysbench and mysqlclient use them.
        raw = socket_proxy.login("alpha", db=a.db)
        try:
            sel, ncols, nparams = raw.prepare("SELECT v FROM over_socket WHERE id = ?")
            assert (ncols, nparams) == (1, 1)
            # Binary rows: 0x00, the NULL bitmap, then the value (length-prefixed).
            assert [p[3:].decode() for p in raw.execute(sel, [1])[0]] == ["by socket"]
        finally:
            raw.close()
        cur.execute("DROP TABLE over_socket")


def test_refusals_and_limits_hold_over_the_socket(socket_proxy: Proxy) -> None:
    with socket_proxy.pymysql("alpha") as c, c.cursor() as cur:
        with pytest.raises(pymysql.err.OperationalError) as e:
            cur.execute("SELECT * FROM mysql.user")
        assert e.value.args[0] in (1142, 1044)
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)
    r = socket_proxy.login("limits")
    started = time.monotonic()
    try:
        assert r.text_rows("SELECT SLEEP(30)") == [["1"]]  # MariaDB: 1 for an interrupted SLEEP
    except Exception as e:  # noqa: BLE001 - or the interruption error, by statement
        assert getattr(e, "code", None) in (1969, 1317), e
    assert time.monotonic() - started < 10
    assert r.text_rows("SELECT 2") == [["2"]]
    r.close()


def test_the_admin_connection_goes_over_the_socket_too(socket_proxy: Proxy) -> None:
    """Database sizes (for `db_bytes`) are read through the admin account, every 500 ms here."""
    db = socket_proxy.apps["alpha"].db
    host, port = socket_proxy.admin
    with socket_proxy.pymysql("alpha") as c, c.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS sized (id INT PRIMARY KEY)")
        try:
            deadline = time.monotonic() + 10
            while True:
                with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as resp:
                    text = resp.read().decode()
                if f'query_proxy_app_db_bytes{{database="{db}"}}' in text:
                    break
                assert time.monotonic() < deadline, (
                    "no database size measured over the socket in 10 s; proxy log:\n"
                    + socket_proxy.process.stderr_tail()
                )
                time.sleep(0.2)
        finally:
            cur.execute("DROP TABLE sized")
