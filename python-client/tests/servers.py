"""Real cache-server processes for the berth client tests, and polling helpers.

Readiness is the server's own `LISTEN memcache host:port` line, waited for with a deadline;
servers are stopped by PID with SIGTERM.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO


class CacheServer:
    """One cache-server process; `restart()` brings it back on the same port."""

    def __init__(self, binary: Path, args: list[str], log_dir: Path, name: str) -> None:
        self.binary = binary
        self.args = args
        self.log_dir = log_dir
        self.name = name
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._starts = 0
        self.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self._starts += 1
        stderr_path = self.log_dir / f"{self.name}.{self._starts}.stderr"
        argv = [
            str(self.binary),
            "-p",
            str(self.port),
            "-l",
            "127.0.0.1",
            "--admin-listen",
            "127.0.0.1:0",
            *self.args,
        ]
        with open(stderr_path, "wb") as stderr:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr
            )
        lines: list[str] = []
        found = threading.Event()

        def read() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for raw in self.proc.stdout:
                line = raw.decode("utf-8", "replace").strip()
                lines.append(line)
                if line.startswith("LISTEN memcache "):
                    self.port = int(line.rsplit(":", 1)[1])
                    found.set()
            found.set()  # EOF: the process is gone; the check below reports it

        threading.Thread(target=read, daemon=True).start()
        if not found.wait(15) or not self.port or self.proc.poll() is not None:
            self.stop()
            raise AssertionError(
                f"{' '.join(argv)} did not print LISTEN memcache within 15s\n"
                f"stdout: {lines}\nstderr: {stderr_path.read_text(errors='replace')[-3000:]}"
            )

    def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
                raise AssertionError(f"{self.name} ignored SIGTERM for 10s") from None
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


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


def free_port() -> int:
    """A port nothing listens on (bound and released a moment ago)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_until(
    predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition"
) -> None:
    """Polls `predicate()` every 50 ms until it is true or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


class BlobServer:
    """One blob-server process with its own data directory; `restart()` keeps port and data.

    Readiness is its `LISTEN http host:port` line on stdout.
    """

    def __init__(
        self, binary: Path, args: list[str], data_dir: Path, log_dir: Path, name: str
    ) -> None:
        self.binary = binary
        self.args = args
        self.data_dir = data_dir
        self.log_dir = log_dir
        self.name = name
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._starts = 0
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._starts += 1
        stderr_path = self.log_dir / f"{self.name}.{self._starts}.stderr"
        argv = [
            str(self.binary),
            "--data-dir",
            str(self.data_dir),
            "--listen",
            f"127.0.0.1:{self.port}",
            "--admin-listen",
            "127.0.0.1:0",
            *self.args,
        ]
        with open(stderr_path, "wb") as stderr:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr
            )
        lines: list[str] = []
        found = threading.Event()

        def read(stdout: IO[bytes]) -> None:
            with stdout:
                for raw in stdout:
                    line = raw.decode("utf-8", "replace").strip()
                    lines.append(line)
                    if line.startswith("LISTEN http "):
                        self.port = int(line.rsplit(":", 1)[1])
                        found.set()
            found.set()

        assert self.proc.stdout is not None
        threading.Thread(target=read, args=(self.proc.stdout,), daemon=True).start()
        if not found.wait(15) or not self.port or self.proc.poll() is not None:
            self.stop()
            raise AssertionError(
                f"{' '.join(argv)} did not print LISTEN http within 15s\n"
                f"stdout: {lines}\nstderr: {stderr_path.read_text(errors='replace')[-3000:]}"
            )

    def stop(self) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
                raise AssertionError(f"{self.name} ignored SIGTERM for 10s") from None
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


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
