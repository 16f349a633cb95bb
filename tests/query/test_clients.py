"""The real clients through the proxy: PyMySQL, mysqlclient, the mysql CLI, SQLAlchemy."""

from __future__ import annotations

import os
import shutil
import subprocess

import MySQLdb
import pymysql
import pytest
import sqlalchemy as sa
from pymysql.constants import CLIENT
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from .conftest import Proxy


def test_pymysql_queries_parameters_and_transactions(proxy: Proxy) -> None:
    with proxy.pymysql("alpha") as c, c.cursor() as cur:
        cur.execute("SELECT DATABASE(), CURRENT_USER()")
        db, user = cur.fetchone()
        assert db == proxy.apps["alpha"].db
        assert user.startswith(proxy.apps["alpha"].db + "@")
        cur.execute("DROP TABLE IF EXISTS people")
        cur.execute("CREATE TABLE people (id INT PRIMARY KEY AUTO_INCREMENT, name VARCHAR(50), note TEXT)")
        cur.executemany("INSERT INTO people (name, note) VALUES (%s, %s)", [("ann", "x'y"), ("bob", None), ("çé✓", "\\")])
        c.begin()
        cur.execute("UPDATE people SET note = %s WHERE name = %s", ("changed", "bob"))
        c.rollback()
        cur.execute("SELECT name, note FROM people ORDER BY id")
        assert cur.fetchall() == (("ann", "x'y"), ("bob", None), ("çé✓", "\\"))
        cur.execute("SELECT COUNT(*) FROM people WHERE name LIKE %s", ("%n%",))
        assert cur.fetchone() == (1,)
        c.ping()
        c.select_db(proxy.apps["alpha"].db)


def test_pymysql_multiple_result_sets(proxy: Proxy) -> None:
    with proxy.pymysql("alpha", client_flag=CLIENT.MULTI_STATEMENTS) as c, c.cursor() as cur:
        cur.execute("SELECT 1; SELECT 2, 3; DO 1; SELECT 'x'")
        seen = [tuple(cur.fetchall())]
        while cur.nextset():
            seen.append(tuple(cur.fetchall()))
        assert seen == [((1,),), ((2, 3),), (), (("x",),)]
        # A batch with one refused statement is refused as a whole; the session goes on.
        with pytest.raises(pymysql.err.OperationalError) as e:
            cur.execute("SELECT 1; SELECT * FROM mysql.user")
        assert e.value.args[0] == 1044
        cur.execute("SELECT 5")
        assert cur.fetchall() == ((5,),)


def test_a_20_mib_row_and_statement_cross_the_16_mib_packet_limit(proxy: Proxy) -> None:
    big = os.urandom(10 << 20).hex()  # 20 MiB of text
    with proxy.pymysql("alpha", max_allowed_packet=64 << 20) as c, c.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS blobs")
        cur.execute("CREATE TABLE blobs (id INT PRIMARY KEY, body LONGTEXT)")
        cur.execute("INSERT INTO blobs VALUES (1, %s)", (big,))
        cur.execute("SELECT body, LENGTH(body) FROM blobs WHERE id = 1")
        body, n = cur.fetchone()
        assert n == len(big) and body == big
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)
        cur.execute("DROP TABLE blobs")


def test_mysqlclient(proxy: Proxy) -> None:
    a = proxy.apps["alpha"]
    c = MySQLdb.connect(host=proxy.host, port=proxy.port, user=a.name, password=a.token, database=a.db)
    try:
        cur = c.cursor()
        cur.execute("SELECT %s + 1, @@sql_mode IS NOT NULL", (41,))
        assert cur.fetchone() == (42, 1)
        cur.execute("CREATE TEMPORARY TABLE tmp (a INT)")
        cur.execute("INSERT INTO tmp VALUES (1), (2)")
        cur.execute("SELECT SUM(a) FROM tmp")
        assert int(cur.fetchone()[0]) == 3
        with pytest.raises(MySQLdb.OperationalError) as e:
            cur.execute("SELECT LOAD_FILE('/etc/passwd')")
        assert e.value.args[0] == 1227
        c.ping()
        c.select_db(a.db)
        with pytest.raises(MySQLdb.OperationalError):
            c.select_db("information_schema")
        cur.execute("SELECT 7")
        assert cur.fetchone() == (7,)
    finally:
        c.close()


def _mysql_cli(proxy: Proxy, app: str, sql: str, db: str | None = None) -> subprocess.CompletedProcess:
    binary = shutil.which("mysql") or shutil.which("mariadb")
    if binary is None:
        pytest.fail("the mysql client is missing: apt-get install mariadb-client")
    a = proxy.apps[app]
    env = dict(os.environ, MYSQL_PWD=a.token)
    return subprocess.run(
        [binary, "-h", proxy.host, "-P", str(proxy.port), "-u", a.name, "--batch", "--skip-column-names",
         db or a.db, "-e", sql],
        env=env, capture_output=True, text=True, timeout=30,
    )


def test_mysql_cli(proxy: Proxy) -> None:
    r = _mysql_cli(proxy, "alpha", "SELECT 6*7; SHOW DATABASES; SELECT @@version_comment IS NOT NULL")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split()
    assert lines[0] == "42"
    assert proxy.apps["alpha"].db in lines
    assert proxy.apps["beta"].db not in lines  # the grants hide other apps' databases
    # Text-protocol prepared statements.
    r = _mysql_cli(proxy, "alpha", "PREPARE s FROM 'SELECT ? * 2'; SET @v = 21; EXECUTE s USING @v; DEALLOCATE PREPARE s")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["42"]
    r = _mysql_cli(proxy, "alpha", "SELECT * FROM mysql.user")
    assert r.returncode == 1
    assert "ERROR 1044 (42000)" in r.stderr and "system-database" in r.stderr
    r = _mysql_cli(proxy, "alpha", "SELECT 1", db="mysql")
    assert r.returncode == 1 and "ERROR 1044" in r.stderr


class Base(DeclarativeBase):
    pass

class Note(Base):
    __tablename__ = "orm_notes"
    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(sa.String(100))



def test_sqlalchemy_orm_round_trip(proxy: Proxy) -> None:
    a = proxy.apps["alpha"]
    for driver in ("pymysql", "mysqldb"):
        engine = sa.create_engine(
            f"mysql+{driver}://{a.name}:{a.token}@{proxy.host}:{proxy.port}/{a.db}?charset=utf8mb4",
            pool_pre_ping=True,
        )
        Base.metadata.drop_all(engine)
        Base.metadata.create_all(engine)
        with Session(engine) as s:
            s.add_all([Note(text="one"), Note(text="two")])
            s.commit()
            assert [n.text for n in s.query(Note).order_by(Note.id)] == ["one", "two"]
        insp = sa.inspect(engine)
        assert "orm_notes" in insp.get_table_names()
        assert {c["name"] for c in insp.get_columns("orm_notes")} == {"id", "text"}
        Base.metadata.drop_all(engine)
        engine.dispose()
