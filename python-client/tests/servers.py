"""Real cache-server processes for the berth client tests, and polling helpers.

Readiness is the server's own `LISTEN memcache host:port` line, waited for with a deadline;
servers are stopped by PID with SIGTERM.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path


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
