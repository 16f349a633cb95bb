"""The whole platform for deploy tests: berthd, every service following its registry, the
router it feeds, and the `berth` CLI, all real processes on free ports.

The app runtime is the Python named by BERTH_RUNTIME_PYTHON (a virtual environment made from
Debian's /usr/bin/python3 with the berth package installed, so app users can execute it;
scripts/test makes it). MariaDB comes from BERTH_TEST_MARIADB (default 127.0.0.1:3306, root).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from support.procs import ServerProcess


BINARIES = ("berthd", "berth", "berth-shim", "berth-router", "cache-server", "blob-server",
            "log-collector", "query-proxy")


@contextlib.contextmanager
def running(bin_dir: Path, prefix: str = "berth-platform-", watch_window: str = "3s",
            public_urls: tuple[str, ...] = ("http://{app}.localhost:{router}/",)
            ) -> Iterator["Platform"]:
    """The whole platform from `bin_dir`, started, and stopped and removed afterwards.
    `public_urls` are berthd's router URLs, `{router}` standing for the router's port."""
    for name in BINARIES:
        if not (bin_dir / name).exists():
            pytest.fail(f"{bin_dir / name} does not exist: run `cargo build --release --workspace`")
    # Not under pytest's temporary root: that is private to root (0700), and app users must
    # reach their own files under berthd's data dir.
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(tmp, 0o755)
    p = Platform(bin_dir, tmp, watch_window, public_urls)
    try:
        p.start_berthd()
        p.start_services()
        yield p
    finally:
        p.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def eventually(check: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def runtime_python() -> str:
    py = os.environ.get("BERTH_RUNTIME_PYTHON", "")
    if not py or not Path(py).exists():
        pytest.fail(
            "BERTH_RUNTIME_PYTHON must name a Python with the berth package that app users can "
            "run; scripts/test makes one (/usr/bin/python3 -m venv .berth-runtime && "
            ".berth-runtime/bin/pip install ./python-client)"
        )
    return py


def write_app(root: Path, name: str, version: str, main: str, manifest_extra: str = "",
              files: dict[str, bytes] | None = None,
              services: tuple[str, ...] = ("cache", "blobs", "logs")) -> Path:
    """An app directory: berth.toml, main.py and any extra files."""
    d = root / f"{name}-{version}-{secrets.token_hex(3)}"
    d.mkdir(parents=True)
    (d / "berth.toml").write_text(
        f'name = "{name}"\nversion = "{version}"\nentry = "main:app"\n'
        f'drain = "1s"\nservices = {json.dumps(list(services))}\n'
        f'[health]\npath = "/health"\ninterval = "100ms"\nstart_timeout = "20s"\n'
        f'healthy_threshold = 1\nunhealthy_threshold = 2\n{manifest_extra}'
    )
    (d / "main.py").write_text(main)
    for rel, data in (files or {}).items():
        p = d / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return d


HELLO = '''
import os

def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    body = ("%s %s %s" % (os.environ["BERTH_APP"], os.environ["BERTH_VERSION"], path)).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
'''


def pick_ports(names: tuple[str, ...]) -> dict[str, int]:
    """Free ports below Linux's ephemeral range (32768+), so no outgoing connection takes one
    between now and the moment a server binds it."""
    if len(set(names)) != len(names):
        raise ValueError(f"pick_ports: names repeat: {names}")
    ports: dict[str, int] = {}
    while len(ports) < len(names):
        port = 10000 + secrets.randbelow(10000)
        if port in ports.values():
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports[names[len(ports)]] = port
    return ports


class Platform:
    def __init__(self, bin_dir: Path, tmp: Path, watch_window: str = "3s",
                 public_urls: tuple[str, ...] = ("http://{app}.localhost:{router}/",)) -> None:
        self.bin, self.tmp = bin_dir, tmp
        self.procs: dict[str, ServerProcess] = {}
        self.apps: list[str] = []
        self.ports = pick_ports(("berthd", "cache", "cache_admin", "blob", "blob_admin", "query",
                                 "query_admin", "logs", "logs_http", "logs_admin", "router",
                                 "router_admin", "dashboard"))
        self.service_token = secrets.token_hex(32)
        self.router_token = secrets.token_hex(32)
        (tmp / "service-token").write_text(self.service_token + "\n")
        (tmp / "router-token").write_text(self.router_token + "\n")
        (tmp / "backend-secret").write_text(secrets.token_hex(32) + "\n")
        os.chmod(tmp / "backend-secret", 0o600)
        host, _, port = os.environ.get("BERTH_TEST_MARIADB", "127.0.0.1:3306").partition(":")
        self.mariadb = f"{host}:{port or 3306}"
        pw = os.environ.get("BERTH_TEST_MARIADB_PASSWORD", "")
        (tmp / "mariadb-password").write_text(pw + "\n")
        user = os.environ.get("BERTH_TEST_MARIADB_USER", "root")
        sha = lambda t: hashlib.sha256(t.encode()).hexdigest()  # noqa: E731
        p = self.ports
        apps_lo = 20000 + 500 * secrets.randbelow(20)  # below the ephemeral range
        (tmp / "berthd.toml").write_text(f'''
service_tokens = ["{sha(self.service_token)}"]
stop_apps_on_exit = true
[apps]
python = "{runtime_python()}"
ports = "{apps_lo}-{apps_lo + 499}"
watch_window = "{watch_window}"
keep_versions = 3
[services]
cache = "127.0.0.1:{p['cache']}"
blob_url = "http://127.0.0.1:{p['blob']}"
db_host = "127.0.0.1"
db_port = {p['query']}
log_addr = "127.0.0.1:{p['logs']}"
extra_ports = []
blob_admin_url = "http://127.0.0.1:{p['blob_admin']}"
logs_admin_url = "http://127.0.0.1:{p['logs_admin']}"
admin_token_file = "{tmp / 'berthd' / 'operator-token'}"
[router]
admin_url = "http://127.0.0.1:{p['router_admin']}"
token_file = "{tmp / 'router-token'}"
public_urls = {json.dumps([u.replace("{router}", str(p['router'])) for u in public_urls])}
[dashboard]
listen = "127.0.0.1:{p['dashboard']}"
logs_url = "http://127.0.0.1:{p['logs_http']}"
cache_admin_url = "http://127.0.0.1:{p['cache_admin']}"
query_admin_url = "http://127.0.0.1:{p['query_admin']}"
sample_interval = "1s"
refresh_interval = "500ms"
[database]
backend = "{self.mariadb}"
admin_user = "{user}"
admin_password_file = "{tmp / 'mariadb-password'}"
backend_secret_file = "{tmp / 'backend-secret'}"
''')
        (tmp / "router.toml").write_text(f'control_tokens = ["{sha(self.router_token)}"]\n')
        (tmp / "query.toml").write_text(
            f'backend_secret_file = "{tmp / "backend-secret"}"\n'
            f'backend_admin_password_file = "{tmp / "mariadb-password"}"\n'
            f'backend_admin_user = "{user}"\n')

    # -- processes ----------------------------------------------------------------------------

    def start_berthd(self) -> None:
        p = ServerProcess(
            [self.bin / "berthd", "--config", self.tmp / "berthd.toml", "--data-dir",
             self.tmp / "berthd", "--listen", f"127.0.0.1:{self.ports['berthd']}",
             "--admin-listen", "127.0.0.1:0"], self.tmp, "berthd")
        p.wait_listen(["grpc", "dashboard"], timeout=30)
        self.procs["berthd"] = p

    def registry(self) -> list[object]:
        return ["--registry", f"http://127.0.0.1:{self.ports['berthd']}",
                "--registry-token", self.tmp / "service-token"]

    def _start(self, name: str, binary: str, argv: list[object], kind: str) -> None:
        p = ServerProcess([self.bin / binary, *argv], self.tmp, name)
        p.wait_listen([kind], timeout=30)
        self.procs[name] = p

    def start_services(self) -> None:
        p, t = self.ports, self.tmp
        for d in ("blob", "logs", "query", "router", "cache"):
            (t / d).mkdir(exist_ok=True)
        self._start("cache-server", "cache-server", [
            # Room for every app the tests make (each reserves its cache_bytes, 64 MiB).
            "-p", p["cache"], "-l", "127.0.0.1", "-m", "8192",
            "--admin-listen", f"127.0.0.1:{p['cache_admin']}",
            "--registry-state", t / "cache" / "registry.toml", *self.registry()], "memcache")
        # berthd's operator token opens their admin endpoints (the purge at destroy).
        operator = (t / "berthd" / "operator-token").read_text().strip()
        (t / "operators.toml").write_text(
            f'operator_tokens = ["{hashlib.sha256(operator.encode()).hexdigest()}"]\n')
        # A small metadata log: its two files are written full of zeros at start.
        (t / "blob.toml").write_text((t / "operators.toml").read_text() + 'meta_log_size = "1MiB"\n')
        self._start("blob-server", "blob-server", [
            "--config", t / "blob.toml", "--data-dir", t / "blob",
            "--listen", f"127.0.0.1:{p['blob']}",
            "--admin-listen", f"127.0.0.1:{p['blob_admin']}", *self.registry()], "http")
        self._start("log-collector", "log-collector", [
            "--config", t / "operators.toml", "--data-dir", t / "logs",
            "--listen-json", f"127.0.0.1:{p['logs']}", "--listen-syslog", "", "--listen-otlp", "",
            "--listen-http", f"127.0.0.1:{p['logs_http']}",
            "--admin-listen", f"127.0.0.1:{p['logs_admin']}", *self.registry()], "json")
        self._start("query-proxy", "query-proxy", [
            "--config", t / "query.toml", "--data-dir", t / "query",
            "--listen", f"127.0.0.1:{p['query']}",
            "--admin-listen", f"127.0.0.1:{p['query_admin']}",
            "--backend", self.mariadb, *self.registry()], "mysql")
        self._start("berth-router", "berth-router", [
            "--config", t / "router.toml", "--data-dir", t / "router",
            "--listen", f"127.0.0.1:{p['router']}",
            "--admin-listen", f"127.0.0.1:{p['router_admin']}"], "http")

    def stop(self) -> None:
        # Destroy what the tests made, so no app user or network guard chain outlives them.
        if "berthd" in self.procs and self.procs["berthd"].proc.poll() is None:
            for app in list(self.apps):
                self.run("apps", "destroy", app, stdin=app + "\n")
        for p in reversed(list(self.procs.values())):
            p.stop(timeout=20)

    # -- the CLI --------------------------------------------------------------------------------

    def env(self, token: str | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")}
        env["BERTH_SERVER"] = f"http://127.0.0.1:{self.ports['berthd']}"
        if token is None:
            env["BERTH_TOKEN_FILE"] = str(self.tmp / "berthd" / "operator-token")
        else:
            env["BERTH_TOKEN"] = token
        return env

    def run(self, *args: object, token: str | None = None, stdin: str | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.bin / "berth"), *map(str, args)], env=self.env(token),
                              capture_output=True, text=True, timeout=timeout, input=stdin)

    def berth(self, *args: object, token: str | None = None, stdin: str | None = None) -> Any:
        done = self.run(*args, "--json", token=token, stdin=stdin)
        assert done.returncode == 0, f"berth {' '.join(map(str, args))}: {done.stderr}{done.stdout}"
        try:
            return json.loads(done.stdout)
        except json.JSONDecodeError:
            # A change streams JSON lines: its progress, then a summary.
            return [json.loads(line) for line in done.stdout.splitlines() if line.strip()][-1]

    def deploy(self, app_dir: Path, *flags: str, token: str | None = None,
               ok: bool = True) -> subprocess.CompletedProcess[str]:
        done = self.run("deploy", app_dir, *flags, token=token)
        if ok:
            assert done.returncode == 0, f"deploy failed:\n{done.stdout}\n{done.stderr}"
        else:
            assert done.returncode != 0, f"deploy should have failed:\n{done.stdout}"
        return done

    def create_app(self, name: str) -> str:
        out = self.berth("apps", "create", name)
        self.apps.append(name)
        token: str = out["secret"] if "secret" in out else out["token"]["secret"]
        return token

    # -- what users see -------------------------------------------------------------------------

    def get(self, app: str, path: str = "/", timeout: float = 5) -> tuple[int, str]:
        req = urllib.request.Request(f"http://127.0.0.1:{self.ports['router']}{path}",
                                     headers={"Host": f"{app}.localhost"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")

    def status(self, app: str) -> Any:
        return self.berth("status", app)

    def releases(self, app: str) -> list[Any]:
        out = self.berth("releases", app)
        return out["releases"] if isinstance(out, dict) else out
