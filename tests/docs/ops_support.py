"""Shared helpers of the operations-docs tests (tests/docs/test_systemd_units.py,
test_config_reference.py, test_backup_restore.py, test_alerts.py, test_samples.py,
test_shell_ops.py): where the binaries are, running them, starting each service on free ports
and reading its metrics, the tests' MariaDB.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pymysql
import pytest
from support.procs import REPO_ROOT, ServerProcess

#: Every service binary and the `LISTEN` kind of its admin endpoint's line.
SERVICES = (
    "cache-server",
    "blob-server",
    "query-proxy",
    "log-collector",
    "berthd",
    "berth-router",
)

BUILD_HINT = (
    "build the binaries first: `cargo build --release --workspace --bins "
    "--features blob-server/s3` (or scripts/test, which builds everything), then pass "
    "--bin-dir target/release"
)

OPERATOR_TOKEN = "ops-docs-operator-token-4f1c"
OPERATOR_HASH = hashlib.sha256(OPERATOR_TOKEN.encode()).hexdigest()

#: Apps of the tests here; names used nowhere else.
APP = "opsdocs"
APP_TOKEN = "opsdocs-token-8d2e71"


#: The tests' MariaDB (as the other suites take it from the environment) and its admin account.
MARIADB = os.environ.get("BERTH_TEST_MARIADB", "127.0.0.1:3306")
MARIADB_USER = os.environ.get("BERTH_TEST_MARIADB_USER", "root")
MARIADB_PASSWORD = os.environ.get("BERTH_TEST_MARIADB_PASSWORD", "")


def mariadb() -> pymysql.connections.Connection:
    """A connection to the tests' MariaDB as its admin account (autocommit)."""
    host, _, port = MARIADB.partition(":")
    return pymysql.connect(
        host=host,
        port=int(port or 3306),
        user=MARIADB_USER,
        password=MARIADB_PASSWORD,
        autocommit=True,
    )


def bin_dir(config: pytest.Config) -> Path:
    path = Path(config.getoption("--bin-dir"))
    return path if path.is_absolute() else (Path.cwd() / path).resolve()


def binary(config: pytest.Config, name: str) -> Path:
    path = bin_dir(config) / name
    if not path.is_file():
        pytest.fail(f"{path} does not exist: {BUILD_HINT}", pytrace=False)
    return path


def run(argv: list[str | Path], timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Runs a binary to completion in a clean environment from `/`, as scripts/gen-config-docs
    does, so nothing of the caller's environment leaks into what it prints."""
    return subprocess.run(
        [str(a) for a in argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd="/",
        env={"PATH": "/usr/bin:/bin"},
        check=False,
    )


def tenants_toml() -> str:
    sha = hashlib.sha256(APP_TOKEN.encode()).hexdigest()
    native = "*" + hashlib.sha1(hashlib.sha1(APP_TOKEN.encode()).digest()).hexdigest().upper()
    return (
        "[[app]]\n"
        f'name = "{APP}"\n'
        f'tokens = [{{ sha256 = "{sha}", mysql_native = "{native}" }}]\n'
        'cache_bytes = "8MiB"\n'
    )


@dataclass
class Running:
    """One service started by `start_service`."""

    name: str
    process: ServerProcess
    addrs: dict[str, tuple[str, int]]

    @property
    def admin(self) -> tuple[str, int]:
        return self.addrs["admin"]


def start_service(
    config: pytest.Config, name: str, work: Path, data: Path | None = None
) -> Running:
    """Starts `name` on free ports (port 0) with a data directory (`data`, default
    `work/data`), a tenants file with one app and an operator token; waits for its LISTEN
    lines."""
    work.mkdir(parents=True, exist_ok=True)
    exe = binary(config, name)
    tenants = work / "tenants.toml"
    tenants.write_text(tenants_toml())
    data = data if data is not None else work / "data"
    with_tenants: list[str | Path] = ["--tenants", tenants]
    # Per service: more config lines, its own flags, and the LISTEN kind of its main port.
    # Every one gets the operator token in a config file and its admin endpoint on port 0.
    extra_config = ""
    if name == "cache-server":
        args: list[str | Path] = ["-p", "0", "-l", "127.0.0.1", "-m", "64", *with_tenants]
        kind = "memcache"
    elif name == "blob-server":
        args = ["--data-dir", data, "--listen", "127.0.0.1:0", *with_tenants]
        kind = "http"
        # Its two metadata log files are written full of zeros at start (2 x 64 MiB by default).
        extra_config = 'meta_log_size = "1MiB"\n'
    elif name == "log-collector":
        args = ["--data-dir", data, *with_tenants]
        for source in ("json", "syslog", "http", "otlp"):
            args += [f"--listen-{source}", "127.0.0.1:0"]
        kind = "json"
    elif name == "query-proxy":
        host, _, port = os.environ.get("BERTH_TEST_MARIADB", "127.0.0.1:3306").partition(":")
        (work / "admin-password").write_text(os.environ.get("BERTH_TEST_MARIADB_PASSWORD", ""))
        extra_config = (
            f'backend_admin_user = "{os.environ.get("BERTH_TEST_MARIADB_USER", "root")}"\n'
            f'backend_admin_password_file = "{work / "admin-password"}"\n'
        )
        args = ["--data-dir", data, "--backend", f"{host}:{port or 3306}"]
        args += ["--listen", "127.0.0.1:0", *with_tenants]
        kind = "mysql"
    elif name == "berth-router":
        args = ["--data-dir", data, "--listen", "127.0.0.1:0"]
        kind = "http"
    elif name == "berthd":
        # No router to feed and no app to run: only the control API and the admin endpoint.
        extra_config = '[router]\nadmin_url = ""\n'
        args = ["--data-dir", data, "--listen", "127.0.0.1:0"]
        kind = "grpc"
    else:
        raise AssertionError(f"unknown service {name}")
    config_file = work / f"{name}.toml"
    config_file.write_text(f'operator_tokens = ["{OPERATOR_HASH}"]\n' + extra_config)
    argv = [exe, "--config", config_file, *args, "--admin-listen", "127.0.0.1:0"]
    kinds = ["admin", kind]
    proc = ServerProcess([str(a) for a in argv], work / "logs", name)
    try:
        addrs = proc.wait_listen(kinds, timeout=30)
    except AssertionError:
        proc.stop(timeout=5)
        raise
    return Running(name, proc, addrs)


def http_get(addr: tuple[str, int], path: str, token: str | None = None) -> tuple[int, str]:
    conn = http.client.HTTPConnection(addr[0], addr[1], timeout=10)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
        resp = conn.getresponse()
        return resp.status, resp.read().decode("utf-8", "replace")
    finally:
        conn.close()


def scrape(service: Running) -> str:
    status, body = http_get(service.admin, "/metrics", OPERATOR_TOKEN)
    assert status == 200, f"{service.name} /metrics answered {status}: {body[:300]}"
    return body


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+\S+")


def metric_names(text: str) -> set[str]:
    """Every metric name in a Prometheus text exposition: the families (`# TYPE`) and the
    sample names (a histogram's `_bucket`, `_sum`, `_count` among them)."""
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()[:4]
            names.add(name)
            # A histogram's series exist as soon as the family does, samples or not.
            if kind in ("histogram", "summary"):
                names |= {f"{name}_sum", f"{name}_count"}
            if kind == "histogram":
                names.add(f"{name}_bucket")
        elif line and not line.startswith("#"):
            m = _SAMPLE.match(line)
            assert m, f"not a Prometheus sample line: {line!r}"
            names.add(m.group(1))
    return names


def metric_families(text: str) -> set[str]:
    """The metric families of an exposition (their `# TYPE` lines)."""
    return {ln.split()[2] for ln in text.splitlines() if ln.startswith("# TYPE ")}


def repo_path(*parts: str) -> Path:
    return REPO_ROOT.joinpath(*parts)
