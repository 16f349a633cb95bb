"""The pastebin's schema, created idempotently.

The release command (`release = "python -m schema"` in berth.toml): `berth deploy` runs it
with the app's environment once per release, before the new version starts. For a local run,
run it once yourself first.
"""

from __future__ import annotations

from berth import db

STATEMENTS = [
    """
    CREATE TABLE IF NOT EXISTS pastes (
        id CHAR(64) NOT NULL PRIMARY KEY,         -- the blob's SHA-256, in hex
        blob_id VARCHAR(80) NOT NULL,             -- its id in berth.blobs, sha256:<hex>
        title VARCHAR(100) NOT NULL,
        bytes INT NOT NULL,
        line_count INT NOT NULL,
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
