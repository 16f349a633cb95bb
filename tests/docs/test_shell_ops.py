"""The ```sh samples of the operations pages (docs/ops/*.md, scaling-out.md) run on a test host.

The host is a fresh directory standing for `/` (tests/docs/systemd_host.py): the pages' paths
(`/etc/berth`, `/var/lib/berth`, `/usr/local/bin`, `/etc/systemd/system`, `/backup`, `/root`)
are moved under it, its `/usr/local/bin` holds the built binaries, its `/etc/berth` a config
file per service (on the default addresses, an operator token, `tenants.toml`) and its
`/etc/systemd/system` the units of deploy/systemd/. `systemctl` and `journalctl` run those
units for real (systemd_host.py), each service on a free port in place of its well-known one;
a page's `127.0.0.1:PORT` is moved to the same free port. A server a page runs in the
foreground is started, must print its `LISTEN` lines, and is stopped (`serves`); `cargo build`
checks that what it would build is there (the tests run on the binaries scripts/test built).
Each page runs on a host of its own, with the units it assumes running started first; after it
ran, its effects are read back.

How a page runs and what it promises: tests/docs/shell_pages.py.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from deploy.platform import pick_ports

from .ops_host import (
    ADMIN_0,
    LOGS_0,
    UNITS,
    Host,
    is_token_hash,
    listens,
    make_host,
    page_text,
    same_as_reference,
    serves,
)
from .ops_support import (
    MARIADB,
    MARIADB_PASSWORD,
    MARIADB_USER,
    http_get,
    mariadb,
)
from .shell_pages import (
    Outputs,
    bin_dir,
    run_page,
)
from .test_shell_samples import BACKEND_SECRET


@pytest.fixture
def host(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Host]:
    yield from make_host(request, tmp_path)


# -- cache-server.md, security.md, config-reference.md: one command each, or a few -----------


def test_cache_server_page(host: Host) -> None:
    def check(out: Outputs) -> None:
        assert listens(out.of("-m 1024 -t 2"), "memcache", "admin"), out.of("-m 1024")
        assert listens(out.of("--tenants"), "memcache", "admin"), out.of("--tenants")
        assert is_token_hash(out.of("sha256sum")), out.of("sha256sum")
        same_as_reference(host, "cache-server.toml")
        host.wait_ready("berth-cache")  # the unit the page enabled runs

    page = "ops/cache-server.md"
    run_page(
        page,
        host.setup(
            page,
            [
                (
                    "cache-server -p 11211 -m 1024 -t 2",
                    f"serves cache-server -p 0 -m 1024 -t 2 {ADMIN_0}",
                    "",
                ),
                serves(
                    "cache-server --config /etc/berth/cache-server.toml --tenants "
                    "/etc/berth/tenants.toml",
                    f"-p 0 {ADMIN_0}",
                ),
            ],
            check,
        ),
    )


def test_security_page(host: Host) -> None:
    def check(out: Outputs) -> None:
        assert is_token_hash(out.of("sha256sum")), out.of("sha256sum")

    page = "ops/security.md"
    run_page(page, host.setup(page, [], check))


def test_config_reference_page(host: Host) -> None:
    def check(out: Outputs) -> None:
        same_as_reference(host, "blob-server.toml")
        effective = out.of("toml --print-config")
        assert effective == page_text("reference/config/blob-server.toml"), effective

    page = "ops/config-reference.md"
    run_page(page, host.setup(page, [], check))


# -- the servers' own pages: each way to start one -------------------------------------------


def test_log_collector_page(host: Host) -> None:
    def check(out: Outputs) -> None:
        kinds = ("json", "syslog-tcp", "syslog-udp", "http", "otlp", "admin")
        assert listens(out.of("--data-dir"), *kinds), out.of("--data-dir")
        assert listens(out.of("--tenants"), *kinds), out.of("--tenants")
        assert (host.root / "var/lib/berth/log-collector").is_dir()

    page = "ops/log-collector.md"
    run_page(
        page,
        host.setup(
            page,
            [
                serves(
                    "log-collector --data-dir /var/lib/berth/log-collector",
                    f"{LOGS_0} {ADMIN_0}",
                ),
                serves(
                    "log-collector --config /etc/berth/log-collector.toml --tenants "
                    "/etc/berth/tenants.toml",
                    f"{LOGS_0} {ADMIN_0}",
                ),
            ],
            check,
        ),
    )


def test_query_proxy_page(host: Host) -> None:
    def check(out: Outputs) -> None:
        assert listens(out.of("--data-dir .berth"), "mysql", "admin"), out.of(
            "--data-dir"
        )
        assert listens(out.of("--tenants"), "mysql", "admin"), out.of("--tenants")

    page = "ops/query-proxy.md"
    setup = host.setup(
        page,
        [
            serves(
                "query-proxy --data-dir .berth/query-proxy",
                f"--listen 127.0.0.1:0 {ADMIN_0}",
            ),
            serves(
                "query-proxy --config /etc/berth/query-proxy.toml --tenants "
                "/etc/berth/tenants.toml",
                f"--listen 127.0.0.1:0 {ADMIN_0}",
            ),
        ],
        check,
    )
    # the secrets its unit hands over, given by hand as the page on the proxy says
    setup.env = {
        **setup.env,
        "BERTH_QUERY_ADMIN_PASSWORD": MARIADB_PASSWORD,
        "BERTH_QUERY_BACKEND_SECRET": BACKEND_SECRET,
    }
    run_page(page, setup)


def test_berth_router_page(request: pytest.FixtureRequest, host: Host) -> None:
    app_port, http, admin = pick_ports(("app", "http", "admin")).values()

    def check(out: Outputs) -> None:
        assert listens(out.of("serves berth-router"), "http", "admin"), out.of(
            "--data-dir /var"
        )
        assert out.of("guestbook.localhost").startswith("HTTP/1.1 200 OK"), out
        assert out.of("/guestbook/").startswith("HTTP/1.1 200 OK"), out
        assert out.of("nobody.localhost").startswith("HTTP/1.1 404 Not Found"), out
        assert re.search(r"\b[1-9]\d* passed", out.of("router/test_control.py")), (
            out.of("pytest")
        )

    page = "ops/berth-router.md"
    run_page(
        page,
        host.setup(
            page,
            [
                serves(
                    "berth-router --data-dir /var/lib/berth/berth-router --config "
                    "/etc/berth/berth-router.toml",
                    f"--listen 127.0.0.1:0 {ADMIN_0}",
                ),
                ("9001", str(app_port), ""),
                (
                    "--data-dir data &",
                    (
                        f"--data-dir data --listen 127.0.0.1:{http} "
                        f"--admin-listen 127.0.0.1:{admin} &"
                    ),
                    "",
                ),
                (":9280", f":{admin}", ""),
                (":8080", f":{http}", "kill %2 %1"),
                # the router's own suite runs in scripts/test: here its control API tests
                (
                    "pytest tests/router --bin-dir target/release",
                    (
                        "pytest -q -p no:cacheprovider tests/router/test_control.py --bin-dir "
                        f"{bin_dir(request)}"
                    ),
                    "",
                ),
            ],
            check,
        ),
    )


def test_blob_server_page(host: Host) -> None:
    moto = pick_ports(("moto",))["moto"]
    hello = hashlib.sha256(b"hello").hexdigest()

    def check(out: Outputs) -> None:
        posted = [c for c in out.commands if "--data-binary 'hello'" in c.text]
        for cmd in posted:
            assert json.loads(out.stdout[out.commands.index(cmd)]) == {
                "id": f"sha256:{hello}",
                "size": 5,
            }
        assert listens(out.of("--tenants"), "http", "admin"), out.of("--tenants")
        keys = re.findall(r"<Key>([^<]*)</Key>", out.of("berth-blobs?prefix"))
        assert len(keys) == 1 and re.fullmatch(r"blobs/data/[0-9a-f]{16}", keys[0]), (
            keys
        )

    page = "ops/blob-server.md"
    run_page(
        page,
        host.setup(
            page,
            [
                (
                    "--data-dir /tmp/blobs  ",
                    (
                        "--data-dir blobs --listen 127.0.0.1:0 "
                        f"{ADMIN_0} >blob.out & B=$(wait_listen blob.out http)  "
                    ),
                    "",
                ),
                (
                    "--data-dir /tmp/blobs-s3 &",
                    (
                        "--data-dir blobs-s3 --listen 127.0.0.1:0 "
                        f"{ADMIN_0} >blob-s3.out & B=$(wait_listen blob-s3.out http)"
                    ),
                    "",
                ),
                ("http://127.0.0.1:8098/", "http://127.0.0.1:$B/", ""),
                serves(
                    "blob-server --data-dir /var/lib/berth/blob-server --tenants "
                    "/etc/berth/tenants.toml",
                    f"--listen 127.0.0.1:0 {ADMIN_0}",
                ),
                # the tests' moto: the same pinned version, in the checkout's .venv
                (
                    "python3 -m venv /tmp/moto && /tmp/moto/bin/pip install -q 'moto[server]==5.2.5'",
                    "grep -qx 'moto\\[server\\]==5.2.5' tests/requirements.txt",
                    "",
                ),
                ("/tmp/moto/bin/moto_server", ".venv/bin/moto_server", ""),
                ("5055", str(moto), ""),
                ("/tmp/blob-s3.toml", "blob-s3.toml", ""),
            ],
            check,
        ),
    )


# -- the systemd pages: installing, operating, upgrading, backing up ----------------------------


def test_systemd_page(host: Host) -> None:
    def check(out: Outputs) -> None:
        host.wait_ready("berth-blob")
        same_as_reference(host, "blob-server.toml")
        assert "Active: active (running)" in out.of("systemctl status"), out.of(
            "status"
        )
        assert out.of("/readyz") == "ready", out.of("/readyz")
        assert "LISTEN admin" in out.of("journalctl"), out.of("journalctl")
        creds = host.root / "etc" / "berth" / "query-proxy"
        assert len((creds / "backend-secret").read_text()) == 64
        assert (creds / "admin-password").read_text() == MARIADB_PASSWORD
        assert {(f.stat().st_mode & 0o777) for f in creds.iterdir()} == {0o600}
        for exe in ("berthd", "berth-shim", "berth"):
            installed = host.root / "usr" / "local" / "bin" / exe
            assert installed.is_file() and not installed.is_symlink(), installed

    page = "ops/systemd.md"
    for made_by_the_page in (host.root / "etc" / "berth" / "query-proxy").iterdir():
        made_by_the_page.unlink()
    run_page(
        page,
        host.setup(
            page,
            [
                (
                    "journalctl -u berth-blob -f",
                    "timeout 2 journalctl -u berth-blob -f",
                    "",
                ),
                # the test's MariaDB admin account, in place of the page's example password
                ("'the admin account password'", f"'{MARIADB_PASSWORD}'", ""),
                # scripts/run installs them (Debian packages are not installed by tests)
                (
                    "apt-get install bubblewrap iptables",
                    "dpkg-query -W bubblewrap iptables",
                    "",
                ),
            ],
            check,
            statuses={"journalctl": 124},
        ),
    )


def test_upgrades_page(host: Host) -> None:
    host.start(*UNITS)
    before = {
        unit: (host.root / "run/systemd" / unit / "pid").read_text() for unit in UNITS
    }

    def check(out: Outputs) -> None:
        for unit in UNITS:  # every one restarted, and serving
            assert (host.root / "run/systemd" / unit / "pid").read_text() != before[
                unit
            ], unit
            host.wait_ready(unit)
        installed = host.root / "usr" / "local" / "bin" / "berth-router"
        assert installed.is_file() and not installed.is_symlink(), installed

    page = "ops/upgrades.md"
    run_page(page, host.setup(page, [], check))


@pytest.fixture
def database() -> Iterator[str]:
    """An app provisioned on the test MariaDB with a table of two rows: its name."""
    app = "opsdb" + secrets.token_hex(3)
    yield app
    with mariadb() as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS app_{app}")
        cur.execute(
            "SELECT user, host FROM mysql.user WHERE user = %s", (f"app_{app}",)
        )
        for user, where in cur.fetchall():
            cur.execute(f"DROP USER '{user}'@'{where}'")


def test_backup_page(host: Host, database: str) -> None:
    host.start("berth-blob", "berth-logs", "berthd")
    blob = ("127.0.0.1", host.port(8098))
    url = f"http://{blob[0]}:{blob[1]}/buckets/notes/keys/first"
    host.run("curl", "-fsS", "-X", "PUT", "--data-binary", "kept", url)
    host.berth("apps", "create", "opsbackup")
    with mariadb() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE app_{database}")
        cur.execute(
            f"CREATE TABLE app_{database}.notes (id INT PRIMARY KEY, body TEXT)"
        )
        cur.execute(
            f"INSERT INTO app_{database}.notes VALUES (1, 'kept'), (2, 'also kept')"
        )

    def check(out: Outputs) -> None:
        host.wait_ready("berth-blob")
        status, body = http_get(blob, "/buckets/notes/keys/first")
        assert (status, body) == (200, "kept"), (status, body)
        private = host.root / "var" / "lib" / "private" / "berth"
        assert (private / "blob-server.before-restore" / "meta.redb").exists()
        assert (private / "log-collector.before-restore").is_dir()
        host.wait_ready("berthd")
        assert "opsbackup" in host.berth("apps", "list")
        data = host.root / "var" / "lib" / "berth" / "berthd"
        key = host.root / "root" / "berthd-secrets.key"
        assert key.read_bytes() == (data / "secrets.key").read_bytes()
        assert key.stat().st_mode & 0o777 == 0o600
        dumps = list(host.work.glob(f"{database}-*.sql"))
        assert len(dumps) == 1 and "INSERT INTO `notes`" in dumps[0].read_text(), dumps
        with mariadb() as conn, conn.cursor() as cur:
            cur.execute(f"SELECT id, body FROM app_{database}.notes ORDER BY id")
            assert cur.fetchall() == ((1, "kept"), (2, "also kept"))
        assert len(list((host.root / "backup").glob("*.tar.gz"))) == 3

    page = "ops/backup.md"
    run_page(
        page,
        host.setup(
            page,
            [
                ("2026-11-26", "$(date +%F)", ""),
                (
                    "-P 3306 -u berth_admin -p ",
                    f"-P {MARIADB.partition(':')[2] or 3306} -u {MARIADB_USER} ",
                    "",
                ),
                ("guestbook", database, ""),
            ],
            check,
        ),
    )


def test_monitoring_page(host: Host) -> None:
    host.start("berth-blob")

    def check(out: Outputs) -> None:
        assert "berth_blob_" in out.of("/metrics"), out.of("/metrics")

    page = "ops/monitoring.md"
    run_page(page, host.setup(page, [], check))


def test_scaling_out_page(host: Host) -> None:
    page = "scaling-out.md"
    run_page(page, host.setup(page, [], lambda out: None))


def test_berthd_page(host: Host) -> None:
    host.start("berthd")

    def check(out: Outputs) -> None:
        assert listens(out.of("serves berthd"), "grpc", "admin"), out
        for server in ("cache-server", "blob-server"):
            assert listens(
                out.of(f"serves {server}"),
                *{
                    "cache-server": ("memcache", "admin"),
                    "blob-server": ("http", "admin"),
                }[server],
            ), out.of(server)
        assert is_token_hash(out.of("router-control-token   #")), out
        # Not checked: the cache server's --registry-state file. The server is stopped right
        # after its LISTEN lines, which may come before its first registry state arrives
        # (a race that failed one CI run), so whether it was written yet is not the page's
        # promise.

    page = "ops/berthd.md"
    setup = host.setup(
        page,
        [
            serves(
                "berthd --config /etc/berth/berthd.toml --data-dir /var/lib/berthd",
                f"--listen 127.0.0.1:0 {ADMIN_0} --dashboard-listen 127.0.0.1:0",
            ),
            (
                "cache-server -p 11211 -m 1024",
                f"serves cache-server -p 0 -m 1024 {ADMIN_0}",
                "",
            ),
            (
                "--registry-token /etc/berth/service-token\n",
                (
                    "--registry-token "
                    f"/etc/berth/service-token --listen 127.0.0.1:0 {ADMIN_0}\n"
                ),
                "",
            ),
            ("blob-server --data-dir", "serves blob-server --data-dir", ""),
        ],
        check,
    )
    # what the comment says: the service token's hash goes into berthd's service_tokens
    # (berthd restarts with it) before the services follow the registry with that token
    etc = host.root / "etc" / "berth"
    setup.before = {
        "serves cache-server": f'sed -i "1i service_tokens = [\\"$(sha {etc}/service-token)\\"]" '
        f"{etc}/berthd.toml && systemctl restart berthd"
    }
    run_page(page, setup)


# -- deploy/control-api.md: berthd alone, then with services following its registry -----------


def test_control_api_page(host: Host) -> None:
    cache = pick_ports(("cache",))["cache"]
    work = host.work

    def check(out: Outputs) -> None:
        grpc = f"LISTEN grpc 127.0.0.1:{host.port(7100)}"
        assert grpc in (work / "berthd.out").read_text(), (
            work / "berthd.out"
        ).read_text()
        assert "created app shop" in out.of("apps create shop"), out.of(
            "apps create shop"
        )
        for state in (
            work / ".berth/cache-registry.toml",
            work / ".berth/blob-server/registry-tenants.toml",
        ):
            assert 'name = "shop"' in state.read_text(), state.read_text()

    page = "deploy/control-api.md"
    setup = host.setup(
        page,
        [
            (
                '--data-dir "$PWD/.berth/berthd"   #',
                (
                    '--data-dir "$PWD/.berth/berthd" --listen '
                    "127.0.0.1:7100 --admin-listen 127.0.0.1:9271 --dashboard-listen 127.0.0.1:7180 >berthd.out & BERTHD=$! && "
                    "wait_listen berthd.out admin   #"
                ),
                "",
            ),
            (
                '--data-dir "$PWD/.berth/berthd" &',
                (
                    '--data-dir "$PWD/.berth/berthd" --listen '
                    "127.0.0.1:7100 --admin-listen 127.0.0.1:9271 --dashboard-listen 127.0.0.1:7180 >berthd2.out & "
                    "wait_listen berthd2.out admin"
                ),
                "",
            ),
            (
                "--data-dir .berth/blob-server \\",
                (
                    "--data-dir .berth/blob-server --listen "
                    "127.0.0.1:8098 --admin-listen 127.0.0.1:9298 \\"
                ),
                "",
            ),
            (
                "--registry-token service-token &",
                "--registry-token service-token >blob.out &",
                "",
            ),
            ("-p 11211", f"-p {cache} --admin-listen 127.0.0.1:0", ""),
            ("cache-registry.toml &", "cache-registry.toml >cache.out &", ""),
        ],
        check,
    )
    setup.before = {
        "openssl rand -hex 32 > service-token": "kill $BERTHD && wait $BERTHD"
    }
    # the services have the registry's state (the app made above) once they follow it
    setup.after = (
        "for _ in $(seq 200); do grep -qs shop .berth/cache-registry.toml && "
        "grep -qs shop .berth/blob-server/registry-tenants.toml && exit 0; "
        "sleep 0.05; done; exit 1"
    )
    run_page(page, setup)


RUNS = {
    "ops/cache-server.md": test_cache_server_page,
    "ops/security.md": test_security_page,
    "ops/config-reference.md": test_config_reference_page,
    "ops/log-collector.md": test_log_collector_page,
    "ops/query-proxy.md": test_query_proxy_page,
    "ops/berth-router.md": test_berth_router_page,
    "ops/blob-server.md": test_blob_server_page,
    "ops/systemd.md": test_systemd_page,
    "ops/upgrades.md": test_upgrades_page,
    "ops/backup.md": test_backup_page,
    "ops/monitoring.md": test_monitoring_page,
    "scaling-out.md": test_scaling_out_page,
    "ops/berthd.md": test_berthd_page,
    "deploy/control-api.md": test_control_api_page,
}
