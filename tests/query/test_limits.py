"""Per-app limits (the `limits` app: max_connections 2, statement_timeout 1s,
max_result_bytes 1MiB, db_bytes 256KiB), and that one app's limits never touch another."""

from __future__ import annotations

import time

import pymysql
import pytest

from .conftest import MariaDB, Proxy


def test_max_connections_per_app(proxy: Proxy) -> None:
    first = proxy.login("limits")
    second = proxy.login("limits")
    third = proxy.raw()
    a = proxy.apps["limits"]
    with pytest.raises(Exception) as e:
        third.login(a.name, a.token)
    assert getattr(e.value, "code", None) == 1203
    # Another app is not affected.
    other = proxy.login("alpha")
    assert other.text_rows("SELECT 1") == [["1"]]
    other.close()
    first.close()
    deadline = time.monotonic() + 5
    while True:
        try:
            again = proxy.login("limits")
            break
        except Exception:  # the slot frees once the proxy sees the close
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert again.text_rows("SELECT 1") == [["1"]]
    again.close()
    second.close()


def test_statement_timeout_stops_a_long_query(proxy: Proxy) -> None:
    r = proxy.login("limits")
    started = time.monotonic()
    try:
        rows = r.text_rows("SELECT SLEEP(30)")
        assert rows == [["1"]]  # MariaDB answers 1 for an interrupted SLEEP
    except Exception as e:  # or the interruption error, depending on the statement
        assert getattr(e, "code", None) in (1969, 1317), e
    assert time.monotonic() - started < 10
    assert r.text_rows("SELECT 2") == [["2"]]
    r.close()


def test_a_heavy_query_is_interrupted(proxy: Proxy) -> None:
    r = proxy.login("limits")
    started = time.monotonic()
    with pytest.raises(Exception) as e:
        r.text_rows(
            "SELECT COUNT(*) FROM seq_1_to_1000000 a, seq_1_to_1000000 b WHERE a.seq * b.seq = 7"
        )
    assert getattr(e.value, "code", None) in (1969, 1317), e.value
    assert time.monotonic() - started < 10
    r.close()


def test_max_result_bytes_cuts_a_result_off_and_the_session_goes_on(proxy: Proxy) -> None:
    r = proxy.login("limits")
    with pytest.raises(Exception) as e:
        r.text_rows("SELECT seq, REPEAT('x', 1000) FROM seq_1_to_5000")
    assert getattr(e.value, "code", None) == 1105 and "max_result_bytes" in e.value.message
    assert r.text_rows("SELECT 3") == [["3"]]
    with pytest.raises(Exception) as e:
        r.text_rows("SELECT REPEAT('y', 2000000)")
    assert "max_result_bytes" in e.value.message
    # Under the limit is fine, and other apps have their own (default) limit.
    assert len(r.text_rows("SELECT seq FROM seq_1_to_1000")) == 1000
    r.close()
    with proxy.pymysql("alpha") as c, c.cursor() as cur:
        cur.execute("SELECT seq, REPEAT('x', 1000) FROM seq_1_to_5000")
        assert len(cur.fetchall()) == 5000


def test_db_bytes_refuses_writes_until_data_is_deleted(proxy: Proxy, mariadb: MariaDB) -> None:
    db = proxy.apps["limits"].db
    with proxy.pymysql("limits") as c, c.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS fill")
        cur.execute("CREATE TABLE fill (id INT PRIMARY KEY, body LONGBLOB) ENGINE=Aria")
        for i in range(8):
            cur.execute("INSERT INTO fill VALUES (%s, REPEAT('z', 65536))", (i,))
        mariadb.query(f"ANALYZE TABLE `{db}`.fill")
        deadline = time.monotonic() + 10
        while True:
            try:
                cur.execute("INSERT INTO fill VALUES (100, 'more')")
                cur.execute("DELETE FROM fill WHERE id = 100")
            except pymysql.err.MySQLError as e:
                assert e.args[0] == 1114 and "db_bytes" in e.args[1], e.args
                break
            assert time.monotonic() < deadline, "writes were never refused past db_bytes"
            time.sleep(0.2)
        # Reads and deletes still work; so does a prepared write being refused.
        cur.execute("SELECT COUNT(*) FROM fill")
        assert cur.fetchone()[0] >= 8
        with pytest.raises(pymysql.err.MySQLError) as e:
            cur.execute("UPDATE fill SET body = 'x' WHERE id = 0")
        assert e.value.args[0] == 1114
        cur.execute("TRUNCATE TABLE fill")
        mariadb.query(f"ANALYZE TABLE `{db}`.fill")
        deadline = time.monotonic() + 10
        while True:
            try:
                cur.execute("INSERT INTO fill VALUES (1, 'small')")
                break
            except pymysql.err.MySQLError as e:
                assert e.args[0] == 1114
                assert time.monotonic() < deadline, "writes stayed refused after deleting data"
                time.sleep(0.2)
        cur.execute("DROP TABLE fill")
