"""The process: bound addresses on stdout, admin health endpoint, graceful SIGTERM/SIGINT."""

from __future__ import annotations

import http.client
import signal
import socket
import time

import pytest

from .conftest import CacheServer


@pytest.mark.ours_only
def test_listen_lines(server: CacheServer) -> None:
    lines = [line for line in server.process.stdout_lines() if line.startswith("LISTEN ")]
    assert server.admin is not None
    assert sorted(lines) == sorted([f"LISTEN memcache 127.0.0.1:{server.port}",
                                    f"LISTEN admin 127.0.0.1:{server.admin[1]}"]), lines
    assert server.port != 0 and server.admin is not None and server.admin[1] != 0


@pytest.mark.ours_only
def test_admin_healthz(server: CacheServer) -> None:
    assert server.admin is not None
    conn = http.client.HTTPConnection(*server.admin, timeout=5)
    try:
        conn.request("GET", "/healthz")
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 200, (resp.status, body)
    finally:
        conn.close()


def _exit_code_after(server: CacheServer, sig: int, within: float) -> int:
    start = time.monotonic()
    server.process.send_signal(sig)
    code = server.process.wait_exit(within)
    elapsed = time.monotonic() - start
    assert code is not None, (
        f"still running {within}s after signal {sig}\n" + server.process.describe())
    assert elapsed <= within
    return code


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_with_idle_clients_exits_zero_at_once(server: CacheServer, sig: int) -> None:
    idle = server.connect()
    used = server.connect()
    try:
        idle.sync()
        used.call(b"set k 0 0 1\r\nx\r\n", b"STORED\r\n")
        # No request is in flight, so nothing justifies waiting for a drain deadline.
        code = _exit_code_after(server, sig, within=2.0)
        assert code == 0, f"exit code {code} after signal {sig}\n" + server.process.describe()
        idle.expect_eof(timeout=5)
        used.expect_eof(timeout=5)
        with pytest.raises(OSError):
            socket.create_connection((server.host, server.port), timeout=1).close()
    finally:
        idle.close()
        used.close()


def test_sigterm_with_a_request_in_flight_exits_zero(server: CacheServer) -> None:
    busy = server.connect()
    try:
        busy.send(b"set half 0 0 10\r\nabc")  # a client stalled mid-value
        # Ours gives in-flight requests a drain deadline (5 s by default), then aborts them.
        code = _exit_code_after(server, signal.SIGTERM, within=10.0)
        assert code == 0, f"exit code {code}\n" + server.process.describe()
        busy.expect_eof(timeout=5)
    finally:
        busy.close()


def test_sigterm_idle_server(server: CacheServer) -> None:
    assert _exit_code_after(server, signal.SIGTERM, within=5.0) == 0, server.process.describe()
