"""The test host the operations pages' shell samples run on (tests/docs/test_shell_ops.py): a
fresh directory standing for `/`, with the built binaries, a config file per service, the
systemd units of deploy/systemd/ and the well-known ports moved to free ones (see that
module's docstring), plus the checks its tests share.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from deploy.platform import pick_ports

from .ops_support import (
    MARIADB,
    MARIADB_PASSWORD,
    MARIADB_USER,
    OPERATOR_HASH,
    OPERATOR_TOKEN,
    http_get,
    tenants_toml,
)
from .shell_pages import (
    REPO_ROOT,
    Outputs,
    Setup,
    bin_dir,
    path_with,
    where_shown,
)
from .systemd_host import MOVED
from .test_getting_started import PORTS

#: The services' well-known ports (scripts/run's, their defaults, and berthd's dashboard), each
#: moved to a free one on the host.
WELL_KNOWN = tuple(PORTS)

UNITS = (
    "berth-cache",
    "berth-blob",
    "berth-query",
    "berth-logs",
    "berthd",
    "berth-router",
)


# What the host's shell has besides PRELUDE: `cargo build` as a check of what it leaves, and
# the admin-listen flags that put a foreground server on free ports.
HOST_PRELUDE = r"""
# cargo build --release [-p PKG]... [--workspace] [--bins] [--features F]: the binaries it
# would leave in target/release are there (and, with the s3 feature, take an S3 backend).
cargo() {
    [ "$1 $2" = "build --release" ] || { echo "cargo $*: not emulated" >&2; return 2; }
    shift 2
    local bins=() s3=0
    while [ $# -gt 0 ]; do
        case $1 in
            -p) bins+=("$2"); shift 2 ;;
            -q|--bins) shift ;;
            --workspace) bins+=(cache-server blob-server query-proxy log-collector berthd berth
                                berth-shim berth-router); shift ;;
            --features) [[ $2 == *s3* ]] && s3=1; shift 2 ;;
            *) echo "cargo build: $1: not emulated" >&2; return 2 ;;
        esac
    done
    for b in "${bins[@]}"; do
        [ -x "target/release/$b" ] || { echo "target/release/$b is not built" >&2; return 1; }
    done
    if [ $s3 = 1 ]; then
        printf '[storage]\nbackend = "s3"\nbucket = "b"\nendpoint = "http://127.0.0.1:1"\n' \
            >cargo-s3.toml
        ! target/release/blob-server --config cargo-s3.toml --check-config 2>&1 |
            grep -q 'features s3' || { echo "blob-server is built without s3" >&2; return 1; }
    fi
}
"""


@dataclass
class Host:
    root: Path
    work: Path  # the directory the page runs in: the checkout's target/, deploy/ and tests/
    ports: dict[int, int]  # well-known port -> the free one
    env: dict[str, str]

    def port(self, well_known: int) -> int:
        return self.ports[well_known]

    def run(self, *argv: str, **env: str) -> str:
        """What ARGV prints on the host (with more environment variables); it must succeed."""
        done = subprocess.run(
            argv,
            env={**os.environ, **self.env, **env},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, f"{' '.join(argv)}: {done.stderr}"
        return done.stdout

    def systemctl(self, *args: str) -> None:
        self.run("systemctl", *args)

    def berth(self, *args: str) -> str:
        """What `berth ARGS` prints, against the host's berthd with the operator token."""
        server = f"http://127.0.0.1:{self.port(7100)}"
        return self.run("berth", *args, BERTH_SERVER=server, BERTH_TOKEN=OPERATOR_TOKEN)

    def start(self, *units: str) -> None:
        for unit in units:
            self.systemctl("start", unit)
        for unit in units:
            self.wait_ready(unit)

    def wait_ready(self, unit: str) -> None:
        admin = {
            "berth-cache": 9211,
            "berth-blob": 9298,
            "berth-query": 9233,
            "berth-logs": 9299,
            "berthd": 9271,
            "berth-router": 9280,
        }[unit]
        for _ in range(300):
            try:
                if http_get(("127.0.0.1", self.port(admin)), "/readyz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        log = self.root / "var" / "log" / "journal" / f"{unit}.log"
        raise AssertionError(
            f"{unit} is not ready:\n{log.read_text(errors='replace')[-3000:]}"
        )

    def setup(
        self,
        page: str,
        replacements: list[tuple[str, str, str]],
        check: Callable[[Outputs], None],
        statuses: dict[str, int] | None = None,
    ) -> Setup:
        """A page's setup: its own replacements, then the host's paths and ports where the
        page's shell blocks show them."""
        moved = [(p, f"{self.root}{p}") for p in (*MOVED, "/backup/", "/root/")]
        ports = [(f"127.0.0.1:{d}", f"127.0.0.1:{p}") for d, p in self.ports.items()]
        generic = where_shown(page, replacements, [*moved, *ports])
        return Setup(
            env=self.env,
            cwd=self.work,
            replacements=[*replacements, *generic],
            statuses=statuses or {},
            prelude=HOST_PRELUDE,
            check=check,
            timeout=300,
        )


def host_configs(root: Path) -> dict[str, str]:
    """/etc/berth/*.toml: every service on its default addresses, with the operator token."""
    ops = f'operator_tokens = ["{OPERATOR_HASH}"]\n'
    return {
        "cache-server.toml": f'listen = ["127.0.0.1:11211"]\nadmin_listen = "127.0.0.1:9211"\n{ops}',
        "blob-server.toml": 'listen = "127.0.0.1:8098"\nadmin_listen = "127.0.0.1:9298"\n'
        f'data_dir = "/var/lib/berth/blob-server"\n{ops}',
        "query-proxy.toml": 'listen = "127.0.0.1:6033"\nadmin_listen = "127.0.0.1:9233"\n'
        f'backend = "{MARIADB}"\nbackend_admin_user = "{MARIADB_USER}"\n{ops}',
        "log-collector.toml": 'listen_json = "127.0.0.1:5170"\nlisten_syslog = "127.0.0.1:5140"\n'
        'listen_http = "127.0.0.1:8099"\nlisten_otlp = "127.0.0.1:4317"\n'
        f'admin_listen = "127.0.0.1:9299"\ndata_dir = "/var/lib/berth/log-collector"\n{ops}',
        "berth-router.toml": 'listen = "127.0.0.1:8080"\nadmin_listen = "127.0.0.1:9280"\n'
        f'data_dir = "/var/lib/berth/berth-router"\n{ops}',
        "berthd.toml": 'listen = "127.0.0.1:7100"\nadmin_listen = "127.0.0.1:9271"\n'
        f'{ops}[router]\nadmin_url = ""\n[dashboard]\nlisten = "127.0.0.1:7180"\n',
        "tenants.toml": tenants_toml(),
    }


def make_host(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Host]:
    """A fresh test host under `tmp_path` (the `host` fixture of the page tests): yields it,
    then stops every unit it may have started."""
    bins = bin_dir(request)
    root = tmp_path / "host"
    for d in (
        "etc/berth/query-proxy",
        "etc/systemd/system",
        "usr/local/bin",
        "backup",
        "root",
        "bin",
        "var/lib/berth",
    ):
        (root / d).mkdir(parents=True)
    for name, text in host_configs(root).items():
        (root / "etc" / "berth" / name).write_text(text)
    (root / "etc/berth/query-proxy/backend-secret").write_text(secrets.token_hex(32))
    (root / "etc/berth/query-proxy/admin-password").write_text(MARIADB_PASSWORD)
    for unit_file in (REPO_ROOT / "deploy" / "systemd").glob("*.service"):
        shutil.copy(unit_file, root / "etc" / "systemd" / "system")
    for exe in bins.iterdir():
        if exe.is_file() and os.access(exe, os.X_OK):
            (root / "usr" / "local" / "bin" / exe.name).symlink_to(exe)
    tool = Path(__file__).with_name("systemd_host.py")
    for name in ("systemctl", "journalctl"):
        (root / "bin" / name).write_text(
            f'#!/bin/sh\nexec {sys.executable} {tool} {name} "$@"\n'
        )
        (root / "bin" / name).chmod(0o755)
    work = tmp_path / "work"
    (work / "target").mkdir(parents=True)
    (work / "target" / "release").symlink_to(bins)
    for linked in ("deploy", "tests", ".venv"):
        (work / linked).symlink_to(REPO_ROOT / linked)
    ports = dict(
        zip(WELL_KNOWN, pick_ports(tuple(map(str, WELL_KNOWN))).values(), strict=True)
    )
    env = {
        "PATH": f"{root / 'bin'}:{root / 'usr/local/bin'}:{path_with(bins)}",
        "BERTH_HOST_ROOT": str(root),
        "BERTH_HOST_PORTS": json.dumps(ports),
        "OPERATOR_TOKEN": OPERATOR_TOKEN,
        "MYSQL_PWD": MARIADB_PASSWORD,
    }
    h = Host(root, work, ports, env)
    try:
        yield h
    finally:
        for unit in UNITS:
            subprocess.run(
                ["systemctl", "stop", unit],
                env={**os.environ, **env},
                capture_output=True,
                timeout=120,
                check=False,
            )


def page_text(page: str) -> str:
    return (REPO_ROOT / "docs" / page).read_text()


def is_token_hash(out: str) -> bool:
    return re.fullmatch(r"[0-9a-f]{64}\n", out) is not None


def serves(command: str, flags: str) -> tuple[str, str, str]:
    """The page's foreground server `command`, started until it listens (on free ports:
    `flags`), then stopped."""
    return command, f"serves {command} {flags}", ""


ADMIN_0 = "--admin-listen 127.0.0.1:0"
LOGS_0 = " ".join(
    f"--listen-{s} 127.0.0.1:0" for s in ("json", "syslog", "http", "otlp")
)


def listens(out: str, *kinds: str) -> bool:
    """Whether a server printed a `LISTEN KIND 127.0.0.1:PORT` line for every kind."""
    found = re.findall(r"^LISTEN (\S+) 127\.0\.0\.1:\d+$", out, re.MULTILINE)
    return set(kinds) <= set(found)


def same_as_reference(host: Host, config: str) -> None:
    written = (host.root / "etc" / "berth" / config).read_text()
    assert written == (REPO_ROOT / "docs" / "reference" / "config" / config).read_text()
