"""Real Berth server processes for the berth client tests, and polling helpers.

Readiness is the server's own `LISTEN <kind> host:port` lines, waited for with a deadline;
servers are stopped by PID with SIGTERM.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

from berth.testing import Process
from berth.testing import free_port as free_port


class CacheServer(Process):
    """One cache-server process; `restart()` brings it back on the same port."""

    def __init__(self, binary: Path, args: list[str], log_dir: Path, name: str) -> None:
        self.binary = binary
        self.args = args
        super().__init__([], ["memcache"], log_dir, name)

    @property
    def port(self) -> int:
        return self.ports["memcache"]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        port = self.ports.get("memcache", 0)
        return [
            str(self.binary),
            *("-p", str(port), "-l", "127.0.0.1", "--admin-listen", "127.0.0.1:0"),
            *self.args,
        ]


class ServerFactory:
    """Starts servers for one test (or module) and stops every one of them afterwards."""

    def __init__(self, binary: Path, tenants: Path, log_dir: Path) -> None:
        self.binary = binary
        self.tenants = tenants
        self.log_dir = log_dir
        self.servers: list[CacheServer] = []

    def __call__(self, *extra: str, tenants: bool = True) -> CacheServer:
        args = ["-m", "16", "-I", "64k", *extra]
        if tenants:
            args += ["--tenants", str(self.tenants)]
        server = CacheServer(self.binary, args, self.log_dir, f"cache-{len(self.servers)}")
        self.servers.append(server)
        return server

    def stop_all(self) -> None:
        for server in self.servers:
            server.stop()


def wait_until(
    predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition"
) -> None:
    """Polls `predicate()` every 50 ms until it is true or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


class BlobServer(Process):
    """One blob-server process with its own data directory; `restart()` keeps port and data."""

    def __init__(
        self, binary: Path, args: list[str], data_dir: Path, log_dir: Path, name: str
    ) -> None:
        self.binary = binary
        self.args = args
        self.data_dir = data_dir
        super().__init__([], ["http"], log_dir, name)

    @property
    def port(self) -> int:
        return self.ports["http"]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        port = self.ports.get("http", 0)
        return [
            str(self.binary),
            *("--data-dir", str(self.data_dir), "--listen", f"127.0.0.1:{port}"),
            *("--admin-listen", "127.0.0.1:0"),
            *self.args,
        ]


class BlobServerFactory:
    """Starts blob servers (tenants file and config file given) and stops them all afterwards."""

    def __init__(self, binary: Path, tenants: Path, config: Path, work_dir: Path) -> None:
        self.binary = binary
        self.tenants = tenants
        self.config = config
        self.work_dir = work_dir
        self.servers: list[BlobServer] = []

    def __call__(self, *extra: str) -> BlobServer:
        name = f"blob-{len(self.servers)}"
        data_dir = self.work_dir / name
        data_dir.mkdir()
        args = ["--config", str(self.config), "--tenants", str(self.tenants), *extra]
        server = BlobServer(self.binary, args, data_dir, self.work_dir, name)
        self.servers.append(server)
        return server

    def stop_all(self) -> None:
        for server in self.servers:
            server.stop()


class DroppingProxy:
    """A TCP proxy in front of a real server that can drop kept-alive connections on demand.

    After `arm()`, every connection already open is reset (RST) when its next request arrives,
    as a server does that closed an idle connection just as the client reused it; connections
    opened later are forwarded normally. `dropped` counts the requests so refused.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.dropped = 0
        self._generation = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def arm(self) -> None:
        with self._lock:
            self._generation += 1

    def close(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                born = self._generation
            threading.Thread(
                target=self._pipe_up, args=(client, upstream, born), daemon=True
            ).start()
            threading.Thread(target=self._pipe_down, args=(upstream, client), daemon=True).start()

    def _pipe_up(self, client: socket.socket, upstream: socket.socket, born: int) -> None:
        try:
            while data := client.recv(65536):
                with self._lock:
                    drop = self._generation != born
                    if drop:
                        self.dropped += 1
                if drop:
                    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    break
                upstream.sendall(data)
        except OSError:
            pass
        client.close()
        upstream.close()

    def _pipe_down(self, upstream: socket.socket, client: socket.socket) -> None:
        try:
            while data := upstream.recv(65536):
                client.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            client.shutdown(socket.SHUT_WR)


class LogCollector(Process):
    """One log-collector process (JSON lines and HTTP only) with its own data directory."""

    def __init__(self, binary: Path, args: list[str], data_dir: Path, log_dir: Path) -> None:
        self.binary = binary
        self.args = args
        self.data_dir = data_dir
        super().__init__([], ["json", "http"], log_dir, "log-collector")

    @property
    def json_address(self) -> str:
        return f"127.0.0.1:{self.ports['json']}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['http']}"

    def command(self) -> list[str]:
        return [
            str(self.binary),
            *("--data-dir", str(self.data_dir)),
            *("--listen-json", f"127.0.0.1:{self.ports.get('json', 0)}"),
            *("--listen-http", f"127.0.0.1:{self.ports.get('http', 0)}"),
            *("--listen-syslog", "", "--admin-listen", "127.0.0.1:0"),
            *self.args,
        ]


class QueryProxy(Process):
    """One query-proxy process in front of the test MariaDB."""

    @property
    def port(self) -> int:
        return self.ports["mysql"]
