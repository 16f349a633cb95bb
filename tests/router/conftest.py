"""Fixtures for the router tests: a real `berth-router` (binary from --bin-dir, port 0, LISTEN
lines on stdout), real WSGI backends served by granian, a real log collector, and real HTTP
clients (http.client).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

from support.procs import ServerProcess, free_port

HERE = Path(__file__).resolve().parent
BUILD_HINT = "run `cargo build --release -p berth-router` (or scripts/test, which builds everything)"
CONTROL_TOKEN = "control-token-0123456789abcdef"
OPERATOR_TOKEN = "operator-token-abcdef"


def sha256(s: str) -> str:
    return hashlib.sha256(s.encode()).hexdigest()


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def http_request(
    addr: tuple[str, int],
    method: str,
    path: str,
    host: str | None = None,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    timeout: float = 10.0,
) -> Reply:
    conn = http.client.HTTPConnection(addr[0], addr[1], timeout=timeout)
    try:
        hdrs = dict(headers or {})
        conn.putrequest(method, path, skip_host=host is not None)
        if host is not None:
            conn.putheader("Host", host)
        if body is not None:
            hdrs.setdefault("Content-Length", str(len(body)))
        for k, v in hdrs.items():
            conn.putheader(k, v)
        conn.endheaders(body)
        resp = conn.getresponse()
        data = resp.read()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
    finally:
        conn.close()


@dataclass
class Router:
    process: ServerProcess
    addrs: dict[str, tuple[str, int]]
    data_dir: Path
    argv: list[str]

    @property
    def http(self) -> tuple[str, int]:
        return self.addrs["http"]

    def get(self, path: str, host: str | None = None, **kw: Any) -> Reply:
        return http_request(self.http, "GET", path, host=host, **kw)

    def request(self, method: str, path: str, host: str | None = None, **kw: Any) -> Reply:
        return http_request(self.http, method, path, host=host, **kw)

    def admin(self, method: str, path: str, token: str | None = CONTROL_TOKEN, body: Any = None) -> Reply:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        return http_request(self.addrs["admin"], method, path, headers=headers, body=data)

    def put_routes(self, table: dict[str, Any], token: str | None = CONTROL_TOKEN) -> Reply:
        return self.admin("PUT", "/v1/routes", token, table)

    def push(self, table: dict[str, Any]) -> None:
        r = self.put_routes(table)
        assert r.status == 200, (r.status, r.body)

    def metric(self, name: str, **labels: str) -> float:
        body = self.admin("GET", "/metrics", token=OPERATOR_TOKEN).body.decode()
        for line in body.splitlines():
            if line.startswith("#"):
                continue
            key, _, value = line.rpartition(" ")
            if key == name or (
                key.startswith(name + "{") and all(f'{k}="{v}"' in key for k, v in labels.items())
            ):
                return float(value)
        raise AssertionError(f"metric {name} {labels} not found in\n{body}")


class RouterFactory:
    def __init__(self, config: pytest.Config, tmp: Path) -> None:
        self.bin_dir = Path(config.getoption("--bin-dir"))
        self.tmp = tmp
        self.running: list[Router] = []
        self.count = 0

    def binary(self) -> Path:
        path = self.bin_dir / "berth-router"
        if not path.is_file():
            pytest.fail(f"{path} does not exist: {BUILD_HINT}", pytrace=False)
        return path

    def start(
        self, config: str = "", data_dir: Path | None = None, https: bool = False, control: bool = True
    ) -> Router:
        self.count += 1
        data_dir = data_dir or self.tmp / f"router{self.count}"
        cfg = self.tmp / f"router{self.count}.toml"
        text = f'operator_tokens = ["{sha256(OPERATOR_TOKEN)}"]\n' + config
        if control:
            text = f'control_tokens = ["{sha256(CONTROL_TOKEN)}"]\n' + text
        cfg.write_text(text)
        argv = [
            str(self.binary()),
            "--config", str(cfg),
            "--data-dir", str(data_dir),
            "--listen", "127.0.0.1:0",
            "--admin-listen", "127.0.0.1:0",
        ]
        if https:
            argv += ["--https-listen", "127.0.0.1:0"]
        return self._spawn(argv, data_dir, https)

    def _spawn(self, argv: list[str], data_dir: Path, https: bool) -> Router:
        proc = ServerProcess(argv, self.tmp / "logs", f"router-{self.count}")
        kinds = ["http", "admin"] + (["https"] if https else [])
        try:
            addrs = proc.wait_listen(kinds)
        except AssertionError:
            proc.send_signal(signal.SIGKILL)
            proc.wait_exit(5)
            proc.close_files()
            raise
        r = Router(proc, addrs, data_dir, argv)
        self.running.append(r)
        return r

    def restart(self, r: Router, kill: bool = False) -> Router:
        """Stops `r` (SIGKILL when `kill`) and starts it again on the same data dir."""
        if kill:
            r.process.send_signal(signal.SIGKILL)
            r.process.wait_exit(10)
            r.process.close_files()
        else:
            assert r.process.stop() == 0, r.process.describe()
        self.running.remove(r)
        self.count += 1
        return self._spawn(r.argv, r.data_dir, "--https-listen" in r.argv)

    def stop_all(self) -> None:
        for r in self.running:
            r.process.stop()


class Backend:
    """One granian process serving echoapp.py on a TCP port or a Unix socket."""

    def __init__(
        self, tmp: Path, name: str, uds: bool = False, threads: int = 8, port: int | None = None
    ) -> None:
        self.name = name
        env_app = "echoapp:application"
        argv = [
            sys.executable, "-m", "granian", "--interface", "wsgi",
            "--workers", "1", "--blocking-threads", str(threads), "--no-ws",
            "--log-level", "warning",
        ]
        if uds:
            self.sock = tmp / f"{name}.sock"
            argv += ["--uds", str(self.sock)]
            self.addr = f"unix:{self.sock}"
        else:
            self.port = port or free_port()
            argv += ["--host", "127.0.0.1", "--port", str(self.port)]
            self.addr = f"127.0.0.1:{self.port}"
        argv.append(env_app)
        os.environ["BACKEND_NAME"] = name
        old_pp = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = str(HERE) + (os.pathsep + old_pp if old_pp else "")
        try:
            self.process = ServerProcess(argv, tmp / "logs", f"granian-{name}")
        finally:
            if old_pp is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = old_pp
        self.wait_ready(uds)

    def wait_ready(self, uds: bool) -> None:
        deadline = time.monotonic() + 20
        while True:
            if self.process.proc.poll() is not None:
                raise AssertionError("granian exited\n" + self.process.describe())
            try:
                if uds:
                    import socket

                    s = socket.socket(socket.AF_UNIX)
                    s.connect(str(self.sock))
                    s.close()
                else:
                    r = http_request(("127.0.0.1", self.port), "GET", "/ready", timeout=2)
                    assert r.status == 200
                return
            except (OSError, AssertionError):
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"granian {self.name} not ready (is granian installed in the venv? "
                        "pip install -e python-client)\n" + self.process.describe()
                    )
                time.sleep(0.05)

    def stop(self) -> None:
        self.process.stop(timeout=15)


class BackendFactory:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.running: list[Backend] = []

    def start(self, name: str, uds: bool = False, threads: int = 8, port: int | None = None) -> Backend:
        b = Backend(self.tmp, name, uds=uds, threads=threads, port=port)
        self.running.append(b)
        return b

    def stop_all(self) -> None:
        for b in self.running:
            b.stop()


@pytest.fixture
def routers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RouterFactory]:
    f = RouterFactory(request.config, tmp_path)
    yield f
    f.stop_all()


@pytest.fixture
def router(routers: RouterFactory) -> Router:
    return routers.start()


@pytest.fixture
def backends(tmp_path: Path) -> Iterator[BackendFactory]:
    f = BackendFactory(tmp_path)
    yield f
    f.stop_all()


def app_entry(name: str, *backends: Backend | str, **extra: Any) -> dict[str, Any]:
    """A route table entry for `name` served by `backends`."""
    entry: dict[str, Any] = {
        "name": name,
        "backends": [b if isinstance(b, str) else b.addr for b in backends],
    }
    entry.update(extra)
    return entry
