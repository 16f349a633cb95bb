"""Forwarding to NATS JetStream: a private Debian nats-server with JetStream, every event
arrives once, in order, across a collector crash."""

from __future__ import annotations

import base64
import json
import shutil
import socket
import time
from pathlib import Path

import pytest

from support.procs import ServerProcess, free_port

from .conftest import CollectorFactory


class Nats:
    """A minimal NATS client for the test: request/reply over one connection."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.f = self.sock.makefile("rb")
        assert self.f.readline().startswith(b"INFO ")
        self.sock.sendall(b'CONNECT {"verbose":false}\r\nSUB _INBOX.t.* 1\r\nPING\r\n')
        while self.f.readline().strip() != b"PONG":
            pass
        self.n = 0

    def request(self, subject: str, body: dict | None = None) -> dict:
        self.n += 1
        payload = json.dumps(body).encode() if body is not None else b""
        self.sock.sendall(f"PUB {subject} _INBOX.t.{self.n} {len(payload)}\r\n".encode() + payload + b"\r\n")
        while True:
            line = self.f.readline().decode().strip()
            if line == "PING":
                self.sock.sendall(b"PONG\r\n")
                continue
            if line.startswith("MSG "):
                parts = line.split()
                data = self.f.read(int(parts[-1]) + 2)[:-2]
                if parts[1] == f"_INBOX.t.{self.n}":
                    return json.loads(data)

    def close(self) -> None:
        self.f.close()
        self.sock.close()


@pytest.fixture
def nats_port(tmp_path: Path):
    binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
    if not Path(binary).exists():
        pytest.fail("nats-server not found: apt-get install nats-server", pytrace=False)
    port = free_port()
    proc = ServerProcess([binary, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(tmp_path / "js")],
                         tmp_path / "logs", "nats-server")
    try:
        proc.wait_port("127.0.0.1", port)
        yield port
    finally:
        proc.stop()


def stored(n: Nats) -> int:
    info = n.request("$JS.API.STREAM.INFO.BERTH_LOGS")
    return info.get("state", {}).get("messages", 0)


def wait_stored(n: Nats, count: int) -> None:
    deadline = time.monotonic() + 20
    while stored(n) < count:
        assert time.monotonic() < deadline, f"JetStream holds {stored(n)} events, wanted {count}"
        time.sleep(0.05)
    time.sleep(0.3)
    assert stored(n) == count, "duplicates forwarded"


def test_events_reach_jetstream_once_and_in_order(collectors: CollectorFactory, nats_port: int) -> None:
    c = collectors.start(config=f'forward_nats = "nats://127.0.0.1:{nats_port}"\n')
    conn = c.json_conn({"app": "shop", "ack": True})
    conn.send(*({"message": f"m{i}", "level": "error" if i % 2 else "info"} for i in range(50)))
    assert conn.wait_ack(50) == []
    conn.close()
    n = Nats(nats_port)
    wait_stored(n, 50)
    first = n.request("$JS.API.STREAM.MSG.GET.BERTH_LOGS", {"seq": 1})["message"]
    assert first["subject"] == "berth.logs.shop"
    event = json.loads(base64.b64decode(first["data"]))
    assert (event["seq"], event["message"], event["level"]) == (1, "m0", "info")
    last = n.request("$JS.API.STREAM.MSG.GET.BERTH_LOGS", {"seq": 50})["message"]
    assert json.loads(base64.b64decode(last["data"]))["message"] == "m49"
    # A crash and restart resumes from the forwarding cursor without duplicates.
    c2 = collectors.restart(c, kill=True)
    conn = c2.json_conn({"app": "shop", "ack": True})
    conn.send(*({"message": f"after{i}"} for i in range(10)))
    assert conn.wait_ack(10) == []
    conn.close()
    wait_stored(n, 60)
    assert c2.metric("log_forward_nats_events_total") >= 10
    n.close()
