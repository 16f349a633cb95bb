"""berth.db: the app's own MariaDB database, through Berth's query proxy."""

from __future__ import annotations

import pymysql
from berth import config, db


def main() -> None:
    # ANCHOR: schema
    with db.connect() as conn, conn.cursor() as cur:
        cur.execute(
            "CREATE TABLE IF NOT EXISTS notes ("
            " id INT AUTO_INCREMENT PRIMARY KEY,"
            " author VARCHAR(64) NOT NULL,"
            " body TEXT NOT NULL)"
        )
    # ANCHOR_END: schema

    # ANCHOR: write
    with db.connect() as conn:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO notes (author, body) VALUES (%s, %s)",  # always parameters
                [("ann", "first"), ("bob", "second"), ("ann", "Grüße, ☃")],
            )
        conn.commit()  # without it, closing rolls back
    # ANCHOR_END: write

    # ANCHOR: read
    with db.connect(dict_rows=True) as conn, conn.cursor() as cur:
        cur.execute("SELECT author, body FROM notes WHERE author = %s ORDER BY id", ("ann",))
        rows = cur.fetchall()
    # ANCHOR_END: read
    assert rows == [
        {"author": "ann", "body": "first"},
        {"author": "ann", "body": "Grüße, ☃"},
    ], rows

    # ANCHOR: rollback
    with db.connect() as conn:
        with conn.cursor() as cur:
            cur.execute("INSERT INTO notes (author, body) VALUES ('eve', 'never kept')")
        conn.rollback()  # or close without commit
        with conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM notes WHERE author = 'eve'")
            assert cur.fetchone() == (0,)
    # ANCHOR_END: rollback

    # ANCHOR: refused
    with db.connect() as conn, conn.cursor() as cur:
        try:
            cur.execute("SELECT user FROM mysql.user")  # another database: refused
        except pymysql.MySQLError as e:
            code, message = e.args
            print(code, message)  # the proxy's MySQL error code and its reason
        else:
            raise AssertionError("the proxy must refuse the system database")
        cur.execute("SELECT COUNT(*) FROM notes")  # the connection is still usable
        count = cur.fetchone()
    # ANCHOR_END: refused
    assert code == 1044 and "mysql" in message, (code, message)
    assert count == (3,), count

    # ANCHOR: sqlalchemy
    import sqlalchemy

    engine = sqlalchemy.create_engine(db.sqlalchemy_url(), pool_pre_ping=True)
    with engine.connect() as sa_conn:
        n = sa_conn.execute(sqlalchemy.text("SELECT COUNT(*) FROM notes")).scalar()
    engine.dispose()
    # ANCHOR_END: sqlalchemy
    assert n == 3

    # ANCHOR: settings
    s = db.settings()  # for any other MySQL client
    assert (s.user, s.password) == (config.app(), config.token())
    print(f"{s.user}@{s.host}:{s.port}/{s.database}")
    # ANCHOR_END: settings
    print("database_basics: ok")


if __name__ == "__main__":
    main()
