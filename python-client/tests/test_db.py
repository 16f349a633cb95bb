"""berth.db against a real query proxy in front of the real MariaDB."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest
import sqlalchemy
from conftest import ProxyFixture

from berth import config, db


@pytest.fixture
def app_one(query_proxy: ProxyFixture, tmp_path: Path) -> Iterator[config.Config]:
    yield config.reload(query_proxy.environ("one", tmp_path))


def test_connect_lands_in_the_apps_database(app_one: config.Config) -> None:
    with db.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT DATABASE(), CURRENT_USER() LIKE 'app\\_%'")
        database, own_user = cur.fetchone()
    assert database == app_one.get("BERTH_DB_NAME")
    assert own_user == 1


def test_create_insert_select_round_trip(app_one: config.Config) -> None:
    with db.connect() as conn:
        with conn.cursor() as cur:
            cur.execute("DROP TABLE IF EXISTS notes")
            cur.execute(
                "CREATE TABLE notes (id INT AUTO_INCREMENT PRIMARY KEY, body TEXT) "
                "CHARACTER SET utf8mb4"
            )
            cur.executemany("INSERT INTO notes (body) VALUES (%s)", [("héllo ✓",), ("two",)])
        conn.commit()
    with db.connect(dict_rows=True) as conn, conn.cursor() as cur:
        cur.execute("SELECT id, body FROM notes ORDER BY id")
        rows = cur.fetchall()
    assert [r["body"] for r in rows] == ["héllo ✓", "two"]


def test_uncommitted_work_is_rolled_back_on_close(app_one: config.Config) -> None:
    with db.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS tx (v INT) ENGINE=InnoDB")
        cur.execute("DELETE FROM tx")
    with db.connect(autocommit=False) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO tx VALUES (1)")
    with db.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM tx")
        assert cur.fetchone() == (0,)


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT * FROM mysql.user",
        "SELECT LOAD_FILE('/etc/passwd')",
        "SET GLOBAL max_connections = 1",
        "GRANT ALL ON *.* TO CURRENT_USER",
    ],
)
def test_a_refused_statement_raises_the_proxys_error_unchanged(
    app_one: config.Config, statement: str
) -> None:
    with db.connect() as conn:
        with conn.cursor() as cur, pytest.raises(pymysql.MySQLError) as info:
            cur.execute(statement)
        err_code, message = info.value.args
        assert err_code in (1142, 1044, 1227)
        assert "query-proxy rule" in message  # the proxy's own words, naming the rule
        # The session stays usable after a refusal.
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
            assert cur.fetchone() == (1,)


def test_apps_cannot_see_each_other(query_proxy: ProxyFixture, tmp_path: Path) -> None:
    config.reload(query_proxy.environ("one", tmp_path))
    with db.connect() as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS secret (v TEXT)")
    other = query_proxy.apps["two"].database
    config.reload(query_proxy.environ("two", tmp_path))
    with db.connect() as conn, conn.cursor() as cur, pytest.raises(pymysql.MySQLError) as info:
        cur.execute(f"SELECT * FROM {query_proxy.apps['one'].database}.secret")
    assert info.value.args[0] in (1142, 1044)
    with db.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT DATABASE()")
        assert cur.fetchone() == (other,)


def test_sqlalchemy_url_works_with_sqlalchemy(app_one: config.Config) -> None:
    url = db.sqlalchemy_url()
    assert url.startswith("mysql+pymysql://")
    engine = sqlalchemy.create_engine(url, pool_pre_ping=True)
    try:
        with engine.connect() as conn:
            assert conn.execute(sqlalchemy.text("SELECT 1 + 1")).scalar() == 2
            assert conn.execute(sqlalchemy.text("SELECT DATABASE()")).scalar() == app_one.get(
                "BERTH_DB_NAME"
            )
        assert app_one.token is not None and app_one.token not in repr(engine)
    finally:
        engine.dispose()


def test_sqlalchemy_url_escapes_credentials() -> None:
    cfg = config.load(
        {
            "BERTH_APP": "shop",
            "BERTH_DB_HOST": "::1",
            "BERTH_DB_NAME": "app_shop",
        }
    )
    object.__setattr__(cfg, "token", "a/b:c@d")
    assert db.sqlalchemy_url(cfg=cfg) == (
        "mysql+pymysql://shop:a%2Fb%3Ac%40d@[::1]:6033/app_shop?charset=utf8mb4"
    )


def test_wrong_token_is_refused(query_proxy: ProxyFixture, tmp_path: Path) -> None:
    env = query_proxy.environ("one", tmp_path)
    Path(env["BERTH_SECRETS_FILE"]).write_text('token = "not-the-token"\n')
    config.reload(env)
    with pytest.raises(pymysql.OperationalError) as info:
        db.connect()
    assert info.value.args[0] == 1045


def test_proxy_down_raises_operational_error(tmp_path: Path) -> None:
    from servers import free_port

    config.reload(
        {
            "BERTH_APP": "one",
            "BERTH_DB_HOST": "127.0.0.1",
            "BERTH_DB_PORT": str(free_port()),
            "BERTH_DB_NAME": "app_one",
        }
    )
    with pytest.raises(pymysql.OperationalError) as info:
        db.connect(connect_timeout=2)
    assert info.value.args[0] == 2003


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"BERTH_APP": "a", "BERTH_DB_NAME": "app_a"}, "BERTH_DB_HOST"),
        ({"BERTH_APP": "a", "BERTH_DB_HOST": "h"}, "BERTH_DB_NAME"),
        (
            {"BERTH_APP": "a", "BERTH_DB_HOST": "h", "BERTH_DB_NAME": "d", "BERTH_DB_PORT": "x"},
            "BERTH_DB_PORT",
        ),
        ({"BERTH_DB_HOST": "h", "BERTH_DB_NAME": "d"}, "BERTH_APP"),
    ],
)
def test_missing_configuration_is_a_clear_error(env: dict[str, str], message: str) -> None:
    config.reload(env)
    with pytest.raises(config.ConfigError, match=message):
        db.connect()
