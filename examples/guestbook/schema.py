"""The guestbook's schema, created or upgraded idempotently.

Run as the release command (`python -m schema`) before a new version starts; the app also
calls `ensure()` on its first request, so a local run needs no separate step.
"""

from __future__ import annotations

from berth import db

STATEMENTS = [
    """
    CREATE TABLE IF NOT EXISTS entries (
        id BIGINT AUTO_INCREMENT PRIMARY KEY,
        name VARCHAR(80) NOT NULL,
        message TEXT NOT NULL,
        picture VARCHAR(80) NULL,
        created TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
        KEY by_created (created)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4
    """,
]


def ensure() -> None:
    """Creates the tables that do not exist yet."""
    with db.connect(autocommit=True) as conn, conn.cursor() as cur:
        for statement in STATEMENTS:
            cur.execute(statement)


if __name__ == "__main__":
    ensure()
    print("schema is up to date")
