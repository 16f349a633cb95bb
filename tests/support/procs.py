"""Start, watch and stop real server processes for the tests.

Readiness is always polled with a deadline (a LISTEN line on stdout or an accepting port),
never slept for, and every failure message carries the command line and the process' stderr.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BIN_DIR = REPO_ROOT / "target" / "release"

LISTEN_RE = re.compile(r"^LISTEN (\S+) (\S+):(\d+)$")


def free_port() -> int:
    """A port that was free a moment ago (only for servers that cannot bind port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """One child process, with stdout collected line by line and stderr kept in a file."""

    def __init__(self, argv: list[str], log_dir: Path, name: str,
                 env: dict[str, str] | None = None) -> None:
        self.argv = [str(a) for a in argv]
        self.name = name
        log_dir.mkdir(parents=True, exist_ok=True)
        self.stderr_path = log_dir / f"{name}.stderr"
        self._stderr = open(self.stderr_path, "wb")
        self._lines: list[str] = []
        self._cond = threading.Condition()
        self._eof = False
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            cwd=REPO_ROOT,
            env=env,
        )
        # Drain stdout for the whole life of the process so a chatty server never blocks on
        # a full pipe, and so LISTEN lines can be waited for with a deadline.
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            with self._cond:
                self._lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def stdout_lines(self) -> list[str]:
        with self._cond:
            return list(self._lines)

    def stderr_tail(self, limit: int = 4000) -> str:
        if not self._stderr.closed:
            self._stderr.flush()
        try:
            data = self.stderr_path.read_bytes()
        except OSError:
            return ""
        return data[-limit:].decode("utf-8", "replace")

    def describe(self) -> str:
        return (
            f"command: {' '.join(self.argv)}\n"
            f"exit code: {self.proc.poll()}\n"
            f"stdout: {self.stdout_lines()[-20:]}\n"
            f"stderr (tail):\n{self.stderr_tail()}"
        )

    def wait_listen(self, kinds: list[str], timeout: float = 15.0) -> dict[str, tuple[str, int]]:
        """Wait for one `LISTEN <kind> <host>:<port>` line per kind; return the addresses."""
        deadline = time.monotonic() + timeout
        found: dict[str, tuple[str, int]] = {}
        seen = 0
        with self._cond:
            while True:
                for line in self._lines[seen:]:
                    m = LISTEN_RE.match(line.strip())
                    if m:
                        found[m.group(1)] = (m.group(2), int(m.group(3)))
                seen = len(self._lines)
                if all(k in found for k in kinds):
                    return found
                if self._eof:
                    self.wait_exit(2)  # stdout closed: let the exit code show in describe()
                    raise AssertionError(
                        f"{self.name} exited before printing LISTEN lines for {kinds}\n"
                        + self.describe()
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"{self.name} printed no LISTEN line for {kinds} within {timeout}s\n"
                        + self.describe()
                    )
                self._cond.wait(timeout=min(left, 0.2))

    def wait_port(self, host: str, port: int, timeout: float = 15.0) -> None:
        """Poll until host:port accepts a TCP connection (for servers that print nothing)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited during startup\n" + self.describe())
            try:
                with socket.create_connection((host, port), timeout=0.5):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.name} did not accept on {host}:{port} within {timeout}s\n"
                    + self.describe()
                )
            time.sleep(0.01)

    def wait_exit(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def send_signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def stop(self, timeout: float = 10.0, sig: int = signal.SIGTERM) -> int:
        """Send `sig` (SIGTERM), wait up to `timeout`, then SIGKILL; returns the exit code seen."""
        if self.proc.poll() is None:
            self.send_signal(sig)
            code = self.wait_exit(timeout)
            if code is None:
                self.proc.kill()
                self.proc.wait(timeout=10)
                # describe() reads the stderr file: build the message before closing it.
                message = (
                    f"{self.name} ignored SIGTERM for {timeout}s and was killed\n" + self.describe()
                )
                self.close_files()
                raise AssertionError(message)
        self.close_files()
        return self.proc.returncode

    def close_files(self) -> None:
        self._reader.join(timeout=5)
        if not self._stderr.closed:
            self._stderr.close()
