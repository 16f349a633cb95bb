"""Fixtures that start a real cache server per test: ours, or memcached with --memcached-reference.

Our binary is started on port 0 and tells its bound addresses on stdout (`LISTEN memcache
127.0.0.1:PORT`, `LISTEN admin 127.0.0.1:PORT`); memcached gets a free port and is polled
until it accepts. Flags are memcached's own (-m -c -t -I -A -F -Y ...), so one test can drive both.
"""

from __future__ import annotations

import os
import shutil
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

from support.procs import ServerProcess, free_port
from support.wire import Wire

BUILD_HINT = "run `cargo build --release -p cache-server` (or scripts/test, which builds everything)"


@dataclass
class CacheServer:
    """A running cache server under test."""

    kind: str  # "berth" or "memcached"
    host: str
    port: int
    admin: tuple[str, int] | None
    process: ServerProcess
    flags: tuple[str, ...] = field(default_factory=tuple)

    @property
    def is_memcached(self) -> bool:
        return self.kind == "memcached"

    @property
    def addr(self) -> str:
        return f"{self.host}:{self.port}"

    def connect(self, timeout: float = 5.0) -> Wire:
        return Wire(self.host, self.port, timeout=timeout)

    def stats(self, login: bytes | None = None) -> dict[str, str]:
        """`stats` on a fresh connection, after the fake-set login when one is given."""
        with self.connect() as w:
            if login is not None:
                w.call(b"set auth 0 0 %d\r\n" % len(login) + login + b"\r\n", b"STORED\r\n")
            return w.stats()


class CacheServerFactory:
    """Starts servers for one test and stops them all at teardown."""

    def __init__(self, config: pytest.Config, log_dir: Path) -> None:
        self.reference = bool(config.getoption("--memcached-reference"))
        self.bin_dir = Path(config.getoption("--bin-dir"))
        self.memcached_bin = config.getoption("--memcached-bin")
        self.log_dir = log_dir
        self.servers: list[CacheServer] = []

    @property
    def kind(self) -> str:
        return "memcached" if self.reference else "berth"

    def start(self, *flags: str, timeout: float = 15.0) -> CacheServer:
        server = self._start_memcached(flags, timeout) if self.reference else self._start_ours(flags, timeout)
        self.servers.append(server)
        return server

    def _name(self) -> str:
        return f"{self.kind}-{len(self.servers)}"

    def _start_ours(self, flags: tuple[str, ...], timeout: float) -> CacheServer:
        binary = self.bin_dir / "cache-server"
        if not binary.is_file():
            pytest.fail(f"{binary} does not exist: {BUILD_HINT}", pytrace=False)
        argv = [str(binary), "-p", "0", "-U", "0", "-l", "127.0.0.1",
                "--admin-listen", "127.0.0.1:0", *flags]
        proc = ServerProcess(argv, self.log_dir, self._name())
        try:
            addrs = proc.wait_listen(["memcache", "admin"], timeout=timeout)
        except AssertionError:
            proc.send_signal(signal.SIGKILL)
            proc.wait_exit(5)
            proc.close_files()
            raise
        host, port = addrs["memcache"]
        return CacheServer("berth", host, port, addrs["admin"], proc, flags)

    def _start_memcached(self, flags: tuple[str, ...], timeout: float) -> CacheServer:
        if shutil.which(self.memcached_bin) is None:
            pytest.fail(f"{self.memcached_bin} not found: apt-get install memcached", pytrace=False)
        user = ["-u", "root"] if os.geteuid() == 0 else []
        last_error: AssertionError | None = None
        # free_port() can race with another process; a bind failure is retried on a new port.
        for _ in range(3):
            port = free_port()
            argv = [self.memcached_bin, "-p", str(port), "-U", "0", "-l", "127.0.0.1", *user, *flags]
            proc = ServerProcess(argv, self.log_dir, self._name())
            try:
                proc.wait_port("127.0.0.1", port, timeout=timeout)
            except AssertionError as err:
                proc.send_signal(signal.SIGKILL)
                proc.wait_exit(5)
                proc.close_files()
                last_error = err
                continue
            return CacheServer("memcached", "127.0.0.1", port, None, proc, flags)
        assert last_error is not None
        raise last_error

    def stop_all(self) -> None:
        for server in self.servers:
            # memcached only notices SIGTERM on its next 1 s clock tick; nothing is being
            # tested about its shutdown, so the reference run does not wait for it.
            server.process.stop(sig=signal.SIGKILL if server.is_memcached else signal.SIGTERM)


@pytest.fixture
def cache_servers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CacheServerFactory]:
    factory = CacheServerFactory(request.config, tmp_path / "logs")
    yield factory
    factory.stop_all()


@pytest.fixture
def server(cache_servers: CacheServerFactory) -> CacheServer:
    """A fresh server with default flags, private to the test."""
    return cache_servers.start()


@pytest.fixture
def mc(server: CacheServer) -> Iterator[Wire]:
    """A raw connection to `server`."""
    w = server.connect()
    yield w
    w.close()
