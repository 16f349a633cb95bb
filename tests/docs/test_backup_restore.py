"""The backup and restore procedures of docs/ops/backup.md, done for real on real servers.

blob-server: stopped, its data directory archived with tar, changed afterwards, then restored
from the archive into a fresh directory: everything is as it was at the backup (objects,
blobs, usage, signed URLs), and nothing of what came later.
log-collector: archived while running, restored into a fresh directory: every event
acknowledged before the archive is there, and the sequence continues after it.
berthd: stopped, its state archived and its secrets key copied apart, restored into a fresh
directory: apps, limits, token hashes and config (secrets sealed) come back, the key beside
them. (Whether sealed secrets open again shows only when an instance starts; berthd's own
tests cover that.)
An app's database: dumped with mysqldump from the real MariaDB, changed, loaded back.
The tar command lines are the ones the page shows (with the test's directories).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from blob.conftest import BlobServerFactory, curl, rand_bytes, sha256_hex
from logs.conftest import Collector, CollectorFactory

from .ops_support import OPERATOR_TOKEN, binary, repo_path, start_service

BACKUP_PAGE = repo_path("docs", "ops", "backup.md")


def tar(*args: str | Path) -> None:
    p = subprocess.run(["tar", *map(str, args)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, f"tar {' '.join(map(str, args))}: {p.stderr}"


def test_the_page_shows_these_commands() -> None:
    """The commands run below are the page's (the page would drift from the test otherwise)."""
    text = BACKUP_PAGE.read_text()
    for cmd in (
        "tar -C /var/lib/berth/blob-server -czf",
        "tar -C /var/lib/private/berth/blob-server -xzf",
        "tar -C /var/lib/berth/log-collector --exclude=./purging -czf",
        "tar -C /var/lib/private/berth/log-collector -xzf",
        "tar -C /var/lib/berth/berthd -czf",
        "--exclude='./apps/*/incoming-*' ./state.redb ./bundles ./apps",
        "install -m 0600 /var/lib/berth/berthd/secrets.key /root/berthd-secrets.key",
        "tar -C /var/lib/berth/berthd -xzf",
        "install -m 0600 /root/berthd-secrets.key /var/lib/berth/berthd/secrets.key",
        "mysqldump -h 127.0.0.1 -P 3306 -u berth_admin -p --single-transaction app_guestbook",
        "query-proxy --config /etc/berth/query-proxy.toml provision guestbook",
        "mysql -h 127.0.0.1 -P 3306 -u berth_admin -p app_guestbook <",
    ):
        assert cmd in text, f"docs/ops/backup.md no longer shows `{cmd} …`"


@pytest.fixture
def blob_servers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobServerFactory]:
    factory = BlobServerFactory(request.config, tmp_path)
    yield factory
    factory.stop_all()


@pytest.fixture
def collectors(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CollectorFactory]:
    factory = CollectorFactory(request.config, tmp_path)
    yield factory
    factory.stop_all()


def test_blob_server_backup_and_restore(blob_servers: BlobServerFactory, tmp_path: Path) -> None:
    data = tmp_path / "blob-server"  # stands for /var/lib/berth/blob-server
    archive = tmp_path / "blob-server.tar.gz"
    server = blob_servers.start(data_dir=data)
    a = server.alpha
    small = rand_bytes(1000, "small")  # group-committed into a volume file
    large = rand_bytes(700 * 1024, "large")  # its own chunked file under objects/
    kept = rand_bytes(3000, "kept")
    a.put_ok("/buckets/notes/keys/small", small)
    a.put_ok("/buckets/notes/keys/large", large)
    a.put_ok("/buckets/notes/keys/kept", kept)
    blob_id = a.post_blob(rand_bytes(90 * 1024, "blob"))
    signed = a.sign({"bucket": "notes", "key": "large", "expires_in": 3600}).json()["url"]
    usage = a.stats()["bytes_used"]
    assert usage > 0

    # Backup: `systemctl stop berth-blob`, tar, `systemctl start berth-blob`.
    assert server.process.stop(timeout=40) == 0, server.process.describe()
    tar("-C", data, "-czf", archive, ".")
    server = blob_servers.restart(server)
    a = server.alpha
    # Life goes on after the backup: all of this must be undone by the restore.
    assert a.delete("/buckets/notes/keys/small").status == 204
    a.put_ok("/buckets/notes/keys/kept", b"overwritten after the backup")
    a.put_ok("/buckets/notes/keys/later", b"written after the backup")
    assert server.process.stop(timeout=40) == 0, server.process.describe()

    # Restore: stop, set the old directory aside, extract into a fresh one, start.
    data.rename(tmp_path / "blob-server.before-restore")
    data.mkdir(mode=0o700)
    tar("-C", data, "-xzf", archive)
    server = blob_servers.start(data_dir=data)
    a = server.alpha
    for key, want in (("small", small), ("large", large), ("kept", kept)):
        r = a.get(f"/buckets/notes/keys/{key}")
        assert r.status == 200 and sha256_hex(r.body) == sha256_hex(want), f"{key}: {r!r}"
    assert a.get("/buckets/notes/keys/later").status == 404
    r = a.get(f"/blobs/{blob_id}")
    assert r.status == 200 and sha256_hex(r.body) == sha256_hex(rand_bytes(90 * 1024, "blob"))
    assert a.stats()["bytes_used"] == usage
    # signing.key came back too: a URL minted before the backup still opens.
    c = curl(server.base + signed)
    assert c.status == 200 and sha256_hex(c.body) == sha256_hex(large), c.status
    # And the restored store takes writes.
    a.put_ok("/buckets/notes/keys/after-restore", b"ok")
    assert a.get("/buckets/notes/keys/after-restore").body == b"ok"


def send_events(collector: Collector, app: str, token: str, messages: list[str]) -> None:
    conn = collector.json_conn({"app": app, "token": token, "ack": True})
    try:
        conn.send(*({"level": "info", "message": m} for m in messages))
        errors = conn.wait_ack(len(messages))
        assert not errors, errors
    finally:
        conn.close()


def test_log_collector_online_backup_and_restore(
    collectors: CollectorFactory, tmp_path: Path
) -> None:
    app, token = "opsbackup", "opsbackup-token-51c9e0"
    tenants = f'[[app]]\nname = "{app}"\ntoken = "{token}"\n'
    data = tmp_path / "log-collector"  # stands for /var/lib/berth/log-collector
    archive = tmp_path / "log-collector.tar.gz"
    live = collectors.start(tenants=tenants, data_dir=data)
    before = [f"before the backup {i}" for i in range(300)]
    send_events(live, app, token, before)  # acknowledged: fsynced

    # Backup while it runs (the page's command line).
    tar("-C", data, "--exclude=./purging", "-czf", archive, ".")
    send_events(live, app, token, ["after the backup"])
    assert live.process.stop() == 0, live.process.describe()

    # Restore: stop, set the old directory aside, extract into a fresh one, start.
    data.rename(tmp_path / "log-collector.before-restore")
    data.mkdir(mode=0o700)
    tar("-C", data, "-xzf", archive)
    restored = collectors.start(tenants=tenants, data_dir=data)
    events = restored.events(app, token)
    assert [e["message"] for e in events] == before
    assert [e["seq"] for e in events] == list(range(1, len(before) + 1))
    # New events continue the restored log's sequence.
    send_events(restored, app, token, ["after the restore"])
    newest = restored.wait_events(app, len(before) + 1, token)[-1]
    assert newest["message"] == "after the restore" and newest["seq"] == len(before) + 1


class Berthd:
    """berthd on free ports with a given data directory, and the `berth` CLI against it."""

    def __init__(self, config: pytest.Config, work: Path, data: Path) -> None:
        self.berth_bin = binary(config, "berth")
        # No router to feed, no app to run: only the state.
        running = start_service(config, "berthd", work, data)
        self.process = running.process
        host, port = running.addrs["grpc"]
        self.server = f"http://{host}:{port}"

    def berth(
        self,
        *args: str,
        token: str = OPERATOR_TOKEN,
        stdin: str | None = None,
        ok: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")}
        env.update(BERTH_SERVER=self.server, BERTH_TOKEN=token)
        p = subprocess.run(
            [str(self.berth_bin), *args],
            env=env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if ok:
            assert p.returncode == 0, f"berth {' '.join(args)}: {p.stderr}{p.stdout}"
        return p

    def stop(self) -> None:
        assert self.process.stop(timeout=20) == 0, self.process.describe()


def test_berthd_backup_and_restore(pytestconfig: pytest.Config, tmp_path: Path) -> None:
    app = "opsbackupd"
    data = tmp_path / "berthd"  # stands for /var/lib/berth/berthd
    archive, key_copy = tmp_path / "berthd.tar.gz", tmp_path / "berthd-secrets.key"
    d = Berthd(pytestconfig, tmp_path / "a", data)
    try:
        created = json.loads(
            d.berth("apps", "create", app, "--limit", "log_rate=77", "--json").stdout
        )
        app_token = created["secret"] if "secret" in created else created["token"]["secret"]
        d.berth("config", "set", app, "MODE=restored")
        d.berth("config", "set", app, "--secret", "api_key", stdin="s3cret\n")
    finally:
        d.stop()

    # Backup: stop, archive the state, copy the key apart (the page's commands).
    tar(
        "-C",
        data,
        "-czf",
        archive,
        "--exclude=./apps/*/incoming-*",
        "./state.redb",
        "./bundles",
        "./apps",
    )
    shutil.copy2(data / "secrets.key", key_copy)
    os.chmod(key_copy, 0o600)
    names = subprocess.run(
        ["tar", "-tzf", str(archive)], capture_output=True, text=True, check=True
    ).stdout.split()
    assert "./state.redb" in names and not any("secrets.key" in n for n in names), names

    # Restore into a fresh directory: the archive, then the key, then start.
    restored = tmp_path / "restored"
    restored.mkdir(mode=0o711)
    tar("-C", restored, "-xzf", archive)
    shutil.copy2(key_copy, restored / "secrets.key")
    d = Berthd(pytestconfig, tmp_path / "b", restored)
    try:
        info = json.loads(d.berth("apps", "info", app, "--json").stdout)
        assert "77" in json.dumps(info), info
        # The app's own token still works: token hashes came back.
        d.berth("apps", "info", app, "--json", token=app_token)
        assert d.berth("config", "get", app, "MODE").stdout.strip() == "restored"
        listed = d.berth("config", "list", app).stdout
        assert "api_key (secret)" in listed, listed
    finally:
        d.stop()
    assert (restored / "secrets.key").read_bytes() == (data / "secrets.key").read_bytes()


def test_app_database_dump_and_restore(pytestconfig: pytest.Config, tmp_path: Path) -> None:
    """The page's mysqldump and restore of an app's database, against the real MariaDB, with
    the app provisioned by `query-proxy provision` as the page shows (secrets from the
    environment). The page's `berth_admin` is the test MariaDB's admin account here."""
    host, _, port = os.environ.get("BERTH_TEST_MARIADB", "127.0.0.1:3306").partition(":")
    port = port or "3306"
    user = os.environ.get("BERTH_TEST_MARIADB_USER", "root")
    password = os.environ.get("BERTH_TEST_MARIADB_PASSWORD", "")
    app, db = "opsdump", "app_opsdump"
    cfg = tmp_path / "query-proxy.toml"
    cfg.write_text(f'backend = "{host}:{port}"\nbackend_admin_user = "{user}"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")}
    env.update(
        BERTH_QUERY_BACKEND_SECRET="ops-docs-backend-secret-0123456789",
        BERTH_QUERY_ADMIN_PASSWORD=password,
        MYSQL_PWD=password,
    )
    proxy = binary(pytestconfig, "query-proxy")

    def sh(argv: list[str], stdin: str | None = None) -> str:
        p = subprocess.run(
            argv,
            env=env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert p.returncode == 0, f"{' '.join(argv)}: {p.stderr}"
        return p.stdout

    mysql = ["mysql", "-h", host, "-P", port, "-u", user]
    sh([str(proxy), "--config", str(cfg), "provision", app])
    try:
        sh(
            [*mysql, db],
            "CREATE TABLE notes (id INT PRIMARY KEY, body TEXT);"
            "INSERT INTO notes VALUES (1, 'kept'), (2, 'also kept');",
        )
        dump = sh(
            [
                "mysqldump",
                "-h",
                host,
                "-P",
                port,
                "-u",
                user,
                "--single-transaction",
                db,
            ]
        )
        sh(
            [*mysql, db],
            "DELETE FROM notes WHERE id = 1; INSERT INTO notes VALUES (3, 'later');",
        )
        # Restore: provisioning again is harmless (idempotent), then the dump.
        sh([str(proxy), "--config", str(cfg), "provision", app])
        sh([*mysql, db], dump)
        rows = sh([*mysql, "-N", "-B", db, "-e", "SELECT id, body FROM notes ORDER BY id"])
        assert rows.splitlines() == ["1\tkept", "2\talso kept"], rows
    finally:
        sh([str(proxy), "--config", str(cfg), "deprovision", app])
