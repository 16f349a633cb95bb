"""Two apps cannot see each other's data by any route: not through the proxy's policy, and
not through the backend grants on their own (each line stops the attack alone)."""

from __future__ import annotations

import hashlib
import hmac

import pymysql
import pytest
from pymysql.constants import CLIENT

from .conftest import MariaDB, Proxy


@pytest.fixture(scope="module")
def secret_table(proxy: Proxy):
    with proxy.pymysql("alpha") as c, c.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS secret (v VARCHAR(40))")
        cur.execute("DELETE FROM secret")
        cur.execute("INSERT INTO secret VALUES ('alpha-only')")
    return proxy.apps["alpha"].db


ROUTES = [
    "SELECT * FROM {db}.secret",
    "SELECT * FROM `{db}`.secret",
    "SELECT (SELECT v FROM {db}.secret)",
    "SELECT * FROM secret UNION SELECT * FROM {db}.secret",
    "WITH x AS (SELECT * FROM {db}.secret) SELECT * FROM x",
    "CREATE VIEW peek AS SELECT * FROM {db}.secret",
    "CREATE TABLE stolen AS SELECT * FROM {db}.secret",
    "INSERT INTO t SELECT * FROM {db}.secret",
    "UPDATE {db}.secret SET v = 'x'",
    "DELETE FROM {db}.secret",
    "DROP TABLE {db}.secret",
    "ALTER TABLE {db}.secret ADD COLUMN w INT",
    "RENAME TABLE {db}.secret TO mine",
    "LOCK TABLES {db}.secret READ",
    "DESCRIBE {db}.secret",
    "SHOW COLUMNS FROM secret FROM {db}",
    "SHOW CREATE TABLE {db}.secret",
    "SELECT * FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = '{db}'",
    "SELECT * FROM information_schema.TABLES WHERE table_schema='{db}'",
    "USE {db}",
    "PREPARE s FROM 'SELECT * FROM {db}.secret'",
    "SELECT * FROM /*!{db}.*/secret",
]


@pytest.mark.parametrize("route", ROUTES)
def test_other_apps_data_is_refused_by_the_proxy(proxy: Proxy, secret_table: str, route: str) -> None:
    with proxy.pymysql("beta", client_flag=CLIENT.MULTI_STATEMENTS) as c, c.cursor() as cur:
        with pytest.raises(pymysql.err.MySQLError) as e:
            cur.execute(route.format(db=secret_table))
        assert e.value.args[0] in (1044, 1142, 1064), e.value.args


def test_refusal_does_not_tell_whether_a_database_exists(proxy: Proxy, secret_table: str) -> None:
    messages = []
    for db in (secret_table, "app_does_not_exist"):
        with proxy.pymysql("beta") as c, c.cursor() as cur:
            with pytest.raises(pymysql.err.MySQLError) as e:
                cur.execute(f"SELECT * FROM {db}.secret")
            messages.append((e.value.args[0], e.value.args[1].replace(db, "DB")))
    assert messages[0] == messages[1]


def test_introspection_shows_only_the_apps_own(proxy: Proxy, secret_table: str) -> None:
    with proxy.pymysql("beta") as c, c.cursor() as cur:
        cur.execute("SHOW DATABASES")
        dbs = {r[0] for r in cur.fetchall()}
        assert secret_table not in dbs and proxy.apps["beta"].db in dbs
        cur.execute("SELECT DISTINCT TABLE_SCHEMA FROM information_schema.TABLES")
        assert secret_table not in {r[0] for r in cur.fetchall()}


def backend_password(secret: str, app: str) -> str:
    """The documented derivation: hex(HMAC-SHA256(backend secret, app name))."""
    return hmac.new(secret.encode(), app.encode(), hashlib.sha256).hexdigest()


def test_backend_grants_stop_it_on_their_own(proxy: Proxy, mariadb: MariaDB, secret_table: str) -> None:
    b = proxy.apps["beta"]
    pw = backend_password(proxy.env["BERTH_QUERY_BACKEND_SECRET"], b.name)
    with pymysql.connect(host=mariadb.host, port=mariadb.port, user=b.db, password=pw, database=b.db) as c:
        with c.cursor() as cur:
            for sql in (
                f"SELECT * FROM {secret_table}.secret",
                "SELECT * FROM mysql.user",
                "SELECT LOAD_FILE('/etc/passwd') IS NULL",
                "CREATE DATABASE beta_extra",
                "SET GLOBAL max_connections = 10",
                "SHUTDOWN",
            ):
                try:
                    cur.execute(sql)
                    rows = cur.fetchall()
                except pymysql.err.MySQLError:
                    continue
                # LOAD_FILE without the FILE privilege returns NULL instead of failing.
                assert sql.startswith("SELECT LOAD_FILE") and rows == ((1,),), (sql, rows)
            cur.execute("SHOW DATABASES")
            assert secret_table not in {r[0] for r in cur.fetchall()}


def test_app_accounts_hold_only_their_database_grants(proxy: Proxy, mariadb: MariaDB) -> None:
    for a in proxy.apps.values():
        for host in ("%", "localhost"):
            grants = [r[0] for r in mariadb.query(f"SHOW GRANTS FOR '{a.db}'@'{host}'")]
            assert grants[0].startswith(f"GRANT USAGE ON *.* TO `{a.db}`@`{host}`"), grants
            assert len(grants) == 2, grants
            g = grants[1]
            assert g.startswith("GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, REFERENCES, INDEX, ALTER, "
                                "CREATE TEMPORARY TABLES, LOCK TABLES, CREATE VIEW, SHOW VIEW ON "
                                f"`{a.db}`.* TO `{a.db}`@`{host}`"), g
            for banned in ("FILE", "SUPER", "PROCESS", "EXECUTE", "ROUTINE", "TRIGGER", "EVENT", "GRANT OPTION"):
                assert banned not in g, g
