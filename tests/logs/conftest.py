"""Fixtures that start a real log collector per test (binary from --bin-dir, port 0, LISTEN
lines on stdout) and talk to it with real clients: sockets, Python logging, logger(1),
rsyslog, OpenTelemetry's OTLP/gRPC exporter, curl-like HTTP via http.client, and the `berth`
CLI.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest

from support.procs import ServerProcess

BUILD_HINT = (
    "run `cargo build --release -p log-collector -p berth-deployer` "
    "(or scripts/test, which builds everything)"
)
KINDS = ["json", "syslog-tcp", "syslog-udp", "http", "otlp", "admin"]

# Tokens of the test tenants (development form `token = "…"` in the tenants file).
TOKENS = {"shop": "shop-token-0123456789", "billing": "billing-token-9876543210"}
OPERATOR_TOKEN = "operator-token-abcdef"


def tenants_toml(extra: dict[str, str] | None = None) -> str:
    out = []
    for app, token in TOKENS.items():
        out.append(f'[[app]]\nname = "{app}"\ntoken = "{token}"\n')
        if extra and app in extra:
            out.append(extra[app] + "\n")
    return "\n".join(out)


@dataclass
class Collector:
    """A running log collector under test."""

    process: ServerProcess
    addrs: dict[str, tuple[str, int]]
    data_dir: Path
    argv: list[str] = field(default_factory=list)

    def addr(self, kind: str) -> tuple[str, int]:
        return self.addrs[kind]

    def otlp_endpoint(self) -> str:
        """The OTLP/gRPC endpoint as OpenTelemetry exporters take it."""
        host, port = self.addrs["otlp"]
        return f"http://{host}:{port}"

    def http_get(self, path: str, token: str | None = None, timeout: float = 10.0) -> tuple[int, Any]:
        host, port = self.addrs["http"]
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        try:
            return resp.status, json.loads(body)
        except ValueError:
            return resp.status, body.decode("utf-8", "replace")

    def events(self, app: str, token: str | None = None, **params: Any) -> list[dict[str, Any]]:
        """Every event of `app` matching `params`, oldest first, following cursors."""
        out: list[dict[str, Any]] = []
        cursor = None
        while True:
            q = dict(params, order="asc", limit=1000)
            if cursor is not None:
                q["cursor"] = cursor
            query = "&".join(f"{k}={v}" for k, v in q.items())
            status, body = self.http_get(f"/v1/apps/{app}/events?{query}", token)
            assert status == 200, f"query failed: {status} {body}"
            out.extend(body["events"])
            if not body["more"]:
                return out
            cursor = body["cursor"]

    def wait_events(
        self, app: str, count: int, token: str | None = None, timeout: float = 10.0, **params: Any
    ) -> list[dict[str, Any]]:
        """Poll until `app` has at least `count` matching events (with a deadline)."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.events(app, token, **params)
            if len(got) >= count:
                return got
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{app}: {len(got)} events after {timeout}s, wanted {count}: {got[-5:]}\n"
                    + self.process.describe()
                )
            time.sleep(0.05)

    def metrics(self, token: str | None = None) -> str:
        host, port = self.addrs["admin"]
        conn = http.client.HTTPConnection(host, port, timeout=10)
        conn.request("GET", "/metrics", headers={"Authorization": f"Bearer {token}"} if token else {})
        body = conn.getresponse().read().decode()
        conn.close()
        return body

    def metric(self, name: str, token: str | None = None, **labels: str) -> float:
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in self.metrics(token).splitlines():
            if line.startswith("#"):
                continue
            key, _, value = line.rpartition(" ")
            if key == name or (labels and key.startswith(name + "{") and all(
                f'{k}="{v}"' in key for k, v in labels.items()
            )):
                return float(value)
        raise AssertionError(f"metric {name}{{{want}}} not found")

    def json_conn(self, hello: dict[str, Any] | None = None, timeout: float = 10.0) -> "JsonConn":
        c = JsonConn(self.addrs["json"], timeout)
        if hello is not None:
            reply = c.hello(hello)
            assert reply.get("ok") == "hello", reply
        return c


class JsonConn:
    """A raw JSON-lines connection that reads replies line by line."""

    def __init__(self, addr: tuple[str, int], timeout: float) -> None:
        self.sock = socket.create_connection(addr, timeout=timeout)
        self.file = self.sock.makefile("rb")

    def hello(self, body: dict[str, Any]) -> dict[str, Any]:
        self.send_raw(json.dumps({"hello": body}).encode() + b"\n")
        return self.reply()

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, *events: dict[str, Any]) -> None:
        self.send_raw(b"".join(json.dumps(e).encode() + b"\n" for e in events))

    def reply(self) -> dict[str, Any]:
        line = self.file.readline()
        assert line, "connection closed by the collector"
        return json.loads(line)

    def wait_ack(self, lines: int) -> list[dict[str, Any]]:
        """Read replies until `{"ack": n}` with n >= lines; returns the error replies seen."""
        errors = []
        while True:
            r = self.reply()
            if "ack" in r and isinstance(r["ack"], int):
                if r["ack"] >= lines:
                    return errors
            elif "error" in r:
                errors.append(r)

    def close(self) -> None:
        self.file.close()
        self.sock.close()


class CollectorFactory:
    def __init__(self, config: pytest.Config, tmp: Path) -> None:
        self.bin_dir = Path(config.getoption("--bin-dir"))
        self.tmp = tmp
        self.running: list[Collector] = []
        self.count = 0

    def binary(self, name: str) -> Path:
        path = self.bin_dir / name
        if not path.is_file():
            pytest.fail(f"{path} does not exist: {BUILD_HINT}", pytrace=False)
        return path

    def start(
        self,
        *flags: str,
        tenants: str | None = None,
        operator: bool = False,
        config: str = "",
        data_dir: Path | None = None,
        timeout: float = 15.0,
    ) -> Collector:
        self.count += 1
        data_dir = data_dir or self.tmp / f"data{self.count}"
        argv = [
            str(self.binary("log-collector")),
            "--data-dir", str(data_dir),
            "--listen-json", "127.0.0.1:0",
            "--listen-syslog", "127.0.0.1:0",
            "--listen-http", "127.0.0.1:0",
            "--listen-otlp", "127.0.0.1:0",
            "--admin-listen", "127.0.0.1:0",
        ]
        if tenants is not None:
            path = self.tmp / f"tenants{self.count}.toml"
            path.write_text(tenants)
            argv += ["--tenants", str(path)]
        if operator:
            digest = hashlib.sha256(OPERATOR_TOKEN.encode()).hexdigest()
            config += f'\noperator_tokens = ["{digest}"]\n'
        if config:
            cfg = self.tmp / f"config{self.count}.toml"
            cfg.write_text(config)
            argv += ["--config", str(cfg)]
        argv += list(flags)
        proc = ServerProcess(argv, self.tmp / "logs", f"log-collector-{self.count}")
        try:
            addrs = proc.wait_listen(KINDS, timeout=timeout)
        except AssertionError:
            proc.send_signal(signal.SIGKILL)
            proc.wait_exit(5)
            proc.close_files()
            raise
        c = Collector(proc, addrs, data_dir, argv)
        self.running.append(c)
        return c

    def restart(self, c: Collector, kill: bool = False) -> Collector:
        """Stop `c` (SIGKILL when `kill`, else SIGTERM) and start it again on its data dir."""
        if kill:
            c.process.send_signal(signal.SIGKILL)
            c.process.wait_exit(10)
            c.process.close_files()
        else:
            assert c.process.stop() == 0, c.process.describe()
        self.running.remove(c)
        self.count += 1
        proc = ServerProcess(c.argv, self.tmp / "logs", f"log-collector-{self.count}")
        addrs = proc.wait_listen(KINDS, timeout=15)
        n = Collector(proc, addrs, c.data_dir, c.argv)
        self.running.append(n)
        return n

    def stop_all(self) -> None:
        for c in self.running:
            c.process.stop()


@pytest.fixture
def collectors(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CollectorFactory]:
    factory = CollectorFactory(request.config, tmp_path)
    yield factory
    factory.stop_all()


@pytest.fixture
def open_collector(collectors: CollectorFactory) -> Collector:
    """A collector without tenants: input names its app, reads need no token."""
    return collectors.start()


@pytest.fixture
def collector(collectors: CollectorFactory) -> Collector:
    """A collector with the two test tenants (shop, billing) and an operator token."""
    return collectors.start(tenants=tenants_toml(), operator=True)
